/**
 * What applying some objects would change on a live cluster, asked of the cluster itself: each
 * object is applied with dryRun=All, and the answer (what the server would store, with the field
 * ownership it would record) is compared with the live object on the fields kubehyve manages, as
 * `kubectl diff --server-side` compares them. A field another manager owns and kubehyve does not
 * set (an operator's defaults, a controller's status) is not kubehyve's concern and never counts
 * as a change; a field kubehyve set that someone changed since does.
 *
 * Field ownership is read from metadata.managedFields, whose FieldsV1 format is that of
 * sigs.k8s.io/structured-merge-diff fieldpath/serialize.go: `f:<name>` for a field, `k:<json>` for
 * the list item with those key fields, `v:<json>` for a set member, `i:<n>` for a list position,
 * and `.` for the element itself.
 */

import { mapLimit } from "../lib/concurrency.ts";
import {
  FIELD_MANAGER,
  fieldManagers,
  findLeftovers,
  isOwnedBy,
  type KindRef,
  type Owner,
  ownerLabels,
  refOf,
} from "./ownership.ts";
import { describeRef, type ObjectRef } from "./readiness.ts";
import { KubeApiError, KubeRequestError } from "./status.ts";
import { isJsonObject, type KubeClient, type KubeObject } from "./types.ts";

type Json = Record<string, unknown>;

/** JSON with object keys sorted, so that equal values give equal text. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (isJsonObject(value))
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(",")}}`;
  return JSON.stringify(value) ?? "null";
}

const ABSENT = "(absent)";

/** Equal as JSON: object keys in any order, lists in theirs. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a))
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  if (isJsonObject(a) && isJsonObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => k in b && sameJson(a[k], b[k]));
  }
  return false;
}

function matchesKey(item: unknown, key: Json): boolean {
  return isJsonObject(item) && Object.entries(key).every(([k, v]) => sameJson(item[k], v));
}

/** A leaf's value, or one of these: a field or set member not there, a set member there. */
const MISSING = Symbol("absent");
const PRESENT = Symbol("present");

/**
 * The leaves of `value` that `set` names, path -> value (MISSING when absent). A field whose set
 * entry has no children is a leaf taken whole (a scalar, or an atomic list or map, which for a CRD's
 * openAPIV3Schema is hundreds of kilobytes: compared as it is, not turned into text).
 */
function leafValues(value: unknown, set: unknown, path: string, out: Map<string, unknown>) {
  const children = isJsonObject(set) ? Object.entries(set).filter(([k]) => k !== ".") : [];
  if (children.length === 0) {
    out.set(path, value === undefined ? MISSING : value);
    return out;
  }
  for (const [key, sub] of children) {
    const kind = key.slice(0, 2);
    const rest = key.slice(2);
    if (kind === "f:") {
      const child = isJsonObject(value) ? value[rest] : undefined;
      leafValues(child, sub, path ? `${path}.${rest}` : rest, out);
    } else if (kind === "k:") {
      const k = JSON.parse(rest) as Json;
      const item = Array.isArray(value) ? value.find((i) => matchesKey(i, k)) : undefined;
      const shown = Object.entries(k)
        .map(([name, v]) => `${name}=${typeof v === "string" ? v : canonical(v)}`)
        .join(",");
      leafValues(item, sub, `${path}[${shown}]`, out);
    } else if (kind === "v:") {
      const member = JSON.parse(rest);
      const present = Array.isArray(value) && value.some((i) => sameJson(i, member));
      out.set(
        `${path}[=${typeof member === "string" ? member : canonical(member)}]`,
        present ? PRESENT : MISSING,
      );
    } else if (kind === "i:") {
      leafValues(Array.isArray(value) ? value[Number(rest)] : undefined, sub, `${path}[${rest}]`, out);
    }
  }
  return out;
}

/**
 * The leaves of `value` that `set` names, path -> canonical JSON (or "(absent)"). A field whose set
 * entry has no children is a leaf taken whole (a scalar, or an atomic list or map).
 */
export function fieldLeaves(value: unknown, set: unknown, path = "", out = new Map<string, string>()) {
  for (const [p, v] of leafValues(value, set, path, new Map()))
    out.set(p, v === MISSING ? ABSENT : v === PRESENT ? "present" : canonical(v));
  return out;
}

