/**
 * Parsers of the host's command output. Pure functions, each tested on verbatim upstream samples
 * (../shared/oracles/freebsd/samples, vm-bhyve's sources and man page).
 */

/**
 * Splits a table printed through `column -t` by the header's column starts. Values may contain single
 * spaces (`Yes [1]`, `Running (1637)`), so splitting on whitespace would be wrong; the column widths
 * also differ between vm-bhyve versions, and rows are matched to the header by name, not by index.
 */
export function parseColumns(text: string): Record<string, string>[] {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const headerIndex = lines.findIndex((l) => /^NAME\s/.test(l));
  if (headerIndex < 0) return [];
  const header = lines[headerIndex]!;
  const starts: { name: string; at: number }[] = [];
  for (const m of header.matchAll(/\S+/g)) starts.push({ name: m[0], at: m.index });
  return lines.slice(headerIndex + 1).map((line) => {
    const row: Record<string, string> = {};
    starts.forEach((col, i) => {
      const end = i + 1 < starts.length ? starts[i + 1]!.at : line.length;
      row[col.name] = line.slice(col.at, end).trim();
    });
    return row;
  });
}

export type VmState =
  | { kind: "running"; pid: number }
  | { kind: "stopped" }
  | { kind: "locked"; host: string }
  | { kind: "other"; text: string };

export interface VmListEntry {
  name: string;
  datastore: string;
  loader: string;
  cpu: string;
  memory: string;
  /** Position in rc.conf's vm_list, when the guest starts at boot. */
  autostart?: number;
  state: VmState;
}

/** `vm list` (and `vm list -v`): core::list in vm-bhyve's lib/vm-core. */
export function parseVmList(text: string): VmListEntry[] {
  return parseColumns(text).map((row) => {
    const auto = /^Yes \[(\d+)\]$/.exec(row.AUTO ?? "");
    return {
      name: row.NAME ?? "",
      datastore: row.DATASTORE ?? "",
      loader: row.LOADER ?? "",
      cpu: row.CPU ?? "",
      memory: row.MEMORY ?? "",
      autostart: auto ? Number(auto[1]) : undefined,
      state: parseVmState(row.STATE ?? ""),
    };
  });
}

export function parseVmState(text: string): VmState {
  const running = /^Running \((\d+)\)$/.exec(text);
  if (running) return { kind: "running", pid: Number(running[1]) };
  if (text === "Stopped") return { kind: "stopped" };
  const locked = /^Locked \((.*)\)$/.exec(text);
  if (locked) return { kind: "locked", host: locked[1]! };
  return { kind: "other", text };
}

export interface SwitchEntry {
  name: string;
  type: string;
  /** The bridge interface, when the switch is loaded. */
  iface?: string;
  ports: string[];
  /** The address vm-bhyve gives the bridge (`vm switch address`), when it has one. */
  address?: string;
  /** Private mode (`vm switch private NAME on`): guests reach only the physical ports. */
  private?: true;
}

const unset = (value: string | undefined) => !value || value === "-" || value === "n/a";

/**
 * `vm switch list`: switch::list in lib/vm-switch; PORTS is a space-separated list. A manual switch
 * shows `n/a` for what vm-bhyve does not manage (switch::manual::show, lib/vm-switch-manual).
 */
export function parseSwitchList(text: string): SwitchEntry[] {
  return parseColumns(text).map((row) => ({
    name: row.NAME ?? "",
    type: row.TYPE ?? "",
    iface: unset(row.IFACE) ? undefined : row.IFACE,
    ports: unset(row.PORTS) ? [] : row.PORTS!.split(/\s+/),
    ...(unset(row.ADDRESS) ? {} : { address: row.ADDRESS }),
    ...(row.PRIVATE === "yes" ? { private: true as const } : {}),
  }));
}

export interface SwitchInfo {
  name: string;
  type: string;
  /** `ident`: the bridge of a standard or manual switch, `-` when it is not loaded. */
  ident?: string;
  /** `physical-ports`: the ports vm-bhyve keeps in ports_NAME. */
  physicalPorts: string[];
  /** The guests' ports on the bridge (`virtual-port` blocks). */
  virtualPorts: { device: string; vm?: string }[];
}

