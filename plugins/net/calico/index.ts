/**
 * net/calico: pod networking by Calico, installed through the tigera operator from the release's
 * own manifests, pinned by sha256. See README.md.
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
  isStageFinding,
  type KubeClient,
  type KubeObject,
  missingNote,
  type PluginContext,
  pending,
  planStageObjects,
  poll,
  type RenderedFile,
  type StageGroup,
  stageCluster,
  stringifyYaml,
} from "kubehyve";
import { customResources, KNOWN_KINDS, madeByCalico, upstreamManifests } from "./manifests.ts";
import { meta } from "./meta.ts";
import { calicoNodeFiles } from "./node-files.ts";
import { type CalicoOptions, MANIFESTS } from "./options.ts";
import {
  CALICO_NAMESPACE,
  COMPONENTS,
  componentDiagnostics,
  componentVerdict,
  nodeAgentDiagnostics,
  podNetworkCanary,
} from "./verify.ts";

type Ctx = PluginContext<CalicoOptions>;

/** The release's manifests in their order (CRDs first, then the operator), then the custom resources. */
async function groupsOf(ctx: Ctx): Promise<StageGroup[]> {
  const { manifests } = await upstreamManifests(ctx);
  return [
    ...manifests.map((m) => ({ title: `Calico ${ctx.options.version} ${m.name}`, objects: m.objects })),
    { title: "Calico's custom resources", objects: customResources(ctx) },
  ];
}

function freshInstall(ctx: Ctx): Change {
  const { network } = ctx.cluster;
  return {
    kind: "calico.install",
    summary: `install Calico ${ctx.options.version} by the tigera operator (${MANIFESTS.join(", ")}): pod CIDR ${network.podCidr}, ${ctx.options.encapsulation}, node addresses from ${network.subnet}${ctx.options.apiServer ? ", with its API server" : ""}`,
  };
}

/** What applying the stage would change, and an error for objects of its names that are someone else's. */
async function planStage(ctx: Ctx, kube: KubeClient) {
  return planStageObjects(ctx, kube, await groupsOf(ctx), {
    prefix: "calico",
    what: "of Calico's manifests",
    hint: "another install of Calico (or of the tigera operator) is on this cluster: remove it first, then kubehyve up",
  });
}

/** check, with a cluster whose API stops answering half-way a finding rather than a failed phase. */
async function check(ctx: Ctx): Promise<{ changes: Change[]; diagnostics: Diagnostic[] }> {
  return checkReachable("calico", () => inspect(ctx));
}

async function inspect(ctx: Ctx): Promise<{ changes: Change[]; diagnostics: Diagnostic[] }> {
  if (ctx.upstreamPending) return { changes: [freshInstall(ctx)], diagnostics: [] };
  const kube = await stageCluster(ctx, "calico");
  if (isStageFinding(kube)) return { changes: [freshInstall(ctx)], diagnostics: [kube] };
  const { changes, findings } = await planStage(ctx, kube);
  return { changes, diagnostics: findings };
}

async function waitAvailable(ctx: Ctx, kube: KubeClient): Promise<void> {
  const names = COMPONENTS(ctx.options);
  await poll(
    `TigeraStatus ${names.join(" and ")} to report Available`,
    async () => {
      for (const name of names) {
        const verdict = componentVerdict(await kube.get("operator.tigera.io/v1", "TigeraStatus", name));
        if (!verdict.ok) return pending(`${name}: ${verdict.why}`);
      }
      return true;
    },
    { timeoutMs: ctx.options.readyTimeoutSec * 1000, intervalMs: 2000, signal: ctx.signal },
  );
}

async function apply(ctx: Ctx, changes: Change[]): Promise<void> {
  const kube = await ctx.kube();
  // A plan made before the cluster existed is carried out with what the cluster says now.
  const work = changes.some((c) => c.kind === "calico.install")
    ? changesOrRefusal(await planStage(ctx, kube))
    : changes;
  const applied = await applyStageObjects(ctx, kube, work, "calico");
  if (!ctx.dryRun && applied.length) await waitAvailable(ctx, kube);
}

