/**
 * lb/metallb: LoadBalancer addresses on the lab's LAN by MetalLB in layer 2 mode, installed from the
 * release's metallb-native.yaml, pinned by sha256. See README.md.
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
  hasErrors,
  isOwnedBy,
  type KindRef,
  KubeApiError,
  type KubeClient,
  KubehyveError,
  type KubeObject,
  KubeRequestError,
  KubeTransportError,
  kindsOf,
  listOwned,
  missingNote,
  type ObjectRef,
  type PlannedObject,
  type PluginContext,
  type RenderedFile,
  refOf,
  stringifyYaml,
  waitFor,
} from "kubehyve";
import { checkAgainstCluster } from "./addresses.ts";
import { exposeHops } from "./expose.ts";
import { collectHostDiagnostics, L2_HOST_HOOK } from "./host-hook.ts";
import { strictArpFinding } from "./kube-proxy.ts";
import {
  advertisementObject,
  configObjects,
  KNOWN_KINDS,
  METALLB_NAMESPACE,
  manifestRequest,
  ownerOf,
  poolObjects,
  upstreamObjects,
} from "./manifests.ts";
import { meta } from "./meta.ts";
import { announcedPools, type MetallbOptions } from "./options.ts";
import { componentDiagnostics, loadBalancerCanary } from "./verify.ts";

type Ctx = PluginContext<MetallbOptions>;

const KINDS_KEY = "appliedKinds";

function freshInstall(ctx: Ctx): Change {
  const pools = ctx.options.pools.map((p) => `${p.name} ${p.addresses.join(", ")}`).join("; ");
  return {
    kind: "metallb.install",
    summary: `install MetalLB ${ctx.options.version} (metallb-native.yaml) in layer 2 mode, pools ${pools}`,
  };
}

const isDiagnostic = (x: unknown): x is Diagnostic => typeof x === "object" && x !== null && "severity" in x;

async function client(ctx: Ctx): Promise<KubeClient | Diagnostic> {
  try {
    return await ctx.kube();
  } catch (error) {
    return diag.error("metallb.no-cluster", "there is no Kubernetes cluster to reach yet", {
      detail: (error as Error).message,
      hint: "kubehyve up",
    });
  }
}

function knownKinds(ctx: Ctx, current: readonly KubeObject[]): KindRef[] {
  return kindsOf([...(ctx.state.get<KindRef[]>(KINDS_KEY) ?? []), ...current]);
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
  try {
    return await inspect(ctx);
  } catch (error) {
    if (!(error instanceof KubeTransportError)) throw error;
    return {
      changes: [],
      diagnostics: [
        diag.error("metallb.api-unreachable", "the Kubernetes API does not answer", {
          detail: error.message,
          hint: "kubehyve doctor (is the control plane up?)",
        }),
      ],
    };
  }
}

async function inspect(ctx: Ctx): Promise<{ changes: Change[]; diagnostics: Diagnostic[] }> {
  const owner = ownerOf(ctx);
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
  const kube = await client(ctx);
  if (isDiagnostic(kube)) return { changes: [freshInstall(ctx)], diagnostics: [...host, kube] };
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
  const groups = [
    {
      kind: "metallb.apply-release",
      title: `MetalLB ${ctx.options.version} metallb-native.yaml`,
      objects: upstream,
    },
    {
      kind: "metallb.apply-config",
      title: "MetalLB's address pools and L2 advertisement",
      objects: configObjects(ctx),
    },
  ];
  const changes: Change[] = [];
  const foreign: string[] = [];
  for (const group of groups) {
    // Pools the rules above refuse would be refused by MetalLB's webhook too: said once, above.
    if (group.kind === "metallb.apply-config" && hasErrors(diagnostics)) continue;
    let planned: PlannedObject[];
    try {
      planned = await diffManifests(kube, group.objects, { owner });
    } catch (error) {
      if (group.kind !== "metallb.apply-config" || !(error instanceof KubeApiError)) throw error;
      diagnostics.push(
        diag.error(
          "metallb.config-refused",
          "the cluster refuses the address pools or the L2 advertisement",
          {
            detail: error.message,
            hint: `kubectl --kubeconfig ${ctx.kubeconfigPath} -n ${METALLB_NAMESPACE} get ipaddresspools,l2advertisements -o yaml`,
          },
        ),
      );
      continue;
    }
    foreign.push(...planned.filter((p) => p.action === "foreign").map((p) => describeRef(p.ref)));
    const line = describePlan(group.title, planned);
    if (!line) continue;
    const changed = new Set(
      planned.filter((p) => p.action === "create" || p.action === "update").map((p) => describeRef(p.ref)),
    );
    changes.push({
      kind: group.kind,
      ...line,
      data: group.objects.filter((o) => changed.has(describeRef(refOf(o)))),
    });
  }
  const all = groups.flatMap((g) => g.objects);
  const leftovers = await findLeftovers(kube, { owner, keep: all, kinds: knownKinds(ctx, all) });
  if (leftovers.length)
    changes.push({
      kind: "metallb.prune",
      summary: `delete ${leftovers.length === 1 ? describeRef(refOf(leftovers[0]!)) : `${leftovers.length} objects`} this stage applied before and no longer renders`,
      detail: leftovers.map((o) => `delete ${describeRef(refOf(o))}`).join("\n"),
      data: leftovers.map(refOf),
    });
  if (foreign.length)
    diagnostics.push(
      diag.error(
        "metallb.foreign-objects",
        `${foreign.length} object${foreign.length === 1 ? "" : "s"} this stage would apply already exist${foreign.length === 1 ? "s" : ""} without its labels: kubehyve does not take over what it did not make`,
        {
          detail: foreign.join("\n"),
          hint: "another install of MetalLB (or pools of the same names) is on this cluster: remove it, or rename the pools",
        },
      ),
    );
  return { changes, diagnostics: [...host, ...diagnostics] };
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
  const work = changes.some((c) => c.kind === "metallb.install") ? await recheck(ctx) : changes;
  const objects = work
    .filter((c) => c.kind?.startsWith("metallb.apply-"))
    .flatMap((c) => c.data as KubeObject[]);
  const kinds = knownKinds(ctx, objects);
  await ctx.wet(`record the kinds this stage applies: ${kinds.map((k) => k.kind).join(", ")}`, () =>
    ctx.state.set(KINDS_KEY, kinds),
  );
  const applyGroup = async (kind: string) => {
    for (const change of work.filter((c) => c.kind === kind))
      await ctx.wet(change.summary, () =>
        applyManifests(kube, change.data as KubeObject[], {
          signal: ctx.signal,
          onApplied: (o, i, n) => ctx.log.progress(`applied ${describeRef(refOf(o))}`, i, n),
        }),
      );
  };
  await applyGroup("metallb.apply-release");
  // The pools go through MetalLB's webhook, which answers only once the controller runs (and
  // refuses for a while after that: the client retries those refusals).
  if (!ctx.dryRun) await waitRunning(ctx, kube);
  await applyGroup("metallb.apply-config");
  for (const ref of work.filter((c) => c.kind === "metallb.prune").flatMap((c) => c.data as ObjectRef[])) {
    await ctx.wet(`delete ${describeRef(ref)}, which this stage no longer renders`, () =>
      deleteOwned(kube, ownerOf(ctx), ref),
    );
  }
}

async function verify(ctx: Ctx): Promise<Diagnostic[]> {
  const kube = await client(ctx);
  if (isDiagnostic(kube)) return [kube];
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
          canary.why === "proven"
            ? diag.info(
                "metallb.canary",
                `the LoadBalancer canary passed at ${canary.passedAt}, and nothing changed since: not run again`,
                { hint: "kubehyve up --only lb --canaries runs it again" },
              )
            : diag.info(
                "metallb.canary",
                "the LoadBalancer canary runs in kubehyve up only: it creates a pod and Services",
                {
                  hint: "kubehyve up --only lb",
                },
              ),
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
  const kube = await client(ctx);
  if (isDiagnostic(kube)) {
    ctx.log.info(`nothing to remove from a cluster: ${kube.detail ?? kube.summary}`);
    return;
  }
  const owner = ownerOf(ctx);
  const owned = deletionOrder(
    await listOwned(kube, owner, kindsOf([...knownKinds(ctx, []), ...KNOWN_KINDS])),
  );
  for (const o of owned)
    await ctx.wet(`delete ${describeRef(refOf(o))}`, () => deleteOwned(kube, owner, refOf(o)));
  await ctx.wet("forget the kinds this stage applied", () => ctx.state.delete(KINDS_KEY));
}

export const metallbPlugin = definePlugin({
  ...meta,
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
