/**
 * storage/rook: Rook v1.20 with Ceph Tentacle on the nodes' extra data disks, and the default
 * StorageClass rook-ceph-block. See README.md. One topic per file:
 *
 * - options.ts, sizing.ts: the options block, the lab-sized cluster and its static rules
 * - release.ts: the four pinned upstream files, in the documented order
 * - manifests.ts: CephCluster, CephBlockPool(s), StorageClass, the canary
 * - objects.ts: labels, the plan (dry runs), the one apply, deletion by label
 * - disks.ts, nodes.ts: what check asks every node, and the parsers of its answers
 * - health.ts: the CephCluster's health, code by code, with what to do
 */
import { randomBytes } from "node:crypto";
import {
  type ArtifactRequest,
  type Change,
  checkEach,
  type Diagnostic,
  definePlugin,
  diag,
  isReady,
  type KubeObject,
  KubeRequestError,
  type PluginContext,
  pending,
  poll,
  type RenderedFile,
  stringifyYaml,
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
import {
  type ClockReading,
  checkDataDisks,
  checkFlexVolume,
  checkRbdModule,
  clockSkew,
  readClock,
} from "./nodes.ts";
import { applyObjects, deleteOwned, labelled, planObjects, refOf, stageLabels } from "./objects.ts";
import { type RookOptions, RookOptionsSchema, redundancyNotice, validateRook } from "./options.ts";
import { missingNote, NAMESPACE, ROOK_VERSION, upstreamGroups } from "./release.ts";
import { monCount, osdDisks, poolReplicas } from "./sizing.ts";

type Ctx = PluginContext<RookOptions>;

const WAIT_MS = 15 * 60_000;

interface Group {
  group: string;
  objects: KubeObject[];
}

/** Every object of the stage, labelled, group by group in the order they are applied. */
async function rendered(ctx: Ctx, cachedOnly = false): Promise<Group[] & { missing?: ArtifactRequest[] }> {
  const labels = stageLabels(ctx.plugin.slot, ctx.clusterId);
  const mark = (objs: KubeObject[]) => objs.map((o) => labelled(o, labels));
  const upstream = await upstreamGroups(ctx, { cachedOnly });
  const groups: Group[] & { missing?: ArtifactRequest[] } = [
    ...upstream.groups.map((g) => ({ group: g.group, objects: mark(g.objects) })),
    {
      group: "cluster",
      objects: mark([
        cephCluster(ctx.cluster),
        ...blockPools(ctx.cluster, ctx.options.pool),
        storageClass(ctx.options.pool, ctx.options.defaultStorageClass),
      ]),
    },
  ];
  groups.missing = upstream.missing;
  return groups;
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
  const labels = stageLabels(ctx.plugin.slot, ctx.clusterId);
  const token = randomBytes(8).toString("hex");
  const objects = [canaryClaim(), canaryPod(token)].map((o) => labelled(o, labels));
  const kube = await ctx.kube();
  try {
    const result = await ctx.wet(`run the storage canary ${NAMESPACE}/${CANARY}`, async () => {
      await applyObjects(ctx, objects.slice(0, 1));
      await poll(
        `PersistentVolumeClaim ${NAMESPACE}/${CANARY} Bound`,
        async () => {
          const pvc = await kube.get("v1", "PersistentVolumeClaim", CANARY, NAMESPACE);
          return pvc?.status?.phase === "Bound" ? pvc : pending(`phase ${pvc?.status?.phase ?? "unknown"}`);
        },
        { timeoutMs: 5 * 60_000, intervalMs: 1000, signal: ctx.signal },
      );
      await applyObjects(ctx, objects.slice(1));
      return poll(
        `Pod ${NAMESPACE}/${CANARY} done`,
        async () => {
          const pod = await kube.get("v1", "Pod", CANARY, NAMESPACE);
          const phase = pod?.status?.phase;
          return phase === "Succeeded" || phase === "Failed" ? pod! : pending(`phase ${phase ?? "unknown"}`);
        },
        { timeoutMs: 5 * 60_000, intervalMs: 1000, signal: ctx.signal },
      );
    });
    if (!result)
      return diag.info(
        "rook.canary",
        "the storage canary runs only in kubehyve up (this run changes nothing)",
        { hint: "kubehyve up --only storage runs it" },
      );
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
  } finally {
    if (!ctx.dryRun) await deleteOwned(ctx, objects, labels);
  }
}

export default definePlugin({
  id: "storage/rook",
  title: "Rook-Ceph block storage",
  apiVersion: 1,
  version: ROOK_VERSION,
  after: ["k8s", "net", "lb", "ingress"],
  options: RookOptionsSchema,
  validate: (inp) => validateRook(inp),

  async check(ctx) {
    const fresh: Change = {
      summary: `install Rook ${ROOK_VERSION} (Ceph Tentacle): ${sizeLine(ctx)}, StorageClass ${STORAGE_CLASS}`,
      kind: "rook.apply",
    };
    if (ctx.upstreamPending) return { changes: [fresh], diagnostics: redundancyNotice(ctx.cluster) };
    const kube = await ctx.kube();
    const groups = await rendered(ctx);
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

    const plan = await planObjects(
      kube,
      groups.flatMap((g) => g.objects),
    );
    const changes: Change[] = [];
    if (plan.length) {
      const created = plan.filter((p) => p.action === "create").length;
      changes.push({
        ...fresh,
        summary: `${fresh.summary}: ${created} objects to create, ${plan.length - created} to change`,
        detail: plan.map((p) => `${p.action} ${refOf(p.obj).kind} ${p.obj.metadata.name}`).join("\n"),
      });
    }
    return { changes, diagnostics };
  },

  async apply(ctx, changes) {
    if (!changes.some((c) => c.kind === "rook.apply")) return;
    const groups = await rendered(ctx);
    for (const g of groups) {
      await ctx.wet(`apply Rook ${g.group} (${g.objects.length} objects)`, () =>
        applyObjects(ctx, g.objects),
      );
      if (ctx.dryRun) continue;
      // The documented order: each operator runs before what it serves arrives.
      if (g.group === "csi-operator")
        await waitReady(ctx, "apps/v1", "Deployment", "ceph-csi-controller-manager");
      if (g.group === "operator") await waitReady(ctx, "apps/v1", "Deployment", "rook-ceph-operator");
    }
    if (ctx.dryRun) return;
    await waitReady(ctx, "ceph.rook.io/v1", "CephCluster", CLUSTER_NAME, (o) => o.status?.phase === "Ready");
  },

  async verify(ctx) {
    const cluster = await liveCluster(ctx);
    const out = cephHealth(cluster);
    if (cluster?.status?.phase === "Ready" && ctx.options.canary) out.push(await canary(ctx));
    return out;
  },

  async render(ctx): Promise<RenderedFile[]> {
    const groups = await rendered(ctx, true);
    const files: RenderedFile[] = groups.map((g) => ({
      path: `${g.group}.yaml`,
      content: g.objects.map((o) => stringifyYaml(o)).join("---\n"),
    }));
    if (groups.missing?.length)
      files.push({ path: "upstream-files.txt", content: missingNote(groups.missing) });
    return files;
  },

  async destroy(ctx) {
    const groups = await rendered(ctx);
    await deleteOwned(
      ctx,
      groups.flatMap((g) => g.objects),
      stageLabels(ctx.plugin.slot, ctx.clusterId),
    );
  },
});