/** The FieldsV1 sets a manager's Apply entries record on an object (main resource, not subresources). */
export function appliedFieldSets(obj: KubeObject | undefined, manager: string): unknown[] {
  const entries = obj?.metadata?.managedFields;
  if (!Array.isArray(entries)) return [];
  return entries
    .filter(
      (e: unknown): e is Json =>
        isJsonObject(e) &&
        e.manager === manager &&
        e.operation === "Apply" &&
        !e.subresource &&
        isJsonObject(e.fieldsV1),
    )
    .map((e: Json) => e.fieldsV1);
}

/**
 * The fields `manager` applies that differ between the live object and the dry run's answer, as
 * paths (`spec.calicoNetwork.ipPools`, `metadata.labels.app`). Both objects' sets count: a field
 * the manager applied before and drops now is a change too (the server prunes it).
 */
export function changedFields(live: KubeObject, next: KubeObject, manager: string): string[] {
  // The dry run usually answers with the very sets the live object has: each is walked once.
  const sets = [
    ...new Map(
      [...appliedFieldSets(live, manager), ...appliedFieldSets(next, manager)].map((set) => [
        JSON.stringify(set),
        set,
      ]),
    ).values(),
  ];
  const before = new Map<string, unknown>();
  const after = new Map<string, unknown>();
  for (const set of sets) {
    leafValues(live, set, "", before);
    leafValues(next, set, "", after);
  }
  const paths = new Set([...before.keys(), ...after.keys()]);
  return [...paths]
    .filter((p) => !sameJson(before.has(p) ? before.get(p) : MISSING, after.has(p) ? after.get(p) : MISSING))
    .sort();
}

export interface PlannedObject {
  ref: ObjectRef;
  /**
   * `create`: not there; `update`: fields kubehyve manages would change; `unchanged`: nothing to
   * do; `foreign`: there, but without the owner's labels (see DiffOptions.owner): not to be touched;
   * `deleting`: there and being deleted, so that whatever is applied to it goes with it.
   */
  action: "create" | "update" | "unchanged" | "foreign" | "deleting";
  /** For `foreign`: why an object that carries the owner's labels is not the owner's. */
  note?: string;
  /** For `deleting` (the owner's object, being deleted): since when, and what it waits for. */
  deleting?: Deleting;
  /** For updates, the fields that would change. */
  fields: string[];
  /** A create of a kind the cluster does not serve (yet: a CRD among the objects may define it). */
  unserved?: true;
}

export interface DiffOptions {
  /** The field manager whose fields count (default kubehyve, the client's). */
  fieldManager?: string;
  /**
   * Whose objects these are: a live object without this owner's labels is `foreign` and is not
   * dry-run at all, since applying would take over something kubehyve did not make.
   */
  owner?: Owner;
  /** Called after each object, for progress output. */
  onDiffed?: (planned: PlannedObject, index: number, total: number) => void;
}

/**
 * What applying `objects` would do, object by object, from dry-run server-side applies. Nothing is
 * stored. An object whose kind the cluster does not serve yet (its CRD is among the objects) or
 * whose namespace does not exist yet is a create, not an error; any other refusal (an invalid
 * object, a webhook that denies it) is thrown, naming the object.
 */
