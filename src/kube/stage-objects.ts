/**
 * The one way an add-on stage owns its Kubernetes objects, from plan to `down`, on top of
 * ownership.ts (labels, leftovers, deletion) and diff.ts (dry-run plans):
 *
 * - check: planStageObjects gives a change per group of objects with something to create or
 *   update (`<prefix>.apply`), one that deletes what the stage applied before and no longer
 *   renders (`<prefix>.prune`), and the objects of its names that are someone else's, which the
 *   stage reports as an error and never applies.
 * - apply: applyStageObjects records the kinds it applies in the stage's state first (a run that
 *   stops half-way still knows where to prune), applies each group, then deletes the leftovers,
 *   every step through ctx.wet.
 * - destroy: destroyStageObjects lists the stage's objects by its labels in the kinds it recorded
 *   (and those it names) and deletes them in deletionOrder: an object without the labels is never
 *   touched.
 *
 * A stage waits where its operators need it through the hooks: beforeApply and afterApply around
 * a group, afterCustomResources in `down`.
 */
import { KubehyveError } from "../lib/errors.ts";
import { applyManifests } from "./apply.ts";
import {
  describeDeletingObjects,
  describeForeign,
  describeUnserved,
  type ObjectGroup,
  planOwned,
} from "./diff.ts";
import {
  deleteOwned,
  deletionOrder,
  fieldManagers,
  isCustomResource,
  isOwnedBy,
  type KindRef,
  kindsOf,
  listLabelled,
  listServed,
  type Owner,
  refOf,
} from "./ownership.ts";
import { describeRef, type ObjectRef } from "./readiness.ts";
import { type KubeApiError, KubeTransportError } from "./status.ts";
import type { KubeClient, KubeObject } from "./types.ts";

/** What of a plugin's context (PluginContext in src/core/contract.ts) this uses. */
export interface OwningContext {
  readonly plugin: { readonly slot: string };
  readonly clusterId: string;
  readonly dryRun: boolean;
  readonly signal: AbortSignal;
  readonly state: {
    get<T = unknown>(key: string): T | undefined;
    set(key: string, value: unknown): Promise<void>;
    delete(key: string): Promise<void>;
  };
  readonly log: {
    progress(message: string, current?: number, total?: number): void;
    warn(message: string): void;
  };
  wet<T>(description: string, fn: () => Promise<T>): Promise<T | undefined>;
}

/** A change of the plan, as PluginContext's Change has it. */
export interface StageChange {
  kind?: string;
  summary: string;
  detail?: string;
  disruptive?: boolean;
  data?: unknown;
}

/** Where a stage keeps the kinds it applied. */
export const APPLIED_KINDS_KEY = "appliedKinds";

/** The stage's slot of this cluster: whose labels its objects carry. */
export function stageOwner(ctx: OwningContext): Owner {
  return { stage: ctx.plugin.slot, clusterId: ctx.clusterId };
}

/** The kinds the stage recorded as applied, and those of `current`. */
export function appliedKinds(ctx: OwningContext, current: readonly (KindRef | KubeObject)[] = []): KindRef[] {
  return kindsOf([...(ctx.state.get<KindRef[]>(APPLIED_KINDS_KEY) ?? []), ...current]);
}

/** A finding of check, as src/core/diagnostics.ts's Diagnostic has it. */
export interface StageFinding {
  code: string;
  severity: "error";
  summary: string;
  detail: string;
  hint: string;
}

/** A group of the stage's objects, planned and applied together. */
export interface StageGroup extends ObjectGroup {
  /** The change's kind, `<prefix>.apply` unless given; one given starts with it: `metallb.apply-config`. */
  kind?: string;
  /** Not planned this time, and not pruned either: what the stage's own rules refuse already. */
  skip?: boolean;
  /**
   * The finding when the cluster refuses the group's dry run (a webhook that denies it), which
   * then plans the rest; without it the refusal is thrown.
   */
  refused?: (error: KubeApiError) => StageFinding;
}

/**
 * The cluster's client, or the finding `<prefix>.no-cluster` while there is none to reach (no
 * admin kubeconfig yet): check then plans a fresh install, verify reports it, down has nothing to do.
 */
export async function stageCluster(
  ctx: { kube(): Promise<KubeClient> },
  prefix: string,
): Promise<KubeClient | StageFinding> {
  try {
    return await ctx.kube();
  } catch (error) {
    return {
      code: `${prefix}.no-cluster`,
      severity: "error",
      summary: "there is no Kubernetes cluster to reach yet",
      detail: (error as Error).message,
      hint: "kubehyve up",
    };
  }
}

