/**
 * ingress/traefik: Traefik v3.7 as the cluster's ingress controller, reachable from the LAN through a
 * LoadBalancer Service that the lb stage gives an address. See README.md. One topic per file:
 *
 * - options.ts, ipv4.ts: the options block and the fixed-address rules
 * - release.ts: the pinned upstream CRDs and RBAC, and the image
 * - manifests.ts: the Deployment, Service, IngressClass and ping route, after the Helm chart
 * - hops.ts: each hop verify checks, reusable one by one
 *
 * Its objects are owned the way every add-on stage owns them (planStageObjects, applyStageObjects
 * and destroyStageObjects of the plugin API): labelled with the stage and cluster, planned by dry
 * runs on the fields kubehyve manages, never taken over when someone else made them, pruned when
 * no longer rendered, and deleted by those labels only.
 */
import {
  type ArtifactRequest,
  applyStageObjects,
  changesOrRefusal,
  type Diagnostic,
  definePlugin,
  destroyStageObjects,
  diag,
  isReady,
  type KindRef,
  type KubeClient,
  type KubeObject,
  missingNote,
  type PluginContext,
  pending,
  pinnedManifests,
  planStageObjects,
  poll,
  type RenderedFile,
  stageOwner,
  stringifyYaml,
  withOwner,
} from "kubehyve";
import { exposeHops } from "./expose.ts";
import {
  httpGetOn,
  legacyIngressRoutes,
  loadBalancerAddress,
  pingThroughEntrypoint,
  traefikDeploymentReady,
} from "./hops.ts";
import {
  deployment,
  ingressClass,
  NAME,
  namespaceObject,
  pingRoute,
  rbacFor,
  service,
  serviceAccount,
  type TraefikInput,
} from "./manifests.ts";
import { meta } from "./meta.ts";
import type { TraefikOptions } from "./options.ts";
import { TRAEFIK_CRDS, TRAEFIK_RBAC, TRAEFIK_VERSION } from "./release.ts";

type Ctx = PluginContext<TraefikOptions>;

const WAIT_MS = 5 * 60_000;

