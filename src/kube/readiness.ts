/**
 * Is an object ready? The rules follow kstatus (sigs.k8s.io/cli-utils pkg/kstatus/status, core.go
 * and generic.go): a controller must have seen the latest generation, Deployments, DaemonSets and
 * StatefulSets must have every replica updated and ready, CRDs Established, PVCs Bound; and for
 * kinds kstatus leaves generic, a Ready or Available condition must be True. Nodes use their Ready
 * condition, LoadBalancer Services need an ingress address.
 */
import { pending, poll } from "../lib/poll.ts";
import { isJsonObject, type KubeClient, type KubeObject } from "./types.ts";

export interface Readiness {
  ready: boolean;
  /** Why not (or a short "ready" note), for progress lines and timeout messages. */
  reason: string;
}

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

function conditions(obj: KubeObject): Condition[] {
  const list = obj.status?.conditions;
  return Array.isArray(list) ? (list.filter(isJsonObject) as Condition[]) : [];
}

function condition(obj: KubeObject, type: string): Condition | undefined {
  return conditions(obj).find((c) => c.type === type);
}

function describe(c: Condition): string {
  const why = [c.reason, c.message].filter(Boolean).join(": ");
  return `condition ${c.type} is ${c.status}${why ? ` (${why})` : ""}`;
}

function num(value: unknown, fallback = 0): number {
  return typeof value === "number" ? value : fallback;
}

const ready = (reason = "ready"): Readiness => ({ ready: true, reason });
const notReady = (reason: string): Readiness => ({ ready: false, reason });

function deploymentReadiness(obj: KubeObject): Readiness {
  const s = obj.status ?? {};
  const progressing = condition(obj, "Progressing");
  if (progressing?.reason === "ProgressDeadlineExceeded") return notReady(describe(progressing));
  const desired = num(obj.spec?.replicas, 1);
  if (num(s.updatedReplicas) < desired)
    return notReady(`${num(s.updatedReplicas)}/${desired} replicas updated`);
  if (num(s.replicas) > num(s.updatedReplicas)) {
    return notReady(`${num(s.replicas) - num(s.updatedReplicas)} old replicas pending termination`);
  }
  if (num(s.availableReplicas) < desired)
    return notReady(`${num(s.availableReplicas)}/${desired} replicas available`);
  if (num(s.readyReplicas) < desired) return notReady(`${num(s.readyReplicas)}/${desired} replicas ready`);
  const available = condition(obj, "Available");
  if (available && available.status !== "True") return notReady(describe(available));
  return ready(`${desired}/${desired} replicas available`);
}

function daemonSetReadiness(obj: KubeObject): Readiness {
  const s = obj.status ?? {};
  if (typeof s.desiredNumberScheduled !== "number")
    return notReady("status.desiredNumberScheduled not reported yet");
  const desired = s.desiredNumberScheduled;
  const checks: [string, unknown][] = [
    ["scheduled", s.currentNumberScheduled],
    ["updated", s.updatedNumberScheduled],
    ["available", s.numberAvailable],
    ["ready", s.numberReady],
  ];
  for (const [what, value] of checks) {
    if (num(value) < desired) return notReady(`${num(value)}/${desired} pods ${what}`);
  }
  return ready(`${desired}/${desired} pods ready`);
}

function statefulSetReadiness(obj: KubeObject): Readiness {
  const s = obj.status ?? {};
  const desired = num(obj.spec?.replicas, 1);
  if (num(s.readyReplicas) < desired) return notReady(`${num(s.readyReplicas)}/${desired} replicas ready`);
  if (num(s.currentReplicas, desired) < desired)
    return notReady(`${num(s.currentReplicas)}/${desired} replicas current`);
  const partition = num(obj.spec?.updateStrategy?.rollingUpdate?.partition, 0);
  if (obj.spec?.updateStrategy?.type !== "OnDelete" && num(s.updatedReplicas) < desired - partition) {
    return notReady(`${num(s.updatedReplicas)}/${desired - partition} replicas updated`);
  }
  if (partition === 0 && s.updateRevision && s.currentRevision !== s.updateRevision) {
    return notReady(`revision ${s.updateRevision} still rolling out`);
  }
  return ready(`${desired}/${desired} replicas ready`);
}

function crdReadiness(obj: KubeObject): Readiness {
  const names = condition(obj, "NamesAccepted");
  if (names?.status === "False") return notReady(describe(names));
  const established = condition(obj, "Established");
  if (established?.status !== "True")
    return notReady(established ? describe(established) : "not Established yet");
  return ready("Established");
}

function conditionReadiness(obj: KubeObject, type: string): Readiness {
  const c = condition(obj, type);
  if (!c) return notReady(`no ${type} condition yet`);
  return c.status === "True" ? ready(`${type}`) : notReady(describe(c));
}

