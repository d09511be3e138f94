/**
 * lb/metallb: LoadBalancer addresses on the lab's LAN by MetalLB in layer 2 mode, installed from the
 * release's metallb-native.yaml, pinned by sha256. See README.md.
 *
 * Its objects are owned the way every add-on stage owns them (planStageObjects, applyStageObjects
 * and destroyStageObjects of the plugin API): labelled with the stage and cluster, planned by dry
 * runs on the fields kubehyve manages, never taken over when someone else made them, pruned when
 * no longer rendered, and deleted by those labels only.
 */
import {
  applyStageObjects,
  type Change,
  canaryNotRun,
  changesOrRefusal,
  checkReachable,
  type Diagnostic,
  definePlugin,
  destroyStageObjects,
  diag,
  hasErrors,
  isOwnedBy,
  isStageFinding,
  type KubeClient,
  type KubeObject,
  KubeRequestError,
  missingNote,
  type PluginContext,
  planStageObjects,
  type RenderedFile,
  type StageGroup,
  stageCluster,
  stageOwner,
  stringifyYaml,
  waitFor,
} from "kubehyve";
import { checkAgainstCluster } from "./addresses.ts";
import { exposeHops } from "./expose.ts";
import { collectHostDiagnostics, L2_HOST_HOOK, l2HostAnswer } from "./host-hook.ts";
import { strictArpFinding } from "./kube-proxy.ts";
import {
  advertisementObject,
  configObjects,
  KNOWN_KINDS,
  METALLB_NAMESPACE,
  manifestRequest,
  poolObjects,
  upstreamObjects,
} from "./manifests.ts";
import { meta } from "./meta.ts";
import { announcedPools, type MetallbOptions } from "./options.ts";
import { componentDiagnostics, loadBalancerCanary } from "./verify.ts";

type Ctx = PluginContext<MetallbOptions>;

function freshInstall(ctx: Ctx): Change {
  const pools = ctx.options.pools.map((p) => `${p.name} ${p.addresses.join(", ")}`).join("; ");
  return {
    kind: "metallb.install",
    summary: `install MetalLB ${ctx.options.version} (metallb-native.yaml) in layer 2 mode, pools ${pools}`,
  };
}

/** A list the cluster may not serve yet (before MetalLB's CRDs): empty then. */
async function listOrNone(kube: KubeClient, apiVersion: string, kind: string, namespace?: string) {
  try {
    return await kube.list(apiVersion, kind, namespace ? { namespace } : {});
  } catch (error) {
    if (error instanceof KubeRequestError) return [];
    throw error;
  }
}

/** check, with a cluster whose API stops answering half-way a finding rather than a failed phase. */
async function check(ctx: Ctx): Promise<{ changes: Change[]; diagnostics: Diagnostic[] }> {
  return checkReachable("metallb", () => inspect(ctx));
}

