/**
 * Everything this stage sends to the API server goes through here: the labels that mark an object
 * as this stage's, the dry-run comparison that makes the plan, the one function that applies, and
 * the deletion of what carries the labels. Kept in one place so that the shared plan and pruning
 * helpers can take it over whole.
 */
import {
  applyManifests,
  describeRef,
  KubeApiError,
  type KubeClient,
  type KubeObject,
  KubeRequestError,
  type PluginContext,
} from "kubehyve";

export const MANAGED_BY = "app.kubernetes.io/managed-by";
export const STAGE_LABEL = "kubehyve.io/stage";
export const CLUSTER_LABEL = "kubehyve.io/cluster";

/** The labels every object of `slot` carries. */
export function stageLabels(slot: string, clusterId: string): Record<string, string> {
  return { [MANAGED_BY]: "kubehyve", [STAGE_LABEL]: slot, [CLUSTER_LABEL]: clusterId };
}

/** A copy of `obj` with the stage's labels added to its own. */
export function labelled(obj: KubeObject, labels: Record<string, string>): KubeObject {
  return { ...obj, metadata: { ...obj.metadata, labels: { ...(obj.metadata.labels ?? {}), ...labels } } };
}

/** Does a live object carry every one of the labels? A name alone is not ownership. */
export function ownedBy(live: KubeObject, labels: Record<string, string>): boolean {
  return Object.entries(labels).every(([k, v]) => live.metadata.labels?.[k] === v);
}

/** Fields the server keeps or changes on every write, which say nothing about the object's content. */
function comparable(obj: KubeObject): unknown {
  const { managedFields: _m, resourceVersion: _r, ...metadata } = obj.metadata;
  const { status: _s, ...rest } = obj;
  return { ...rest, metadata };
}

export type ObjectPlan = { obj: KubeObject; action: "create" | "update" };

/**
 * Which objects an apply would create or change: each is looked up and, when it exists, applied as
 * a dry run and compared with what is stored. A kind the server does not serve yet (its CRD comes in
 * the same apply) is a creation.
 */
export async function planObjects(kube: KubeClient, objects: KubeObject[]): Promise<ObjectPlan[]> {
  const out: ObjectPlan[] = [];
  for (const obj of objects) {
    let live: KubeObject | undefined;
    try {
      live = await kube.get(obj.apiVersion, obj.kind, obj.metadata.name, obj.metadata.namespace);
    } catch (error) {
      if (error instanceof KubeRequestError) {
        out.push({ obj, action: "create" });
        continue;
      }
      throw error;
    }
    if (!live) {
      out.push({ obj, action: "create" });
      continue;
    }
    const would = await kube.apply(obj, { dryRun: true });
    if (JSON.stringify(comparable(would)) !== JSON.stringify(comparable(live)))
      out.push({ obj, action: "update" });
  }
  return out;
}

/** The one place this stage writes: server-side apply, namespaces and CRDs first (applyManifests). */
export async function applyObjects(
  ctx: PluginContext<unknown>,
  objects: KubeObject[],
): Promise<KubeObject[]> {
  const kube = await ctx.kube();
  return applyManifests(kube, objects, {
    signal: ctx.signal,
    onApplied: (obj, i, total) => ctx.log.progress(`applied ${describeRef(refOf(obj))}`, i, total),
  });
}

export function refOf(obj: KubeObject) {
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    name: obj.metadata.name,
    namespace: obj.metadata.namespace,
  };
}

/**
 * Deletes, last applied first, every object of `objects` whose live copy carries `labels`; an object
 * without them was not made by this stage and stays. Returns what was deleted.
 */
export async function deleteOwned(
  ctx: PluginContext<unknown>,
  objects: KubeObject[],
  labels: Record<string, string>,
): Promise<string[]> {
  const kube = await ctx.kube();
  const deleted: string[] = [];
  for (const obj of [...objects].reverse()) {
    const ref = refOf(obj);
    let live: KubeObject | undefined;
    try {
      live = await kube.get(ref.apiVersion, ref.kind, ref.name, ref.namespace);
    } catch (error) {
      // Its CRD went first (a CRD's deletion takes its objects along): nothing left to delete.
      if (error instanceof KubeRequestError || (error instanceof KubeApiError && error.httpStatus === 404))
        continue;
      throw error;
    }
    if (!live) continue;
    if (!ownedBy(live, labels)) {
      ctx.log.warn(
        `${describeRef(ref)} is not marked as this cluster's ${labels[STAGE_LABEL]} stage's: left alone`,
      );
      continue;
    }
    await ctx.wet(`delete ${describeRef(ref)}`, async () => {
      await kube.delete(ref.apiVersion, ref.kind, ref.name, ref.namespace);
    });
    deleted.push(describeRef(ref));
  }
  return deleted;
}
