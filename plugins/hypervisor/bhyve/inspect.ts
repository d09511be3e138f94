/**
 * Reading the hypervisor host: every fact check needs, each command run once, the independent ones
 * in parallel (a remote host answers each command a round trip later).
 */
import type { RunResult, Target } from "kubehyve";
import type { BhyveOptions } from "./options.ts";
import {
  type IfconfigInterface,
  type PoolEntry,
  parseIfconfig,
  parseRcVars,
  parseSwitchList,
  parseSysctl,
  parseVmList,
  parseZfsList,
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

/** Where the datastore is: a ZFS dataset (with its mountpoint once it exists) or a directory. */
export type Datastore =
  | { kind: "zfs"; dataset: string; pool: string; exists: boolean; mounted: boolean; path?: string }
  | { kind: "dir"; path: string; exists: boolean };

export interface HostFacts {
  freebsdVersion: RunResult;
  uid: RunResult;
  vmmLoaded: boolean;
  sysctl: Map<string, string>;
  vmVersion: RunResult;
  firmwarePresent: boolean;
  rc: Map<string, string>;
  pools: PoolEntry[];
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

export async function readDatastore(host: Target, options: Pick<BhyveOptions, "vmDir">): Promise<Datastore> {
  const spec = datastoreSpec(options);
  if (spec.kind === "dir") {
    const test = await host.run(["test", "-d", spec.path]);
    return { ...spec, exists: test.code === 0 };
  }
  const fields = ["name", "mounted", "mountpoint"] as const;
  const result = await host.run(["zfs", "list", "-Hp", "-o", fields.join(","), spec.dataset]);
  const row = result.code === 0 ? parseZfsList(result.stdout, fields)[0] : undefined;
  if (!row) return { ...spec, exists: false, mounted: false };
  return {
    ...spec,
    exists: true,
    mounted: row.mounted === "yes",
    path: row.mountpoint && row.mountpoint !== "-" ? row.mountpoint : undefined,
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
  const [kldstat, sysrc] = await Promise.all([
    host.run(["kldstat", "-q", "-m", "vmm"]),
    host.run(["sysrc", "-e", "-i", "vm_enable", "vm_dir", "vm_list"]),
  ]);
  const vmmLoaded = kldstat.code === 0;
  const rc = parseRcVars(sysrc.stdout);
  const skipped = { code: 0, stdout: "", stderr: "" };
  const askVm = vmmLoaded && isYes(rc.get("vm_enable"));
  const [freebsdVersion, uid, sysctl, vmVersion, firmware, zpool, vmList, switchList, datastore] =
    await Promise.all([
      host.run(["freebsd-version", "-u"]),
      host.run(["id", "-u"]),
      host.run(["sysctl", "-i", ...SYSCTLS]),
      host.run(["vm", "version"]),
      host.run(["test", "-f", options.firmware]),
      host.run(["zpool", "list", "-Hp", "-o", "name,size,alloc,free"]),
      askVm ? host.run(["vm", "list"]) : skipped,
      askVm ? host.run(["vm", "switch", "list"]) : skipped,
      readDatastore(host, options),
    ]);
  const switches = askVm && switchList.code === 0 ? parseSwitchList(switchList.stdout) : undefined;
  const sysctls = parseSysctl(sysctl.stdout);
  const initialised =
    sysctls.get("hw.vmm.vmx.initialized") ?? (sysctls.has("hw.vmm.svm.features") ? "1" : undefined);
  // Only when there is something to explain: the NIC a switch still has to get, a missing vmm.
  const nicBound =
    !options.nic || switches?.find((s) => s.name === options.switch)?.ports.includes(options.nic);
  const [ifconfig, dmesgOut] = await Promise.all([
    nicBound ? undefined : host.run(["ifconfig"]),
    !vmmLoaded || initialised === "0" ? host.run(["dmesg"]) : undefined,
  ]);
  const listed = askVm && vmList.code === 0;
  return {
    freebsdVersion,
    uid,
    vmmLoaded,
    sysctl: sysctls,
    vmVersion,
    firmwarePresent: firmware.code === 0,
    rc,
    pools: zpool.code === 0 ? parseZpoolList(zpool.stdout) : [],
    // Without vm-bhyve enabled or without its datastore there can be no guests yet.
    vms: listed
      ? parseVmList(vmList.stdout)
      : isYes(rc.get("vm_enable")) && datastore.exists
        ? undefined
        : [],
    vmListError: !askVm
      ? isYes(rc.get("vm_enable"))
        ? "not run: vmm is not loaded"
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