export async function diffManifests(
  client: KubeClient,
  objects: readonly KubeObject[],
  opts: DiffOptions = {},
): Promise<PlannedObject[]> {
  const manager = opts.fieldManager ?? FIELD_MANAGER;
  let done = 0;
  // Side by side: each object is a read and a dry run that change nothing, so their order does not
  // matter, and one at a time a plan of a few hundred objects is a few hundred round trips long.
  return mapLimit(objects, DIFF_CONCURRENCY, async (obj) => {
    const ref = refOf(obj);
    let live: KubeObject | undefined;
    let served = true;
    try {
      live = await client.get(ref.apiVersion, ref.kind, ref.name, ref.namespace);
    } catch (error) {
      if (!(error instanceof KubeRequestError)) throw error;
      served = false;
    }
    let planned: PlannedObject;
    if (!live) {
      if (served) await dryRun(client, obj, ref, true);
      planned = { ref, action: "create", fields: [], ...(served ? {} : { unserved: true as const }) };
    } else if (opts.owner && !isOwnedBy(live, opts.owner)) {
      const labels = live.metadata.labels ?? {};
      const labelled = Object.entries(ownerLabels(opts.owner)).every(([k, v]) => labels[k] === v);
      planned = {
        ref,
        action: "foreign",
        fields: [],
        // It carries the labels, and yet is not ours: say why, or the finding reads as a lie.
        ...(labelled ? { note: `it carries the labels, but ${fieldManagers(live)}` } : {}),
      };
    } else if (deletionOf(live)) {
      planned = { ref, action: "deleting", fields: [], deleting: deletionOf(live) };
    } else {
      const next = await dryRun(client, obj, ref, false);
      const fields = next ? changedFields(live, next, manager) : [];
      planned = { ref, action: fields.length ? "update" : "unchanged", fields };
    }
    opts.onDiffed?.(planned, ++done, objects.length);
    return planned;
  });
}

/** An object being deleted: since when, and the finalizers it waits for. */
export interface Deleting {
  since: string;
  finalizers: string[];
}

/**
 * When `obj` is being deleted, since when and what it waits for, else undefined. kube-apiserver
 * keeps an object whose deletion waits for finalizers (metadata.finalizers; a Namespace's
 * spec.finalizers too, while its content is removed and its phase is Terminating) with
 * metadata.deletionTimestamp set until the last one is removed (apiserver
 * pkg/registry/generic/registry/store.go Delete, updateForGracefulDeletionAndFinalizers); whatever
 * is applied to it meanwhile goes with it, and a Namespace in Terminating refuses new objects
 * (the NamespaceLifecycle admission plugin's 403).
 */
export function deletionOf(obj: KubeObject): Deleting | undefined {
  const since = obj.metadata.deletionTimestamp;
  if (typeof since !== "string" || !since) return undefined;
  const names = (v: unknown) => (Array.isArray(v) ? v.filter((f): f is string => typeof f === "string") : []);
  const spec = isJsonObject(obj.spec) ? obj.spec : {};
  return { since, finalizers: [...new Set([...names(obj.metadata.finalizers), ...names(spec.finalizers)])] };
}

/** "since …, waiting for finalizers: a, b". */
export function describeDeleting(d: Deleting): string {
  return `since ${d.since}${d.finalizers.length ? `, waiting for finalizers: ${d.finalizers.join(", ")}` : ""}`;
}

/**
 * Objects of a plan in flight at once: few beside kube-apiserver's own limit (--max-requests-inflight,
 * 400 by default), so a plan does not crowd out the cluster's controllers.
 */
const DIFF_CONCURRENCY = 8;

async function dryRun(
  client: KubeClient,
  obj: KubeObject,
  ref: ObjectRef,
  creating: boolean,
): Promise<KubeObject | undefined> {
  try {
    return await client.apply(obj, { dryRun: true });
  } catch (error) {
    // Created in the same run before this one: its namespace, or the CRD of its kind.
    if (creating && error instanceof KubeApiError && error.httpStatus === 404) return undefined;
    if (creating && error instanceof KubeRequestError) return undefined;
    if (error instanceof Error) error.message = `dry run of ${describeRef(ref)}: ${error.message}`;
    throw error;
  }
}

/**
 * One plan line for a group of objects (a manifest file, a stage's custom resources), or undefined
 * when nothing in it would change: "Calico v3.32.1 operator-crds.yaml: create 32 objects", with
 * every object and changed field in the detail.
 */
export function describePlan(
  title: string,
  planned: readonly PlannedObject[],
): { summary: string; detail: string } | undefined {
  const creates = planned.filter((p) => p.action === "create");
  const updates = planned.filter((p) => p.action === "update");
  if (!creates.length && !updates.length) return undefined;
  const count = (n: number) => `${n} object${n === 1 ? "" : "s"}`;
  const one = (p: PlannedObject) => describeRef(p.ref);
  const parts = [
    ...(creates.length ? [`create ${creates.length === 1 ? one(creates[0]!) : count(creates.length)}`] : []),
    ...(updates.length
      ? [
          `update ${updates.length === 1 ? `${one(updates[0]!)} (${updates[0]!.fields.join(", ")})` : count(updates.length)}`,
        ]
      : []),
  ];
  const detail = [
    ...creates.map((p) => `create ${one(p)}`),
    ...updates.map((p) => `update ${one(p)}: ${p.fields.join(", ")}`),
  ].join("\n");
  return { summary: `${title}: ${parts.join(", ")}`, detail };
}

