/**
 * What a stage applied to a cluster, and only that. Every object a stage applies carries three
 * labels: `app.kubernetes.io/managed-by: kubehyve` (the recommended label of
 * kubernetes.io/docs/concepts/overview/working-with-objects/common-labels), `kubehyve.io/stage`
 * naming the stage's slot, and `kubehyve.io/cluster` with the cluster's identity. Pruning and `down`
 * list objects by all three and delete nothing else: an object of the same kind and name without
 * them (made by hand, by another stage, by another cluster's kubehyve) is never touched.
 */
import { KubehyveError } from "../lib/errors.ts";
import { describeRef, type ObjectRef } from "./readiness.ts";
import { KubeApiError, KubeNotServedError } from "./status.ts";
import { isJsonObject, type KubeClient, type KubeObject, type ListOptions } from "./types.ts";

export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "kubehyve";
export const STAGE_LABEL = "kubehyve.io/stage";
export const CLUSTER_LABEL = "kubehyve.io/cluster";

/** Who applied an object: a stage of one cluster. */
export interface Owner {
  /** The stage's slot, e.g. `net`. */
  stage: string;
  /** ctx.clusterId. */
  clusterId: string;
}

/** A kind a stage applies, to list its objects by label. */
export interface KindRef {
  apiVersion: string;
  kind: string;
}

// A label value: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric
// (k8s.io/apimachinery pkg/util/validation IsValidLabelValue).
const LABEL_VALUE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;

export function ownerLabels(owner: Owner): Record<string, string> {
  for (const [what, value] of [
    ["stage", owner.stage],
    ["cluster id", owner.clusterId],
  ] as const) {
    if (!LABEL_VALUE.test(value))
      throw new KubehyveError(`the ${what} ${JSON.stringify(value)} cannot be a label value`);
  }
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [STAGE_LABEL]: owner.stage, [CLUSTER_LABEL]: owner.clusterId };
}

/** The label selector of an owner's objects. */
export function ownerSelector(owner: Owner): string {
  return Object.entries(ownerLabels(owner))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

/** A copy of `obj` that carries the owner's labels (besides its own). */
export function withOwner<T extends KubeObject>(obj: T, owner: Owner): T {
  return {
    ...obj,
    metadata: { ...obj.metadata, labels: { ...obj.metadata.labels, ...ownerLabels(owner) } },
  };
}

/** The field manager of kubehyve's writes: the client's default (src/kube/client.ts). */
export const FIELD_MANAGER = "kubehyve";

/**
 * True when `obj` carries every one of the owner's labels and the server's record of who set
 * which field (metadata.managedFields) says kubehyve's own server-side apply (or its create, see
 * applyOwned) set them. Labels
 * alone are text anyone can copy: a manifest that `kubehyve render` wrote, created under another
 * name with kubectl; a `kubectl label` of this cluster's labels; the same object installed by Helm.
 * Such an object carries the labels with another manager's Update or Apply, and is not kubehyve's
 * to change or delete. An entry of kubehyve's besides someone else's (a person who also labelled or
 * edited the object) keeps it ours.
 *
 * An object without managedFields is not ours either: kube-apiserver records them on every write
 * (server-side apply's field management, GA since 1.22), so an object of
 * kubehyve's lacks them only when someone cleared them (an update sending `managedFields: [{}]`,
 * apimachinery fieldmanager.go isResetManagedFields) or a server that is not kube-apiserver
 * answers. Then nothing proves kubehyve set the labels, and what cannot be proven ours is not
 * deleted.
 */
export function isOwnedBy(obj: KubeObject, owner: Owner): boolean {
  const labels = obj.metadata?.labels ?? {};
  const expected = ownerLabels(owner);
  if (!Object.entries(expected).every(([k, v]) => labels[k] === v)) return false;
  const entries = obj.metadata?.managedFields;
  if (!Array.isArray(entries)) return false;
  return entries.some((e: unknown) => {
    // kubehyve's one Update is the create of applyOwned (src/kube/apply.ts), before it applies.
    if (
      !isJsonObject(e) ||
      e.manager !== FIELD_MANAGER ||
      (e.operation !== "Apply" && e.operation !== "Update") ||
      e.subresource
    )
      return false;
    const metadata = isJsonObject(e.fieldsV1) ? e.fieldsV1["f:metadata"] : undefined;
    const set = isJsonObject(metadata) ? metadata["f:labels"] : undefined;
    return isJsonObject(set) && Object.keys(expected).every((k) => isJsonObject(set[`f:${k}`]));
  });
}

/** Who set an object's fields, for a message: `its fields are set by "helm", "kubectl-label"`. */
export function fieldManagers(obj: KubeObject): string {
  const entries = Array.isArray(obj.metadata.managedFields) ? obj.metadata.managedFields : [];
  const names = [
    ...new Set(
      entries
        .map((e: unknown) => (isJsonObject(e) ? e.manager : undefined))
        .filter((m) => typeof m === "string"),
    ),
  ];
  return names.length
    ? `its fields are set by ${names.map((n) => JSON.stringify(n)).join(", ")}`
    : "the server keeps no record of who set its fields";
}

export function refOf(obj: KubeObject): ObjectRef {
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    name: obj.metadata.name,
    ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
  };
}