async function inspect(ctx: Ctx): Promise<{ changes: Change[]; diagnostics: Diagnostic[] }> {
  const owner = stageOwner(ctx);
  const ours = { pools: poolObjects(ctx.options), advertisement: advertisementObject(ctx.options) };
  const common = {
    options: ctx.options,
    kubeconfigPath: ctx.kubeconfigPath,
    ours,
    isOurs: (o: KubeObject) => isOwnedBy(o, owner),
  };
  if (ctx.upstreamPending) {
    // A fresh cluster has nothing else: what the pools need from it is decided by the file alone.
    const diagnostics = checkAgainstCluster({ ...common, livePools: [], liveAdvertisements: [], nodes: [] });
    return { changes: [freshInstall(ctx)], diagnostics };
  }
  // The host's side of layer 2, from whichever stage knows the host (read-only commands there).
  const host = collectHostDiagnostics(
    await ctx.hooks.call(L2_HOST_HOOK, {
      subnet: ctx.cluster.network.subnet,
      addresses: ctx.options.pools.flatMap((p) => p.addresses),
    }),
  );
  const kube = await stageCluster(ctx, "metallb");
  if (isStageFinding(kube)) return { changes: [freshInstall(ctx)], diagnostics: [...host, kube] };
  const diagnostics = checkAgainstCluster({
    ...common,
    livePools: await listOrNone(kube, "metallb.io/v1beta1", "IPAddressPool", METALLB_NAMESPACE),
    liveAdvertisements: await listOrNone(kube, "metallb.io/v1beta1", "L2Advertisement", METALLB_NAMESPACE),
    nodes: await kube.list("v1", "Node"),
  });
  diagnostics.push(
    ...strictArpFinding(await kube.get("v1", "ConfigMap", "kube-proxy", "kube-system"), ctx.kubeconfigPath),
  );
  const upstream = (await upstreamObjects(ctx))!;
  const groups: StageGroup[] = [
    {
      kind: "metallb.apply-release",
      title: `MetalLB ${ctx.options.version} metallb-native.yaml`,
      objects: upstream,
    },
    {
      kind: "metallb.apply-config",
      title: "MetalLB's address pools and L2 advertisement",
      objects: configObjects(ctx),
      // Pools the rules above refuse would be refused by MetalLB's webhook too: said once, above.
      skip: hasErrors(diagnostics),
      refused: (error) => ({
        code: "metallb.config-refused",
        severity: "error",
        summary: "the cluster refuses the address pools or the L2 advertisement",
        detail: error.message,
        hint: `kubectl --kubeconfig ${ctx.kubeconfigPath} -n ${METALLB_NAMESPACE} get ipaddresspools,l2advertisements -o yaml`,
      }),
    },
  ];
  const { changes, findings } = await planStageObjects(ctx, kube, groups, {
    prefix: "metallb",
    hint: "another install of MetalLB (or pools of the same names) is on this cluster: remove it, or rename the pools",
  });
  return { changes, diagnostics: [...host, ...diagnostics, ...findings] };
}

async function waitRunning(ctx: Ctx, kube: KubeClient): Promise<void> {
  const opts = { timeoutMs: ctx.options.readyTimeoutSec * 1000, signal: ctx.signal };
  await waitFor(
    kube,
    { apiVersion: "apps/v1", kind: "Deployment", name: "controller", namespace: METALLB_NAMESPACE },
    opts,
  );
  await waitFor(
    kube,
    { apiVersion: "apps/v1", kind: "DaemonSet", name: "speaker", namespace: METALLB_NAMESPACE },
    opts,
  );
}

/**
 * check again, now that the cluster can be read: all of it, since the pools' rules that need the
 * cluster and the host's side of layer 2 stop an apply as well as someone else's objects do.
 */
async function recheck(ctx: Ctx): Promise<Change[]> {
  const { changes, diagnostics } = await check(ctx);
  return changesOrRefusal({ changes, findings: diagnostics });
}

async function apply(ctx: Ctx, changes: Change[]): Promise<void> {
  const kube = await ctx.kube();
  // A plan made before the cluster existed is carried out with what the cluster says now.
  const work = changes.some((c) => c.kind === "metallb.install") ? await recheck(ctx) : changes;
  // The pools go through MetalLB's webhook, which answers only once the controller runs (and
  // refuses for a while after that: the client retries those refusals).
  const controllerFirst = (kind: string) => async (_: KubeObject[], change: Change) => {
    if (change.kind === kind) await waitRunning(ctx, kube);
  };
  await applyStageObjects(ctx, kube, work, "metallb", {
    afterApply: controllerFirst("metallb.apply-release"),
    beforeApply: controllerFirst("metallb.apply-config"),
  });
}