/** Objects a stage plans together: one manifest file, or the stage's own resources. */
export interface ObjectGroup {
  /** The start of the group's plan line: "Calico v3.32.1 operator-crds.yaml". */
  title: string;
  objects: readonly KubeObject[];
}

export interface OwnedPlan<G extends ObjectGroup> {
  /** Each group in which something would change, in order: its plan line and what to apply of it. */
  groups: { group: G; summary: string; detail: string; objects: KubeObject[] }[];
  /** Objects of the groups that are there without the owner's labels: never applied, never taken over. */
  foreign: (ObjectRef & { note?: string })[];
  /** The owner's objects of the groups that are being deleted: nothing of the groups is applied until they are gone. */
  deleting: { ref: ObjectRef; deleting: Deleting }[];
  /**
   * Objects of kinds the cluster does not serve and no CustomResourceDefinition of the groups
   * defines: applying them fails at their turn, after what comes before them is applied.
   */
  unserved: ObjectRef[];
  /**
   * The owner's objects that no group holds any more (found by its labels, in the kinds given and
   * those of the groups), in deletion order, with the plan line that deletes them.
   */
  prune?: { summary: string; detail: string; refs: ObjectRef[] };
}

/**
 * A stage's whole plan for its objects: what applying each group would create or update (dry runs,
 * see diffManifests), which objects belong to someone else, and what the stage applied before and no
 * longer renders. Nothing is stored; the stage applies `groups` and deletes `prune` through ctx.wet.
 */
export async function planOwned<G extends ObjectGroup>(
  client: KubeClient,
  groups: readonly G[],
  opts: {
    owner: Owner;
    /** The kinds the stage applied before (kept in its state), so that pruning looks there too. */
    kinds: readonly KindRef[];
    onDiffed?: DiffOptions["onDiffed"];
    /** Groups not to plan this time, and not to prune either: what the stage refuses for reasons of its own. */
    skip?: (group: G) => boolean;
    /**
     * A group whose dry run the cluster refuses (a webhook that denies it): true when the stage
     * reports the refusal itself, and the group is then left out as `skip` leaves it; else thrown.
     */
    onRefused?: (group: G, error: KubeApiError) => boolean;
  },
): Promise<OwnedPlan<G>> {
  const out: OwnedPlan<G> = { groups: [], foreign: [], deleting: [], unserved: [] };
  const defined = crdKinds(groups.flatMap((g) => g.objects));
  for (const group of groups) {
    if (opts.skip?.(group)) continue;
    let planned: PlannedObject[];
    try {
      planned = await diffManifests(client, group.objects, {
        owner: opts.owner,
        onDiffed: opts.onDiffed,
      });
    } catch (error) {
      if (error instanceof KubeApiError && opts.onRefused?.(group, error)) continue;
      throw error;
    }
    out.foreign.push(
      ...planned
        .filter((p) => p.action === "foreign")
        .map((p) => ({ ...p.ref, ...(p.note ? { note: p.note } : {}) })),
    );
    for (const p of planned) if (p.deleting) out.deleting.push({ ref: p.ref, deleting: p.deleting });
    out.unserved.push(...planned.filter((p) => p.unserved && !defined.has(kindKey(p.ref))).map((p) => p.ref));
    const line = describePlan(group.title, planned);
    // diffManifests answers object by object, in the group's order.
    const changing = group.objects.filter((_, i) => ["create", "update"].includes(planned[i]!.action));
    if (line) out.groups.push({ group, ...line, objects: changing });
  }
  const keep = groups.flatMap((g) => g.objects);
  const leftovers = (await findLeftovers(client, { owner: opts.owner, keep, kinds: opts.kinds })).map(refOf);
  const prune = describePrune(leftovers);
  if (prune) out.prune = { ...prune, refs: leftovers };
  return out;
}

