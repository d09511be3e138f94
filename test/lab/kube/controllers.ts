/**
 * Controllers the test server plays, so that readiness waits behave as on a cluster. Each one owns
 * the status of some kinds and computes it from the object and the rest of the store, filling the
 * same fields the real controller does (kube-controller-manager's deployment, daemonset and
 * statefulset controllers; the apiextensions-apiserver's naming controller for CRDs; the PV
 * binder for claims). Later stages add theirs (MetalLB's address assignment, Rook's CephCluster
 * health) to the list passed to startKubeApiServer.
 */
import type { Obj } from "./ssa.ts";

export interface ControllerView {
  /** Objects of `group/Kind` (core group: "/Node"), optionally in one namespace. */
  list(groupKind: string, namespace?: string): Obj[];
  /** A test asked to keep this object not ready (server.setReady(ref, false)). */
  held(obj: Obj): boolean;
  /** RFC 3339 time, seconds precision, as the API server writes timestamps. */
  now(): string;
}

/** What an operator-like controller may do besides writing status: make and remove objects. */
export interface ControllerWriter extends ControllerView {
  /**
   * Creates or replaces an object as an Update by `manager` (status included, as given); nothing
   * is written when it is already so. Namespaces are not required to exist.
   */
  write(obj: Obj, manager: string): void;
  /** Deletes an object (and, for a namespace, what is in it); false when it was not there. */
  remove(apiVersion: string, kind: string, name: string, namespace?: string): boolean;
}

export interface Controller {
  name: string;
  /** `group/Kind` whose status this controller writes, e.g. "apps/Deployment", "/PersistentVolumeClaim". */
  owns: string[];
  /** The status the object should have; undefined leaves it alone. */
  reconcile(obj: Obj, view: ControllerView): Obj | undefined;
  /** The field manager of its status writes, when STATUS_MANAGERS in server.ts does not name it. */
  manager?: string;
  /** Runs before the status passes: an operator's objects, made from what it watches. */
  sync?(view: ControllerWriter): void;
}

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

function cond(
  type: string,
  status: boolean,
  reason: string,
  message: string,
  now: string,
  previous?: Any,
): Obj {
  const same = previous?.conditions?.find((c: Any) => c.type === type);
  const transition = same && same.status === (status ? "True" : "False") ? same.lastTransitionTime : now;
  return { type, status: status ? "True" : "False", lastTransitionTime: transition, reason, message };
}

/** Deployment status as in deployment-available-progressing.kubectl-edit-recorded.json. */
export const deploymentController: Controller = {
  name: "deployment",
  owns: ["apps/Deployment"],
  reconcile(obj: Any, view) {
    const n = typeof obj.spec?.replicas === "number" ? obj.spec.replicas : 1;
    const up = !view.held(obj);
    const now = view.now();
    const prev = obj.status;
    const available = up ? n : 0;
    return {
      observedGeneration: obj.metadata.generation,
      replicas: n,
      updatedReplicas: n,
      readyReplicas: available,
      availableReplicas: available,
      ...(up ? {} : { unavailableReplicas: n }),
      conditions: [
        up
          ? cond(
              "Available",
              true,
              "MinimumReplicasAvailable",
              "Deployment has minimum availability.",
              now,
              prev,
            )
          : cond(
              "Available",
              false,
              "MinimumReplicasUnavailable",
              "Deployment does not have minimum availability.",
              now,
              prev,
            ),
        cond(
          "Progressing",
          true,
          up ? "NewReplicaSetAvailable" : "ReplicaSetUpdated",
          up
            ? `ReplicaSet "${obj.metadata.name}-7d9f8c6b5d" has successfully progressed.`
            : `ReplicaSet "${obj.metadata.name}-7d9f8c6b5d" is progressing.`,
          now,
          prev,
        ),
      ],
    };
  },
};

function matchesSelector(
  labels: Record<string, string> | undefined,
  selector: Record<string, string> | undefined,
): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

function nodeReady(node: Any): boolean {
  return node.status?.conditions?.some((c: Any) => c.type === "Ready" && c.status === "True") ?? false;
}

/** DaemonSet status as in daemonset-ready.argo-cd.yaml: one pod per node matching the nodeSelector. */
export const daemonSetController: Controller = {
  name: "daemonset",
  owns: ["apps/DaemonSet"],
  reconcile(obj: Any, view) {
    const nodes = view
      .list("/Node")
      .filter((n: Any) => matchesSelector(n.metadata.labels, obj.spec?.template?.spec?.nodeSelector));
    const desired = nodes.length;
    const ready = view.held(obj) ? 0 : nodes.filter(nodeReady).length;
    return {
      currentNumberScheduled: desired,
      desiredNumberScheduled: desired,
      numberAvailable: ready,
      numberMisscheduled: 0,
      numberReady: ready,
      ...(desired > ready ? { numberUnavailable: desired - ready } : {}),
      observedGeneration: obj.metadata.generation,
      updatedNumberScheduled: desired,
    };
  },
};

export const statefulSetController: Controller = {
  name: "statefulset",
  owns: ["apps/StatefulSet"],
  reconcile(obj: Any, view) {
    const n = typeof obj.spec?.replicas === "number" ? obj.spec.replicas : 1;
    const ready = view.held(obj) ? 0 : n;
    const revision = `${obj.metadata.name}-${(obj.metadata.generation ?? 1).toString(16).padStart(10, "0")}`;
    return {
      observedGeneration: obj.metadata.generation,
      replicas: n,
      readyReplicas: ready,
      currentReplicas: n,
      updatedReplicas: n,
      availableReplicas: ready,
      currentRevision: revision,
      updateRevision: revision,
      collisionCount: 0,
    };
  },
};

/** CRD status as in crd-established-namesaccepted.argo-cd.yaml. */
export const crdController: Controller = {
  name: "crd-establishing",
  owns: ["apiextensions.k8s.io/CustomResourceDefinition"],
  reconcile(obj: Any, view) {
    const now = view.now();
    const names = obj.spec?.names ?? {};
    const held = view.held(obj);
    const versions = (obj.spec?.versions ?? []).filter((v: Any) => v.storage).map((v: Any) => v.name);
    return {
      acceptedNames: names,
      conditions: [
        cond("NamesAccepted", true, "NoConflicts", "no conflicts found", now, obj.status),
        held
          ? cond(
              "Established",
              false,
              "Installing",
              "the initial names have not been accepted yet",
              now,
              obj.status,
            )
          : cond(
              "Established",
              true,
              "InitialNamesAccepted",
              "the initial names have been accepted",
              now,
              obj.status,
            ),
      ],
      storedVersions: versions,
    };
  },
};

/** Claims bind once their StorageClass exists (a dynamic provisioner's effect), as in pvc-bound.argo-gitops-engine.yaml. */
export const pvcController: Controller = {
  name: "pvc-binder",
  owns: ["/PersistentVolumeClaim"],
  reconcile(obj: Any, view) {
    const className = obj.spec?.storageClassName;
    const hasClass = view
      .list("storage.k8s.io/StorageClass")
      .some((sc: Any) => sc.metadata.name === className);
    if (!hasClass || view.held(obj)) return { phase: "Pending" };
    return {
      phase: "Bound",
      accessModes: obj.spec?.accessModes ?? ["ReadWriteOnce"],
      capacity: { storage: obj.spec?.resources?.requests?.storage ?? "1Gi" },
    };
  },
};

export function defaultControllers(): Controller[] {
  return [deploymentController, daemonSetController, statefulSetController, crdController, pvcController];
}
