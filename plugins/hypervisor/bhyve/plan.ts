/**
 * From host facts and the cluster file to the plan: the changes that make the host a hypervisor
 * and keep the node VMs as declared, plus the per-VM findings. Only what carries this cluster's
 * mark is changed (see marks.ts); a half-made VM of ours (an interrupted run) is finished, one that
 * is not ours is refused with its owner named, before anything changes.
 */
import {
  type Change,
  type Cluster,
  type Diagnostic,
  diag,
  formatSize,
  type NodeSpec,
  notAList,
  v,
} from "kubehyve";
import { type Datastore, datastorePath, type GuestDataset, type HostFacts } from "./inspect.ts";
import {
  CONFIG_CREATING,
  CONFIG_MARK,
  CONFIG_MARK_NAME,
  describeOwner,
  type Owner,
  ownerOf,
  ZFS_MARK,
} from "./marks.ts";
import type { BhyveOptions } from "./options.ts";
import type { VmListEntry } from "./parse.ts";
import {
  type ConfigDrift,
  type DiskPlan,
  describeDrift,
  diffVmConfig,
  diskDevOf,
  diskDrift,
  disksOf,
  vmConfigEntries,
} from "./vmconfig.ts";

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

/** One answer of hypervisor:node-boot, as the core holds it before this stage reads it. */
export const nodeBootAnswer = v.optional(
  notAList(
    v.object(
      {
        bhyveOptions: v.optional(v.string("text (options for bhyve, as vm-bhyve's bhyve_options takes)")),
        bootImage: v.optional(
          v.variant(
            "kind",
            [
              v.object({
                kind: v.literal("file"),
                path: v.pipe(v.string(), v.startsWith("/", "an absolute path")),
              }),
              v.object({
                kind: v.literal("zfs-snapshot"),
                snapshot: v.pipe(v.string(), v.regex(/^[^@\s]+@[^@\s]+$/, "a snapshot such as pool/ds@name")),
              }),
            ],
            'an image: { kind: "file", path } or { kind: "zfs-snapshot", snapshot }',
          ),
        ),
      },
      "an object of bhyveOptions and bootImage, or nothing",
    ),
    "an object of bhyveOptions and bootImage",
  ),
);

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
  /** `replaceDataset`: an interrupted run left the VM's dataset (marked ours) without a config. */
  | { kind: "vm.create"; node: string; boot: NodeBoot; replaceDataset?: string }
  /**
   * Disks that are missing are made (the boot disk from the boot image, if there is one), then the
   * config is written when `writeConfig` (the VM's creation was interrupted before it was).
   */
  | { kind: "vm.repair"; node: string; boot: NodeBoot; missing: DiskPlan[]; writeConfig: boolean }
  | { kind: "vm.chmod"; node: string; paths: string[] }
  | { kind: "vm.start"; node: string }
  | { kind: "vm.reconfigure"; node: string; boot: NodeBoot; running: boolean; drift: ConfigDrift[] };

export type HostChangeData =
  | { kind: "host.rcconf"; vars: Record<string, string> }
  | { kind: "host.datastore" }
  | { kind: "host.init" }
  | { kind: "host.switch-create"; switchName: string; nic?: string }
  | { kind: "host.switch-add"; switchName: string; nic: string }
  /** What interrupted runs of this cluster left: files (templates, temporaries) and temporary zvols. */
  | { kind: "host.cleanup"; paths: string[]; datasets: string[] }
  | { kind: "host.autostart"; vmList: string[] };

export type ChangeData = VmChangeData | HostChangeData;

/** What is known of one declared disk on the host. */
export interface DiskFact {
  present: boolean;
  size?: number;
  /** zvols: the size is a multiple of this. */
  blocksize?: number;
  /** file disks: `-rw-------`. */
  mode?: string;
}

