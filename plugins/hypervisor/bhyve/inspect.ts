/**
 * Reading the hypervisor host: every fact check needs, each command run once, the independent ones
 * in parallel (a remote host answers each command a round trip later).
 */
import type { RunResult, Target } from "kubehyve";
import { answerOf, ZFS_MARK, ZFS_MARK_NAME } from "./marks.ts";
import type { BhyveOptions } from "./options.ts";
import {
  type IfconfigInterface,
  type PoolEntry,
  parseIfconfig,
  parseRcVars,
  parseSwitchList,
  parseSysctl,
  parseVmList,
  parseZfsGet,
  parseZpoolList,
  type SwitchEntry,
  type VmListEntry,
} from "./parse.ts";

export const SYSCTLS = [
  "hw.physmem",
  "hw.ncpu",
  "hw.model",
  "hw.vmm.maxcpu",
  "hw.vmm.vmx.initialized",
  "hw.vmm.vmx.cap.unrestricted_guest",
  "hw.vmm.svm.features",
  "vfs.zfs.arc_max",
] as const;

/** A guest's dataset in a ZFS datastore (`DATASET/NAME`), its marks and its zvols. */
export interface GuestDataset {
  name: string;
  mark?: string;
  markName?: string;
  /** `local` when the mark was set on this dataset itself, not inherited from the datastore. */
  markSource?: string;
  /** Its zvols by their own name (`disk0`, `disk1`, `disk0.kubehyve-new`). */
  volumes: Map<string, { volsize: number; volblocksize: number }>;
  /** The names of everything directly below it, zvols and file systems alike. */
  children: Set<string>;
}

/** Where the datastore is: a ZFS dataset (with its mountpoint once it exists) or a directory. */
export type Datastore =
  | {
      kind: "zfs";
      dataset: string;
      pool: string;
      exists: boolean;
      mounted: boolean;
      path?: string;
      /** The guests' datasets, by guest name. */
      guests?: Map<string, GuestDataset>;
      /** Reading it failed (not: it does not exist). */
      error?: string;
    }
  | { kind: "dir"; path: string; exists: boolean; error?: string };

/** A read that failed: the command and what it said, for a diagnostic. */
export interface FailedRead {
  argv: string[];
  result: RunResult;
}

export interface HostFacts {
  freebsdVersion: RunResult;
  uid: RunResult;
  vmmLoaded: boolean;
  /** kldstat failed (a timeout, a lost connection): whether vmm is loaded is not known. */
  vmmUnknown: boolean;
  sysctl: Map<string, string>;
  vmVersion: RunResult;
  firmwarePresent: boolean;
  /** Reads whose command failed rather than answered no (kldstat, test, sysrc), shown as such. */
  failedReads: FailedRead[];
  rc: Map<string, string>;
  /** Undefined when zpool list failed (not: there are no pools). */
  pools?: PoolEntry[];
  /**
   * The guests; empty while vm-bhyve is not enabled yet, undefined when it is enabled but could not
   * be listed (`vmListError` says why).
   */
  vms?: VmListEntry[];
  vmListError?: string;
  switches?: SwitchEntry[];
  /** Read only when the configured NIC is not yet on the switch; empty otherwise. */
  interfaces: Map<string, IfconfigInterface>;
  datastore: Datastore;
  /** The kernel message buffer, read only when vmm is missing or not initialised. */
  dmesg?: string;
}

export function datastoreSpec(
  options: Pick<BhyveOptions, "vmDir">,
): { kind: "zfs"; dataset: string; pool: string } | { kind: "dir"; path: string } {
  if (options.vmDir.startsWith("zfs:")) {
    const dataset = options.vmDir.slice(4);
    return { kind: "zfs", dataset, pool: dataset.split("/")[0]! };
  }
  return { kind: "dir", path: options.vmDir };
}

/** The properties read of the datastore and, two levels down, its guests' datasets and zvols. */
const ZFS_PROPERTIES = ["mounted", "mountpoint", "volsize", "volblocksize", ZFS_MARK, ZFS_MARK_NAME];

