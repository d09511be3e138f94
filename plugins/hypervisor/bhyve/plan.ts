/**
 * From host facts and the cluster file to the plan: the changes that make the host a hypervisor
 * and keep the node VMs as declared, plus the per-VM findings (drift that cannot be fixed in place,
 * locked guests).
 */
import { type Change, type Cluster, type Diagnostic, diag, formatSize, type NodeSpec } from "kubehyve";
import { type Datastore, datastorePath, type HostFacts } from "./inspect.ts";
import type { BhyveOptions } from "./options.ts";
import type { VmListEntry } from "./parse.ts";
import { type ConfigDrift, describeDrift, diffVmConfig, diskDrift, vmConfigEntries } from "./vmconfig.ts";

/** What the os stage may contribute to a node's VM through the `hypervisor:node-boot` hook. */
export interface NodeBoot {
  bhyveOptions?: string;
  bootImage?: { kind: "file"; path: string } | { kind: "zfs-snapshot"; snapshot: string };
}

export interface NodeBootPayload {
  node: NodeSpec;
  /** The VM's directory on the host. */
  vmDir: string;
}

export const NODE_BOOT_HOOK = "hypervisor:node-boot";

declare module "kubehyve" {
  interface HookTypes {
    /** Asked per node before its VM is made or compared: how it boots (the os stage answers). */
    [NODE_BOOT_HOOK]: { payload: NodeBootPayload; answer: NodeBoot | undefined };
  }
}

/** Several handlers: bhyve options add up, the first boot image wins. */
export function mergeNodeBoot(results: readonly (NodeBoot | undefined | null)[]): NodeBoot {
  const options = results.map((r) => r?.bhyveOptions?.trim()).filter((o): o is string => !!o);
  const bootImage = results.find((r) => r?.bootImage)?.bootImage;
  return {
    ...(options.length ? { bhyveOptions: options.join(" ") } : {}),
    ...(bootImage ? { bootImage } : {}),
  };
}

export type VmChangeData =
  | { kind: "vm.create"; node: string; boot: NodeBoot }
  | { kind: "vm.start"; node: string }
  | { kind: "vm.reconfigure"; node: string; boot: NodeBoot; running: boolean; drift: ConfigDrift[] };

export type HostChangeData =
  | { kind: "host.rcconf"; vars: Record<string, string> }
  | { kind: "host.datastore" }
  | { kind: "host.init" }
  | { kind: "host.switch-create"; switchName: string; nic?: string }
  | { kind: "host.switch-add"; switchName: string; nic: string }
  | { kind: "host.autostart"; vmList: string[] };

export type ChangeData = VmChangeData | HostChangeData;

export interface VmObservation {
  node: NodeSpec;
  /** The VM's directory on the host. */
  dir: string;
  listed?: VmListEntry;
  /** The guest's config on the host, when it exists. */
  config?: Map<string, string>;
  boot: NodeBoot;
}

export function guestDirOf(ds: Datastore, node: string): string {
  return `${datastorePath(ds)}/${node}`;
}

function change(summary: string, data: ChangeData, target: string, extra: Partial<Change> = {}): Change {
  return { summary, kind: data.kind, data, target, ...extra };
}

export function hostChanges(facts: HostFacts, options: BhyveOptions, target: string): Change[] {
  const changes: Change[] = [];
  const vars: Record<string, string> = {};
  if (!/^(yes|true|on|1)$/i.test(facts.rc.get("vm_enable") ?? "")) vars.vm_enable = "YES";
  if (!facts.rc.get("vm_dir")) vars.vm_dir = options.vmDir;
  if (Object.keys(vars).length) {
    const line = Object.entries(vars)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    changes.push(change(`enable vm-bhyve in rc.conf: sysrc ${line}`, { kind: "host.rcconf", vars }, target));
  }
  const ds = facts.datastore;
  if (!ds.exists) {
    changes.push(
      change(
        ds.kind === "zfs"
          ? `create the VM datastore: zfs create -p ${ds.dataset}`
          : `create the VM datastore directory ${ds.path}`,
        { kind: "host.datastore" },
        target,
      ),
    );
  }
  const sw = facts.switches?.find((s) => s.name === options.switch);
  // vm init creates the switches' bridges; they are gone after a reboot until rc.d/vm runs it.
  if (facts.switches === undefined || (sw && !sw.iface))
    changes.push(change("initialise vm-bhyve: vm init", { kind: "host.init" }, target));
  if (!sw) {
    changes.push(
      change(
        `create virtual switch ${options.switch}${options.nic ? ` on ${options.nic}` : ""}`,
        { kind: "host.switch-create", switchName: options.switch, nic: options.nic },
        target,
      ),
    );
  } else if (options.nic && !sw.ports.includes(options.nic)) {
    changes.push(
      change(
        `add ${options.nic} to virtual switch ${options.switch}`,
        { kind: "host.switch-add", switchName: options.switch, nic: options.nic },
        target,
      ),
    );
  }
  return changes;
}

