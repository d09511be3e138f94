/**
 * What "a healthy node" means, as a list: each check is one small function of what the node told
 * in its single probe round trip (probe.ts), named by the code of the diagnostic it gives. The list
 * is the documentation; verify runs it in order for every node. DNS is checked from here, against
 * the cluster's resolvers.
 */
import { type Diagnostic, diag, formatSize, type NodeSpec, resolveA, UnreachableError } from "kubehyve";
import { NM_KEYFILE_PATH } from "./ignition.ts";
import { type Ctx, fwcfgBhyveOptions, ignitionPathOf } from "./paths.ts";
import {
  isFedoraCoreos,
  NO_FWCFG_CONFIG,
  PROBE_SCRIPT,
  parseIpAddresses,
  parseLinkAddresses,
  parseMemTotal,
  parseOsRelease,
  parseTimedatectl,
  type Section,
  splitProbe,
} from "./probe.ts";
import { zincatiReboots } from "./zincati.ts";

const PROBE_TIMEOUT_MS = 60_000;

/** One node as its probe described it, with what each check needs already parsed. */
export interface NodeFacts {
  ctx: Ctx;
  node: NodeSpec;
  sections: Partial<Record<Section, string>>;
  osRelease: Record<string, string>;
  /** MemTotal in bytes, when the node reported one. */
  memory?: number;
}

/** What a node says about who it is: its machine-id, and the MAC of the NIC with its address. */
export interface NodeIdentity {
  node: NodeSpec;
  machineId?: string;
  mac?: string;
}

export function identityOf(facts: NodeFacts): NodeIdentity {
  const nic = parseIpAddresses(facts.sections.addresses ?? "").find((a) => a.address === facts.node.address);
  const mac = nic
    ? parseLinkAddresses(facts.sections.links ?? "").find((l) => l.ifname === nic.ifname)?.mac
    : undefined;
  // machine-id(5): 32 lower-case hexadecimal characters, one line.
  const machineId = /^[0-9a-f]{32}$/.exec((facts.sections["machine-id"] ?? "").trim())?.[0];
  return { node: facts.node, machineId, mac };
}

/**
 * Nodes that claim to be the same machine. A machine-id is made on first boot, so two nodes share one
 * when a disk was copied from a node that had booted; systemd, DHCP (the client id) and the kubelet
 * take it as the machine's identity. Two NICs with one MAC on one bridge make the bridge send each
 * one the other's frames.
 */
