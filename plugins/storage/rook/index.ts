/**
 * storage/rook: Rook v1.20 with Ceph Tentacle on the nodes' extra data disks, and the default
 * StorageClass rook-ceph-block. See README.md. One topic per file:
 *
 * - options.ts, sizing.ts: the options block, the lab-sized cluster and its static rules
 * - release.ts: the four pinned upstream files, in the documented order
 * - manifests.ts: CephCluster, CephBlockPool(s), StorageClass, the canary
 * - disks.ts, nodes.ts: what check asks every node, and the parsers of its answers
 * - health.ts: the CephCluster's health, code by code, with what to do
 *
 * Its objects are owned the way every add-on stage owns them (planStageObjects, applyStageObjects
 * and destroyStageObjects of the plugin API): labelled with the stage and cluster, planned by dry
 * runs on the fields kubehyve manages, never taken over when someone else made them, pruned when
 * no longer rendered, and deleted by those labels only.
 */
import { randomBytes } from "node:crypto";
import {
  applyManifests,
  applyStageObjects,
  type Change,
  canaryNotRun,
  changesOrRefusal,
  checkEach,
  type Diagnostic,
  definePlugin,
  deleteOwned,
  describeRef,
  destroyStageObjects,
  diag,
  isOwnedBy,
  isReady,
  type KindRef,
  type KubeClient,
  type KubeObject,
  KubeRequestError,
  missingNote,
  type ObjectRef,
  type PluginContext,
  pending,
  pinnedManifests,
  planStageObjects,
  poll,
  type RenderedFile,
  refOf,
  stageOwner,
  stringifyYaml,
  withOwner,
} from "kubehyve";
import { cephHealth } from "./health.ts";
import {
  blockPools,
  CANARY,
  CLUSTER_NAME,
  canaryClaim,
  canaryPod,
  cephCluster,
  STORAGE_CLASS,
  storageClass,
} from "./manifests.ts";
import { meta } from "./meta.ts";
import {
  type ClockReading,
  checkDataDisks,
  checkFlexVolume,
  checkRbdModule,
  clockSkew,
  readClock,
} from "./nodes.ts";
import { type RookOptions, redundancyNotice } from "./options.ts";
import { NAMESPACE, ROOK_FILES, ROOK_VERSION } from "./release.ts";
import { monCount, osdDisks, poolReplicas } from "./sizing.ts";

type Ctx = PluginContext<RookOptions>;

const WAIT_MS = 15 * 60_000;

