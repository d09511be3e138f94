/**
 * What the test server plays for the storage stage: Rook's operator writing the CephCluster and
 * CephBlockPool status, the ceph-csi driver binding claims of its StorageClass, and a pod on such a
 * claim running to completion. Each follows the upstream behaviour it names.
 */
import { type Controller, pvcController } from "../controllers.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

export interface CephCheck {
  severity: "HEALTH_WARN" | "HEALTH_ERR";
  message: string;
}

export interface RookStandIn {
  controllers: Controller[];
  /** Health checks Ceph would raise besides the ones computed from the spec (MON_CLOCK_SKEW, …). */
  checks: Map<string, CephCheck>;
  /** Make every canary pod fail, as one whose volume cannot be written. */
  failPods: boolean;
}

const RBD_DRIVER = "rook-ceph.rbd.csi.ceph.com";

function operatorRunning(view: Parameters<Controller["reconcile"]>[1], ns: string): boolean {
  return view
    .list("apps/Deployment", ns)
    .some((d: Any) => d.metadata.name === "rook-ceph-operator" && !view.held(d));
}

/**
 * The checks Ceph raises for what the spec asks: TOO_FEW_OSDS when fewer OSDs exist than
 * osd_pool_default_size (ceph src/osd/OSDMap.cc check_health: "OSD count N < osd_pool_default_size
 * M"), POOL_NO_REDUNDANCY for size-1 pools unless mon_warn_on_pool_no_redundancy is false
 * (src/mon/PGMap.cc: "N pool(s) have no replicas configured").
 */
export function specChecks(cluster: Any, pools: Any[], nodes: Set<string>): Record<string, CephCheck> {
  const out: Record<string, CephCheck> = {};
  const global = cluster.spec?.cephConfig?.global ?? {};
  const osds = (cluster.spec?.storage?.nodes ?? [])
    .filter((n: Any) => nodes.has(n.name))
    .reduce((sum: number, n: Any) => sum + (n.devices?.length ?? 0), 0);
  const size = Number(global.osd_pool_default_size ?? 3);
  if (osds < size)
    out.TOO_FEW_OSDS = {
      severity: "HEALTH_WARN",
      message: `OSD count ${osds} < osd_pool_default_size ${size}`,
    };
  const single = pools.filter((p: Any) => p.spec?.replicated?.size === 1).length;
  if (single && global.mon_warn_on_pool_no_redundancy !== "false") {
    out.POOL_NO_REDUNDANCY = {
      severity: "HEALTH_WARN",
      message: `${single} pool(s) have no replicas configured`,
    };
  }
  return out;
}