export function failure(argv: readonly string[], result: RunResult): string {
  const said = (result.stderr || result.stdout).trim().split("\n").slice(-3).join(" | ");
  return `\`${argv.join(" ")}\` exited ${result.code}${result.code === 124 ? " (timed out)" : ""}${said ? `: ${said}` : ""}`;
}

/**
 * The datastore and, for ZFS, every guest dataset and zvol in it with their sizes and marks, in one
 * `zfs get`. A dataset that does not exist is an answer; any other failure is reported as one.
 */
export async function readDatastore(host: Target, options: Pick<BhyveOptions, "vmDir">): Promise<Datastore> {
  const spec = datastoreSpec(options);
  if (spec.kind === "dir") {
    const argv = ["test", "-d", spec.path];
    const test = await host.run(argv);
    const answer = answerOf(test);
    return {
      ...spec,
      exists: answer === "yes",
      error: answer === "failed" ? failure(argv, test) : undefined,
    };
  }
  const argv = [
    "zfs",
    "get",
    "-Hp",
    "-d",
    "2",
    "-t",
    "filesystem,volume",
    "-o",
    "name,property,value,source",
    ZFS_PROPERTIES.join(","),
    spec.dataset,
  ];
  const result = await host.run(argv);
  if (result.code !== 0) {
    // libzfs: "cannot open 'NAME': dataset does not exist".
    if (/dataset does not exist/.test(result.stderr)) return { ...spec, exists: false, mounted: false };
    return { ...spec, exists: false, mounted: false, error: failure(argv, result) };
  }
  const props = parseZfsGet(result.stdout);
  const own = props.get(spec.dataset);
  const value = (p: Map<string, { value: string }> | undefined, name: string) => {
    const v = p?.get(name)?.value;
    return v === undefined || v === "-" ? undefined : v;
  };
  const guests = new Map<string, GuestDataset>();
  for (const [name, p] of props) {
    if (!name.startsWith(`${spec.dataset}/`)) continue;
    const [guest, volume, ...deeper] = name.slice(spec.dataset.length + 1).split("/");
    if (!guest || deeper.length) continue;
    if (!guests.has(guest))
      guests.set(guest, { name: `${spec.dataset}/${guest}`, volumes: new Map(), children: new Set() });
    const entry = guests.get(guest)!;
    if (volume !== undefined) entry.children.add(volume);
    if (volume === undefined) {
      entry.mark = value(p, ZFS_MARK);
      entry.markName = value(p, ZFS_MARK_NAME);
      entry.markSource = p.get(ZFS_MARK)?.source;
    } else if (value(p, "volsize") !== undefined) {
      entry.volumes.set(volume, {
        volsize: Number(value(p, "volsize")),
        volblocksize: Number(value(p, "volblocksize") ?? 16384),
      });
    }
  }
  const mountpoint = value(own, "mountpoint");
  return {
    ...spec,
    exists: true,
    mounted: value(own, "mounted") === "yes",
    path: mountpoint && mountpoint !== "none" && mountpoint !== "legacy" ? mountpoint : undefined,
    guests,
  };
}

/** The directory of the datastore, as far as it can be known; a ZFS dataset not yet created is guessed. */
export function datastorePath(ds: Datastore): string {
  if (ds.kind === "dir") return ds.path;
  return ds.path ?? `/${ds.dataset}`;
}

const isYes = (value: string | undefined) => /^(yes|true|on|1)$/i.test(value ?? "");