/** Every kind this stage applies (the canary's too), for a `down` that has no record of them. */
export const KNOWN_KINDS: KindRef[] = [
  { apiVersion: "ceph.rook.io/v1", kind: "CephCluster" },
  { apiVersion: "ceph.rook.io/v1", kind: "CephBlockPool" },
  { apiVersion: "csi.ceph.io/v1", kind: "Driver" },
  { apiVersion: "csi.ceph.io/v1", kind: "OperatorConfig" },
  { apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition" },
  { apiVersion: "v1", kind: "Namespace" },
  { apiVersion: "v1", kind: "ServiceAccount" },
  { apiVersion: "v1", kind: "ConfigMap" },
  { apiVersion: "v1", kind: "PersistentVolumeClaim" },
  { apiVersion: "v1", kind: "Pod" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding" },
  { apiVersion: "apps/v1", kind: "Deployment" },
  { apiVersion: "storage.k8s.io/v1", kind: "StorageClass" },
];

/** The operators, each waited for once applied: what they serve comes after them (quickstart.md). */
const OPERATORS = ["ceph-csi-controller-manager", "rook-ceph-operator"];

interface Group {
  /** The file render writes: `<group>.yaml`. */
  group: string;
  title: string;
  objects: KubeObject[];
}

/**
 * Every object of the stage, labelled, group by group in the order they are applied; with
 * `cachedOnly` (render) an upstream file not in the cache yet is left out and listed.
 */
async function rendered(ctx: Ctx, cachedOnly = false) {
  const owner = stageOwner(ctx);
  const mark = (objs: KubeObject[]) => objs.map((o) => withOwner(o, owner));
  const upstream = await pinnedManifests(ctx.artifacts, ROOK_FILES, { cachedOnly, signal: ctx.signal });
  const groups: Group[] = [
    ...upstream.files.map(({ file, objects }) => ({
      group: file.group,
      title: `Rook ${ROOK_VERSION} ${file.group}.yaml`,
      objects: mark(objects),
    })),
    {
      group: "cluster",
      title: `Rook's Ceph cluster (${sizeLine(ctx)}) and StorageClass ${STORAGE_CLASS}`,
      objects: mark([
        cephCluster(ctx.cluster),
        ...blockPools(ctx.cluster, ctx.options.pool),
        storageClass(ctx.options.pool, ctx.options.defaultStorageClass),
      ]),
    },
  ];
  return { groups, missing: upstream.missing };
}

/**
 * What applying the stage would change (a renamed pool: the old one deleted), and an error for
 * objects of its names that are someone else's.
 */
async function planStage(ctx: Ctx, kube: KubeClient) {
  const plan = await planStageObjects(ctx, kube, (await rendered(ctx)).groups, {
    prefix: "rook",
    what: "of Rook's manifests",
    hint: "another Rook (or an object of the same name) is on this cluster: remove it first, then kubehyve up",
  });
  // Rook deletes a pool's data with its CephBlockPool (and the cluster's with the CephCluster): up asks first.
  for (const c of plan.changes)
    if (
      c.kind === "rook.prune" &&
      (c.data as ObjectRef[]).some((r) => r.apiVersion.startsWith("ceph.rook.io/"))
    )
      c.disruptive = true;
  return plan;
}

function sizeLine(ctx: Ctx): string {
  const osds = osdDisks(ctx.cluster);
  const replicas = poolReplicas(ctx.cluster);
  return `${monCount(ctx.cluster.nodes.length)} mon(s), ${osds.length} OSD(s) on ${osds.map((d) => `${d.node}:${d.device}`).join(", ")}, ${replicas} replica(s)`;
}

async function waitReady(
  ctx: Ctx,
  apiVersion: string,
  kind: string,
  name: string,
  until?: (o: KubeObject) => boolean,
) {
  const kube = await ctx.kube();
  await poll(
    `${kind} ${NAMESPACE}/${name} ready`,
    async () => {
      const obj = await kube.get(apiVersion, kind, name, NAMESPACE);
      if (!obj) return pending("not created yet");
      if (until) return until(obj) ? obj : pending(`phase ${obj.status?.phase ?? "unknown"}`);
      const r = isReady(obj);
      return r.ready ? obj : pending(r.reason);
    },
    { timeoutMs: WAIT_MS, intervalMs: 2000, signal: ctx.signal },
  );
}

/** The CephCluster, or undefined while it (or its CRD, on a fresh cluster) does not exist. */
async function liveCluster(ctx: Ctx): Promise<KubeObject | undefined> {
  const kube = await ctx.kube();
  try {
    return await kube.get("ceph.rook.io/v1", "CephCluster", CLUSTER_NAME, NAMESPACE);
  } catch (error) {
    if (error instanceof KubeRequestError) return undefined;
    throw error;
  }
}

/** A claim of rook-ceph-block is Bound and a pod writes to it and reads it back; both go afterwards. */
async function canary(ctx: Ctx): Promise<Diagnostic> {
  const owner = stageOwner(ctx);
  const token = randomBytes(8).toString("hex");
  const objects = [canaryClaim(), canaryPod(token)].map((o) => withOwner(o, owner));
  const kube = await ctx.kube();
  // Held to the owner at the write too: one made by someone after the look below is not taken over.
  const apply = (o: KubeObject) => applyManifests(kube, [o], { signal: ctx.signal, owner });
  // A claim or pod of the canary's name that someone else made is theirs: not applied over, not deleted.
  const taken: string[] = [];
  for (const ref of objects.map(refOf)) {
    const live = await kube.get(ref.apiVersion, ref.kind, ref.name, ref.namespace);
    if (live && !isOwnedBy(live, owner)) taken.push(describeRef(ref));
  }
  if (taken.length)
    return diag.error(
      "rook.canary",
      `the storage canary was not run: ${taken.join(" and ")} exists without this stage's labels`,
      { hint: `kubectl -n ${NAMESPACE} get pvc,pod ${CANARY} -o yaml (whose is it?)` },
    );
  try {
    const run = await ctx.canary(
      {
        name: "storage",
        description: `run the storage canary ${NAMESPACE}/${CANARY}`,
        // A failure inside (the deletes included) throws, and so is no pass either.
        passed: (pod) => pod.status?.phase === "Succeeded",
      },
      async () => {
        try {
          await apply(objects[0]!);
          await poll(
            `PersistentVolumeClaim ${NAMESPACE}/${CANARY} Bound`,
            async () => {
              const pvc = await kube.get("v1", "PersistentVolumeClaim", CANARY, NAMESPACE);
              return pvc?.status?.phase === "Bound"
                ? pvc
                : pending(`phase ${pvc?.status?.phase ?? "unknown"}`);
            },
            { timeoutMs: 5 * 60_000, intervalMs: 1000, signal: ctx.signal },
          );
          await apply(objects[1]!);
          return await poll(
            `Pod ${NAMESPACE}/${CANARY} done`,
            async () => {
              const pod = await kube.get("v1", "Pod", CANARY, NAMESPACE);
              const phase = pod?.status?.phase;
              return phase === "Succeeded" || phase === "Failed"
                ? pod!
                : pending(`phase ${phase ?? "unknown"}`);
            },
            { timeoutMs: 5 * 60_000, intervalMs: 1000, signal: ctx.signal },
          );
        } finally {
          // Inside the canary's step: it has passed only once these are gone.
          for (const ref of objects.map(refOf).reverse()) await deleteOwned(kube, owner, ref);
        }
      },
    );
    if (!run.ran)
      return canaryNotRun(run, {
        code: "rook.canary",
        what: "the storage canary",
        slot: ctx.plugin.slot,
        creates: "a claim and a pod",
      });
    const result = run.result;
    if (result.status?.phase === "Succeeded") {
      return diag.ok("rook.canary", `a ${STORAGE_CLASS} claim was bound, written and read back`);
    }
    const term = result.status?.containerStatuses?.[0]?.state?.terminated;
    return diag.error(
      "rook.canary",
      `the canary pod could not write and read back its ${STORAGE_CLASS} volume`,
      {
        detail: [term?.reason, term?.message?.trim()].filter(Boolean).join(": "),
        hint: `kubectl -n ${NAMESPACE} describe pvc ${CANARY}; kubectl -n ${NAMESPACE} logs deploy/csi-rbdplugin-provisioner`,
      },
    );
  } catch (error) {
    return diag.error("rook.canary", `the storage canary failed: ${(error as Error).message}`, {
      hint: `kubectl -n ${NAMESPACE} describe pvc ${CANARY}`,
    });
  }
}

export default definePlugin({
  ...meta,

  async check(ctx) {
    const fresh: Change = {
      summary: `install Rook ${ROOK_VERSION} (Ceph Tentacle): ${sizeLine(ctx)}, StorageClass ${STORAGE_CLASS}`,
      kind: "rook.install",
    };
    if (ctx.upstreamPending) return { changes: [fresh], diagnostics: redundancyNotice(ctx.cluster) };
    const kube = await ctx.kube();
    const live = await kube
      .get("ceph.rook.io/v1", "CephCluster", CLUSTER_NAME, NAMESPACE)
      .catch(() => undefined);
    const osdExpected = live !== undefined;
    const diagnostics: Diagnostic[] = [
      ...redundancyNotice(ctx.cluster),
      ...(await checkDataDisks(ctx, osdExpected)),
    ];
    // Each node under its own limit: one that hangs or cannot be reached is one finding about it.
    const readings: ClockReading[] = [];
    diagnostics.push(
      ...(await checkEach(
        ctx,
        ctx.cluster.nodes,
        async (node) => {
          const out: Diagnostic[] = [await checkRbdModule(ctx, node)];
          if (ctx.cluster.stages.os?.plugin === "os/coreos") {
            const flex = await checkFlexVolume(ctx, node);
            if (flex) out.push(flex);
          }
          const clock = await readClock(ctx, node);
          if ("code" in clock) out.push(clock);
          else readings.push(clock);
          return out;
        },
        {
          id: "rook.node-checks",
          title: (node) => `the storage checks of node ${node.name}`,
          target: (node) => node.name,
          concurrency: 4,
        },
      )),
    );
    diagnostics.push(clockSkew(readings));

    const { changes, findings } = await planStage(ctx, kube);
    return { changes, diagnostics: [...diagnostics, ...findings] };
  },

  async apply(ctx, changes) {
    const kube = await ctx.kube();
    // A plan made before the cluster existed is carried out with what the cluster says now.
    const work = changes.some((c) => c.kind === "rook.install")
      ? changesOrRefusal(await planStage(ctx, kube))
      : changes;
    const applied = await applyStageObjects(ctx, kube, work, "rook", {
      afterApply: async (objects) => {
        for (const o of objects)
          if (o.kind === "Deployment" && OPERATORS.includes(o.metadata.name))
            await waitReady(ctx, "apps/v1", "Deployment", o.metadata.name);
      },
    });
    if (ctx.dryRun || !applied.length) return;
    await waitReady(ctx, "ceph.rook.io/v1", "CephCluster", CLUSTER_NAME, (o) => o.status?.phase === "Ready");
  },

  async verify(ctx) {
    const cluster = await liveCluster(ctx);
    const out = cephHealth(cluster);
    if (cluster?.status?.phase === "Ready" && ctx.options.canary) out.push(await canary(ctx));
    return out;
  },

  async render(ctx): Promise<RenderedFile[]> {
    const { groups, missing } = await rendered(ctx, true);
    const files: RenderedFile[] = groups.map((g) => ({
      path: `${g.group}.yaml`,
      content: g.objects.map((o) => stringifyYaml(o)).join("---\n"),
    }));
    if (missing.length) files.push({ path: "upstream-files.txt", content: missingNote(missing) });
    return files;
  },

  async destroy(ctx) {
    await destroyStageObjects(ctx, await ctx.kube(), KNOWN_KINDS);
  },
});
