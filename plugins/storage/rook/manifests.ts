/**
 * The Ceph cluster, its block pool and the StorageClass, sized to the lab (sizing.ts). Field by field
 * after Rook v1.20.6's deploy/examples/cluster.yaml, with the small-lab settings of cluster-test.yaml
 * where replicas are fewer than three, and csi/rbd/storageclass.yaml for the class.
 */
import type { Cluster, KubeObject } from "kubehyve";
import { CEPH_IMAGE, NAMESPACE } from "./release.ts";
import { mgrCount, monCount, nodesWithDisks, osdDisks, poolReplicas } from "./sizing.ts";

export const CLUSTER_NAME = "rook-ceph";
export const STORAGE_CLASS = "rook-ceph-block";
/** csi/rbd/storageclass.yaml: the RBD driver's name, also the csi-operator Driver object's. */
export const RBD_PROVISIONER = "rook-ceph.rbd.csi.ceph.com";

// Kubespray taints control planes when there are workers; mons and mgrs may still run there.
const CONTROL_PLANE_TOLERATION = {
  key: "node-role.kubernetes.io/control-plane",
  operator: "Exists",
  effect: "NoSchedule",
};

export function cephCluster(cluster: Cluster): KubeObject {
  const nodes = cluster.nodes.length;
  const replicas = poolReplicas(cluster);
  const small = replicas < 3;
  const byNode = new Map<string, { name: string }[]>();
  for (const d of osdDisks(cluster)) byNode.set(d.node, [...(byNode.get(d.node) ?? []), { name: d.device }]);
  return {
    apiVersion: "ceph.rook.io/v1",
    kind: "CephCluster",
    metadata: { name: CLUSTER_NAME, namespace: NAMESPACE },
    spec: {
      cephVersion: { image: CEPH_IMAGE, allowUnsupported: false },
      // "required when Kubernetes nodes don't run Linux kernel 7.0+" (cluster.yaml).
      security: { cephx: { csi: { keyType: "aes" } } },
      dataDirHostPath: "/var/lib/rook",
      mon: { count: monCount(nodes), allowMultiplePerNode: false },
      mgr: {
        count: mgrCount(nodes),
        allowMultiplePerNode: false,
        modules: [{ name: "rook", enabled: false }],
      },
      dashboard: { enabled: true, ssl: true },
      crashCollector: { disable: false },
      placement: {
        mon: { tolerations: [CONTROL_PLANE_TOLERATION] },
        mgr: { tolerations: [CONTROL_PLANE_TOLERATION] },
        osd: { tolerations: [CONTROL_PLANE_TOLERATION] },
      },
      // OSDs on the named data disks only: never a device Rook would find by itself (the boot disk).
      storage: {
        useAllNodes: false,
        useAllDevices: false,
        nodes: nodesWithDisks(cluster).map((n) => ({ name: n.name, devices: byNode.get(n.name) ?? [] })),
      },
      disruptionManagement: { managePodBudgets: true },
      ...(small
        ? {
            // cluster-test.yaml's way: default pool size to what the lab can hold, and no
            // POOL_NO_REDUNDANCY warning for pools that knowingly keep fewer copies.
            cephConfig: {
              global: {
                osd_pool_default_size: String(replicas),
                mon_warn_on_pool_no_redundancy: "false",
              },
            },
          }
        : {}),
    },
  };
}

function blockPool(name: string, poolName: string | undefined, replicas: number): KubeObject {
  return {
    apiVersion: "ceph.rook.io/v1",
    kind: "CephBlockPool",
    metadata: { name, namespace: NAMESPACE },
    spec: {
      ...(poolName ? { name: poolName } : {}),
      failureDomain: "host",
      // requireSafeReplicaSize refuses sizes below 3 (pool.yaml); cluster-test.yaml lowers it with the size.
      replicated: { size: replicas, requireSafeReplicaSize: replicas >= 3 },
    },
  };
}

/** The StorageClass's pool, and with fewer than 3 replicas the mgr's own `.mgr` pool sized alike. */
export function blockPools(cluster: Cluster, pool: string): KubeObject[] {
  const replicas = poolReplicas(cluster);
  const pools = [blockPool(pool, undefined, replicas)];
  // cluster-test.yaml's builtin-mgr: the `.mgr` pool Rook would otherwise create with 3 replicas.
  if (replicas < 3) pools.unshift(blockPool("builtin-mgr", ".mgr", replicas));
  return pools;
}

export function storageClass(pool: string, isDefault: boolean): KubeObject {
  const secret = (kind: string, name: string) => ({
    [`csi.storage.k8s.io/${kind}-secret-name`]: name,
    [`csi.storage.k8s.io/${kind}-secret-namespace`]: NAMESPACE,
  });
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: {
      name: STORAGE_CLASS,
      ...(isDefault ? { annotations: { "storageclass.kubernetes.io/is-default-class": "true" } } : {}),
    },
    provisioner: RBD_PROVISIONER,
    parameters: {
      clusterID: NAMESPACE,
      pool,
      imageFormat: "2",
      imageFeatures: "layering",
      ...secret("provisioner", "rook-csi-rbd-provisioner"),
      ...secret("controller-expand", "rook-csi-rbd-provisioner"),
      ...secret("controller-publish", "rook-csi-rbd-provisioner"),
      ...secret("node-stage", "rook-csi-rbd-node"),
      "csi.storage.k8s.io/fstype": "ext4",
    },
    allowVolumeExpansion: true,
    reclaimPolicy: "Delete",
  };
}

export const CANARY = "kubehyve-canary";

export function canaryClaim(): KubeObject {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name: CANARY, namespace: NAMESPACE },
    spec: {
      accessModes: ["ReadWriteOnce"],
      storageClassName: STORAGE_CLASS,
      resources: { requests: { storage: "64Mi" } },
    },
  };
}

/**
 * Writes a token to the claim, flushes it, reads it back and exits 0 only when it is the same. The
 * token is hex, so the fixed script needs no quoting.
 */
export function canaryPod(token: string): KubeObject {
  if (!/^[0-9a-f]{8,64}$/.test(token)) throw new Error(`canary token must be hex: ${token}`);
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: CANARY, namespace: NAMESPACE },
    spec: {
      restartPolicy: "Never",
      containers: [
        {
          name: "canary",
          image: "docker.io/library/busybox:1.37",
          command: [
            "sh",
            "-c",
            `echo ${token} > /data/canary && sync && test "$(cat /data/canary)" = ${token} && echo read back ${token}`,
          ],
          terminationMessagePolicy: "FallbackToLogsOnError",
          volumeMounts: [{ name: "data", mountPath: "/data" }],
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
        },
      ],
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: CANARY } }],
    },
  };
}