export function isStageFinding(x: KubeClient | StageFinding): x is StageFinding {
  return "severity" in x && "code" in x;
}

/**
 * check's answer, or, when the Kubernetes API stops answering half-way, the finding
 * `<prefix>.api-unreachable` and no changes: a finding of check rather than a failed phase.
 */
export async function checkReachable<C extends StageChange, D>(
  prefix: string,
  check: () => Promise<{ changes: C[]; diagnostics: D[] }>,
): Promise<{ changes: C[]; diagnostics: (D | StageFinding)[] }> {
  try {
    return await check();
  } catch (error) {
    if (!(error instanceof KubeTransportError)) throw error;
    const finding: StageFinding = {
      code: `${prefix}.api-unreachable`,
      severity: "error",
      summary: "the Kubernetes API does not answer",
      detail: error.message,
      hint: "kubehyve doctor (is the control plane up?)",
    };
    return { changes: [], diagnostics: [finding] };
  }
}

export interface StagePlanOptions {
  /**
   * Change kinds are `<prefix>.apply` and `<prefix>.prune`; the findings `<prefix>.foreign-objects`
   * and `<prefix>.unknown-kinds`.
   */
  prefix: string;
  /** What the finding calls the objects (describeForeign): "of Calico's manifests". */
  what?: string;
  /** The finding's hint: what to do about someone else's objects. */
  hint: string;
}

/**
 * The stage's plan for its objects, group by group in the order they are applied: the changes
 * (data: the objects to apply, or the refs to delete), and an error finding when objects of its
 * names are someone else's.
 */
export async function planStageObjects(
  ctx: OwningContext,
  client: KubeClient,
  groups: readonly StageGroup[],
  opts: StagePlanOptions,
): Promise<{ changes: StageChange[]; findings: StageFinding[] }> {
  const findings: StageFinding[] = [];
  for (const g of groups)
    if (g.kind && !g.kind.startsWith(`${opts.prefix}.apply`))
      throw new Error(`change kind ${g.kind} of ${g.title} does not start with ${opts.prefix}.apply`);
  const plan = await planOwned(client, groups, {
    owner: stageOwner(ctx),
    kinds: appliedKinds(ctx),
    skip: (g) => g.skip === true,
    onRefused: (g, error) => {
      if (!g.refused) return false;
      findings.push(g.refused(error));
      return true;
    },
  });
  const changes: StageChange[] = plan.groups.map((g) => ({
    kind: g.group.kind ?? `${opts.prefix}.apply`,
    summary: g.summary,
    detail: g.detail,
    data: g.objects,
  }));
  if (plan.prune) {
    const { summary, detail, refs } = plan.prune;
    changes.push({ kind: `${opts.prefix}.prune`, summary, detail, data: refs });
  }
  const unserved = describeUnserved(plan.unserved, opts.what);
  if (unserved)
    findings.push({
      code: `${opts.prefix}.unknown-kinds`,
      severity: "error",
      ...unserved,
      hint: "is the stage's version one for this cluster's Kubernetes? `kubectl api-resources` lists the kinds it serves",
    });
  const deleting = describeDeletingObjects(plan.deleting, opts.what);
  if (deleting) {
    const first = plan.deleting[0]!.ref;
    findings.push({
      code: `${opts.prefix}.being-deleted`,
      severity: "error",
      ...deleting,
      hint: `wait until ${plan.deleting.length === 1 ? "it is" : "they are"} gone (kubectl get ${first.kind.toLowerCase()} ${first.name}${first.namespace ? ` -n ${first.namespace}` : ""}), then run again; a finalizer that never clears belongs to a controller that no longer runs`,
    });
  }
  const foreign = describeForeign(plan.foreign, opts.what);
  if (foreign)
    findings.push({ code: `${opts.prefix}.foreign-objects`, severity: "error", ...foreign, hint: opts.hint });
  return { changes, findings };
}

/**
 * The plan's changes, or its first error finding as an error: for an apply whose plan was made
 * before the cluster could be read (a fresh install), planned again and refused the way check would
 * refuse it. The findings may be all of check's diagnostics: only an error refuses.
 */
export function changesOrRefusal<C extends StageChange>(plan: {
  changes: C[];
  findings: readonly { severity: string; summary: string; hint?: string }[];
}): C[] {
  const refusal = plan.findings.find((f) => f.severity === "error");
  if (refusal) throw new KubehyveError(`${refusal.summary}${refusal.hint ? ` (${refusal.hint})` : ""}`);
  return plan.changes;
}