/**
 * `vm switch info [NAME…]`: info::switch_show in lib/vm-info (v1.7.5 lines 75-133): a block per
 * switch opened by `Virtual Switch: NAME` between dashed lines, `  key: value` settings (type,
 * ident, vlan, physical-ports, bytes-in, bytes-out) and a `  virtual-port` block per guest port.
 */
export function parseSwitchInfo(text: string): SwitchInfo[] {
  const out: SwitchInfo[] = [];
  let current: SwitchInfo | undefined;
  let port: { device: string; vm?: string } | undefined;
  for (const line of text.split("\n")) {
    const head = /^Virtual Switch: (\S+)\s*$/.exec(line);
    if (head) {
      current = { name: head[1]!, type: "standard", physicalPorts: [], virtualPorts: [] };
      out.push(current);
      port = undefined;
      continue;
    }
    if (!current) continue;
    if (/^ {2}virtual-port\s*$/.test(line)) {
      port = { device: "" };
      current.virtualPorts.push(port);
      continue;
    }
    const kv = /^( {2}| {4})([a-z-]+): ?(.*)$/.exec(line);
    if (!kv) continue;
    const [, indent, key, raw] = kv as unknown as [string, string, string, string];
    const value = raw.trim();
    if (indent.length === 4 && port) {
      if (key === "device") port.device = value;
      else if (key === "vm" && !unset(value)) port.vm = value;
      continue;
    }
    port = undefined;
    if (key === "type") current.type = value;
    else if (key === "ident") current.ident = unset(value) ? undefined : value;
    else if (key === "physical-ports") current.physicalPorts = unset(value) ? [] : value.split(/\s+/);
  }
  return out;
}

/** `sysctl NAME…` in its default `name: value` format (sbin/sysctl). */
export function parseSysctl(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z0-9_.%-]+): ?(.*)$/.exec(line);
    if (m) values.set(m[1]!, m[2]!);
  }
  return values;
}

/**
 * rc.conf-style `name="value"` text: `sysrc -e` output, /etc/rc.conf and vm-bhyve guest configs
 * (vm.8 GUEST CONFIGURATION FORMAT: options at the start of the line, `#` starts a comment even inside
 * quotes).
 */
export function parseRcVars(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trimEnd();
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!.trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0])
      value = value.slice(1, -1);
    vars.set(m[1]!, value);
  }
  return vars;
}

export interface PoolEntry {
  name: string;
  size: number;
  alloc: number;
  free: number;
}

/** `zpool list -Hp -o name,size,alloc,free` (zpool-list.8: tab-separated, exact bytes). */
export function parseZpoolList(text: string): PoolEntry[] {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((line) => {
      const [name = "", size = "", alloc = "", free = ""] = line.split("\t");
      return { name, size: Number(size), alloc: Number(alloc), free: Number(free) };
    });
}

/** `zfs list -Hp -o FIELDS …`: tab-separated rows keyed by the requested field names. */
export function parseZfsList(text: string, fields: readonly string[]): Record<string, string>[] {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((line) => {
      const cells = line.split("\t");
      return Object.fromEntries(fields.map((f, i) => [f, cells[i] ?? ""]));
    });
}

/** `freebsd-version -u`: `14.3-RELEASE-p2` → major 14, minor 3 (freebsd-version.1). */
export function parseFreebsdVersion(
  text: string,
): { major: number; minor: number; text: string } | undefined {
  const m = /^(\d+)\.(\d+)-\S+/.exec(text.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]), text: text.trim() } : undefined;
}

/** `vm version`: "vm-bhyve: Bhyve virtual machine management v1.7.5" (util::version, lib/vm-util). */
export function parseVmVersion(text: string): number[] | undefined {
  const m = /management v(\d+(?:\.\d+)*)/.exec(text);
  return m ? m[1]!.split(".").map(Number) : undefined;
}

export function versionAtLeast(version: readonly number[], wanted: readonly number[]): boolean {
  for (let i = 0; i < wanted.length; i++) {
    const a = version[i] ?? 0;
    const b = wanted[i]!;
    if (a !== b) return a > b;
  }
  return true;
}

export interface IfconfigInet {
  address: string;
  /** Prefix length, from the hexadecimal netmask ifconfig prints (or a `/len` of `-f inet:cidr`). */
  prefix: number;
}

export interface IfconfigInterface {
  name: string;
  flags: string[];
  description?: string;
  members: string[];
  groups: string[];
  /** The enabled capabilities of the `options=` line (TSO4, LRO, …); empty when there is none. */
  options: string[];
  /** IPv4 addresses, in the order ifconfig lists them. */
  inet: IfconfigInet[];
}

