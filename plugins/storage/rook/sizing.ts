/**
 * How big a Ceph cluster the lab gets, from the cluster model alone (pure, so validate, check and
 * render agree): mons, mgrs, OSDs on the extra data disks by their names in the guest, pool size, and
 * the memory that leaves each node.
 */
import { type Cluster, formatSize, GiB, MiB, type NodeSpec } from "kubehyve";

/** ceph-volume refuses smaller devices: util/device.py, `Insufficient space (<5GB)` below 5 GiB. */
export const MIN_OSD_DISK = 5 * GiB;

/** Rook's documented minimum memory per daemon (Documentation/CRDs/Cluster/ceph-cluster-crd.md, resources). */
export const DAEMON_MEMORY = { osd: 2 * GiB, mon: 1 * GiB, mgr: 512 * MiB } as const;

/**
 * What Kubernetes itself takes, as Kubespray asserts it (roles/kubernetes/preinstall/defaults:
 * minimal_master_memory_mb 1500, minimal_node_memory_mb 1024).
 */
export function kubernetesMemory(node: NodeSpec): number {
  return node.role === "control-plane" ? 1500 * MiB : 1024 * MiB;
}

/** The largest odd number ≤ min(3, nodes): a quorum that survives the loss of one mon once there are 3. */
export function monCount(nodes: number): number {
  const n = Math.min(3, Math.max(1, nodes));
  return n % 2 === 1 ? n : n - 1;
}

/** One mgr on small labs (a standby only adds memory there); two from five nodes on, as cluster.yaml. */
export function mgrCount(nodes: number): number {
  return nodes >= 5 ? 2 : 1;
}

export function nodesWithDisks(cluster: Cluster): NodeSpec[] {
  return cluster.nodes.filter((n) => n.disks.length > 0);
}

/** Replicas of every pool: one per host with OSDs, at most 3 (failure domain host). */
export function poolReplicas(cluster: Cluster): number {
  return Math.min(3, nodesWithDisks(cluster).length);
}

/**
 * The hypervisor's disk model, read as data from the cluster model: vm-bhyve's `diskN_type`
 * (plugins hypervisor/bhyve option diskType, default virtio-blk).
 */
export function diskModel(cluster: Cluster): "virtio-blk" | "nvme" {
  const hv = cluster.stages.hypervisor?.options as { diskType?: unknown } | undefined;
  return hv?.diskType === "nvme" ? "nvme" : "virtio-blk";
}

/**
 * The kernel name of data disk `index` (0-based) in the guest. bhyve puts disk0 (the boot disk) and
 * then each data disk on PCI slots in order (vm-bhyve's disk0…diskN), and Linux names virtio-blk
 * disks vda, vdb, … in probe order, so data disk i is vd(b+i). Each bhyve NVMe disk is a controller
 * of its own: nvme(i+1)n1, in the same order.
 */
export function dataDiskDevice(cluster: Cluster, index: number): string {
  if (diskModel(cluster) === "nvme") return `nvme${index + 1}n1`;
  let n = index + 1;
  let name = "";
  // vda … vdz, vdaa …: the kernel's sd_format_disk_name/virtblk_name_format base-26 scheme.
  do {
    name = String.fromCharCode(97 + (n % 26)) + name;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return `vd${name}`;
}

export interface OsdDisk {
  node: string;
  disk: string;
  device: string;
  size: number;
}

export function osdDisks(cluster: Cluster): OsdDisk[] {
  return cluster.nodes.flatMap((n) =>
    n.disks.map((d, i) => ({ node: n.name, disk: d.name, device: dataDiskDevice(cluster, i), size: d.size })),
  );
}

export interface MemoryPlan {
  node: string;
  memory: number;
  needs: string[];
  left: number;
}

/**
 * Places the daemons the way Rook's defaults spread them (no two mons on one node) on the nodes with
 * the most memory to spare, and says what is left on each: negative means too little.
 */
export function memoryPlan(cluster: Cluster): MemoryPlan[] {
  const plans: MemoryPlan[] = cluster.nodes.map((n) => {
    const osds = n.disks.length;
    const needs = [`Kubernetes ${formatSize(kubernetesMemory(n))}`];
    if (osds) needs.push(`${osds} OSD × ${formatSize(DAEMON_MEMORY.osd)}`);
    return {
      node: n.name,
      memory: n.memory,
      needs,
      left: n.memory - kubernetesMemory(n) - osds * DAEMON_MEMORY.osd,
    };
  });
  const byRoom = () => [...plans].sort((a, b) => b.left - a.left || a.node.localeCompare(b.node));
  for (const p of byRoom().slice(0, monCount(cluster.nodes.length))) {
    p.left -= DAEMON_MEMORY.mon;
    p.needs.push(`mon ${formatSize(DAEMON_MEMORY.mon)}`);
  }
  for (const p of byRoom().slice(0, mgrCount(cluster.nodes.length))) {
    p.left -= DAEMON_MEMORY.mgr;
    p.needs.push(`mgr ${formatSize(DAEMON_MEMORY.mgr)}`);
  }
  return plans;
}