/**
 * Carries out the changes planStageObjects made (kinds `<prefix>.apply…` and `<prefix>.prune`), in
 * order. Outside dry runs, `beforeApply` runs before each group is applied (a webhook to wait for
 * before what it admits) and `afterApply` after it (an operator to wait for before what it serves),
 * each with the group's objects and its change. Returns the objects applied.
 */
export async function applyStageObjects(
  ctx: OwningContext,
  client: KubeClient,
  changes: readonly StageChange[],
  prefix: string,
  opts: {
    beforeApply?: (objects: KubeObject[], change: StageChange) => Promise<void>;
    afterApply?: (objects: KubeObject[], change: StageChange) => Promise<void>;
  } = {},
): Promise<KubeObject[]> {
  const applies = changes.filter((c) => c.kind?.startsWith(`${prefix}.apply`));
  const objects = applies.flatMap((c) => c.data as KubeObject[]);
  const kinds = appliedKinds(ctx, objects);
  await ctx.wet(`record the kinds this stage applies: ${kinds.map((k) => k.kind).join(", ")}`, () =>
    ctx.state.set(APPLIED_KINDS_KEY, kinds),
  );
  for (const change of applies) {
    const group = change.data as KubeObject[];
    if (!ctx.dryRun) await opts.beforeApply?.(group, change);
    await ctx.wet(change.summary, () =>
      applyManifests(client, group, {
        signal: ctx.signal,
        owner: stageOwner(ctx),
        onApplied: (o, i, n) => ctx.log.progress(`applied ${describeRef(refOf(o))}`, i, n),
      }),
    );
    if (!ctx.dryRun) await opts.afterApply?.(group, change);
  }
  const owner = stageOwner(ctx);
  for (const ref of changes.filter((c) => c.kind === `${prefix}.prune`).flatMap((c) => c.data as ObjectRef[]))
    await ctx.wet(`delete ${describeRef(ref)}, which this stage no longer renders`, () =>
      deleteOwned(client, owner, ref),
    );
  return objects;
}

export interface DestroyOptions {
  /**
   * Runs once the custom resources (deleted first) are, outside dry runs and only when there were
   * any: an operator removes what it made for them only while it still runs.
   */
  afterCustomResources?: () => Promise<void>;
  /**
   * Objects of the stage's CRDs that its own software made (an operator's status objects, a
   * CNI's IP address blocks), which go with the stage: they do not keep their CRD. Only the stage
   * knows them; without it every object of a CRD that is not the stage's keeps it.
   */
  madeByStage?: (obj: KubeObject) => boolean;
}

/**
 * Deletes every object the stage owns, found by its labels in the kinds it recorded and `kinds`
 * (those it may have applied without a record: the release's, a canary's), in deletionOrder.
 */