/** `0xffffff00` → 24; undefined for a mask that is not a run of ones. */
function prefixOfMask(hex: string): number | undefined {
  const bits = Number.parseInt(hex, 16).toString(2).padStart(32, "0");
  if (bits.length !== 32 || !/^1*0*$/.test(bits)) return undefined;
  const zero = bits.indexOf("0");
  return zero < 0 ? 32 : zero;
}

/**
 * `ifconfig` / `ifconfig -a` / `ifconfig NAME` (sbin/ifconfig: ifconfig.c status() prints the
 * `NAME: flags=…` head and `options=HEX<CAPS>`, af_inet.c `inet A netmask 0xM broadcast B`,
 * ifbridge.c the bridge and its `member: IF flags=…` lines, ifgroup.c `groups:`). Stanzas start at
 * column 0; the lines inside are indented with a tab (captures copied from web pages have spaces).
 */
export function parseIfconfig(text: string): Map<string, IfconfigInterface> {
  const interfaces = new Map<string, IfconfigInterface>();
  let current: IfconfigInterface | undefined;
  for (const line of text.split("\n")) {
    const head = /^([A-Za-z0-9_.-]+): flags=[0-9a-f]+<([^>]*)>/.exec(line);
    if (head) {
      current = {
        name: head[1]!,
        flags: head[2]!.split(",").filter(Boolean),
        members: [],
        groups: [],
        options: [],
        inet: [],
      };
      interfaces.set(current.name, current);
      continue;
    }
    if (!current) continue;
    const trimmed = line.trim();
    const member = /^member: (\S+)/.exec(trimmed);
    const options = /^options=[0-9a-f]+(?:<([^>]*)>)?/.exec(trimmed);
    const inet = /^inet (\d+\.\d+\.\d+\.\d+)(?:\/(\d+)| netmask 0x([0-9a-f]{8}))?/.exec(trimmed);
    if (member) current.members.push(member[1]!);
    else if (options) current.options = (options[1] ?? "").split(",").filter(Boolean);
    else if (inet) {
      const prefix = inet[2] !== undefined ? Number(inet[2]) : inet[3] ? prefixOfMask(inet[3]) : 32;
      if (prefix !== undefined) current.inet.push({ address: inet[1]!, prefix });
    } else if (trimmed.startsWith("description: "))
      current.description = trimmed.slice("description: ".length);
    else if (trimmed.startsWith("groups: ")) current.groups = trimmed.slice("groups: ".length).split(/\s+/);
  }
  return interfaces;
}

/** What `pfctl -s info` says of pf: its first line, `Status: Enabled for …` or `Status: Disabled`. */
export function parsePfctlStatus(text: string): "enabled" | "disabled" | undefined {
  // sbin/pfctl/pfctl_parser.c print_status: "Status: %s" with "Enabled" or "Disabled", then
  // " for %u days %.2u:%.2u:%.2u" while running, padded to 44 columns before "Debug: …".
  const m = /^Status: (Enabled|Disabled)\b/m.exec(text);
  return m ? (m[1] === "Enabled" ? "enabled" : "disabled") : undefined;
}

/** `pfctl -s nat`: one rule per line as print_rule prints them (nat, binat, rdr and their anchors). */
export function parsePfctlNat(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^(no )?(nat|binat|rdr)(-anchor)?\b/.test(l));
}

/**
 * A guest's tap interfaces, from their description `vmnet/NAME/N/SWITCH`, which vm-bhyve sets when
 * it provisions the interface (switch::standard::provision, lib/vm-switch-standard).
 */
export function tapsOf(
  interfaces: Map<string, IfconfigInterface>,
  vm: string,
): { tap: string; index: number; switchName: string }[] {
  const taps = [];
  for (const i of interfaces.values()) {
    const m = /^vmnet\/(.+)\/(\d+)\/(.+)$/.exec(i.description ?? "");
    if (m && m[1] === vm) taps.push({ tap: i.name, index: Number(m[2]), switchName: m[3]! });
  }
  return taps.sort((a, b) => a.index - b.index);
}