export function vmChanges(
  cluster: Cluster,
  options: BhyveOptions,
  observed: VmObservation[],
): { changes: Change[]; diagnostics: Diagnostic[] } {
  const changes: Change[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const { node, dir, listed, config, boot } of observed) {
    const entries = vmConfigEntries({
      cluster: cluster.name,
      node,
      options,
      bhyveOptions: boot.bhyveOptions,
    });
    const shape = `${node.cpus} vCPU, ${formatSize(node.memory)}, ${formatSize(node.disk)} disk${node.disks.map((d) => ` + ${formatSize(d.size)} ${d.name}`).join("")}`;
    if (!listed) {
      changes.push(
        change(`create VM ${node.name}: ${shape}`, { kind: "vm.create", node: node.name, boot }, node.name, {
          detail: entries.map(([k, v]) => `${k}="${v}"`).join("\n"),
        }),
      );
      changes.push(change(`start VM ${node.name}`, { kind: "vm.start", node: node.name }, node.name));
      continue;
    }
    if (listed.datastore && listed.datastore !== "default") {
      diagnostics.push(
        diag.error(
          "bhyve.vm-in-other-datastore",
          `a VM named ${node.name} exists in vm-bhyve datastore ${listed.datastore}, not in vmDir`,
          {
            target: node.name,
            hint: `rename or remove that VM (vm rename ${node.name} ${node.name}-old), or rename the node in the cluster file`,
          },
        ),
      );
      continue;
    }
    if (listed.state.kind === "locked") {
      diagnostics.push(
        diag.error("bhyve.vm-locked", `VM ${node.name} is locked by host ${listed.state.host} (run.lock)`, {
          target: node.name,
          hint: `if ${listed.state.host} does not run it, remove the lock: rm ${dir}/run.lock`,
        }),
      );
      continue;
    }
    const running = listed.state.kind === "running";
    const drift = config ? diffVmConfig(entries, config) : [];
    const disks = diskDrift(drift);
    if (disks.length) {
      diagnostics.push(
        diag.error("bhyve.vm-disks-drift", `VM ${node.name} has other disks than the cluster file declares`, {
          target: node.name,
          detail: describeDrift(disks),
          hint: `kubehyve does not add, remove or resize disks of an existing VM; recreate it: vm stop ${node.name}; vm destroy -f ${node.name}; kubehyve up`,
        }),
      );
    } else if (drift.length) {
      changes.push(
        change(
          `reconfigure VM ${node.name}: ${drift.map((d) => d.key).join(", ")}${running ? " (restarts it)" : ""}`,
          { kind: "vm.reconfigure", node: node.name, boot, running, drift },
          node.name,
          {
            detail: describeDrift(drift),
            disruptive: running,
          },
        ),
      );
    }
    if (!running && !disks.length)
      changes.push(change(`start VM ${node.name}`, { kind: "vm.start", node: node.name }, node.name));
  }
  return { changes, diagnostics };
}

export function autostartChange(
  facts: HostFacts,
  cluster: Cluster,
  options: BhyveOptions,
  target: string,
): Change | undefined {
  if (!options.autostart) return undefined;
  const current = (facts.rc.get("vm_list") ?? "").split(/\s+/).filter(Boolean);
  const missing = cluster.nodes.map((n) => n.name).filter((n) => !current.includes(n));
  if (!missing.length) return undefined;
  const vmList = [...current, ...missing];
  return change(
    `start ${missing.join(", ")} at boot: sysrc vm_list="${vmList.join(" ")}"`,
    { kind: "host.autostart", vmList },
    target,
  );
}
