/**
 * The vm-bhyve guest configuration of a node, and how it compares with what is on the host. Only keys
 * documented in vm-bhyve's vm.8 (GUEST CONFIGURATION FORMAT) are written; `cpu` is the one exception
 * the man page leaves out, documented as required in vm-bhyve's sample-templates/config.sample.
 */
import { formatSize, GiB, KubehyveError, MiB, type NodeSpec } from "kubehyve";
import { CONFIG_CREATING, CONFIG_MARK, CONFIG_MARK_NAME, ZFS_MARK, ZFS_MARK_NAME } from "./marks.ts";
import type { BhyveOptions } from "./options.ts";

/** vm.8 `memory`: megabytes or gigabytes with the M and G suffixes. */
export function formatVmMemory(bytes: number): string {
  return bytes % GiB === 0 ? `${bytes / GiB}G` : `${Math.ceil(bytes / MiB)}M`;
}

/** Reads vm.8 memory values back to bytes: `4G`, `4096M`, `512m`, bare bytes. */
export function parseVmMemory(text: string): number | undefined {
  const m = /^(\d+)([KMGT]?)$/i.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * 1024 ** " KMGT".indexOf((m[2] || " ").toUpperCase());
}

/** The disk device type for the datastore: zvols on ZFS, sparse files in a plain directory. */
export function diskDevOf(options: Pick<BhyveOptions, "vmDir" | "diskDev">): "sparse-zvol" | "zvol" | "file" {
  if (options.diskDev) return options.diskDev;
  return options.vmDir.startsWith("zfs:") ? "sparse-zvol" : "file";
}

export interface DiskPlan {
  index: number;
  /** `disk0` for a zvol, `disk0.img` for a file (vm.8 disk0_name). */
  name: string;
  size: number;
  /** The data disk's name in the cluster file; undefined for the boot disk. */
  dataDisk?: string;
}

export function disksOf(node: NodeSpec, dev: "sparse-zvol" | "zvol" | "file"): DiskPlan[] {
  const fileName = (i: number) => (dev === "file" ? `disk${i}.img` : `disk${i}`);
  return [
    { index: 0, name: fileName(0), size: node.disk },
    ...node.disks.map((d, i) => ({ index: i + 1, name: fileName(i + 1), size: d.size, dataDisk: d.name })),
  ];
}

export interface VmConfigInput {
  cluster: string;
  /** The cluster's identity, the mark that makes the VM this cluster's. */
  clusterId: string;
  node: NodeSpec;
  options: BhyveOptions;
  /** From the os stage's `hypervisor:node-boot` hook: extra bhyve arguments (fw_cfg, …). */
  bhyveOptions?: string;
}

/** The guest config as ordered key/value pairs. */
export function vmConfigEntries({
  cluster,
  clusterId,
  node,
  options,
  bhyveOptions,
}: VmConfigInput): [string, string][] {
  const dev = diskDevOf(options);
  const entries: [string, string][] = [
    [CONFIG_MARK, clusterId],
    [CONFIG_MARK_NAME, cluster],
    ["loader", "uefi"],
    ["cpu", String(node.cpus)],
    ["memory", formatVmMemory(node.memory)],
    ["uuid", node.uuid],
    // A serial console is enough for CoreOS, and a frame buffer would need a VNC port per guest.
    ["graphics", "no"],
    ["utctime", "yes"],
    ["network0_type", "virtio-net"],
    ["network0_switch", options.switch],
    // Derived once in the cluster model: the os stage matches the NIC by this MAC.
    ["network0_mac", node.mac],
  ];
  for (const disk of disksOf(node, dev)) {
    entries.push([`disk${disk.index}_type`, options.diskType]);
    entries.push([`disk${disk.index}_name`, disk.name]);
    if (dev !== "file") entries.push([`disk${disk.index}_dev`, dev]);
  }
  if (bhyveOptions?.trim()) entries.push(["bhyve_options", bhyveOptions.trim()]);
  return entries;
}

