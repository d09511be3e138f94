/**
 * The exposure walk as a step of a run: `verify --expose` deploys the whoami canary, walks it and
 * removes it (also after a failure or Ctrl-C); `kubehyve expose` makes the Ingress for a Service and
 * walks it; doctor walks, read-only, what `kubehyve expose` made. The walk's lines are those of a
 * stage `expose`: a context of its own (every mutation through its ctx.wet, so a dry run says what
 * it would deploy), an outcome, a `hop` event per hop and one verdict.
 */
import { applyManifests } from "../kube/apply.ts";
import { deleteOwned, isOwnedBy, ownerSelector, refOf } from "../kube/ownership.ts";
import { describeRef, isReady } from "../kube/readiness.ts";
import type { KubeClient, KubeObject } from "../kube/types.ts";
import { ExitCode, KubehyveError } from "../lib/errors.ts";
import { pending, poll } from "../lib/poll.ts";
import { frozenCopy } from "../lib/values.ts";
import { findingOfFailure } from "./checks.ts";
import type { Stage } from "./config.ts";
import type { TestablePluginContext } from "./context.ts";
import { type AnyPlugin, API_VERSION } from "./contract.ts";
import { type Diagnostic, diag } from "./diagnostics.ts";
import {
  checkHops,
  EXPOSE_HOPS_HOOK,
  type ExposeReport,
  type ExposeRequest,
  type ExposeTarget,
  type SourcedHop,
  verdictOf,
  walkHops,
} from "./expose.ts";
import {
  CANARY_NAME,
  CANARY_NAMESPACE,
  canary,
  EXPOSE_SLOT,
  EXPOSURE_LABEL,
  ownerOf,
  serviceIngress,
  targetOf,
  WHOAMI_IMAGE,
} from "./expose-app.ts";
import { dnsHop, endpointsHop, podsHop } from "./expose-hops.ts";
import { StageFailure } from "./phase.ts";
import { UnreachableError } from "./reach.ts";
import type { Run } from "./run.ts";

/** The walk is no stage of the cluster file; it gets a context and an outcome as one does. */
const WALK_PLUGIN: AnyPlugin = {
  id: `${EXPOSE_SLOT}/walk`,
  title: "exposure walk",
  apiVersion: API_VERSION,
  check: async () => ({ changes: [], diagnostics: [] }),
};
export const EXPOSE_STAGE: Stage = { slot: EXPOSE_SLOT, plugin: WALK_PLUGIN, options: {} };

type Ctx = TestablePluginContext;

/** Every stage's hops for `target`, each from the stage's own context, then the core's. */
async function hopsFor(run: Run, ctx: Ctx, req: ExposeRequest, target: ExposeTarget): Promise<SourcedHop[]> {
  const hops: SourcedHop[] = [];
  for (const stage of run.ordered) {
    const handler = stage.plugin.hooks?.[EXPOSE_HOPS_HOOK];
    // Each handler gets its own read-only copy, as every hook's payload: one must not change the
    // target the others and the walk go on to see.
    if (handler)
      hops.push(...checkHops(stage.slot, await handler(run.contextOf(stage), frozenCopy(target) as never)));
  }
  const kube = () => ctx.kube();
  for (const hop of [dnsHop(run.req.cluster.network, req.dnsPort), endpointsHop(kube), podsHop(kube)])
    hops.push({ hop, from: "kubehyve" });
  return hops;
}

async function walkTarget(
  run: Run,
  ctx: Ctx,
  req: ExposeRequest,
  target: ExposeTarget,
): Promise<ExposeReport> {
  run.log(
    "info",
    `walking http://${target.host}${target.path} from ${ctx.host.name}, outside in`,
    EXPOSE_SLOT,
  );
  return walkHops(target, await hopsFor(run, ctx, req, target), {
    signal: ctx.signal,
    // doctor walks what has long been there: one look, no waiting for a controller to catch up.
    settleMs: req.settleMs ?? (req.app.kind === "exposed" ? 0 : undefined),
    httpTimeoutSec: req.httpTimeoutSec,
    onHop: (hop) => run.reporter.emit({ type: "hop", stage: EXPOSE_SLOT, ...hop }),
  });
}