export async function destroyStageObjects(
  ctx: OwningContext,
  client: KubeClient,
  kinds: readonly KindRef[],
  opts: DestroyOptions = {},
): Promise<void> {
  const owner = stageOwner(ctx);
  const labelled = await listLabelled(client, owner, appliedKinds(ctx, kinds));
  for (const o of labelled.unproven) {
    const { kind, name, namespace } = refOf(o);
    ctx.log.warn(
      `left ${describeRef(refOf(o))}: it carries this stage's labels, but nothing the server keeps says kubehyve set them (${fieldManagers(o)}), so it is not deleted; if it is this stage's: kubectl delete ${kind.toLowerCase()} ${name}${namespace ? ` -n ${namespace}` : ""}`,
    );
  }
  const listed = deletionOrder(labelled.owned);
  // Deleting a CRD deletes every object of its kind, in every namespace: one that still serves
  // someone else's objects (an IngressRoute of theirs, in their namespace) stays, as `helm
  // uninstall` leaves CRDs. Decided before anything is deleted, so a dry run says the same.
  const doomed = new Set<string>();
  const kept = new Set<KubeObject>();
  // Deleting a namespace deletes everything in it: one that holds someone else's objects (their
  // Deployment, a PersistentVolumeClaim with their data, a CephBlockPool they made) stays, with a
  // warning; the stage's own objects in it are still deleted. Looked at before the CRDs, so that
  // a custom resource of theirs in a kept namespace also keeps its CRD.
  const namespaces = listed.filter((o) => o.kind === "Namespace" && o.apiVersion === "v1");
  const contents = namespaces.length ? await namespacedKinds(client) : [];
  for (const ns of namespaces) {
    const name = ns.metadata.name;
    if (!contents) {
      kept.add(ns);
      ctx.log.warn(
        `left Namespace ${name}: this client cannot list what the server serves, so what is in it cannot be told apart from this stage's; once what is in it is not needed: kubectl delete namespace ${name}`,
      );
      continue;
    }
    const theirs = await objectsNotOwned(client, owner, contents, name, opts.madeByStage);
    if (!theirs.length) {
      doomed.add(name);
      continue;
    }
    kept.add(ns);
    const first = theirs[0]!;
    ctx.log.warn(
      `left Namespace ${name}: ${theirs.length} object${theirs.length === 1 ? "" : "s"} in it that this stage did not make (${first.kind} ${name}/${first.metadata.name}: ${fieldManagers(first)}${theirs.length > 1 ? "; …" : ""}) would go with it; once they are not needed: kubectl delete namespace ${name}`,
    );
  }
  for (const o of listed) {
    if (o.kind !== "CustomResourceDefinition") continue;
    const instances = await instancesNotOwned(client, owner, o, doomed);
    if (!instances) {
      kept.add(o);
      ctx.log.warn(
        `left CustomResourceDefinition ${o.metadata.name}: it serves no version, so its objects cannot be listed to tell whether someone else's would go with it; once they are not needed: kubectl delete crd ${o.metadata.name}`,
      );
      continue;
    }
    const theirs = instances.filter((x) => !opts.madeByStage?.(x));
    if (!theirs.length) continue;
    kept.add(o);
    const first = theirs[0]!.metadata;
    ctx.log.warn(
      `left CustomResourceDefinition ${o.metadata.name}: ${theirs.length} object${theirs.length === 1 ? "" : "s"} of it that this stage did not make (${first.namespace ? `${first.namespace}/` : ""}${first.name}${theirs.length > 1 ? ", …" : ""}) would go with it; once they are not needed: kubectl delete crd ${o.metadata.name}`,
    );
  }
  const owned = listed.filter((o) => !kept.has(o));
  const remove = (o: KubeObject) =>
    ctx.wet(`delete ${describeRef(refOf(o))}`, () => deleteOwned(client, owner, refOf(o)));
  // deletionOrder puts the custom resources first.
  const custom = owned.filter(isCustomResource);
  for (const o of custom) await remove(o);
  if (!ctx.dryRun && custom.length) await opts.afterCustomResources?.();
  for (const o of owned.filter((x) => !isCustomResource(x))) await remove(o);
  await ctx.wet("forget the kinds this stage applied", () => ctx.state.delete(APPLIED_KINDS_KEY));
}

/**
 * Objects of the kind a CRD defines that are not `owner`'s, cluster-scoped or in a namespace the
 * stage does not delete: what deleting the CRD would take from someone else. A cluster-scoped one
 * counts as much as a namespaced one (a GlobalNetworkPolicy of the user's is lost with Calico's
 * CRD as surely as their NetworkPolicy); what the stage's own software made is told apart by the
 * stage (DestroyOptions.madeByStage). Undefined when the CRD serves no version (someone turned
 * them off): what is stored of it cannot be listed, and would still go with it.
 */
async function instancesNotOwned(
  client: KubeClient,
  owner: Owner,
  crd: KubeObject,
  doomed: ReadonlySet<string>,
): Promise<KubeObject[] | undefined> {
  const spec = crd.spec as
    | {
        group?: string;
        scope?: string;
        names?: { kind?: string };
        versions?: { name?: string; served?: boolean }[];
      }
    | undefined;
  if (!spec?.group || !spec.names?.kind) return [];
  const version = spec.versions?.find((v) => v.served)?.name;
  if (!version) return undefined;
  // No longer served (being deleted already): nothing of it is left to lose.
  const items = await listServed(client, `${spec.group}/${version}`, spec.names.kind);
  return items.filter(
    (o) => !isOwnedBy(o, owner) && !(o.metadata.namespace && doomed.has(o.metadata.namespace)),
  );
}

/**
 * The kinds discovery lists as namespaced, with the verbs `list` and `delete`, one version per
 * group and kind (the first, the preferred: aggregated discovery lists a group's versions in
 * preference order). What a namespace's deletion takes: the namespace controller deletes every
 * preferred namespaced kind with the `delete` verb (kubernetes pkg/controller/namespace/deletion
 * namespaced_resources_deleter.go: discovery.FilteredBy(SupportsAllVerbs{"delete"}), then
 * deleteAllContent); of those, what can be listed can be looked at. Undefined when the client
 * cannot ask.
 */