async function verify(ctx: Ctx): Promise<Diagnostic[]> {
  const kube = await stageCluster(ctx, "metallb");
  if (isStageFinding(kube)) return [kube];
  let found: Diagnostic[];
  try {
    found = await componentDiagnostics(ctx, kube);
  } catch (error) {
    return [
      diag.error("metallb.api-unreachable", `the Kubernetes API at ${kube.server} does not answer`, {
        detail: (error as Error).message,
        hint: "kubehyve doctor",
      }),
    ];
  }
  if (found.some((d) => d.severity === "error")) {
    found.push(
      diag.info("metallb.canary", "the LoadBalancer canary was not run: MetalLB is not ready", {
        hint: "fix what is above, then: kubehyve up --only lb",
      }),
    );
    return found;
  }
  const canary = await ctx.canary(
    {
      name: "load-balancer",
      description: `run the LoadBalancer canary: a Service per pool (${announcedPools(ctx.options).join(", ")}), fetched from the hypervisor host`,
      passed: (r) => r.cleanedUp && r.found.every((d) => d.severity === "ok"),
    },
    () => loadBalancerCanary(ctx, kube),
  );
  found.push(
    ...(canary.ran
      ? canary.result.found
      : [
          canaryNotRun(canary, {
            code: "metallb.canary",
            what: "the LoadBalancer canary",
            slot: ctx.plugin.slot,
            creates: "a pod and Services",
          }),
        ]),
  );
  return found;
}

async function render(ctx: Ctx): Promise<RenderedFile[]> {
  const upstream = await upstreamObjects(ctx, { cachedOnly: true });
  const req = manifestRequest(ctx.options);
  return [
    upstream
      ? { path: "manifests/10-metallb-native.yaml", content: toYaml(upstream), mode: 0o644 }
      : { path: "manifests/10-metallb-native.yaml.missing", content: missingNote([req]), mode: 0o644 },
    { path: "manifests/20-address-pools.yaml", content: toYaml(configObjects(ctx)), mode: 0o644 },
  ];
}

function toYaml(objects: readonly KubeObject[]): string {
  return objects.map((o) => stringifyYaml(o)).join("---\n");
}

async function destroy(ctx: Ctx): Promise<void> {
  const kube = await stageCluster(ctx, "metallb");
  if (isStageFinding(kube)) {
    ctx.log.info(`nothing to remove from a cluster: ${kube.detail ?? kube.summary}`);
    return;
  }
  await destroyStageObjects(ctx, kube, KNOWN_KINDS, { madeByStage: madeByMetallb });
}

/**
 * What MetalLB's own components write in its namespace, which goes with the stage at `down` and
 * keeps neither the namespace nor a CRD: the controller's and each speaker's report on the
 * configuration, ConfigurationState `controller` and `speaker-<node>` (metallb v0.16.1
 * internal/k8s/controllers/configuration_state_controller.go), and the speakers' ServiceL2Status
 * of each address they announce (api/v1beta1/servicel2status_types.go). The memberlist Secret the
 * controller makes carries an ownerReference to its Deployment (internal/k8s/k8s.go
 * CreateMlSecret), and goes with it.
 */
export function madeByMetallb(obj: KubeObject): boolean {
  return (
    obj.apiVersion.startsWith("metallb.io/") &&
    obj.metadata.namespace === METALLB_NAMESPACE &&
    (obj.kind === "ConfigurationState" || obj.kind === "ServiceL2Status")
  );
}

export const metallbPlugin = definePlugin({
  ...meta,
  hookAnswers: { [L2_HOST_HOOK]: l2HostAnswer },
  check,
  apply,
  verify,
  render,
  destroy,
  hooks: {
    // With IPVS and strictARP off, every node answers ARP for every LoadBalancer address (Kubespray's
    // docs/ingress/metallb.md; its roles/kubernetes-apps/metallb asserts the same).
    "k8s:kubespray-vars": () => ({ kube_proxy_strict_arp: true }),
    // The exposure walk's hop this stage knows: the address answering from the host.
    "expose:hops": exposeHops,
  },
});

export default metallbPlugin;