/** An object of the walk's name that kubehyve did not make is never applied over. */
async function refuseForeign(kube: KubeClient, objects: readonly KubeObject[], clusterId: string) {
  for (const obj of objects) {
    const live = await kube.get(obj.apiVersion, obj.kind, obj.metadata.name, obj.metadata.namespace);
    if (live && !isOwnedBy(live, ownerOf(clusterId)))
      throw new KubehyveError(
        `${describeRef(refOf(obj))} exists and is not this cluster's kubehyve's: it is not touched`,
        1,
        "rename or remove it, or walk a Service of your own: kubehyve expose SERVICE --host NAME",
      );
  }
}

/**
 * The IngressClass annotated as the default, newest first when several are, as the
 * DefaultIngressClass admission plugin picks it (plugin/pkg/admission/network/defaultingressclass).
 */
export async function defaultIngressClass(kube: KubeClient): Promise<string | undefined> {
  const classes = await kube.list("networking.k8s.io/v1", "IngressClass");
  const defaults = classes
    .filter((c) => c.metadata.annotations?.["ingressclass.kubernetes.io/is-default-class"] === "true")
    .sort((a, b) =>
      String(b.metadata.creationTimestamp ?? "").localeCompare(String(a.metadata.creationTimestamp ?? "")),
    );
  return defaults[0]?.metadata.name;
}

/** What refuseForeign found free is still checked at its write: someone may make it in between. */
const apply = (kube: KubeClient, objects: KubeObject[], signal: AbortSignal, clusterId: string) =>
  applyManifests(kube, objects, { signal, owner: ownerOf(clusterId) }).then(() => undefined);

async function walkCanary(run: Run, ctx: Ctx, req: ExposeRequest): Promise<Diagnostic[]> {
  const kube = await ctx.kube();
  const { objects, target } = canary(
    run.clusterId,
    run.req.cluster.network.domain,
    await defaultIngressClass(kube),
  );
  await refuseForeign(kube, objects, run.clusterId);
  let removed = false;
  const remove = async () => {
    if (removed) return;
    // After Ctrl-C the stage's client refuses every request: removal gets a client of its own, each
    // request still under the client's own limit.
    const client = run.req.kube
      ? await run.req.kube()
      : await (await import("../kube/client.ts")).createKubeClient(ctx.kubeconfigPath);
    await ctx.wet(
      `remove the whoami canary (Ingress, Service, Deployment ${CANARY_NAMESPACE}/${CANARY_NAME})`,
      async () => {
        for (const obj of [...objects].reverse())
          await deleteOwned(client, ownerOf(run.clusterId), refOf(obj));
      },
    );
    removed = true;
  };
  // Registered before the first object exists: an interrupted apply is cleaned up too.
  if (!ctx.dryRun) ctx.onCleanup(remove);
  await ctx.wet(
    `deploy the whoami canary for ${target.host}: Deployment, Service and Ingress ${CANARY_NAMESPACE}/${CANARY_NAME} (${WHOAMI_IMAGE})`,
    () => apply(kube, objects, ctx.signal, run.clusterId),
  );
  if (ctx.dryRun)
    return [
      diag.info(
        "expose.dry-run",
        `then walk http://${target.host}/ from the host to the canary's pod, and remove the canary`,
      ),
    ];
  try {
    await poll(
      `Deployment ${CANARY_NAMESPACE}/${CANARY_NAME} to be ready`,
      async () => {
        const live = await kube.get("apps/v1", "Deployment", CANARY_NAME, CANARY_NAMESPACE);
        const r = live ? isReady(live) : { ready: false, reason: "not found" };
        return r.ready ? true : pending(r.reason);
      },
      { timeoutMs: req.readyTimeoutMs ?? 180_000, intervalMs: 1000, signal: ctx.signal },
    ).catch((error: unknown) => {
      if (ctx.signal.aborted) throw error;
      // Not ready in time: the walk still runs, and its pod hop says why.
      run.log("warn", (error as Error).message, EXPOSE_SLOT);
    });
    return [verdictOf(await walkTarget(run, ctx, req, target))];
  } finally {
    // Interrupted, ctx.wet starts nothing new: the run's cleanups (registered above) remove it then.
    if (!ctx.signal.aborted) await remove();
  }
}

