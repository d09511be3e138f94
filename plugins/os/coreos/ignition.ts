/**
 * The Ignition config of one node, spec 3.3.0 (the oldest spec current Fedora CoreOS reads and the
 * newest Debian's ignition-validate knows; field reference: ignition docs configuration-v3_3.md).
 * It holds public keys and plain settings only: nothing secret reaches the node this way, because
 * the config stays readable on the host and through fw_cfg inside the guest.
 */
import { type Cluster, KubehyveError, type NodeSpec } from "kubehyve";
import type { NodeFile } from "./node-files.ts";
import type { CoreosOptions, ZincatiOptions } from "./options.ts";

export const IGNITION_VERSION = "3.3.0";
/** The serial console bhyve's com1 is wired to (vm-bhyve's nmdm console). */
export const SERIAL_CONSOLE_KARG = "console=ttyS0,115200n8";
export const NM_KEYFILE_PATH = "/etc/NetworkManager/system-connections/kubehyve.nmconnection";
export const ZINCATI_PATH = "/etc/zincati/config.d/55-updates-strategy.toml";

export interface IgnitionFile {
  path: string;
  mode: number;
  overwrite: boolean;
  contents: { source: string };
}

export interface IgnitionConfig {
  ignition: { version: string };
  kernelArguments: { shouldExist: string[] };
  passwd: { users: { name: string; sshAuthorizedKeys: string[] }[] };
  storage: { files: IgnitionFile[] };
}

export interface IgnitionInput {
  cluster: Cluster;
  node: NodeSpec;
  options: Pick<CoreosOptions, "zincati" | "kernelArgs">;
  /** The cluster's own ed25519 public key (ctx.clusterKey()). */
  clusterPublicKey: string;
  /** What other stages asked for through `os:node-files`, already checked (node-files.ts). */
  nodeFiles?: readonly Required<NodeFile>[];
}

/** The files the os stage writes itself: no other stage may ask for them. */
export const OWN_FILE_PATHS = ["/etc/hostname", NM_KEYFILE_PATH, ZINCATI_PATH] as const;

function dataUrl(content: string): string {
  return `data:,${encodeURIComponent(content)}`;
}

function file(path: string, content: string, mode: number): IgnitionFile {
  return { path, mode, overwrite: true, contents: { source: dataUrl(content) } };
}

function prefixOf(subnet: string): number {
  const prefix = Number(subnet.split("/")[1]);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32)
    throw new KubehyveError(`network.subnet ${subnet} has no prefix length`, 2);
  return prefix;
}

/**
 * A NetworkManager keyfile (the format of fedora-coreos-docs sysconfig-network-configuration.adoc:
 * `address1=ADDR/PREFIX,GATEWAY`, `dns=` and `dns-search=` lists ending in `;`), matched by MAC.
 * NetworkManager ignores keyfiles that others can read, hence mode 0600 in the config.
 *
 * It is written the way NetworkManager writes it back (`nmcli --offline connection modify` keeps
 * every line, in its order; see the tests): keys in NetworkManager's order, the MAC in upper case,
 * and no line that only repeats a default (`autoconnect` is true unless set, nm-settings-nmcli(5)).
 * A line NetworkManager would drop is a value it did not take.
 */
export function renderNmKeyfile(cluster: Cluster, node: NodeSpec): string {
  const net = cluster.network;
  return [
    "[connection]",
    "id=kubehyve",
    "type=ethernet",
    "",
    "[ethernet]",
    `mac-address=${node.mac.toUpperCase()}`,
    "",
    "[ipv4]",
    `address1=${node.address}/${prefixOf(net.subnet)},${net.gateway}`,
    `dns=${net.dns.map((d) => `${d};`).join("")}`,
    `dns-search=${net.domain};`,
    "may-fail=false",
    "method=manual",
    "",
    "[ipv6]",
    "method=disabled",
    "",
  ].join("\n");
}

/** Zincati's update strategy drop-in (fedora-coreos-docs auto-updates.adoc, zincati docs/usage/updates-strategy.md). */
export function renderZincati(zincati: ZincatiOptions): string {
  switch (zincati.strategy) {
    case "off":
      return "[updates]\nenabled = false\n";
    case "immediate":
      return '[updates]\nstrategy = "immediate"\n';
    case "periodic": {
      const lines = ["[updates]", 'strategy = "periodic"', ""];
      if (zincati.timeZone) lines.push("[updates.periodic]", `time_zone = "${zincati.timeZone}"`, "");
      lines.push(
        "[[updates.periodic.window]]",
        `days = [ ${zincati.days.map((d) => `"${d}"`).join(", ")} ]`,
        `start_time = "${zincati.startTime}"`,
        `length_minutes = ${zincati.lengthMinutes}`,
        "",
      );
      return lines.join("\n");
    }
  }
}

export function renderIgnition(input: IgnitionInput): IgnitionConfig {
  const { cluster, node, options } = input;
  const keys = [
    ...new Set([input.clusterPublicKey.trim(), ...cluster.ssh.authorizedKeys.map((k) => k.trim())]),
  ].filter(Boolean);
  return {
    ignition: { version: IGNITION_VERSION },
    kernelArguments: { shouldExist: [...new Set([SERIAL_CONSOLE_KARG, ...options.kernelArgs])] },
    passwd: { users: [{ name: "core", sshAuthorizedKeys: keys }] },
    storage: {
      files: [
        file("/etc/hostname", `${node.name}\n`, 0o644),
        file(NM_KEYFILE_PATH, renderNmKeyfile(cluster, node), 0o600),
        file(ZINCATI_PATH, renderZincati(options.zincati), 0o644),
        ...(input.nodeFiles ?? []).map((f) => file(f.path, f.contents, f.mode)),
      ],
    },
  };
}

/** The bytes written to the host and handed to the guest: stable, so "current" is a byte compare. */
export function serializeIgnition(config: IgnitionConfig): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}