function serviceReadiness(obj: KubeObject): Readiness {
  if (obj.spec?.type !== "LoadBalancer") return ready();
  const ingress = obj.status?.loadBalancer?.ingress;
  if (!Array.isArray(ingress) || ingress.length === 0)
    return notReady("no load balancer address assigned yet");
  const first = (isJsonObject(ingress[0]) ? ingress[0] : {}) as { ip?: string; hostname?: string };
  return ready(`load balancer at ${first.ip ?? first.hostname ?? "?"}`);
}

function genericReadiness(obj: KubeObject): Readiness {
  for (const c of conditions(obj)) {
    if (c.type === "Reconciling" && c.status === "True") return notReady(describe(c));
    if (c.type === "Stalled" && c.status === "True") return notReady(describe(c));
  }
  for (const type of ["Ready", "Available"]) {
    const c = condition(obj, type);
    if (c) return c.status === "True" ? ready(type) : notReady(describe(c));
  }
  return ready();
}

/** Readiness of one object by its kind's rules. Pure: reads only the object. */
export function isReady(obj: KubeObject): Readiness {
  if (obj.metadata?.deletionTimestamp)
    return notReady(`being deleted since ${obj.metadata.deletionTimestamp}`);
  const generation = obj.metadata?.generation;
  const observed = obj.status?.observedGeneration;
  if (typeof generation === "number" && typeof observed === "number" && observed < generation) {
    return notReady(`controller has seen generation ${observed} of ${generation}`);
  }
  const group = obj.apiVersion.includes("/") ? obj.apiVersion.split("/")[0] : "";
  switch (`${group}/${obj.kind}`) {
    case "apps/Deployment":
      return deploymentReadiness(obj);
    case "apps/DaemonSet":
      if (typeof generation === "number" && typeof observed !== "number")
        return notReady("status.observedGeneration not reported yet");
      return daemonSetReadiness(obj);
    case "apps/StatefulSet":
      return statefulSetReadiness(obj);
    case "apiextensions.k8s.io/CustomResourceDefinition":
      return crdReadiness(obj);
    case "/Node":
      return conditionReadiness(obj, "Ready");
    case "/Pod":
      return obj.status?.phase === "Succeeded" ? ready("Succeeded") : conditionReadiness(obj, "Ready");
    case "/PersistentVolumeClaim":
      return obj.status?.phase === "Bound"
        ? ready("Bound")
        : notReady(`phase is ${obj.status?.phase ?? "unknown"}, not Bound`);
    case "/Namespace":
      return obj.status?.phase === "Terminating" ? notReady("namespace is Terminating") : ready();
    case "/Service":
      return serviceReadiness(obj);
    default:
      return genericReadiness(obj);
  }
}

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
}

export interface WaitOptions {
  /** Default 5 minutes. */
  timeoutMs?: number;
  /** Default 2 s. */
  intervalMs?: number;
  signal?: AbortSignal;
  /** Replaces isReady, e.g. "CephCluster reports HEALTH_OK". */
  until?: (obj: KubeObject) => Readiness;
  /**
   * What is waited for, after the object's name in messages: "to be ready" unless given, e.g.
   * "to report Available" for an `until` that reads one condition.
   */
  condition?: string;
  /** Called when the reason changes, for progress output. */
  onProgress?: (reason: string) => void;
}

export function describeRef(ref: ObjectRef): string {
  return `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ""}${ref.name}`;
}

/**
 * Polls (with `poll`, the one way to wait) until the object is ready and returns it. A timeout
 * names the object, the condition and the last reason it did not hold ("timed out after 300s
 * waiting for Deployment metallb-system/controller to be ready: 0/1 replicas available"). An abort
 * throws CancelledError naming the same.
 *
 * Polling rather than a watch, on purpose. kubehyve waits for one object at a time, for seconds to
 * minutes, on a lab cluster: a GET every two seconds is no load, and its worst case is two seconds
 * late. A watch would have to be re-established when the server ends it (timeoutSeconds, a
 * restart of kube-apiserver during a Kubespray upgrade, a proxy cutting an idle stream), relist on
 * 410 Expired, and still read the object once before watching to avoid missing a ready state
 * reached in between; each of those is a way to hang or miss the transition, in exchange for
 * nothing the user can see. Each poll goes through the client's retries, so an API server that is
 * briefly down only delays the wait. (kubectl wait watches because it may wait on thousands of
 * objects at once; the test server serves watches for clients like it.)
 */
export async function waitFor(
  client: KubeClient,
  ref: ObjectRef,
  opts: WaitOptions = {},
): Promise<KubeObject> {
  const judge = opts.until ?? isReady;
  let reason = "not checked yet";
  return poll(
    `${describeRef(ref)} ${opts.condition ?? "to be ready"}`,
    async () => {
      const obj = await client.get(ref.apiVersion, ref.kind, ref.name, ref.namespace);
      const verdict = obj ? judge(obj) : notReady("not found");
      if (verdict.ready && obj) return obj;
      if (verdict.reason !== reason) opts.onProgress?.(verdict.reason);
      reason = verdict.reason;
      return pending(reason);
    },
    { timeoutMs: opts.timeoutMs ?? 300_000, intervalMs: opts.intervalMs ?? 2000, signal: opts.signal },
  );
}