export interface VmObservation {
  node: NodeSpec;
  /** The VM's directory on the host. */
  dir: string;
  listed?: VmListEntry;
  /** The guest's config on the host, when it exists and is a regular file. */
  config?: Map<string, string>;
  /** Its config is there but no regular file: "is a FIFO, not a regular file". Never ours. */
  configProblem?: string;
  boot: NodeBoot;
  /** ZFS datastore: the guest's dataset, when it exists. */
  dataset?: GuestDataset;
  /** Directory datastore: the guest's directory exists, holds files and no config. */
  dirInUse?: boolean;
  /** What its dataset or directory holds that neither vm-bhyve nor this cluster made (contents.ts). */
  foreign?: string[];
  /** The declared disks by index, when the VM (or its dataset) exists. */
  disks?: Map<number, DiskFact>;
}

/** Switches this cluster created, with the ports it gave them (the stage's state, key "switches"). */
export type SwitchRecords = Record<string, { ports: string[] }>;

export function guestDirOf(ds: Datastore, node: string): string {
  return `${datastorePath(ds)}/${node}`;
}

function change(summary: string, data: ChangeData, target: string, extra: Partial<Change> = {}): Change {
  return { summary, kind: data.kind, data, target, ...extra };
}

export function hostChanges(
  facts: HostFacts,
  options: BhyveOptions,
  target: string,
  switches: SwitchRecords = {},
): { changes: Change[]; diagnostics: Diagnostic[] } {
  const changes: Change[] = [];
  const diagnostics: Diagnostic[] = [];
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
  if (!ds.exists && !ds.error) {
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
    // Ours while it is the standard switch this cluster made, with no ports but those it gave it.
    const record = switches[options.switch];
    const ours = record && sw.type === "standard" && sw.ports.every((p) => record.ports.includes(p));
    if (ours) {
      changes.push(
        change(
          `add ${options.nic} to virtual switch ${options.switch}`,
          { kind: "host.switch-add", switchName: options.switch, nic: options.nic },
          target,
        ),
      );
    } else {
      diagnostics.push(
        diag.error(
          "bhyve.switch-not-ours",
          `virtual switch ${options.switch} was not made by this cluster, and ${options.nic} is not on it: kubehyve does not change it`,
          {
            target,
            path: "stages.hypervisor.nic",
            detail: `ports: ${sw.ports.join(" ") || "none"}`,
            hint: `add it yourself if it belongs there (vm switch add ${options.switch} ${options.nic}), set nic: to a port it has, or give this cluster a switch of its own (switch: NAME)`,
          },
        ),
      );
    }
  }
  return { changes, diagnostics };
}

/** The change that removes what interrupted runs left, when they left anything. */
export function cleanupChange(
  leftovers: { paths: string[]; datasets: string[] },
  target: string,
): Change | undefined {
  const all = [...leftovers.paths, ...leftovers.datasets];
  if (!all.length) return undefined;
  return change(
    `remove what an interrupted run left: ${all.join(", ")}`,
    { kind: "host.cleanup", paths: leftovers.paths, datasets: leftovers.datasets },
    target,
  );
}

const roundUp = (n: number, block: number) => Math.ceil(n / block) * block;

function diskLabel(disk: DiskPlan): string {
  return `${disk.name} (${formatSize(disk.size)}${disk.dataDisk ? `, ${disk.dataDisk}` : ""})`;
}

function repairSummary(node: string, missing: DiskPlan[], boot: NodeBoot, writeConfig: boolean): string {
  const steps = missing.map((d) =>
    d.index === 0 && boot.bootImage ? `copy the boot image to ${d.name}` : `create ${diskLabel(d)}`,
  );
  if (writeConfig)
    return `finish VM ${node}, whose creation was interrupted: ${[...steps, "write its config"].join(", ")}`;
  return `make the missing disks of VM ${node}: ${steps.join(", ")}`;
}