/** Every kind this stage applies, for a `down` that has no record of them. */
export const KNOWN_KINDS: KindRef[] = [
  { apiVersion: "traefik.io/v1alpha1", kind: "IngressRoute" },
  { apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition" },
  { apiVersion: "v1", kind: "Namespace" },
  { apiVersion: "v1", kind: "ServiceAccount" },
  { apiVersion: "v1", kind: "Service" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding" },
  { apiVersion: "apps/v1", kind: "Deployment" },
  { apiVersion: "networking.k8s.io/v1", kind: "IngressClass" },
];

interface Group {
  title: string;
  /** Where render writes it. */
  path: string;
  objects: KubeObject[];
}

function input(ctx: Ctx): TraefikInput {
  return { namespace: ctx.options.namespace, replicas: ctx.options.replicas, address: ctx.options.address };
}

function where(ctx: Ctx): string {
  const at = ctx.options.address ? ` at ${ctx.options.address}` : "";
  return `in namespace ${ctx.options.namespace}${at} (entrypoints web :80, websecure :443)`;
}

/**
 * Every object of the stage, labelled, group by group in the order they are applied; with
 * `cachedOnly` (render) an upstream file not in the cache yet is left out and listed.
 */
async function rendered(
  ctx: Ctx,
  cachedOnly = false,
): Promise<{ groups: Group[]; missing: ArtifactRequest[] }> {
  const up = await pinnedManifests(ctx.artifacts, [TRAEFIK_CRDS, TRAEFIK_RBAC], {
    cachedOnly,
    signal: ctx.signal,
  });
  const upstream = (file: ArtifactRequest) => up.files.find((f) => f.file === file)?.objects ?? [];
  const inp = input(ctx);
  const owner = stageOwner(ctx);
  const mark = (objs: KubeObject[]) => objs.map((o) => withOwner(o, owner));
  const rbac = [namespaceObject(inp.namespace), serviceAccount(inp.namespace)];
  return {
    groups: [
      { title: `Traefik ${TRAEFIK_VERSION} CRDs`, path: "crds.yaml", objects: mark(upstream(TRAEFIK_CRDS)) },
      {
        title: `Traefik's namespace and RBAC`,
        path: "rbac.yaml",
        objects: mark([...rbac, ...rbacFor(upstream(TRAEFIK_RBAC), inp.namespace)]),
      },
      {
        title: `Traefik ${TRAEFIK_VERSION} ${where(ctx)}`,
        path: "traefik.yaml",
        objects: mark([deployment(inp), service(inp), ingressClass(), pingRoute(inp.namespace)]),
      },
    ],
    missing: up.missing,
  };
}

/** What applying the stage would change, and an error for objects of its names that are someone else's. */
async function planStage(ctx: Ctx, kube: KubeClient) {
  return planStageObjects(ctx, kube, (await rendered(ctx)).groups, {
    prefix: "traefik",
    what: "of Traefik's manifests",
    hint: "another Traefik (or an object of the same name) is on this cluster: remove it, or set stages.ingress.namespace to another namespace",
  });
}

function summary(ctx: Ctx): string {
  return `install Traefik ${TRAEFIK_VERSION} ${where(ctx)}`;
}

/** Another IngressClass marked default makes new Ingresses without a class ambiguous. */
async function otherDefaultClasses(ctx: Ctx): Promise<Diagnostic[]> {
  const kube = await ctx.kube();
  const classes = await kube.list("networking.k8s.io/v1", "IngressClass");
  return classes
    .filter(
      (c) =>
        c.metadata.name !== NAME &&
        c.metadata.annotations?.["ingressclass.kubernetes.io/is-default-class"] === "true",
    )
    .map((c) =>
      diag.warn(
        "traefik.other-default-class",
        `IngressClass ${c.metadata.name} is also marked default: Ingresses without a class are refused while two are`,
        {
          hint: `kubectl annotate ingressclass ${c.metadata.name} ingressclass.kubernetes.io/is-default-class-`,
        },
      ),
    );
}

export default definePlugin({
  ...meta,

  async check(ctx) {
    if (ctx.upstreamPending) {
      return { changes: [{ summary: summary(ctx), kind: "traefik.install" }], diagnostics: [] };
    }
    const kube = await ctx.kube();
    const { changes, findings } = await planStage(ctx, kube);
    const diagnostics = [
      ...findings,
      ...(await legacyIngressRoutes(kube)),
      ...(await otherDefaultClasses(ctx)),
    ];
    return { changes, diagnostics };
  },

  async apply(ctx, changes) {
    const kube = await ctx.kube();
    // A plan made before the cluster existed is carried out with what the cluster says now.
    const work = changes.some((c) => c.kind === "traefik.install")
      ? changesOrRefusal(await planStage(ctx, kube))
      : changes;
    const applied = await applyStageObjects(ctx, kube, work, "traefik");
    if (ctx.dryRun || !applied.length) return;
    const ns = ctx.options.namespace;
    await poll(
      `Deployment ${ns}/${NAME} ready`,
      async () => {
        const dep = await kube.get("apps/v1", "Deployment", NAME, ns);
        const r = dep ? isReady(dep) : { ready: false, reason: "not created yet" };
        return r.ready ? true : pending(r.reason);
      },
      { timeoutMs: WAIT_MS, intervalMs: 2000, signal: ctx.signal },
    );
    await poll(
      `an external address for Service ${ns}/${NAME}`,
      async () => {
        const { address, diagnostic } = await loadBalancerAddress(kube, ns);
        return address ? address : pending(diagnostic.summary);
      },
      { timeoutMs: WAIT_MS, intervalMs: 2000, signal: ctx.signal },
    );
  },

  async verify(ctx) {
    const kube = await ctx.kube();
    const ns = ctx.options.namespace;
    const out: Diagnostic[] = [await traefikDeploymentReady(kube, ns)];
    const lb = await loadBalancerAddress(kube, ns, ctx.options.address);
    out.push(lb.diagnostic);
    if (lb.address) out.push(await pingThroughEntrypoint(httpGetOn(ctx.host), lb.address, 80, ns));
    return out;
  },

  async render(ctx): Promise<RenderedFile[]> {
    const { groups, missing } = await rendered(ctx, true);
    return [
      ...groups
        .filter((g) => g.objects.length)
        .map((g) => ({ path: g.path, content: g.objects.map((o) => stringifyYaml(o)).join("---\n") })),
      ...(missing.length ? [{ path: "upstream-files.txt", content: missingNote(missing) }] : []),
    ];
  },

  async destroy(ctx) {
    await destroyStageObjects(ctx, await ctx.kube(), KNOWN_KINDS);
  },

  hooks: {
    // The exposure walk's hops this stage knows: its address, and its routing of the Host header.
    "expose:hops": exposeHops,
  },
});