/** Identity of an object across versions of its group: group, kind, namespace, name. */
export function refKey(ref: ObjectRef): string {
  const group = ref.apiVersion.includes("/") ? ref.apiVersion.split("/")[0] : "";
  return `${group}/${ref.kind}/${ref.namespace ?? ""}/${ref.name}`;
}

/** The distinct kinds of some objects, in first-seen order. */
export function kindsOf(objects: readonly (KindRef | KubeObject)[]): KindRef[] {
  const seen = new Map<string, KindRef>();
  for (const o of objects) {
    const k = `${o.apiVersion}/${o.kind}`;
    if (!seen.has(k)) seen.set(k, { apiVersion: o.apiVersion, kind: o.kind });
  }
  return [...seen.values()];
}

const isCrd = (r: KindRef) =>
  r.kind === "CustomResourceDefinition" && r.apiVersion.startsWith("apiextensions.k8s.io/");
const isNamespace = (r: KindRef) => r.kind === "Namespace" && r.apiVersion === "v1";
const BUILT_IN_GROUP = /^(([a-z0-9-]+\.)*k8s\.io|apps|batch|policy|autoscaling)\//;
const isBuiltIn = (r: KindRef) => !r.apiVersion.includes("/") || BUILT_IN_GROUP.test(r.apiVersion);

/** An object of a kind a CRD defines (not a built-in kind, not a CRD itself). */
export function isCustomResource(r: KindRef): boolean {
  return !isBuiltIn(r) && !isCrd(r);
}

/**
 * Deletion order, the reverse of what applyManifests keeps: custom resources first (while their
 * operators still run to clean up after them), then the built-in objects, then the
 * CustomResourceDefinitions, namespaces last.
 */
export function deletionOrder<T extends KindRef>(objects: readonly T[]): T[] {
  const rank = (o: KindRef) => (isNamespace(o) ? 3 : isCrd(o) ? 2 : isBuiltIn(o) ? 1 : 0);
  return objects
    .map((o, i) => ({ o, i }))
    .sort((a, b) => rank(a.o) - rank(b.o) || b.i - a.i)
    .map(({ o }) => o);
}

/**
 * The owner's objects of the given kinds, as the cluster has them now. A kind the cluster no longer
 * serves (its CRD is gone, and with it every object of it) has none.
 */
export async function listOwned(
  client: KubeClient,
  owner: Owner,
  kinds: readonly KindRef[],
): Promise<KubeObject[]> {
  return (await listLabelled(client, owner, kinds)).owned;
}

/**
 * The objects of the given kinds that carry the owner's labels: those that are the owner's
 * (isOwnedBy), and those that only carry the labels (someone copied or set them, or cleared the
 * managedFields that said who did), which are never deleted and which `down` names.
 */
