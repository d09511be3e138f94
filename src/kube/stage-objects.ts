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
 */
import { KubehyveError } from "../lib/errors.ts";
import { applyManifests } from "./apply.ts";
import { describeForeign, type ObjectGroup, planOwned } from "./diff.ts";
import {
  deleteOwned,
  deletionOrder,
  type KindRef,
  kindsOf,
  listOwned,
  type Owner,
  refOf,
} from "./ownership.ts";
import { describeRef, type ObjectRef } from "./readiness.ts";
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
  readonly log: { progress(message: string, current?: number, total?: number): void };
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

export interface StagePlanOptions {
  /** Change kinds are `<prefix>.apply` and `<prefix>.prune`; the finding is `<prefix>.foreign-objects`. */
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
  groups: readonly ObjectGroup[],
  opts: StagePlanOptions,
): Promise<{ changes: StageChange[]; findings: StageFinding[] }> {
  const plan = await planOwned(client, groups, { owner: stageOwner(ctx), kinds: appliedKinds(ctx) });
  const changes: StageChange[] = plan.groups.map((g) => ({
    kind: `${opts.prefix}.apply`,
    summary: g.summary,
    detail: g.detail,
    data: g.objects,
  }));
  if (plan.prune) {
    const { summary, detail, refs } = plan.prune;
    changes.push({ kind: `${opts.prefix}.prune`, summary, detail, data: refs });
  }
  const foreign = describeForeign(plan.foreign, opts.what);
  const findings: StageFinding[] = foreign
    ? [{ code: `${opts.prefix}.foreign-objects`, severity: "error", ...foreign, hint: opts.hint }]
    : [];
  return { changes, findings };
}

/**
 * The plan's changes, or the first finding as an error: for an apply whose plan was made before the
 * cluster could be read (a fresh install), planned again and refused the way check would refuse it.
 */
export function changesOrRefusal(plan: { changes: StageChange[]; findings: StageFinding[] }): StageChange[] {
  const [refusal] = plan.findings;
  if (refusal) throw new KubehyveError(`${refusal.summary} (${refusal.hint})`);
  return plan.changes;
}

/**
 * Carries out the changes planStageObjects made (kinds `<prefix>.apply…` and `<prefix>.prune`), in
 * order. `afterApply` runs after each group is applied, outside dry runs (an operator to wait for
 * before what it serves). Returns the objects applied.
 */
export async function applyStageObjects(
  ctx: OwningContext,
  client: KubeClient,
  changes: readonly StageChange[],
  prefix: string,
  opts: { afterApply?: (objects: KubeObject[]) => Promise<void> } = {},
): Promise<KubeObject[]> {
  const applies = changes.filter((c) => c.kind?.startsWith(`${prefix}.apply`));
  const objects = applies.flatMap((c) => c.data as KubeObject[]);
  const kinds = appliedKinds(ctx, objects);
  await ctx.wet(`record the kinds this stage applies: ${kinds.map((k) => k.kind).join(", ")}`, () =>
    ctx.state.set(APPLIED_KINDS_KEY, kinds),
  );
  for (const change of applies) {
    const group = change.data as KubeObject[];
    await ctx.wet(change.summary, () =>
      applyManifests(client, group, {
        signal: ctx.signal,
        onApplied: (o, i, n) => ctx.log.progress(`applied ${describeRef(refOf(o))}`, i, n),
      }),
    );
    if (!ctx.dryRun) await opts.afterApply?.(group);
  }
  const owner = stageOwner(ctx);
  for (const ref of changes.filter((c) => c.kind === `${prefix}.prune`).flatMap((c) => c.data as ObjectRef[]))
    await ctx.wet(`delete ${describeRef(ref)}, which this stage no longer renders`, () =>
      deleteOwned(client, owner, ref),
    );
  return objects;
}

/**
 * Deletes every object the stage owns, found by its labels in the kinds it recorded and `kinds`
 * (those it may have applied without a record: the release's, a canary's), in deletionOrder.
 */
export async function destroyStageObjects(
  ctx: OwningContext,
  client: KubeClient,
  kinds: readonly KindRef[],
): Promise<void> {
  const owner = stageOwner(ctx);
  for (const o of deletionOrder(await listOwned(client, owner, appliedKinds(ctx, kinds))))
    await ctx.wet(`delete ${describeRef(refOf(o))}`, () => deleteOwned(client, owner, refOf(o)));
  await ctx.wet("forget the kinds this stage applied", () => ctx.state.delete(APPLIED_KINDS_KEY));
}