/**
 * A name an Ingress rule can carry: a lowercase RFC 1123 subdomain of two labels at least, each
 * of at most 63 characters. The API server checks only the whole name's length
 * (apimachinery IsDNS1123Subdomain), but a longer label fits in no DNS message (RFC 1035 2.3.4):
 * the Ingress would route a name nobody can resolve.
 */
export const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$/;

async function walkService(
  run: Run,
  ctx: Ctx,
  req: ExposeRequest,
  app: Extract<ExposeRequest["app"], { kind: "service" }>,
): Promise<Diagnostic[]> {
  if (!HOST_NAME.test(app.host))
    throw new KubehyveError(
      `--host ${JSON.stringify(app.host)} is not a DNS name an Ingress can carry (lowercase RFC 1123, at least two labels)`,
      ExitCode.badInput,
    );
  const kube = await ctx.kube();
  const svc = await kube.get("v1", "Service", app.name, app.namespace);
  if (!svc)
    throw new KubehyveError(
      `Service ${app.namespace}/${app.name} does not exist`,
      1,
      `kubectl -n ${app.namespace} get services`,
    );
  const ports = (svc.spec?.ports ?? []) as { name?: string; port: number; protocol?: string }[];
  // An Ingress backend is HTTP, over TCP: of a TCP and a UDP port of one number (DNS), the TCP one.
  const tcp = (p: { protocol?: string }) => (p.protocol ?? "TCP") === "TCP";
  const named = ports.filter((p) => String(p.port) === String(app.port) || p.name === app.port);
  const match =
    app.port === undefined ? (ports.length === 1 ? ports[0] : undefined) : (named.find(tcp) ?? named[0]);
  if (match && !tcp(match))
    throw new KubehyveError(
      `Service ${app.namespace}/${app.name} port ${match.name ? `${match.name} (${match.port})` : match.port} is ${match.protocol}: an Ingress carries HTTP, which goes over TCP`,
      1,
      "name a TCP port of it with --port; a UDP service is reached through a LoadBalancer Service of its own",
    );
  if (!match) {
    const shown = ports.map((p) => (p.name ? `${p.name} (${p.port})` : String(p.port))).join(", ") || "none";
    throw new KubehyveError(
      app.port === undefined
        ? `Service ${app.namespace}/${app.name} has ${ports.length ? `several ports: ${shown}` : "no port"}`
        : `Service ${app.namespace}/${app.name} has no port ${app.port} (it has: ${shown})`,
      1,
      "name one of its ports with --port",
    );
  }
  const portRef = match.name ?? match.port;
  const { ingress, target } = serviceIngress(
    run.clusterId,
    app,
    portRef,
    app.host,
    await defaultIngressClass(kube),
  );
  await refuseForeign(kube, [ingress], run.clusterId);
  // Two Ingresses for one host: which one a controller routes to is up to it. Not made, whoever
  // made the other, this cluster included (another Service exposed there, or the canary's host).
  const others = (await kube.list("networking.k8s.io/v1", "Ingress")).filter(
    (i) =>
      !(i.metadata.namespace === ingress.metadata.namespace && i.metadata.name === ingress.metadata.name) &&
      ((i.spec?.rules ?? []) as { host?: string }[]).some((r) => r.host === app.host),
  );
  if (others.length)
    throw new KubehyveError(
      `${others.map((i) => `Ingress ${i.metadata.namespace}/${i.metadata.name}`).join(", ")} already routes ${app.host}: nothing was made`,
      1,
      "walk that one with kubehyve doctor after exposing it, or pick another --host",
    );
  await ctx.wet(
    `apply Ingress ${app.namespace}/${app.name}: http://${app.host}/ to Service ${app.name} port ${portRef}`,
    () => apply(kube, [ingress], ctx.signal, run.clusterId),
  );
  if (ctx.dryRun)
    return [diag.info("expose.dry-run", `then walk http://${app.host}/ from the host to the Service's pods`)];
  return [verdictOf(await walkTarget(run, ctx, req, target))];
}