const kindKey = (r: { apiVersion: string; kind: string }) => `${r.apiVersion}/${r.kind}`;

/**
 * `group/version/kind` of every version the CustomResourceDefinitions among `objects` serve
 * (apiextensions.k8s.io/v1 CustomResourceDefinitionSpec: group, names.kind, versions[].served).
 */
function crdKinds(objects: readonly KubeObject[]): Set<string> {
  const out = new Set<string>();
  for (const o of objects) {
    if (o.kind !== "CustomResourceDefinition" || !o.apiVersion.startsWith("apiextensions.k8s.io/")) continue;
    const spec = isJsonObject(o.spec) ? o.spec : {};
    const kind = isJsonObject(spec.names) ? spec.names.kind : undefined;
    if (typeof spec.group !== "string" || typeof kind !== "string" || !Array.isArray(spec.versions)) continue;
    for (const v of spec.versions)
      if (isJsonObject(v) && v.served === true && typeof v.name === "string")
        out.add(kindKey({ apiVersion: `${spec.group}/${v.name}`, kind }));
  }
  return out;
}

/** The plan line that deletes what a stage applied before and no longer renders, or undefined. */
export function describePrune(refs: readonly ObjectRef[]): { summary: string; detail: string } | undefined {
  if (!refs.length) return undefined;
  const what = refs.length === 1 ? describeRef(refs[0]!) : `${refs.length} objects`;
  return {
    summary: `delete ${what} this stage applied before and no longer renders`,
    detail: refs.map((r) => `delete ${describeRef(r)}`).join("\n"),
  };
}

/** A finding about some objects: `N object(s) <what> <said of them>`, one line of detail each. */
function objectsFinding(
  refs: readonly ObjectRef[],
  what: string,
  said: (one: boolean) => string,
  line: (ref: ObjectRef) => string,
): { summary: string; detail: string } | undefined {
  if (!refs.length) return undefined;
  const one = refs.length === 1;
  return {
    summary: `${refs.length} object${one ? "" : "s"} ${what} ${said(one)}`,
    detail: refs.map(line).join("\n"),
  };
}

/**
 * The finding for objects of kinds the cluster does not serve and the stage defines no CRD of, or
 * undefined: "1 object of Calico's manifests is of a kind the cluster does not serve …".
 */
export function describeUnserved(
  refs: readonly ObjectRef[],
  what = "this stage would apply",
): { summary: string; detail: string } | undefined {
  return objectsFinding(
    refs,
    what,
    (one) =>
      `${one ? "is of a kind" : "are of kinds"} the cluster does not serve and no CustomResourceDefinition of this stage defines`,
    (r) => `${describeRef(r)} (${r.apiVersion})`,
  );
}

/**
 * The finding for objects a stage would apply that are there without its labels, or undefined:
 * "1 object of Calico's manifests already exists without this stage's labels: …".
 */
export function describeForeign(
  refs: readonly (ObjectRef & { note?: string })[],
  what = "this stage would apply",
): { summary: string; detail: string } | undefined {
  return objectsFinding(
    refs,
    what,
    (one) =>
      `already exist${one ? "s" : ""} without this stage's labels: kubehyve does not take over what it did not make`,
    (r) => `${describeRef(r)}${(r as { note?: string }).note ? ` (${(r as { note?: string }).note})` : ""}`,
  );
}

/**
 * The finding for the owner's objects that are being deleted, or undefined: "1 object of Calico's
 * manifests is being deleted: …", one line each with since when and its finalizers.
 */
export function describeDeletingObjects(
  found: readonly { ref: ObjectRef; deleting: Deleting }[],
  what = "this stage would apply",
): { summary: string; detail: string } | undefined {
  const byKey = new Map(found.map((f) => [describeRef(f.ref), f.deleting]));
  return objectsFinding(
    found.map((f) => f.ref),
    what,
    (one) =>
      `${one ? "is" : "are"} being deleted: applying to ${one ? "it" : "them"} now would be lost once ${one ? "it goes" : "they go"}`,
    (r) => `${describeRef(r)} (${describeDeleting(byKey.get(describeRef(r))!)})`,
  );
}
