/**
 * What verify asks a node, in one SSH round trip: a constant script (no interpolation, so nothing
 * to quote) printing sections, and pure parsers for each program's output.
 */

const SECTIONS = [
  "os-release",
  "hostname",
  "addresses",
  "time",
  "meminfo",
  "ignition-result",
  "ignition-journal",
  "machine-id",
  "links",
  "zincati",
] as const;
export type Section = (typeof SECTIONS)[number];

/**
 * `journalctl -t ignition` without `-b`: Ignition runs in the initramfs of the first boot, and the
 * kernel-argument step reboots once, so its lines sit in an earlier boot of the persistent journal.
 * The core user reads the journal through its membership in the `systemd-journal` group.
 */
export const PROBE_SCRIPT = [
  "echo '@@os-release'; cat /etc/os-release",
  "echo '@@hostname'; uname -n",
  "echo '@@addresses'; ip -o -4 addr show",
  "echo '@@time'; timedatectl show",
  "echo '@@meminfo'; cat /proc/meminfo",
  "echo '@@ignition-result'; stat -c %s /etc/.ignition-result.json 2>&1",
  "echo '@@ignition-journal'; journalctl -t ignition -o cat --no-pager 2>&1",
  "echo '@@machine-id'; cat /etc/machine-id",
  "echo '@@links'; ip -o link show",
  // Zincati's finalizing lines of the last 30 days, each with its time (zincati.ts).
  "echo '@@zincati'; journalctl -u zincati.service -o short-unix --no-pager --since=-30d 2>&1 | grep -F 'proceeding to finalize it'",
  "echo '@@end'",
].join("\n");

export function splitProbe(stdout: string): Partial<Record<Section, string>> {
  const out: Partial<Record<Section, string>> = {};
  let current: Section | undefined;
  let lines: string[] = [];
  for (const line of stdout.split("\n")) {
    const m = /^@@([a-z-]+)$/.exec(line);
    if (m) {
      if (current) out[current] = lines.join("\n");
      current = (SECTIONS as readonly string[]).includes(m[1]!) ? (m[1] as Section) : undefined;
      lines = [];
    } else if (current) {
      lines.push(line);
    }
  }
  return out;
}

/** os-release(5): KEY=value lines, values optionally in single or double quotes. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!;
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\([$"\\`])/g, "$1");
    }
    out[m[1]!] = value;
  }
  return out;
}

export function isFedoraCoreos(osRelease: Record<string, string>): boolean {
  // fedora-release.spec builds CoreOS' os-release by appending VARIANT_ID=coreos to Fedora's own.
  return osRelease.ID === "fedora" && osRelease.VARIANT_ID === "coreos";
}

export interface InterfaceAddress {
  ifname: string;
  address: string;
  prefix: number;
}

/** `ip -o -4 addr show` (iproute2): `2: eth0    inet 192.0.2.2/24 brd … scope global eth0\ …`. */
export function parseIpAddresses(text: string): InterfaceAddress[] {
  const out: InterfaceAddress[] = [];
  for (const line of text.split("\n")) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(line);
    if (m) out.push({ ifname: m[1]!, address: m[2]!, prefix: Number(m[3]) });
  }
  return out;
}

/** `timedatectl show` prints properties as KEY=VALUE; NTPSynchronized is yes or no. */
export function parseTimedatectl(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** MemTotal of /proc/meminfo (proc(5): `MemTotal:        4005532 kB`), in bytes. */
export function parseMemTotal(text: string): number | undefined {
  const m = /^MemTotal:\s+(\d+)\s*kB$/m.exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** Ignition's qemu provider logs this when fw_cfg has no opt/com.coreos/config (internal/providers/qemu). */
export const NO_FWCFG_CONFIG = "QEMU firmware config was not found";

/**
 * `ip -o link show` (iproute2): one line per link, `2: enp0s5: <…> mtu 1500 … \    link/ether
 * 58:9c:fc:0a:0b:0c brd ff:ff:ff:ff:ff:ff`; the Ethernet address of each link that has one.
 */
export function parseLinkAddresses(text: string): { ifname: string; mac: string }[] {
  const out: { ifname: string; mac: string }[] = [];
  for (const line of text.split("\n")) {
    const m = /^\d+:\s+([^:@\s]+)[^\n]*?link\/ether\s+([0-9a-f]{2}(?::[0-9a-f]{2}){5})/i.exec(line);
    if (m) out.push({ ifname: m[1]!, mac: m[2]!.toLowerCase() });
  }
  return out;
}