export async function inspectHost(host: Target, options: BhyveOptions): Promise<HostFacts> {
  // vm-bhyve loads vmm.ko for any subcommand (util::check_bhyve_support), so `vm list` is only run
  // once vmm is known to be loaded: a plan must not change the host's kernel.
  const kldstatArgv = ["kldstat", "-q", "-m", "vmm"];
  const sysrcArgv = ["sysrc", "-e", "-i", "vm_enable", "vm_dir", "vm_list"];
  const [kldstat, sysrc] = await Promise.all([host.run(kldstatArgv), host.run(sysrcArgv)]);
  const failedReads: FailedRead[] = [];
  // kldstat -q -m exits 1 when the module is not loaded; anything else says nothing about vmm.
  const vmm = answerOf(kldstat);
  if (vmm === "failed") failedReads.push({ argv: kldstatArgv, result: kldstat });
  if (sysrc.code !== 0) failedReads.push({ argv: sysrcArgv, result: sysrc });
  const vmmLoaded = vmm === "yes";
  const rc = parseRcVars(sysrc.stdout);
  const skipped = { code: 0, stdout: "", stderr: "" };
  // Without a clear answer from kldstat, vm (which would load vmm) is not run either.
  const askVm = vmmLoaded && isYes(rc.get("vm_enable")) && sysrc.code === 0;
  const reads = {
    freebsdVersion: ["freebsd-version", "-u"],
    uid: ["id", "-u"],
    sysctl: ["sysctl", "-i", ...SYSCTLS],
    vmVersion: ["vm", "version"],
    zpool: ["zpool", "list", "-Hp", "-o", "name,size,alloc,free"],
  };
  const [freebsdVersion, uid, sysctl, vmVersion, firmware, zpool, vmList, switchList, datastore] =
    await Promise.all([
      host.run(reads.freebsdVersion),
      host.run(reads.uid),
      host.run(reads.sysctl),
      host.run(reads.vmVersion),
      host.run(["test", "-f", options.firmware]),
      host.run(reads.zpool),
      askVm ? host.run(["vm", "list"]) : skipped,
      askVm ? host.run(["vm", "switch", "list"]) : skipped,
      readDatastore(host, options),
    ]);
  // A command that is not there (127, as a shell says) is an answer: that program is missing. Any
  // other failure only says the read failed.
  for (const [key, result] of [
    ["freebsdVersion", freebsdVersion],
    ["uid", uid],
    ["sysctl", sysctl],
    ["vmVersion", vmVersion],
    ["zpool", zpool],
  ] as const)
    if (result.code !== 0 && result.code !== 127) failedReads.push({ argv: reads[key], result });
  const switches = askVm && switchList.code === 0 ? parseSwitchList(switchList.stdout) : undefined;
  const sysctls = parseSysctl(sysctl.stdout);
  const initialised =
    sysctls.get("hw.vmm.vmx.initialized") ?? (sysctls.has("hw.vmm.svm.features") ? "1" : undefined);
  // Only when there is something to explain: the NIC a switch still has to get, a missing vmm.
  const nicBound =
    !options.nic || switches?.find((s) => s.name === options.switch)?.ports.includes(options.nic);
  const [ifconfig, dmesgOut] = await Promise.all([
    nicBound ? undefined : host.run(["ifconfig"]),
    vmm === "no" || initialised === "0" ? host.run(["dmesg"]) : undefined,
  ]);
  const listed = askVm && vmList.code === 0;
  // test -f exits 1 for "no such regular file" and above 1 on an error (test(1) EXIT STATUS).
  const firmwareAnswer = answerOf(firmware);
  if (firmwareAnswer === "failed")
    failedReads.push({ argv: ["test", "-f", options.firmware], result: firmware });
  return {
    freebsdVersion,
    uid,
    vmmLoaded,
    vmmUnknown: vmm === "failed",
    sysctl: sysctls,
    vmVersion,
    // A failed test is reported as a failed read, not as a missing firmware.
    firmwarePresent: firmwareAnswer !== "no",
    failedReads,
    rc,
    pools: zpool.code === 0 ? parseZpoolList(zpool.stdout) : zpool.code === 127 ? [] : undefined,
    // Without vm-bhyve enabled or without its datastore there can be no guests yet.
    vms: listed
      ? parseVmList(vmList.stdout)
      : datastore.error || (isYes(rc.get("vm_enable")) && datastore.exists)
        ? undefined
        : [],
    vmListError: !askVm
      ? isYes(rc.get("vm_enable"))
        ? vmm === "failed"
          ? "not run: whether vmm is loaded could not be read"
          : "not run: vmm is not loaded"
        : undefined
      : vmList.code === 0
        ? undefined
        : vmList.stderr.trim() || vmList.stdout.trim(),
    switches,
    interfaces: ifconfig?.code === 0 ? parseIfconfig(ifconfig.stdout) : new Map(),
    datastore,
    dmesg: dmesgOut?.stdout,
  };
}