/** doctor: what `kubehyve expose` made, walked without changing anything. */
async function walkExposed(run: Run, ctx: Ctx, req: ExposeRequest, kube: KubeClient): Promise<Diagnostic[]> {
  const selector = `${ownerSelector(ownerOf(run.clusterId))},${EXPOSURE_LABEL}=service`;
  const ingresses = await kube.list("networking.k8s.io/v1", "Ingress", { labelSelector: selector });
  const targets = ingresses.map(targetOf).filter((t): t is ExposeTarget => t !== undefined);
  if (!targets.length)
    return [
      diag.info("expose.none", "no Service was exposed with kubehyve expose: no path to walk", {
        hint: "kubehyve verify --expose walks a canary from the host; kubehyve expose SERVICE --host NAME exposes one of yours",
      }),
    ];
  const out: Diagnostic[] = [];
  for (const target of targets) out.push(verdictOf(await walkTarget(run, ctx, req, target)));
  return out;
}

/**
 * The walk `req` asks for, as the `expose` stage's verify; a broken hop fails the run. doctor's walk
 * of what `kubehyve expose` made is left out, silently, when there is no cluster to reach (the k8s
 * stage says why).
 */
export async function runExposure(run: Run, req: ExposeRequest | undefined): Promise<void> {
  if (!req) return;
  // doctor walks read-only whatever the run is; the others change the cluster unless a dry run.
  const dryRun = req.app.kind === "exposed" || Boolean(req.dryRun);
  const ctx = run.contextOf(EXPOSE_STAGE, false, run.reporter, dryRun);
  let kube: KubeClient | undefined;
  if (req.app.kind === "exposed") {
    kube = await ctx.kube().catch(() => undefined);
    if (!kube) return;
  }
  const o = run.outcome(EXPOSE_STAGE, "ok");
  let diagnostics: Diagnostic[];
  try {
    diagnostics = await run.phases.run(
      o,
      "verify",
      () => {
        const app = req.app;
        if (app.kind === "canary") return walkCanary(run, ctx, req);
        if (app.kind === "service") return walkService(run, ctx, req, app);
        return walkExposed(run, ctx, req, kube!);
      },
      () => "ok",
    );
  } catch (error) {
    // doctor reports a walk that could not run as one finding, as it does a stage's phase: a skip
    // when the API could not be reached (the run says so once), else an error.
    if (req.app.kind !== "exposed" || !(error instanceof StageFailure)) throw error;
    const cause = error.cause;
    diagnostics = [
      cause instanceof UnreachableError
        ? findingOfFailure("engine.phase-skipped", `${EXPOSE_SLOT} verify`, cause)
        : diag.error(
            "engine.phase-failed",
            `the exposure walk could not run: ${error.message.split("\n")[0]}`,
            {
              hint: "kubehyve doctor --verbose; the run's log in the state dir has every request",
            },
          ),
    ];
  }
  run.phases.report(o, "verify", diagnostics);
  if (diagnostics.some((d) => d.severity === "error")) {
    o.status = "failed";
    run.exitCode = ExitCode.phaseFailed;
  }
}