function notOurs(
  node: NodeSpec,
  owner: Owner,
  conf: string,
  clusterId: string,
  dataset: string | undefined,
  configProblem: string | undefined,
): Diagnostic {
  if (configProblem)
    return diag.error(
      "bhyve.vm-not-ours",
      `a VM named ${node.name} exists on the host and its config ${conf} ${configProblem}; kubehyve neither reads nor changes it`,
      {
        target: node.name,
        detail: `its config: ${conf}`,
        hint: `rename the node in the cluster file; or, if this VM is meant to be this cluster's node, put its config there as a file of its own (ls -l ${conf})`,
      },
    );
  const mark = `sysrc -f ${conf} ${CONFIG_MARK}=${clusterId}${dataset ? `; zfs set ${ZFS_MARK}=${clusterId} ${dataset}` : ""}`;
  return diag.error(
    "bhyve.vm-not-ours",
    `a VM named ${node.name} exists on the host and ${describeOwner(owner)}; kubehyve neither adopts nor changes it`,
    {
      target: node.name,
      detail: `its config: ${conf}`,
      hint:
        owner.kind === "other"
          ? `give this cluster other node names, or take the other cluster down first (kubehyve down with its cluster file)`
          : `rename the node in the cluster file; or, if this VM is meant to be this cluster's node, mark it: ${mark}`,
    },
  );
}