export async function listLabelled(
  client: KubeClient,
  owner: Owner,
  kinds: readonly KindRef[],
): Promise<{ owned: KubeObject[]; unproven: KubeObject[] }> {
  const out = { owned: [] as KubeObject[], unproven: [] as KubeObject[] };
  const expected = Object.entries(ownerLabels(owner));
  const labelSelector = ownerSelector(owner);
  for (const k of kinds) {
    const items = await listServed(client, k.apiVersion, k.kind, { labelSelector });
    // The server filtered by the selector; checked again here, since deleting is at stake.
    for (const o of items) {
      if (isOwnedBy(o, owner)) out.owned.push(o);
      else if (expected.every(([key, v]) => o.metadata.labels?.[key] === v)) out.unproven.push(o);
    }
  }
  return out;
}

/**
 * The objects of a kind, none when the cluster does not serve it: discovery does not list it, or
 * the list is a 404 (its CRD went between discovery and the list, and every object of it with
 * it). Only that: pruning and `down` decide what to delete, and what to keep, on this answer, so a
 * list the server refuses (403), fails (500) or cannot even be asked is an error, never "none".
 */
export async function listServed(
  client: KubeClient,
  apiVersion: string,
  kind: string,
  opts: ListOptions = {},
): Promise<KubeObject[]> {
  try {
    return await client.list(apiVersion, kind, opts);
  } catch (error) {
    if (error instanceof KubeNotServedError) return [];
    if (error instanceof KubeApiError && error.httpStatus === 404) return [];
    throw error;
  }
}

export interface PruneOptions {
  owner: Owner;
  /** What the stage renders now: never deleted. */
  keep: readonly KubeObject[];
  /** Kinds to look in: those the stage applied before and those it renders now. */
  kinds: readonly KindRef[];
}

/**
 * The owner's objects the stage no longer renders, in deletion order. Nothing is deleted: the
 * caller deletes each through ctx.wet (deleteOwned), so that a plan lists them.
 */
export async function findLeftovers(client: KubeClient, opts: PruneOptions): Promise<KubeObject[]> {
  const keep = new Set(opts.keep.map((o) => refKey(refOf(o))));
  const owned = await listOwned(client, opts.owner, kindsOf([...opts.kinds, ...opts.keep]));
  return deletionOrder(owned.filter((o) => !keep.has(refKey(refOf(o)))));
}

/**
 * Deletes one object the owner applied: read again first, and refused unless it carries the
 * owner's labels now. False when it is gone already.
 */
export async function deleteOwned(client: KubeClient, owner: Owner, ref: ObjectRef): Promise<boolean> {
  let live: KubeObject | undefined;
  try {
    live = await client.get(ref.apiVersion, ref.kind, ref.name, ref.namespace);
  } catch (error) {
    // Its kind is gone, and the object with it; a request that cannot be made is no answer.
    if (error instanceof KubeNotServedError) return false;
    throw error;
  }
  if (!live) return false;
  if (!isOwnedBy(live, owner)) {
    throw new KubehyveError(
      `${describeRef(ref)} does not carry the labels of stage ${owner.stage} of this cluster, so it is not deleted`,
    );
  }
  // The object read and found ours, not whatever has its name when the DELETE arrives: one removed
  // and made again by someone else in between has another UID, and the server refuses with 409.
  const uid = typeof live.metadata.uid === "string" && live.metadata.uid ? live.metadata.uid : undefined;
  try {
    return await client.delete(ref.apiVersion, ref.kind, ref.name, ref.namespace, {
      ...(uid ? { preconditions: { uid } } : {}),
    });
  } catch (error) {
    if (
      uid &&
      error instanceof KubeApiError &&
      error.httpStatus === 409 &&
      /Precondition failed/.test(error.apiMessage)
    )
      throw new KubehyveError(
        `${describeRef(ref)} changed hands after it was read (${error.apiMessage.replace(/^.*AdditionalErrorMsg: /, "")}), so it is not deleted`,
      );
    throw error;
  }
}