async function namespacedKinds(client: KubeClient): Promise<KindRef[] | undefined> {
  if (!client.servedResources) return undefined;
  const seen = new Map<string, KindRef>();
  for (const r of await client.servedResources()) {
    if (!r.namespaced || !r.verbs.includes("list") || !r.verbs.includes("delete")) continue;
    const key = `${r.group}/${r.kind}`;
    if (!seen.has(key))
      seen.set(key, { apiVersion: r.group ? `${r.group}/${r.version}` : r.version, kind: r.kind });
  }
  return [...seen.values()];
}

/**
 * The objects in a namespace that deleting it would take from someone else: not `owner`'s
 * (isOwnedBy), not made by a controller for an owner (an ownerReference: the garbage collector
 * takes it with its owner), not made by the stage's own software (madeByStage), and not what
 * Kubernetes puts in every namespace (madeByKubernetes). A kind that cannot be listed stops the
 * down (listServed): never taken for an empty one.
 */
async function objectsNotOwned(
  client: KubeClient,
  owner: Owner,
  kinds: readonly KindRef[],
  namespace: string,
  madeByStage?: (obj: KubeObject) => boolean,
): Promise<KubeObject[]> {
  const items: KubeObject[] = [];
  for (const k of kinds) items.push(...(await listServed(client, k.apiVersion, k.kind, { namespace })));
  const goes = (o: KubeObject) =>
    isOwnedBy(o, owner) ||
    (Array.isArray(o.metadata.ownerReferences) && o.metadata.ownerReferences.length > 0) ||
    madeByStage?.(o) === true;
  const services = new Set(
    items.filter((o) => o.apiVersion === "v1" && o.kind === "Service").map((o) => o.metadata.name),
  );
  const accounts = new Set(
    items
      .filter((o) => o.apiVersion === "v1" && o.kind === "ServiceAccount")
      .filter((o) => goes(o) || o.metadata.name === "default")
      .map((o) => o.metadata.name),
  );
  return items.filter((o) => !goes(o) && !madeByKubernetes(o, services, accounts));
}

/**
 * What Kubernetes itself makes in a namespace, which is no one's data:
 * - the ServiceAccount `default`, made in every namespace (kubernetes pkg/controller/serviceaccount
 *   serviceaccounts_controller.go DefaultServiceAccountsControllerOptions);
 * - the ConfigMap `kube-root-ca.crt` (pkg/controller/certificates/rootcacertpublisher publisher.go
 *   RootCACertConfigMapName);
 * - Events, of either group, which components record and kube-apiserver expires (--event-ttl);
 * - Leases, the leader-election locks of controllers (client-go tools/leaderelection/resourcelock
 *   leaselock.go Create: no ownerReference), a stage's CSI provisioner's among them: a lock holds
 *   no one's data, and its holder makes it again;
 * - the Endpoints of a Service in the namespace, of its name and without an ownerReference (pkg/
 *   controller/endpoint endpoints_controller.go syncService); the EndpointSlices of a Service carry
 *   one to it (pkg/controller/endpointslice, endpointslice utils.go newEndpointSlice), as above;
 * - a service-account token Secret of a ServiceAccount that goes (`services`/`accounts` here: the
 *   Service and ServiceAccount names that go with the namespace), which the tokens controller
 *   deletes with its account (pkg/controller/serviceaccount tokens_controller.go, the annotation
 *   kubernetes.io/service-account.name: k8s.io/api core/v1 types.go ServiceAccountNameKey).
 */
function madeByKubernetes(
  o: KubeObject,
  services: ReadonlySet<string>,
  accounts: ReadonlySet<string>,
): boolean {
  const core = o.apiVersion === "v1";
  if (o.kind === "Event" && (core || o.apiVersion.startsWith("events.k8s.io/"))) return true;
  if (o.kind === "Lease" && o.apiVersion.startsWith("coordination.k8s.io/")) return true;
  if (!core) return false;
  const name = o.metadata.name;
  if (o.kind === "ServiceAccount") return name === "default";
  if (o.kind === "ConfigMap") return name === "kube-root-ca.crt";
  if (o.kind === "Endpoints") return services.has(name);
  if (o.kind === "Secret") {
    const account = o.metadata.annotations?.["kubernetes.io/service-account.name"];
    return (
      (o as { type?: unknown }).type === "kubernetes.io/service-account-token" &&
      !!account &&
      accounts.has(account)
    );
  }
  return false;
}
