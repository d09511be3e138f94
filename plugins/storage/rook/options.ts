/**
 * The storage/rook options block, and the cluster-file rules of this stage: data disks to put OSDs
 * on, each big enough for ceph-volume, and memory for the daemons on top of Kubernetes. All of it is
 * known from the file, so it fails `config validate` (exit 2) before any host is touched.
 */
import { type Cluster, type Diagnostic, diag, formatSize, v } from "kubehyve";
import { MIN_OSD_DISK, memoryPlan, nodesWithDisks, poolReplicas } from "./sizing.ts";

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const RookOptionsSchema = v.strictObject({
  /** The CephBlockPool behind the StorageClass. */
  pool: v.optional(v.pipe(v.string(), v.regex(NAME, "must be a DNS label"), v.maxLength(63)), "replicapool"),
  /** Make rook-ceph-block the cluster's default StorageClass. */
  defaultStorageClass: v.optional(v.boolean(), true),
  /** Run a canary claim and pod in verify (up only: verify and doctor change nothing). */
  canary: v.optional(v.boolean(), true),
});

export type RookOptions = v.InferOutput<typeof RookOptionsSchema>;

export function validateRook({ cluster }: { cluster: Cluster; options: RookOptions }): Diagnostic[] {
  const out: Diagnostic[] = [];
  if (nodesWithDisks(cluster).length === 0) {
    out.push(
      diag.error(
        "rook.no-data-disks",
        "no node has a data disk for Ceph's OSDs (the boot disk is never used)",
        {
          path: "nodes",
          hint: "give one or more nodes an extra disk: `disks: [50GiB]`",
        },
      ),
    );
  }
  cluster.nodes.forEach((node, i) => {
    node.disks.forEach((disk, j) => {
      if (disk.size < MIN_OSD_DISK) {
        out.push(
          diag.error(
            "rook.disk-too-small",
            `data disk ${disk.name} of ${node.name} has ${formatSize(disk.size)}: an OSD needs at least ${formatSize(MIN_OSD_DISK)}`,
            { path: `nodes[${i}].disks[${j}]` },
          ),
        );
      }
    });
  });
  for (const plan of memoryPlan(cluster)) {
    if (plan.left < 0) {
      const i = cluster.nodes.findIndex((n) => n.name === plan.node);
      out.push(
        diag.error(
          "rook.memory",
          `${plan.node} has ${formatSize(plan.memory)} of memory, ${formatSize(-plan.left)} short of ${plan.needs.join(" + ")}`,
          { path: `nodes[${i}].memory`, hint: `memory: ${formatSize(plan.memory - plan.left)} or more` },
        ),
      );
    }
  }
  return out;
}

/**
 * Fewer than three hosts with data disks is allowed, but the user hears what it means. Said by
 * check rather than validate: it is no fault of the file, and every command reads the file.
 */
export function redundancyNotice(cluster: Cluster): Diagnostic[] {
  const out: Diagnostic[] = [];
  const replicas = poolReplicas(cluster);
  if (replicas > 0 && replicas < 3) {
    out.push(
      diag.warn(
        "rook.no-redundancy",
        `only ${replicas} node(s) have data disks, so pools keep ${replicas} cop${replicas === 1 ? "y" : "ies"} of the data instead of 3: losing ${replicas === 1 ? "that node" : "a node"} ${replicas === 1 ? "loses" : "leaves one copy of"} it`,
        { path: "nodes", hint: "give a third node a data disk for three replicas" },
      ),
    );
  }
  return out;
}
