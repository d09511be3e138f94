/**
 * net/calico: pod networking by Calico, installed through the tigera operator from the release's
 * own manifests, pinned by sha256. See README.md.
 */
import {
  applyManifests,
  type Change,
  type Diagnostic,
  definePlugin,
  deleteOwned,
  deletionOrder,
  describePlan,
  describeRef,
  diag,
  diffManifests,
  findLeftovers,
  type KindRef,
  type KubeClient,
  KubehyveError,
  type KubeObject,
  KubeTransportError,
  kindsOf,
  listOwned,
  missingNote,
  type ObjectRef,
  type PluginContext,
  pending,
  poll,
  type RenderedFile,
  refOf,
  stringifyYaml,
} from "kubehyve";
import { customResources, KNOWN_KINDS, ownerOf, upstreamManifests } from "./manifests.ts";
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

/** The kinds this stage applied, kept in its state so that pruning and `down` look there. */
const KINDS_KEY = "appliedKinds";

interface Group {
  title: string;
  objects: KubeObject[];
}

async function groupsOf(ctx: Ctx): Promise<Group[]> {
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

async function client(ctx: Ctx): Promise<KubeClient | Diagnostic> {
  try {
    return await ctx.kube();
  } catch (error) {
    return diag.error("calico.no-cluster", "there is no Kubernetes cluster to reach yet", {
      detail: (error as Error).message,
      hint: "kubehyve up",
    });
  }
}

const isDiagnostic = (x: unknown): x is Diagnostic => typeof x === "object" && x !== null && "severity" in x;

function knownKinds(ctx: Ctx, current: readonly KubeObject[]): KindRef[] {
  return kindsOf([...(ctx.state.get<KindRef[]>(KINDS_KEY) ?? []), ...current]);
}

/** check, with a cluster whose API stops answering half-way a finding rather than a failed phase. */
async function check(ctx: Ctx): Promise<{ changes: Change[]; diagnostics: Diagnostic[] }> {
  try {
    return await inspect(ctx);
  } catch (error) {
    if (!(error instanceof KubeTransportError)) throw error;
    return {
      changes: [],
      diagnostics: [
        diag.error("calico.api-unreachable", "the Kubernetes API does not answer", {
          detail: error.message,
          hint: "kubehyve doctor (is the control plane up?)",
        }),
      ],
    };
  }
}

async function inspect(ctx: Ctx): Promise<{ changes: Change[]; diagnostics: Diagnostic[] }> {
  if (ctx.upstreamPending) return { changes: [freshInstall(ctx)], diagnostics: [] };
  const kube = await client(ctx);
  if (isDiagnostic(kube)) return { changes: [freshInstall(ctx)], diagnostics: [kube] };
  const groups = await groupsOf(ctx);
  const changes: Change[] = [];
  const foreign: string[] = [];
  for (const group of groups) {
    const planned = await diffManifests(kube, group.objects, { owner: ownerOf(ctx) });
    foreign.push(...planned.filter((p) => p.action === "foreign").map((p) => describeRef(p.ref)));
    const line = describePlan(group.title, planned);
    if (!line) continue;
    const changed = new Set(
      planned.filter((p) => p.action === "create" || p.action === "update").map((p) => describeRef(p.ref)),
    );
    changes.push({
      kind: "calico.apply",
      ...line,
      data: group.objects.filter((o) => changed.has(describeRef(refOf(o)))),
    });
  }
  const all = groups.flatMap((g) => g.objects);
  const leftovers = await findLeftovers(kube, {
    owner: ownerOf(ctx),
    keep: all,
    kinds: knownKinds(ctx, all),
  });
  if (leftovers.length) {
    changes.push({
      kind: "calico.prune",
      summary: `delete ${leftovers.length === 1 ? describeRef(refOf(leftovers[0]!)) : `${leftovers.length} objects`} this stage applied before and no longer renders`,
      detail: leftovers.map((o) => `delete ${describeRef(refOf(o))}`).join("\n"),
      data: leftovers.map(refOf),
    });
  }
  const diagnostics: Diagnostic[] = [];
  if (foreign.length)
    diagnostics.push(
      diag.error(
        "calico.foreign-objects",
        `${foreign.length} object${foreign.length === 1 ? "" : "s"} of Calico's manifests already exist${foreign.length === 1 ? "s" : ""} without this stage's labels: kubehyve does not take over what it did not make`,
        {
          detail: foreign.join("\n"),
          hint: "another install of Calico (or of the tigera operator) is on this cluster: remove it first, then kubehyve up",
        },
      ),
    );
  return { changes, diagnostics };
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

/** check again, now that the cluster can be read; what it finds wrong stops the apply. */
async function recheck(ctx: Ctx): Promise<Change[]> {
  const { changes, diagnostics } = await check(ctx);
  const error = diagnostics.find((d) => d.severity === "error");
  if (error) throw new KubehyveError(`${error.summary}${error.hint ? ` (${error.hint})` : ""}`);
  return changes;
}

async function apply(ctx: Ctx, changes: Change[]): Promise<void> {
  const kube = await ctx.kube();
  // A plan made before the cluster existed is carried out with what the cluster says now.
  const work = changes.some((c) => c.kind === "calico.install") ? await recheck(ctx) : changes;
  const objects = work.filter((c) => c.kind === "calico.apply").flatMap((c) => c.data as KubeObject[]);
  // Recorded before anything is applied: a run that stops half-way still knows where to prune.
  const kinds = knownKinds(ctx, objects);
  await ctx.wet(`record the kinds this stage applies: ${kinds.map((k) => k.kind).join(", ")}`, () =>
    ctx.state.set(KINDS_KEY, kinds),
  );
  for (const change of work.filter((c) => c.kind === "calico.apply")) {
    await ctx.wet(change.summary, () =>
      applyManifests(kube, change.data as KubeObject[], {
        signal: ctx.signal,
        onApplied: (o, i, n) => ctx.log.progress(`applied ${describeRef(refOf(o))}`, i, n),
      }),
    );
  }
  for (const ref of work.filter((c) => c.kind === "calico.prune").flatMap((c) => c.data as ObjectRef[])) {
    await ctx.wet(`delete ${describeRef(ref)}, which this stage no longer renders`, () =>
      deleteOwned(kube, ownerOf(ctx), ref),
    );
  }
  if (!ctx.dryRun && objects.length) await waitAvailable(ctx, kube);
}

async function verify(ctx: Ctx): Promise<Diagnostic[]> {
  const kube = await client(ctx);
  if (isDiagnostic(kube)) return [kube];
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
      : canary.why === "proven"
        ? diag.info(
            "calico.pod-network",
            `the pod network canary passed at ${canary.passedAt}, and nothing changed since: not run again`,
            { hint: "kubehyve up --only net --canaries runs it again" },
          )
        : diag.info(
            "calico.pod-network",
            "the pod network canary runs in kubehyve up only: it creates two pods",
            {
              hint: "kubehyve up --only net",
            },
          ),
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
  const kube = await client(ctx);
  if (isDiagnostic(kube)) {
    ctx.log.info(`nothing to remove from a cluster: ${kube.detail ?? kube.summary}`);
    return;
  }
  const owner = ownerOf(ctx);
  const kinds = kindsOf([...knownKinds(ctx, []), ...KNOWN_KINDS, { apiVersion: "v1", kind: "Pod" }]);
  const owned = deletionOrder(await listOwned(kube, owner, kinds));
  const isOperatorResource = (o: KubeObject) => o.apiVersion.startsWith("operator.tigera.io/");
  for (const o of owned.filter(isOperatorResource)) {
    await ctx.wet(`delete ${describeRef(refOf(o))}`, () => deleteOwned(kube, owner, refOf(o)));
  }
  if (!ctx.dryRun && owned.some(isOperatorResource)) {
    // The operator removes what it made (calico-system) only while it still runs.
    await poll(
      `the tigera operator to remove namespace ${CALICO_NAMESPACE}`,
      async () =>
        (await kube.get("v1", "Namespace", CALICO_NAMESPACE))
          ? pending(`namespace ${CALICO_NAMESPACE} is still there`)
          : true,
      { timeoutMs: ctx.options.readyTimeoutSec * 1000, intervalMs: 2000, signal: ctx.signal },
    );
  }
  for (const o of owned.filter((x) => !isOperatorResource(x))) {
    await ctx.wet(`delete ${describeRef(refOf(o))}`, () => deleteOwned(kube, owner, refOf(o)));
  }
  await ctx.wet("forget the kinds this stage applied", () => ctx.state.delete(KINDS_KEY));
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