export function vmChanges(
  cluster: Cluster,
  clusterId: string,
  options: BhyveOptions,
  observed: VmObservation[],
): { changes: Change[]; diagnostics: Diagnostic[] } {
  const changes: Change[] = [];
  const diagnostics: Diagnostic[] = [];
  const dev = diskDevOf(options);
  for (const {
    node,
    dir,
    listed,
    config,
    configProblem,
    boot,
    dataset,
    dirInUse,
    disks,
    foreign,
  } of observed) {
    const entries = vmConfigEntries({
      cluster: cluster.name,
      clusterId,
      node,
      options,
      bhyveOptions: boot.bhyveOptions,
    });
    const conf = `${dir}/${node.name}.conf`;
    const at = { target: node.name };
    const shape = `${node.cpus} vCPU, ${formatSize(node.memory)}, ${formatSize(node.disk)} disk${node.disks.map((d) => ` + ${formatSize(d.size)} ${d.name}`).join("")}`;
    const datasetOwner = dataset && ownerOf(dataset.mark, dataset.markName, clusterId);
    if (!listed) {
      if (dataset && datasetOwner?.kind !== "ours") {
        diagnostics.push(
          diag.error(
            "bhyve.dataset-not-ours",
            `ZFS dataset ${dataset.name} exists, holds no VM config and ${describeOwner(datasetOwner!)}: vm create cannot make VM ${node.name} while it is there`,
            {
              ...at,
              hint: `rename the node in the cluster file, or move that dataset away if it is not needed (zfs rename ${dataset.name} ${dataset.name}-old)`,
            },
          ),
        );
        continue;
      }
      if (dirInUse) {
        diagnostics.push(
          diag.error(
            "bhyve.dir-not-ours",
            `directory ${dir} exists and holds files but no VM config: kubehyve does not put a VM into it`,
            { ...at, hint: `rename the node in the cluster file, or move ${dir} away if it is not needed` },
          ),
        );
        continue;
      }
      const again = dataset !== undefined;
      if (again && foreign?.length) {
        // Made again means destroyed first (zfs destroy -r): with whatever the operator put in it.
        diagnostics.push(
          diag.error(
            "bhyve.dataset-holds-foreign",
            `ZFS dataset ${dataset!.name} was left by an interrupted run of this cluster, but holds what this cluster did not make: kubehyve does not destroy it to make VM ${node.name} again`,
            {
              ...at,
              detail: foreign.join("\n"),
              hint: "move those elsewhere (or remove them if they are not needed), then: kubehyve up",
            },
          ),
        );
        continue;
      }
      changes.push(
        change(
          again
            ? `create VM ${node.name} again: ${shape} (an interrupted run left ${dataset!.name} without a config)`
            : `create VM ${node.name}: ${shape}`,
          { kind: "vm.create", node: node.name, boot, ...(again ? { replaceDataset: dataset!.name } : {}) },
          node.name,
          { detail: entries.map(([k, v]) => `${k}="${v}"`).join("\n") },
        ),
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
            ...at,
            hint: `rename or remove that VM (vm rename ${node.name} ${node.name}-old), or rename the node in the cluster file`,
          },
        ),
      );
      continue;
    }
    const owner = ownerOf(config?.get(CONFIG_MARK), config?.get(CONFIG_MARK_NAME), clusterId);
    if (owner.kind !== "ours") {
      const zfsDataset = options.vmDir.startsWith("zfs:")
        ? `${options.vmDir.slice(4)}/${node.name}`
        : undefined;
      diagnostics.push(notOurs(node, owner, conf, clusterId, zfsDataset, configProblem));
      continue;
    }
    if (options.vmDir.startsWith("zfs:") && datasetOwner?.kind !== "ours") {
      diagnostics.push(
        diag.error(
          "bhyve.vm-mark-mismatch",
          dataset
            ? `VM ${node.name}'s config carries this cluster's mark, but its dataset ${dataset.name} ${describeOwner(datasetOwner!)}`
            : `VM ${node.name}'s config carries this cluster's mark, but it has no dataset of its own in ${options.vmDir.slice(4)}`,
          {
            ...at,
            hint: `find out who made it before anything changes it: zfs get -r kubehyve:cluster ${dataset?.name ?? options.vmDir.slice(4)}`,
          },
        ),
      );
      continue;
    }
    if (listed.state.kind === "locked") {
      diagnostics.push(
        diag.error("bhyve.vm-locked", `VM ${node.name} is locked by host ${listed.state.host} (run.lock)`, {
          ...at,
          hint: `if ${listed.state.host} does not run it, remove the lock: rm ${dir}/run.lock`,
        }),
      );
      continue;
    }
    const running = listed.state.kind === "running";
    const declared = disksOf(node, dev);
    const missing = declared.filter((d) => disks?.get(d.index)?.present === false);
    const wrongSize = declared.filter((d) => {
      const fact = disks?.get(d.index);
      if (!fact?.present || fact.size === undefined) return false;
      return fact.size !== (fact.blocksize ? roundUp(d.size, fact.blocksize) : d.size);
    });
    if (wrongSize.length) {
      diagnostics.push(
        diag.error(
          "bhyve.vm-disk-size",
          `VM ${node.name} has disks of other sizes than the cluster file declares`,
          {
            ...at,
            detail: wrongSize
              .map((d) => `${d.name}: ${formatSize(disks!.get(d.index)!.size!)} -> ${formatSize(d.size)}`)
              .join("\n"),
            hint: `kubehyve does not resize disks; recreate the VM: vm stop ${node.name}; vm destroy -f ${node.name}; kubehyve up`,
          },
        ),
      );
      continue;
    }
    if (config?.get(CONFIG_CREATING) !== undefined) {
      if (running) {
        diagnostics.push(
          diag.error("bhyve.vm-half-made-running", `VM ${node.name} runs, but its creation never finished`, {
            ...at,
            hint: `stop it (vm stop ${node.name}), then: kubehyve up`,
          }),
        );
        continue;
      }
      changes.push(
        change(
          repairSummary(node.name, missing, boot, true),
          { kind: "vm.repair", node: node.name, boot, missing, writeConfig: true },
          node.name,
          { detail: entries.map(([k, v]) => `${k}="${v}"`).join("\n") },
        ),
      );
      changes.push(change(`start VM ${node.name}`, { kind: "vm.start", node: node.name }, node.name));
      continue;
    }
    const drift = config ? diffVmConfig(entries, config) : [];
    const diskKeys = diskDrift(drift);
    if (diskKeys.length) {
      diagnostics.push(
        diag.error("bhyve.vm-disks-drift", `VM ${node.name} has other disks than the cluster file declares`, {
          ...at,
          detail: describeDrift(diskKeys),
          hint: `kubehyve does not add, remove or resize disks of an existing VM; recreate it: vm stop ${node.name}; vm destroy -f ${node.name}; kubehyve up`,
        }),
      );
      continue;
    }
    if (missing.length) {
      if (running) {
        diagnostics.push(
          diag.error(
            "bhyve.vm-disk-missing",
            `VM ${node.name} runs without ${missing.map((d) => d.name).join(", ")}`,
            { ...at, hint: `stop it (vm stop ${node.name}), then: kubehyve up` },
          ),
        );
        continue;
      }
      changes.push(
        change(
          repairSummary(node.name, missing, boot, false),
          { kind: "vm.repair", node: node.name, boot, missing, writeConfig: false },
          node.name,
        ),
      );
    }
    // Disk files are the node's data: root's alone (vm-bhyve's own disk files are 0600 too).
    const exposed =
      dev === "file"
        ? declared.filter((d) => {
            const mode = disks?.get(d.index)?.mode;
            return mode !== undefined && mode !== "-rw-------";
          })
        : [];
    if (exposed.length) {
      const paths = exposed.map((d) => `${dir}/${d.name}`);
      changes.push(
        change(
          `make the disks of VM ${node.name} readable by root only: chmod 600 ${paths.join(" ")}`,
          { kind: "vm.chmod", node: node.name, paths },
          node.name,
        ),
      );
    }
    if (drift.length) {
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
    if (!running)
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

/**
 * Guests named after no node. One with a node's MAC would put that MAC on the switch twice once
 * both run (vm-bhyve hands a NIC's configured MAC to bhyve as it is, lib/vm-run): `vm rename` keeps
 * the config, so a node's VM renamed by hand and made again by `up` would. One with this cluster's
 * mark was renamed by hand or dropped from the cluster file: it is left alone, and said so.
 */
export function otherGuestDiagnostics(
  cluster: Cluster,
  clusterId: string,
  others: { name: string; conf: string; config?: Map<string, string> }[],
  target: string,
): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  for (const other of others) {
    const config = other.config ?? new Map<string, string>();
    const owner = ownerOf(config.get(CONFIG_MARK), config.get(CONFIG_MARK_NAME), clusterId);
    const macs = [...config]
      .filter(([k]) => /^network\d+_mac$/.test(k))
      .map(([k, v]) => [k, v.toLowerCase()]);
    const node = cluster.nodes.find((n) => macs.some(([, mac]) => mac === n.mac.toLowerCase()));
    const key = node && macs.find(([, mac]) => mac === node.mac.toLowerCase())![0];
    const ours = owner.kind === "ours";
    if (node) {
      diagnostics.push(
        diag.error(
          "bhyve.vm-mac-taken",
          `VM ${other.name} has node ${node.name}'s MAC address ${node.mac}${ours ? ` and this cluster's mark (is it ${node.name}, renamed by hand?)` : ""}: with VM ${node.name} the switch would see it twice`,
          {
            target: node.name,
            detail: `its config: ${other.conf}`,
            hint: `${ours ? `if it is the old ${node.name}, name it back (vm rename ${other.name} ${node.name}) or destroy it if it is not needed (vm destroy -f ${other.name}); otherwise ` : ""}remove ${key} from ${other.conf} (sysrc -f ${other.conf} -x ${key}) so that vm-bhyve gives it a MAC of its own at its next start`,
          },
        ),
      );
    } else if (ours) {
      diagnostics.push(
        diag.warn(
          "bhyve.vm-not-in-cluster",
          `VM ${other.name} carries this cluster's mark but is no node of the cluster file (renamed by hand, or dropped from the file): kubehyve leaves it alone, and down does not remove it`,
          {
            target,
            detail: `its config: ${other.conf}`,
            hint: `if it is not needed: vm stop ${other.name}; vm destroy -f ${other.name}`,
          },
        ),
      );
    }
  }
  return diagnostics;
}
