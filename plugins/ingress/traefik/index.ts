/**
 * ingress/traefik: Traefik v3.7 as the cluster's ingress controller, reachable from the LAN through a
 * LoadBalancer Service that the lb stage gives an address. See README.md. One topic per file:
 *
 * - options.ts, ipv4.ts: the options block and the fixed-address rules
 * - release.ts: the pinned upstream CRDs and RBAC, and the image
 * - manifests.ts: the Deployment, Service, IngressClass and ping route, after the Helm chart
 * - objects.ts: labels, the plan (dry runs), the one apply, deletion by label
 * - hops.ts: each hop verify checks, reusable one by one
 */
import {
  type ArtifactRequest,
  type Change,
  type Diagnostic,
  definePlugin,
  diag,
  isReady,
  type KubeObject,
  type PluginContext,
  pending,
  poll,
  type RenderedFile,
  stringifyYaml,
} from "kubehyve";
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
import { applyObjects, deleteOwned, labelled, planObjects, refOf, stageLabels } from "./objects.ts";
import { type TraefikOptions, TraefikOptionsSchema, validateTraefik } from "./options.ts";
import { missingNote, TRAEFIK_VERSION, upstreamObjects } from "./release.ts";

type Ctx = PluginContext<TraefikOptions>;

const WAIT_MS = 5 * 60_000;

interface Rendered {
  crds: KubeObject[];
  rbac: KubeObject[];
  traefik: KubeObject[];
  missing: ArtifactRequest[];
}

function input(ctx: Ctx): TraefikInput {
  return { namespace: ctx.options.namespace, replicas: ctx.options.replicas, address: ctx.options.address };
}

/** Every object of the stage, labelled, in the order they are applied. */
async function rendered(ctx: Ctx, cachedOnly = false): Promise<Rendered> {
  const up = await upstreamObjects(ctx, { cachedOnly });
  const labels = stageLabels(ctx.plugin.slot, ctx.clusterId);
  const inp = input(ctx);
  const mark = (objs: KubeObject[]) => objs.map((o) => labelled(o, labels));
  return {
    crds: mark(up.crds),
    rbac: mark([
      namespaceObject(inp.namespace),
      serviceAccount(inp.namespace),
      ...rbacFor(up.rbac, inp.namespace),
    ]),
    traefik: mark([deployment(inp), service(inp), ingressClass(), pingRoute(inp.namespace)]),
    missing: up.missing,
  };
}

const all = (r: Rendered) => [...r.crds, ...r.rbac, ...r.traefik];

function summary(ctx: Ctx): string {
  const where = ctx.options.address ? ` at ${ctx.options.address}` : "";
  return `install Traefik ${TRAEFIK_VERSION} in namespace ${ctx.options.namespace}${where} (entrypoints web :80, websecure :443)`;
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
  id: "ingress/traefik",
  title: "Traefik ingress controller",
  apiVersion: 1,
  version: TRAEFIK_VERSION,
  after: ["k8s", "net", "lb"],
  options: TraefikOptionsSchema,
  validate: (inp) => validateTraefik(inp),

  async check(ctx) {
    if (ctx.upstreamPending) {
      return { changes: [{ summary: summary(ctx), kind: "traefik.apply" }], diagnostics: [] };
    }
    const kube = await ctx.kube();
    const objects = all(await rendered(ctx));
    const plan = await planObjects(kube, objects);
    const diagnostics = [...(await legacyIngressRoutes(kube)), ...(await otherDefaultClasses(ctx))];
    const changes: Change[] = [];
    if (plan.length) {
      const created = plan.filter((p) => p.action === "create").length;
      changes.push({
        summary: `${summary(ctx)}: ${created} objects to create, ${plan.length - created} to change`,
        kind: "traefik.apply",
        detail: plan.map((p) => `${p.action} ${refOf(p.obj).kind} ${p.obj.metadata.name}`).join("\n"),
      });
    }
    return { changes, diagnostics };
  },

  async apply(ctx, changes) {
    if (!changes.some((c) => c.kind === "traefik.apply")) return;
    const objects = all(await rendered(ctx));
    await ctx.wet(`apply ${objects.length} Traefik objects`, () => applyObjects(ctx, objects));
    if (ctx.dryRun) return;
    const kube = await ctx.kube();
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
    const r = await rendered(ctx, true);
    const yaml = (objs: KubeObject[]) => objs.map((o) => stringifyYaml(o)).join("---\n");
    return [
      ...(r.crds.length ? [{ path: "crds.yaml", content: yaml(r.crds) }] : []),
      { path: "rbac.yaml", content: yaml(r.rbac) },
      { path: "traefik.yaml", content: yaml(r.traefik) },
      ...(r.missing.length ? [{ path: "upstream-files.txt", content: missingNote(r.missing) }] : []),
    ];
  },

  async destroy(ctx) {
    const objects = all(await rendered(ctx));
    await deleteOwned(ctx, objects, stageLabels(ctx.plugin.slot, ctx.clusterId));
  },
});