export function duplicateIdentities(nodes: readonly NodeIdentity[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const groups = (key: (n: NodeIdentity) => string | undefined) => {
    const by = new Map<string, NodeIdentity[]>();
    for (const n of nodes) {
      const k = key(n);
      if (k) by.set(k, [...(by.get(k) ?? []), n]);
    }
    return [...by.entries()].filter(([, list]) => list.length > 1);
  };
  for (const [id, list] of groups((n) => n.machineId)) {
    for (const n of list) {
      const others = list.filter((o) => o !== n).map((o) => o.node.name);
      out.push(
        diag.error(
          "coreos.machine-id-duplicate",
          `${n.node.name} has the machine-id of ${others.join(", ")} (${id})`,
          {
            target: n.node.name,
            hint: `give it one of its own: ssh core@${n.node.address} 'sudo rm /etc/machine-id && sudo systemd-machine-id-setup && sudo systemctl reboot' (its disk was copied from a node that had booted)`,
          },
        ),
      );
    }
  }
  for (const [mac, list] of groups((n) => n.mac)) {
    for (const n of list) {
      const others = list.filter((o) => o !== n).map((o) => o.node.name);
      out.push(
        diag.error(
          "coreos.mac-duplicate",
          `${n.node.name}'s NIC has the MAC ${mac} of ${others.join(", ")}`,
          {
            target: n.node.name,
            hint: `each VM needs a MAC of its own: compare network0_mac in \`vm configure ${n.node.name}\` and \`vm configure ${others[0]}\` (kubehyve derives it from the cluster and node names: a second cluster of the same name on this host collides)`,
          },
        ),
      );
    }
  }
  return out;
}

export interface NodeCheck {
  /** The code of the diagnostic it gives when the node fails it. */
  id: string;
  /** What it makes sure of, as a sentence. */
  title: string;
  check(facts: NodeFacts): Diagnostic | undefined;
}

const at = (node: NodeSpec) => ({ target: node.name });

/** The checks of one node, in the order they are reported. */
export const NODE_CHECKS: readonly NodeCheck[] = [
  {
    id: "coreos.not-coreos",
    title: "the node runs Fedora CoreOS",
    check: ({ node, osRelease: os }) =>
      isFedoraCoreos(os)
        ? undefined
        : diag.error(
            "coreos.not-coreos",
            `${node.name} runs ${os.PRETTY_NAME ?? os.NAME ?? "an unknown system"}, not Fedora CoreOS`,
            {
              ...at(node),
              hint: `the VM booted another disk: check the boot disk in \`vm configure ${node.name}\`, or re-create it with kubehyve up`,
            },
          ),
  },
  {
    id: "coreos.hostname",
    title: "the node calls itself by its name",
    check: ({ ctx, node, sections }) => {
      const hostname = (sections.hostname ?? "").trim();
      if (hostname === node.name || hostname === `${node.name}.${ctx.cluster.network.domain}`)
        return undefined;
      return diag.error("coreos.hostname", `${node.name} calls itself ${JSON.stringify(hostname)}`, {
        ...at(node),
        hint: "the Ignition config sets /etc/hostname on first boot only: re-create the VM to apply it",
      });
    },
  },
  {
    id: "coreos.address",
    title: "the node has its address in the cluster's subnet",
    check: ({ ctx, node, sections }) => {
      const addresses = parseIpAddresses(sections.addresses ?? "");
      const prefix = Number(ctx.cluster.network.subnet.split("/")[1]);
      if (addresses.some((a) => a.address === node.address && a.prefix === prefix)) return undefined;
      return diag.error("coreos.address", `${node.name} does not have ${node.address}/${prefix}`, {
        ...at(node),
        detail: `addresses: ${addresses.map((a) => `${a.ifname} ${a.address}/${a.prefix}`).join(", ") || "none"}`,
        hint: `the NetworkManager keyfile matches the NIC by MAC: compare \`vm info ${node.name}\` with ${NM_KEYFILE_PATH}`,
      });
    },
  },
  {
    id: "coreos.time",
    title: "the node's clock is synchronised",
    check: ({ node, sections }) =>
      parseTimedatectl(sections.time ?? "").NTPSynchronized === "yes"
        ? undefined
        : diag.warn("coreos.time", `${node.name}'s clock is not synchronised`, {
            ...at(node),
            hint: `ssh core@${node.address} chronyc sources`,
          }),
  },
  {
    id: "coreos.memory",
    title: "the node sees the memory its VM was given",
    check: ({ ctx, node, memory }) => {
      const minimum = ctx.options.minMemory ?? Math.floor(node.memory * 0.9);
      if (memory !== undefined && memory >= minimum) return undefined;
      return diag.error(
        "coreos.memory",
        `${node.name} sees ${memory === undefined ? "no" : formatSize(memory)} memory, less than ${formatSize(minimum)}`,
        { ...at(node), hint: `check the VM's memory: vm info ${node.name}` },
      );
    },
  },
  {
    id: "coreos.ignition",
    title: "Ignition got the node's config and ran",
    check: ({ ctx, node, sections }) => {
      if ((sections["ignition-journal"] ?? "").includes(NO_FWCFG_CONFIG)) {
        return diag.error(
          "coreos.ignition-no-config",
          `the Ignition config never reached ${node.name}: "${NO_FWCFG_CONFIG}" is in its journal`,
          {
            ...at(node),
            hint: `bhyve must run with ${fwcfgBhyveOptions(ignitionPathOf(ctx, node))} (FreeBSD 14.0 or later): check bhyve_options in \`vm configure ${node.name}\``,
          },
        );
      }
      if (/^\d+$/.test((sections["ignition-result"] ?? "").trim())) return undefined;
      return diag.warn(
        "coreos.ignition-unknown",
        `${node.name} has no /etc/.ignition-result.json: cannot tell whether Ignition ran`,
        { ...at(node), hint: `ssh core@${node.address} journalctl -t ignition -o cat` },
      );
    },
  },
  {
    id: "coreos.zincati-reboot-outside-window",
    title: "Zincati rebooted the node only inside its update window",
    check: ({ ctx, node, sections }) =>
      zincatiReboots(
        node,
        ctx.options.zincati,
        sections.zincati ?? "",
        parseTimedatectl(sections.time ?? "").Timezone,
      ),
  },
];

/** One SSH round trip to the node, then every check of NODE_CHECKS; an ok line when none failed. */
export async function verifyNode(
  ctx: Ctx,
  node: NodeSpec,
  checks: readonly NodeCheck[] = NODE_CHECKS,
  /** Handed each node's facts, for the checks across nodes. */
  onFacts?: (facts: NodeFacts) => void,
): Promise<Diagnostic[]> {
  const result = await ctx
    .node(node.name)
    .run(["sh", "-c", PROBE_SCRIPT], { timeoutMs: PROBE_TIMEOUT_MS, signal: ctx.signal, cancellable: true })
    .catch((error: Error) => {
      // Doctor reports a machine it cannot reach once, and the checks that needed it as skipped.
      if (error instanceof UnreachableError) throw error;
      return { code: -1, stdout: "", stderr: error.message };
    });
  if (!result.stdout.includes("@@end")) {
    return [
      diag.error("coreos.ssh", `cannot run commands on ${node.name} (${node.address}) over SSH as core`, {
        ...at(node),
        detail: result.stderr.trim() || `exit ${result.code}`,
        hint: `look at its console: vm console ${node.name}`,
      }),
    ];
  }
  const sections = splitProbe(result.stdout);
  const facts: NodeFacts = {
    ctx,
    node,
    sections,
    osRelease: parseOsRelease(sections["os-release"] ?? ""),
    memory: parseMemTotal(sections.meminfo ?? ""),
  };
  onFacts?.(facts);
  const out = checks.flatMap((c) => c.check(facts) ?? []);
  if (!out.some((d) => d.severity === "error")) {
    out.push(
      diag.ok(
        "coreos.node",
        `${node.name}: ${facts.osRelease.PRETTY_NAME ?? "Fedora CoreOS"}, ${node.address}, ${facts.memory ? formatSize(facts.memory) : "?"}`,
        at(node),
      ),
    );
  }
  return out;
}

function dnsmasqLine(ctx: Ctx, node: NodeSpec): string {
  return `host-record=${node.name}.${ctx.cluster.network.domain},${node.name},${node.address}`;
}

/** Every node's name resolves to its address through every server of network.dns. */
export async function verifyDns(ctx: Ctx): Promise<Diagnostic[]> {
  const { network, nodes } = ctx.cluster;
  const port = ctx.options.dnsPort;
  const missing: { node: NodeSpec; server: string; got: string }[] = [];
  for (const server of network.dns) {
    for (const node of nodes) {
      const fqdn = `${node.name}.${network.domain}`;
      const answer = await resolveA(server, port, fqdn);
      if (answer.addresses.includes(node.address)) continue;
      const got = answer.addresses.length
        ? `answers ${answer.addresses.join(", ")}`
        : (answer.problem ?? "has no address for it");
      missing.push({ node, server, got });
    }
  }
  if (!missing.length) {
    return [
      diag.ok("coreos.dns", `every node name resolves to its address through ${network.dns.join(", ")}`),
    ];
  }
  return missing.map((m) =>
    diag.error(
      "coreos.dns-missing",
      `${m.node.name}.${network.domain} does not resolve to ${m.node.address} through ${m.server}:${port} (it ${m.got})`,
      {
        target: m.node.name,
        hint: `add to the router's dnsmasq configuration and reload it: ${dnsmasqLine(ctx, m.node)}`,
      },
    ),
  );
}