export interface GuestLogRun {
  /** The `initialising` line that opened the last run, or undefined when the guest never started. */
  startedAt?: string;
  /** Lines of the last run that report a failure. */
  errors: string[];
  /** The last run reached `starting bhyve`. */
  booted: boolean;
  /** The last run ended (`stopped` was logged). */
  ended: boolean;
}

/**
 * The last run in a guest's vm-bhyve.log. Lines are "DATE: message" (util::log, lib/vm-util); a run
 * starts with "initialising" (vm::run, lib/vm-run). Failures are the "fatal; …" lines, "failed to …"
 * lines of network set-up, and bhyve exiting with a status other than reboot (0), power-off (1) or
 * halt (2) (bhyve.8 EXIT STATUS: 3 triple fault, 4 error).
 */
export function parseGuestLog(text: string): GuestLogRun {
  const lines = text.split("\n").filter(Boolean);
  let start = -1;
  lines.forEach((line, i) => {
    if (/^\S+: initialising$/.test(line)) start = i;
  });
  if (start < 0) return { errors: [], booted: false, ended: false };
  const run = lines.slice(start);
  const message = (line: string) => line.replace(/^\S+: /, "");
  const errors = run.filter((line) => {
    const m = message(line);
    const exit = /^bhyve exited with status (\d+)$/.exec(m);
    return m.startsWith("fatal;") || m.startsWith("failed to") || (exit !== null && Number(exit[1]) > 2);
  });
  return {
    startedAt: /^(\S+): /.exec(lines[start]!)?.[1],
    errors: errors.map(message),
    booted: run.some((l) => /^starting bhyve \(run \d+\)$/.test(message(l))),
    ended: run.some((l) => message(l) === "stopped"),
  };
}

/** Text of the kernel message buffer that says virtualisation was switched off in the firmware. */
export function biosDisabledLine(dmesg: string): string | undefined {
  // sys/amd64/vmm/intel/vmx.c: "vmx_init: VMX operation disabled by BIOS";
  // sys/amd64/vmm/amd/svm.c: "SVM disabled by BIOS".
  return dmesg.split("\n").find((l) => /VMX operation disabled by BIOS|SVM:? disabled by BIOS/i.test(l));
}

export interface ZfsProperty {
  value: string;
  /** zfs-get.8: `local`, `default`, `inherited from NAME`, `-` (read-only or unset), … */
  source: string;
}

/**
 * `zfs get -Hp -o name,property,value,source PROPS …` (zfs-get.8: one tab-separated line per
 * dataset and property; an unset user property has value and source `-`), by dataset then property.
 */
export function parseZfsGet(text: string): Map<string, Map<string, ZfsProperty>> {
  const datasets = new Map<string, Map<string, ZfsProperty>>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const [name = "", property = "", value = "", source = ""] = line.split("\t");
    if (!datasets.has(name)) datasets.set(name, new Map());
    datasets.get(name)!.set(property, { value, source });
  }
  return datasets;
}

export interface LsEntry {
  /** The mode column: `-rw-------`, `drwxr-xr-x` (without a trailing `+` or `@`). */
  mode: string;
  /** Bytes; 0 for a device, whose column holds its device number instead. */
  size: number;
  path: string;
  /** A symbolic link: what it points at (`PATH -> TARGET`). */
  link?: string;
}

/**
 * `ls -lnd PATH…` (POSIX ls -l: mode, links, owner, group, size, date and time, name; -n numeric ids,
 * the same columns in FreeBSD's and GNU's ls). Names are the last field: the paths kubehyve lists
 * come from its allowlists and hold no blanks. A link's line ends in ` -> TARGET` and a device's
 * size column is `MAJOR, MINOR` (GNU ls) or the device number in hex (FreeBSD's ls, print.c printdev).
 */
export function parseLsLong(text: string): Map<string, LsEntry> {
  const entries = new Map<string, LsEntry>();
  for (const line of text.split("\n")) {
    const m =
      /^([-bcdlps][-rwxsStTx]{9})\S*\s+\d+\s+\S+\s+\S+\s+(?:(\d+)|\d+,\s*\d+|0x[0-9a-f]+)\s+.*?\s(\/\S+)(?: -> (.*))?$/.exec(
        line,
      );
    if (m)
      entries.set(m[3]!, {
        mode: m[1]!,
        size: Number(m[2] ?? 0),
        path: m[3]!,
        ...(m[4] !== undefined ? { link: m[4] } : {}),
      });
  }
  return entries;
}