function quote(value: string): string {
  // vm.8: '#' starts a comment even inside quotes, and the file is read by sh-like rules; vm-run
  // also expands bhyve_options unquoted (`set -- ${_opts}`, lib/vm-run line 216), so a glob
  // character would be matched against file names. The options' allowlists keep such values out;
  // this is the last line of defence.
  if (/[#"\\$`\n\r\0*?[]/.test(value))
    throw new KubehyveError(
      `a vm-bhyve config value cannot contain # " \\ $ \` * ? [ or a newline: ${JSON.stringify(value)}`,
    );
  return `"${value}"`;
}

export function renderVmConfig(input: VmConfigInput): string {
  const header = [
    `# ${input.node.name} of cluster ${input.cluster}: written by kubehyve (hypervisor/bhyve).`,
    `# ${input.node.cpus} vCPU, ${formatSize(input.node.memory)}; edits here are reported as drift by \`kubehyve plan\`.`,
  ];
  return `${[...header, ...vmConfigEntries(input).map(([k, v]) => `${k}=${quote(v)}`)].join("\n")}\n`;
}

/**
 * The template `vm create` provisions the guest from: the config plus `diskN_size` (vm.8: "only
 * supported in templates"), so vm-bhyve creates the dataset, marked through `zfs_dataset_opts`, and
 * the disks. A boot disk that receives an image is left out (`custom`: core::create makes nothing
 * for it, lib/vm-core lines 230-231): it is copied under a temporary name and renamed when complete,
 * so a boot disk that exists is a complete one. CONFIG_CREATING tells a copy of the template, which
 * an interrupted run may leave as the VM's config, from the config written afterwards.
 */
export function renderVmTemplate(input: VmConfigInput & { bootImage: boolean }): string {
  const dev = diskDevOf(input.options);
  const lines = [
    ...vmConfigEntries(input).map(([k, v]) =>
      k === "disk0_dev" && input.bootImage ? `${k}="custom"` : `${k}=${quote(v)}`,
    ),
  ];
  if (input.bootImage && dev === "file") lines.push('disk0_dev="custom"');
  lines.push(`${CONFIG_CREATING}="creating"`);
  // vm create makes a dataset for every guest of a ZFS datastore, whatever its disks are (zfs::make_dataset).
  if (input.options.vmDir.startsWith("zfs:"))
    // vm-bhyve turns the first blank into " -o " (zfs::__format_options): exactly two options fit.
    lines.push(
      `zfs_dataset_opts=${quote(`${ZFS_MARK}=${input.clusterId} ${ZFS_MARK_NAME}=${input.cluster}`)}`,
    );
  for (const d of disksOf(input.node, dev))
    if (!(d.index === 0 && input.bootImage)) lines.push(`disk${d.index}_size=${quote(String(d.size))}`);
  return `# template of ${input.node.name} (cluster ${input.cluster}), used once by vm create: written by kubehyve.\n${lines.join("\n")}\n`;
}

export interface ConfigDrift {
  key: string;
  expected?: string;
  actual?: string;
}

/** Differences between the wanted and the actual config; memory compared by value (4G = 4096M). */
export function diffVmConfig(expected: [string, string][], actual: Map<string, string>): ConfigDrift[] {
  const drift: ConfigDrift[] = [];
  const wanted = new Map(expected);
  for (const [key, value] of wanted) {
    const have = actual.get(key);
    const same =
      key === "memory" ? have !== undefined && parseVmMemory(have) === parseVmMemory(value) : have === value;
    if (!same) drift.push({ key, expected: value, actual: have });
  }
  for (const [key, value] of actual) if (!wanted.has(key)) drift.push({ key, actual: value });
  return drift;
}

export function describeDrift(drift: readonly ConfigDrift[]): string {
  return drift
    .map(
      (d) =>
        `${d.key}: ${d.actual === undefined ? "(unset)" : d.actual} -> ${d.expected === undefined ? "(removed)" : d.expected}`,
    )
    .join("\n");
}

/** Disk keys differ: kubehyve does not add, remove or resize disks of an existing guest. */
export function diskDrift(drift: readonly ConfigDrift[]): ConfigDrift[] {
  return drift.filter((d) => /^disk\d+_(name|dev)$/.test(d.key));
}