async function verify(ctx: Ctx): Promise<Diagnostic[]> {
  const kube = await stageCluster(ctx, "calico");
  if (isStageFinding(kube)) return [kube];
  const found: Diagnostic[] = [];
  try {
    found.push(...(await componentDiagnostics(ctx, kube)));
    found.push(...(await nodeAgentDiagnostics(ctx, kube)));
  } catch (error) {
    return [
      ...found,
      diag.error("calico.api-unreachable", `the Kubernetes API at ${kube.server} does not answer`, {
        detail: (error as Error).message,
        hint: "kubehyve doctor",
      }),
    ];
  }
  if (found.some((d) => d.severity === "error")) {
    found.push(
      diag.info("calico.pod-network", "the pod network canary was not run: Calico is not ready", {
        hint: "fix what is above, then: kubehyve up --only net",
      }),
    );
    return found;
  }
  const canary = await ctx.canary(
    {
      name: "pod-network",
      description: "run the pod network canary: a pod connects to a pod on another node",
      passed: (r) => r.found.severity === "ok" && r.cleanedUp,
    },
    () => podNetworkCanary(ctx, kube),
  );
  found.push(
    canary.ran
      ? canary.result.found
      : canaryNotRun(canary, {
          code: "calico.pod-network",
          what: "the pod network canary",
          slot: ctx.plugin.slot,
          creates: "two pods",
        }),
  );
  return found;
}

async function render(ctx: Ctx): Promise<RenderedFile[]> {
  const files: RenderedFile[] = [];
  const { manifests, missing } = await upstreamManifests(ctx, { cachedOnly: true });
  MANIFESTS.forEach((name, i) => {
    const path = `manifests/${10 * (i + 1)}-${name}`;
    const m = manifests.find((c) => c.name === name);
    if (m) files.push({ path, content: toYaml(m.objects), mode: 0o644 });
    else
      files.push({
        path: `${path}.missing`,
        content: missingNote(missing.filter((f) => f.manifest === name)),
        mode: 0o644,
      });
  });
  files.push({
    path: "manifests/30-custom-resources.yaml",
    content: toYaml(customResources(ctx)),
    mode: 0o644,
  });
  return files;
}

function toYaml(objects: readonly KubeObject[]): string {
  return objects.map((o) => stringifyYaml(o)).join("---\n");
}

async function destroy(ctx: Ctx): Promise<void> {
  const kube = await stageCluster(ctx, "calico");
  if (isStageFinding(kube)) {
    ctx.log.info(`nothing to remove from a cluster: ${kube.detail ?? kube.summary}`);
    return;
  }
  await destroyStageObjects(ctx, kube, [...KNOWN_KINDS, { apiVersion: "v1", kind: "Pod" }], {
    madeByStage: madeByCalico,
    // The operator removes what it made (calico-system) only while it still runs.
    afterCustomResources: async () => {
      await poll(
        `the tigera operator to remove namespace ${CALICO_NAMESPACE}`,
        async () =>
          (await kube.get("v1", "Namespace", CALICO_NAMESPACE))
            ? pending(`namespace ${CALICO_NAMESPACE} is still there`)
            : true,
        { timeoutMs: ctx.options.readyTimeoutSec * 1000, intervalMs: 2000, signal: ctx.signal },
      );
    },
  });
}

export const calicoPlugin = definePlugin({
  ...meta,
  check,
  apply,
  verify,
  render,
  destroy,
  hooks: {
    // Kubespray then prepares the nodes for a CNI without installing its own Calico beside the operator's.
    "k8s:kubespray-vars": () => ({ kube_network_plugin: "cni" }),
    "os:node-files": () => ({ files: calicoNodeFiles() }),
  },
});

export default calicoPlugin;