export function rookStandIn(): RookStandIn {
  const state: RookStandIn = { controllers: [], checks: new Map(), failPods: false };

  /**
   * rook pkg/operator/ceph/cluster: the operator writes nothing until it runs; then phase Ready with
   * the Ready condition ("Cluster created successfully", reason ClusterCreated) and, from the status
   * checker (cephstatus.go toCustomResourceStatus), ceph.health and ceph.details by check code.
   */
  const cephCluster: Controller = {
    name: "rook-ceph-operator",
    owns: ["ceph.rook.io/CephCluster"],
    reconcile(obj: Any, view) {
      const ns = obj.metadata.namespace;
      if (!operatorRunning(view, ns)) return undefined;
      const now = view.now();
      const nodes = new Set(view.list("/Node").map((n: Any) => n.metadata.name as string));
      if (nodes.size === 0) {
        return {
          phase: "Progressing",
          state: "Creating",
          message: "Configuring Ceph Mons",
          conditions: [
            {
              type: "Progressing",
              status: "True",
              reason: "ClusterProgressing",
              message: "Configuring Ceph Mons",
              lastHeartbeatTime: now,
              lastTransitionTime: now,
            },
          ],
        };
      }
      const checks: Record<string, CephCheck> = {
        ...specChecks(obj, view.list("ceph.rook.io/CephBlockPool", ns), nodes),
        ...Object.fromEntries(state.checks),
      };
      const severities = Object.values(checks).map((c) => c.severity);
      const health = severities.includes("HEALTH_ERR")
        ? "HEALTH_ERR"
        : severities.length
          ? "HEALTH_WARN"
          : "HEALTH_OK";
      const prev = obj.status;
      const message = "Cluster created successfully";
      return {
        phase: "Ready",
        state: "Created",
        message,
        observedGeneration: obj.metadata.generation,
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "ClusterCreated",
            message,
            lastHeartbeatTime: prev?.conditions?.[0]?.lastHeartbeatTime ?? now,
            lastTransitionTime: prev?.conditions?.[0]?.lastTransitionTime ?? now,
          },
        ],
        ceph: {
          health,
          details: Object.fromEntries(
            Object.entries(checks).map(([k, c]) => [k, { message: c.message, severity: c.severity }]),
          ),
          fsid: "6ab148e7-fd6e-4132-bdaf-e5ce7934d2cb",
          lastChecked: prev?.ceph?.lastChecked ?? now,
          ...(prev?.ceph?.health && prev.ceph.health !== health
            ? { previousHealth: prev.ceph.health, lastChanged: now }
            : prev?.ceph?.previousHealth
              ? { previousHealth: prev.ceph.previousHealth, lastChanged: prev.ceph.lastChanged }
              : {}),
        },
        version: { image: obj.spec?.cephVersion?.image, version: "20.2.4-0" },
      };
    },
  };

  /** rook pkg/operator/ceph/pool: a pool is created once its cluster is Ready, then phase Ready. */
  const blockPool: Controller = {
    name: "rook-ceph-pool",
    owns: ["ceph.rook.io/CephBlockPool"],
    reconcile(obj: Any, view) {
      const ns = obj.metadata.namespace;
      if (!operatorRunning(view, ns)) return undefined;
      const ready = view.list("ceph.rook.io/CephCluster", ns).some((c: Any) => c.status?.phase === "Ready");
      return ready
        ? { phase: "Ready", observedGeneration: obj.metadata.generation }
        : { phase: "Progressing" };
    },
  };

  /**
   * ceph-csi's external-provisioner binds a claim of its class only when the driver runs (the
   * csi-operator's Driver object, operator.yaml) and the pool exists; without the csi-operator the
   * claim stays Pending, as Rook v1.20's upgrade notes warn. Other claims bind as before.
   */
  const claims: Controller = {
    name: "pvc-binder",
    owns: ["/PersistentVolumeClaim"],
    reconcile(obj: Any, view) {
      const cls: Any = view
        .list("storage.k8s.io/StorageClass")
        .find((sc: Any) => sc.metadata.name === obj.spec?.storageClassName);
      if (!cls || cls.provisioner !== RBD_DRIVER) return pvcController.reconcile(obj, view);
      const ns = cls.parameters?.clusterID;
      const driver = view.list("csi.ceph.io/Driver", ns).some((d: Any) => d.metadata.name === RBD_DRIVER);
      const pool = view
        .list("ceph.rook.io/CephBlockPool", ns)
        .some(
          (p: Any) =>
            (p.spec?.name ?? p.metadata.name) === cls.parameters?.pool && p.status?.phase === "Ready",
        );
      if (!driver || !pool || view.held(obj)) return { phase: "Pending" };
      return pvcController.reconcile(obj, view);
    },
  };

  /**
   * A pod on claims runs once they are Bound (kube-scheduler's VolumeBinding plugin keeps it
   * unschedulable before: "pod has unbound immediate PersistentVolumeClaims"), and a
   * restartPolicy Never pod ends Succeeded or Failed with its container's terminated state.
   */
  const pods: Controller = {
    name: "pod-runner",
    owns: ["/Pod"],
    reconcile(obj: Any, view) {
      const claimNames = (obj.spec?.volumes ?? [])
        .map((v: Any) => v.persistentVolumeClaim?.claimName)
        .filter(Boolean);
      if (!claimNames.length) return undefined;
      const ns = obj.metadata.namespace;
      const bound = claimNames.every((name: string) =>
        view
          .list("/PersistentVolumeClaim", ns)
          .some((c: Any) => c.metadata.name === name && c.status?.phase === "Bound"),
      );
      const now = view.now();
      if (!bound) {
        return {
          phase: "Pending",
          conditions: [
            {
              type: "PodScheduled",
              status: "False",
              reason: "Unschedulable",
              message:
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
              lastTransitionTime: now,
            },
          ],
        };
      }
      const failed = state.failPods;
      const name = obj.spec.containers[0].name;
      return {
        phase: failed ? "Failed" : "Succeeded",
        containerStatuses: [
          {
            name,
            ready: false,
            restartCount: 0,
            image: obj.spec.containers[0].image,
            state: {
              terminated: failed
                ? {
                    exitCode: 1,
                    reason: "Error",
                    message: "sh: can't create /data/canary: Read-only file system\n",
                  }
                : { exitCode: 0, reason: "Completed" },
            },
          },
        ],
      };
    },
  };

  state.controllers = [cephCluster, blockPool, claims, pods];
  return state;
}
