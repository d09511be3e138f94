/**
 * The one way an add-on stage owns its objects, from plan to `down`, through a real plugin context
 * (its ctx.wet, its state in a state dir) against the API test server: the plan names what would
 * change, someone else's object of the same name is refused and left alone, what the stage applied
 * before and no longer renders is pruned, and `down` deletes by the stage's labels only.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPluginContext } from "../../src/core/context.ts";
import { definePlugin } from "../../src/core/contract.ts";
import { memoryReporter } from "../../src/core/reporter.ts";
import { createKubeClient, type KubeClientImpl } from "../../src/kube/client.ts";
import { withOwner } from "../../src/kube/ownership.ts";
import {
  APPLIED_KINDS_KEY,
  applyStageObjects,
  changesOrRefusal,
  checkReachable,
  destroyStageObjects,
  isStageFinding,
  planStageObjects,
  stageCluster,
} from "../../src/kube/stage-objects.ts";
import { KubeApiError } from "../../src/kube/status.ts";
import type { KubeObject } from "../../src/kube/types.ts";
import { KubehyveError } from "../../src/lib/errors.ts";
import { labCluster } from "../lab/cluster.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { have } from "../lab/prereq.ts";

const CLUSTER_ID = "4d3c2b1a-0f9e-4d8c-a7b6-5e4f3a2b1c0d";
const owner = { stage: "demo", clusterId: CLUSTER_ID };
const plugin = definePlugin({
  id: "demo/objects",
  title: "a stage that applies ConfigMaps",
  apiVersion: 1,
  async check() {
    return { changes: [], diagnostics: [] };
  },
  async apply() {},
  async verify() {
    return [];
  },
});
const HINT = "remove the other ConfigMap, or rename this stage's";
const OPTS = { prefix: "demo", what: "of the demo's", hint: HINT };

const cm = (name: string, value = name, namespace = "default"): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace },
  data: { value },
});
const ours = (o: KubeObject) => withOwner(o, owner);

/** A CRD of one served and stored version, v1, that takes any object: `Widget` → widgets.<group>. */
const crdOf = (group: string, kind: string, scope: "Namespaced" | "Cluster" = "Namespaced"): KubeObject => {
  const singular = kind.toLowerCase();
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${singular}s.${group}` },
    spec: {
      group,
      names: { kind, plural: `${singular}s`, singular, listKind: `${kind}List` },
      scope,
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
        },
      ],
    },
  };
};

describe.skipIf(!have("openssl", "openssl"))("a stage's objects on a live cluster", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;
  let stateDir: string;
  const ctx = (dryRun = false, reporter?: ReturnType<typeof memoryReporter>) =>
    createPluginContext({
      cluster: labCluster(),
      plugin,
      options: {},
      stateDir,
      clusterId: CLUSTER_ID,
      dryRun,
      kube: async () => client,
      ...(reporter ? { reporter } : {}),
    });
  const warnings = (r: ReturnType<typeof memoryReporter>) =>
    r.events.flatMap((e) => (e.type === "log" && e.level === "warn" ? [e.message] : []));
  const groups = (settings: KubeObject[]) => [
    {
      title: "the demo's namespace",
      objects: [ours({ apiVersion: "v1", kind: "Namespace", metadata: { name: "demo" } })],
    },
    { title: "the demo's settings", objects: settings.map(ours) },
  ];
  const writes = () => server.requests.filter((r) => r.method !== "GET" && !r.query.includes("dryRun=All"));

  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
  });
  afterAll(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "kubehyve-stage-objects-"));
  });
  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  test("the plan is a line per group naming what it creates or updates, and apply carries it out once", async () => {
    const first = await planStageObjects(
      ctx(),
      client,
      groups([cm("a", "a", "demo"), cm("b", "b", "demo")]),
      OPTS,
    );
    expect(first.findings).toEqual([]);
    expect(first.changes.map((c) => [c.kind, c.summary])).toEqual([
      ["demo.apply", "the demo's namespace: create Namespace demo"],
      ["demo.apply", "the demo's settings: create 2 objects"],
    ]);
    expect(first.changes[1]!.detail).toBe("create ConfigMap demo/a\ncreate ConfigMap demo/b");
    const c = ctx();
    const applied = await applyStageObjects(c, client, first.changes, "demo");
    expect(applied.map((o) => o.metadata.name)).toEqual(["demo", "a", "b"]);
    expect(c.wetLog).toEqual([
      "record the kinds this stage applies: Namespace, ConfigMap",
      "the demo's namespace: create Namespace demo",
      "the demo's settings: create 2 objects",
    ]);
    expect(c.state.get(APPLIED_KINDS_KEY)).toEqual([
      { apiVersion: "v1", kind: "Namespace" },
      { apiVersion: "v1", kind: "ConfigMap" },
    ]);
    // Only what changes counts, and only the fields kubehyve manages.
    const again = await planStageObjects(
      ctx(),
      client,
      groups([cm("a", "a", "demo"), cm("b", "B", "demo")]),
      OPTS,
    );
    expect(again.changes.map((x) => x.summary)).toEqual([
      "the demo's settings: update ConfigMap demo/b (data.value)",
    ]);
    expect(again.changes[0]!.data).toEqual([ours(cm("b", "B", "demo"))]);
  });

  test("an object of a kind the cluster does not serve and no CRD of the stage defines is an error finding, before anything is applied", async () => {
    const widgets = ours(crdOf("example.com", "Widget"));
    const widget = ours({
      apiVersion: "example.com/v1",
      kind: "Widget",
      metadata: { name: "w", namespace: "demo" },
    });
    const gadget = ours({
      apiVersion: "example.com/v1",
      kind: "Gadget",
      metadata: { name: "g", namespace: "demo" },
    });
    const oldWidget = ours({
      apiVersion: "example.com/v1beta1",
      kind: "Widget",
      metadata: { name: "old", namespace: "demo" },
    });
    const release = (extra: KubeObject[]) => [
      ...groups([]),
      { title: "the demo's CRDs", objects: [widgets] },
      { title: "the demo's widgets", objects: [widget, ...extra] },
    ];
    const before = writes().length;
    // A custom resource whose CRD the stage applies first is planned as a create.
    const fine = await planStageObjects(ctx(), client, release([]), OPTS);
    expect(fine.findings).toEqual([]);
    const plan = await planStageObjects(ctx(), client, release([gadget, oldWidget]), OPTS);
    expect(plan.findings).toEqual([
      {
        code: "demo.unknown-kinds",
        severity: "error",
        summary:
          "2 objects of the demo's are of kinds the cluster does not serve and no CustomResourceDefinition of this stage defines",
        detail: "Gadget demo/g (example.com/v1)\nWidget demo/old (example.com/v1beta1)",
        hint: "is the stage's version one for this cluster's Kubernetes? `kubectl api-resources` lists the kinds it serves",
      },
    ]);
    expect(() => changesOrRefusal(plan)).toThrow(
      "2 objects of the demo's are of kinds the cluster does not serve",
    );
    expect(writes()).toHaveLength(before);
  });

  test("an object of the stage's name without its labels is an error finding, never applied and left alone", async () => {
    await client.apply(cm("taken", "theirs", "default"));
    const before = server.get("v1", "ConfigMap", "taken", "default");
    // The stage's own objects of the first test, as they were applied, and one that is someone else's.
    const plan = await planStageObjects(
      ctx(),
      client,
      groups([cm("a", "a", "demo"), cm("b", "b", "demo"), cm("taken", "mine", "default")]),
      OPTS,
    );
    expect(plan.findings).toEqual([
      {
        code: "demo.foreign-objects",
        severity: "error",
        summary:
          "1 object of the demo's already exists without this stage's labels: kubehyve does not take over what it did not make",
        detail: "ConfigMap default/taken",
        hint: HINT,
      },
    ]);
    expect(plan.changes).toEqual([]);
    expect(() => changesOrRefusal(plan)).toThrow(
      `1 object of the demo's already exists without this stage's labels: kubehyve does not take over what it did not make (${HINT})`,
    );
    await applyStageObjects(ctx(), client, plan.changes, "demo");
    expect(server.get("v1", "ConfigMap", "taken", "default")).toEqual(before);
  });

  test("what the stage applied before and no longer renders is pruned, and an unlabelled object of the kind is not", async () => {
    await client.apply(cm("by-hand", "theirs", "demo"));
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, groups([cm("kept", "k", "demo"), cm("dropped", "d", "demo")]), OPTS))
        .changes,
      "demo",
    );
    const plan = await planStageObjects(ctx(), client, groups([cm("kept", "k", "demo")]), OPTS);
    expect(plan.changes.map((x) => [x.kind, x.summary, x.detail])).toEqual([
      [
        "demo.prune",
        "delete ConfigMap demo/dropped this stage applied before and no longer renders",
        "delete ConfigMap demo/dropped",
      ],
    ]);
    // A dry run (plan, doctor) deletes nothing.
    const mutations = writes().length;
    await applyStageObjects(ctx(true), client, plan.changes, "demo");
    expect(writes().length).toBe(mutations);
    expect(server.get("v1", "ConfigMap", "dropped", "demo")).toBeDefined();
    const up = ctx();
    await applyStageObjects(up, client, plan.changes, "demo");
    expect(up.wetLog.at(-1)).toBe("delete ConfigMap demo/dropped, which this stage no longer renders");
    expect(server.get("v1", "ConfigMap", "dropped", "demo")).toBeUndefined();
    expect(server.get("v1", "ConfigMap", "by-hand", "demo")).toBeDefined();
    expect(server.get("v1", "ConfigMap", "kept", "demo")).toBeDefined();
  });

  test("down deletes what carries the stage's labels and forgets the kinds, and keeps its namespace while someone else's object is in it", async () => {
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, groups([cm("one", "1", "demo")]), OPTS)).changes,
      "demo",
    );
    // With no record of the kinds (another state dir), the kinds named are enough.
    const kinds = [
      { apiVersion: "v1", kind: "Namespace" },
      { apiVersion: "v1", kind: "ConfigMap" },
    ];
    const dryReporter = memoryReporter();
    const dry = ctx(true, dryReporter);
    await dry.state.delete(APPLIED_KINDS_KEY);
    const reporter = memoryReporter();
    const down = ctx(false, reporter);
    await destroyStageObjects(dry, client, kinds);
    await destroyStageObjects(down, client, kinds);
    expect(down.wetLog).toEqual(dry.wetLog);
    const deletes = down.wetLog.filter((l) => l.startsWith("delete "));
    expect(deletes).toContain("delete ConfigMap demo/one");
    expect(deletes).not.toContain("delete ConfigMap demo/by-hand");
    // The ConfigMap made by hand in the stage's namespace would go with the namespace: it stays.
    expect(deletes).not.toContain("delete Namespace demo");
    const kept =
      'left Namespace demo: 1 object in it that this stage did not make (ConfigMap demo/by-hand: its fields are set by "kubehyve") would go with it; once they are not needed: kubectl delete namespace demo';
    expect(warnings(reporter)).toEqual([kept]);
    expect(warnings(dryReporter)).toEqual([kept]);
    expect(server.get("v1", "ConfigMap", "by-hand", "demo")).toBeDefined();
    expect(server.get("v1", "Namespace", "demo")).toBeDefined();
    expect(down.wetLog.at(-1)).toBe("forget the kinds this stage applied");
    expect(down.state.get(APPLIED_KINDS_KEY)).toBeUndefined();
    expect(server.get("v1", "ConfigMap", "one", "demo")).toBeUndefined();
    expect(server.get("v1", "ConfigMap", "taken", "default")).toBeDefined();
    // Once it is gone, the namespace goes at the next down, last.
    await client.delete("v1", "ConfigMap", "by-hand", "demo");
    const again = ctx();
    await destroyStageObjects(again, client, kinds);
    expect(again.wetLog.filter((l) => l.startsWith("delete "))).toEqual(["delete Namespace demo"]);
    expect(server.get("v1", "Namespace", "demo")).toBeUndefined();
  });

  test("a namespace that holds only the stage's objects, what controllers made for them and what Kubernetes puts in every namespace goes at down", async () => {
    const c = ctx();
    const service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: "demo" },
      spec: { ports: [{ port: 80 }] },
    };
    const account = {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "worker", namespace: "demo" },
    };
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, groups([cm("one", "1", "demo"), service, account]), OPTS)).changes,
      "demo",
    );
    const web = server.get("v1", "Service", "web", "demo") as KubeObject;
    // As kube-controller-manager makes them, with its own field managers.
    const kcm = await createKubeClient(server.kubeconfigPath, { fieldManager: "kube-controller-manager" });
    // serviceaccounts_controller.go DefaultServiceAccountsControllerOptions: `default` in every namespace.
    await kcm.create({
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "default", namespace: "demo" },
    });
    // rootcacertpublisher publisher.go RootCACertConfigMapName.
    await kcm.create({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "kube-root-ca.crt", namespace: "demo" },
      data: { "ca.crt": "-----BEGIN CERTIFICATE-----" },
    });
    // endpointslice utils.go newEndpointSlice: owned by its Service.
    await kcm.create({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name: "web-x7k2p",
        namespace: "demo",
        labels: {
          "kubernetes.io/service-name": "web",
          "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        },
        ownerReferences: [
          {
            apiVersion: "v1",
            kind: "Service",
            name: "web",
            uid: web.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      addressType: "IPv4",
      endpoints: [],
    });
    // endpoints_controller.go syncService: the Service's Endpoints, of its name, owned by no one.
    await kcm.create({ apiVersion: "v1", kind: "Endpoints", metadata: { name: "web", namespace: "demo" } });
    // An Event about the Service, of either group, and a controller's leader-election Lease.
    await kcm.create({
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: "web.1", namespace: "demo" },
      involvedObject: { kind: "Service", name: "web", namespace: "demo" },
      reason: "Created",
    });
    await kcm.create({
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: "web.2", namespace: "demo" },
      regarding: { kind: "Service", name: "web", namespace: "demo" },
      reason: "Updated",
    });
    await kcm.create({
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "demo-controller-lock", namespace: "demo" },
      spec: { holderIdentity: "demo-controller-0" },
    });
    // tokens_controller.go: a legacy token of an account that goes with the namespace.
    for (const sa of ["default", "worker"])
      await kcm.create({
        apiVersion: "v1",
        kind: "Secret",
        metadata: {
          name: `${sa}-token-abcde`,
          namespace: "demo",
          annotations: { "kubernetes.io/service-account.name": sa },
        },
        type: "kubernetes.io/service-account-token",
      });
    const reporter = memoryReporter();
    const down = ctx(false, reporter);
    await destroyStageObjects(down, client, []);
    expect(warnings(reporter)).toEqual([]);
    expect(down.wetLog.filter((l) => l.startsWith("delete ")).at(-1)).toBe("delete Namespace demo");
    expect(server.get("v1", "Namespace", "demo")).toBeUndefined();
  });

  test("someone else's ServiceAccount, its token Secret, a Secret named like Kubernetes' ConfigMap and Endpoints of no Service keep the namespace", async () => {
    const c = ctx();
    await applyStageObjects(c, client, (await planStageObjects(c, client, groups([]), OPTS)).changes, "demo");
    const kubectl = await createKubeClient(server.kubeconfigPath, { fieldManager: "kubectl-create" });
    await kubectl.create({
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "ci", namespace: "demo" },
    });
    await kubectl.create({
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name: "ci-token",
        namespace: "demo",
        annotations: { "kubernetes.io/service-account.name": "ci" },
      },
      type: "kubernetes.io/service-account-token",
    });
    await kubectl.create({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "kube-root-ca.crt", namespace: "demo" },
    });
    // Endpoints of no Service: set by hand, to reach something outside.
    await kubectl.create({
      apiVersion: "v1",
      kind: "Endpoints",
      metadata: { name: "external-db", namespace: "demo" },
    });
    const reporter = memoryReporter();
    const down = ctx(false, reporter);
    await destroyStageObjects(down, client, []);
    expect(down.wetLog).not.toContain("delete Namespace demo");
    expect(warnings(reporter)).toEqual([
      'left Namespace demo: 4 objects in it that this stage did not make (Secret demo/ci-token: its fields are set by "kubectl-create"; …) would go with it; once they are not needed: kubectl delete namespace demo',
    ]);
    for (const [kind, name] of [
      ["Endpoints", "external-db"],
      ["ServiceAccount", "ci"],
      ["Secret", "ci-token"],
      ["Secret", "kube-root-ca.crt"],
    ])
      await kubectl.delete("v1", kind!, name!, "demo");
    await destroyStageObjects(ctx(), client, [{ apiVersion: "v1", kind: "Namespace" }]);
    expect(server.get("v1", "Namespace", "demo")).toBeUndefined();
  });

  test("down deletes a namespace only on a full answer: a refused list of a kind in it stops down before anything is deleted", async () => {
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, groups([cm("one", "1", "demo")]), OPTS)).changes,
      "demo",
    );
    // Someone's claims could be in it; a viewer without the right to list them cannot tell.
    const refusing = {
      ...client,
      list: async (apiVersion: string, kind: string, opts?: Parameters<KubeClientImpl["list"]>[2]) => {
        if (kind === "PersistentVolumeClaim")
          throw new KubeApiError(
            "GET",
            "/api/v1/namespaces/demo/persistentvolumeclaims",
            403,
            "Forbidden",
            "forbidden",
          );
        return client.list(apiVersion, kind, opts);
      },
    } as KubeClientImpl;
    const down = ctx();
    await expect(destroyStageObjects(down, refusing, [])).rejects.toThrow("403 Forbidden");
    expect(down.wetLog.filter((l) => l.startsWith("delete "))).toEqual([]);
    expect(server.get("v1", "ConfigMap", "one", "demo")).toBeDefined();
    await destroyStageObjects(ctx(), client, []);
    expect(server.get("v1", "Namespace", "demo")).toBeUndefined();
  });

  test("a group of its own change kind, one held back, and one the cluster refuses: each planned as told, and what is held back is not pruned", async () => {
    const c = ctx();
    const first = await planStageObjects(c, client, groups([cm("held", "h", "demo")]), OPTS);
    await applyStageObjects(c, client, first.changes, "demo");
    const refusal = {
      code: "demo.refused",
      severity: "error" as const,
      summary: "the cluster refuses the demo's settings",
      detail: "",
      hint: "look at them",
    };
    const plan = await planStageObjects(
      ctx(),
      client,
      [
        { title: "the demo's namespace", kind: "demo.apply-namespace", objects: groups([])[0]!.objects },
        { title: "more settings", kind: "demo.apply-more", objects: [ours(cm("more", "m", "demo"))] },
        { title: "the demo's settings", skip: true, objects: [ours(cm("held", "h", "demo"))] },
        {
          title: "bad settings",
          objects: [ours(cm("Bad_Name", "b", "demo"))],
          refused: (error) => ({ ...refusal, detail: error.message }),
        },
      ],
      OPTS,
    );
    expect(plan.changes.map((x) => [x.kind, x.summary])).toEqual([
      ["demo.apply-more", "more settings: create ConfigMap demo/more"],
    ]);
    expect(plan.findings).toEqual([{ ...refusal, detail: expect.stringContaining("Bad_Name") }]);
    expect(() => changesOrRefusal(plan)).toThrow("the cluster refuses the demo's settings (look at them)");
    // Without a finding for it, a refusal is the plan's failure.
    await expect(
      planStageObjects(ctx(), client, [{ title: "bad", objects: [ours(cm("Bad_Name", "b", "demo"))] }], OPTS),
    ).rejects.toThrow("Bad_Name");
    // A kind applyStageObjects would not carry out is a bug of the stage.
    await expect(
      planStageObjects(ctx(), client, [{ title: "odd", kind: "other.apply", objects: [] }], OPTS),
    ).rejects.toThrow("change kind other.apply of odd does not start with demo.apply");
  });

  test("only an error finding refuses: warnings and notes of check let the changes through", () => {
    const changes = [{ kind: "demo.apply", summary: "the demo's settings: create ConfigMap demo/a" }];
    const note = { severity: "info", summary: "a note" };
    expect(changesOrRefusal({ changes, findings: [note, { severity: "warn", summary: "a warning" }] })).toBe(
      changes,
    );
    expect(() =>
      changesOrRefusal({ changes, findings: [note, { severity: "error", summary: "no hint here" }] }),
    ).toThrow(/^no hint here$/);
  });

  test("beforeApply and afterApply run around each group with its change, and not at all in a dry run", async () => {
    const plan = await planStageObjects(
      ctx(),
      client,
      groups([cm("hooked", "h1", "demo")]).map((g, i) => ({ ...g, kind: `demo.apply-${i}` })),
      OPTS,
    );
    // (What the tests before left of the stage is pruned after them.)
    expect(plan.changes.map((x) => x.kind).filter((k) => k !== "demo.prune")).toEqual(["demo.apply-1"]);
    const seen: string[] = [];
    const hooks = {
      beforeApply: async (objects: KubeObject[], change: { kind?: string }) => {
        // Not applied yet.
        seen.push(
          `before ${change.kind} ${objects.map((o) => o.metadata.name)} ${!!server.get("v1", "ConfigMap", "hooked", "demo")}`,
        );
      },
      afterApply: async (objects: KubeObject[], change: { kind?: string }) => {
        seen.push(
          `after ${change.kind} ${objects.map((o) => o.metadata.name)} ${!!server.get("v1", "ConfigMap", "hooked", "demo")}`,
        );
      },
    };
    await applyStageObjects(ctx(true), client, plan.changes, "demo", hooks);
    expect(seen).toEqual([]);
    await applyStageObjects(ctx(), client, plan.changes, "demo", hooks);
    expect(seen).toEqual(["before demo.apply-1 hooked false", "after demo.apply-1 hooked true"]);
  });

  test("down deletes the custom resources first, then waits in afterCustomResources before the rest; not in a dry run, nor without any", async () => {
    const crd = crdOf("demo.example.com", "Widget");
    const widget = {
      apiVersion: "demo.example.com/v1",
      kind: "Widget",
      metadata: { name: "w", namespace: "demo" },
    };
    const c = ctx();
    const plan = await planStageObjects(
      c,
      client,
      [
        ...groups([cm("plain", "p", "demo")]),
        { title: "the demo's widgets", objects: [ours(crd), ours(widget)] },
      ],
      OPTS,
    );
    await applyStageObjects(c, client, plan.changes, "demo");
    const order: string[] = [];
    const afterCustomResources = async () => {
      order.push(
        `wait: widget ${server.get("demo.example.com/v1", "Widget", "w", "demo") ? "there" : "gone"}, configmap ${server.get("v1", "ConfigMap", "plain", "demo") ? "there" : "gone"}`,
      );
    };
    // The namespace was there, unchanged, before this plan: named, since it is not in this record.
    const kinds = [{ apiVersion: "v1", kind: "Namespace" }];
    await destroyStageObjects(ctx(true), client, kinds, { afterCustomResources });
    expect(order).toEqual([]);
    const down = ctx();
    await destroyStageObjects(down, client, kinds, { afterCustomResources });
    expect(order).toEqual(["wait: widget gone, configmap there"]);
    const deletes = down.wetLog.filter((l) => l.startsWith("delete "));
    expect(deletes[0]).toBe("delete Widget demo/w");
    expect(deletes.at(-1)).toBe("delete Namespace demo");
    // Nothing custom left to delete: nothing to wait for.
    await applyStageObjects(
      ctx(),
      client,
      (await planStageObjects(ctx(), client, groups([]), OPTS)).changes,
      "demo",
    );
    await destroyStageObjects(ctx(), client, [], { afterCustomResources });
    expect(order).toHaveLength(1);
  });
  test("an object the plan said is new and someone makes before apply is not taken over: apply stops there, naming it", async () => {
    const plan = await planStageObjects(
      ctx(),
      client,
      groups([cm("racing", "mine", "default"), cm("after", "a", "demo")]),
      OPTS,
    );
    expect(plan.changes.map((c) => c.summary)).toContain("the demo's settings: create 2 objects");
    // Between the plan and apply, someone's own ConfigMap of the name (kubectl create, Helm).
    const helm = await createKubeClient(server.kubeconfigPath, { fieldManager: "helm" });
    await helm.create(cm("racing", "theirs", "default"));
    const before = server.get("v1", "ConfigMap", "racing", "default");
    const up = ctx();
    const err = await applyStageObjects(up, client, plan.changes, "demo").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubehyveError);
    expect((err as Error).message).toBe(
      'ConfigMap default/racing is there and stage demo of this cluster did not make it (its fields are set by "helm"): someone made it after kubehyve looked, and kubehyve does not take over what it did not make',
    );
    expect((err as KubehyveError).hint).toBe(
      "kubectl get configmap racing -n default -o yaml (whose is it?); delete it if it is not needed, or rename kubehyve's, then run again",
    );
    expect(server.get("v1", "ConfigMap", "racing", "default")).toEqual(before);
    // Nothing after it was applied, and down does not take it for the stage's.
    expect(server.get("v1", "ConfigMap", "after", "demo")).toBeUndefined();
    const down = ctx();
    await destroyStageObjects(down, client, []);
    expect(down.wetLog).not.toContain("delete ConfigMap default/racing");
    expect(server.get("v1", "ConfigMap", "racing", "default")).toEqual(before);
    await helm.delete("v1", "ConfigMap", "racing", "default");
  });

  test("what apply creates is the stage's, as applied: a later plan sees no change and down deletes it", async () => {
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, groups([cm("fresh", "f", "demo")]), OPTS)).changes,
      "demo",
    );
    const live = server.get("v1", "ConfigMap", "fresh", "demo") as KubeObject;
    expect(
      (live.metadata.managedFields as { manager: string; operation: string }[]).map(
        (e) => `${e.manager} ${e.operation}`,
      ),
    ).toEqual(["kubehyve Apply"]);
    const again = await planStageObjects(ctx(), client, groups([cm("fresh", "f", "demo")]), OPTS);
    expect(again.changes.filter((x) => x.kind === "demo.apply")).toEqual([]);
    // A field the manifests no longer set is pruned: nothing but the apply owned it.
    const dropped = ours({ ...cm("fresh", "f", "demo"), data: {} });
    const c2 = ctx();
    await applyStageObjects(
      c2,
      client,
      (await planStageObjects(c2, client, groups([dropped]), OPTS)).changes,
      "demo",
    );
    expect(server.get("v1", "ConfigMap", "fresh", "demo")?.data).toBeUndefined();
    const down = ctx();
    await destroyStageObjects(down, client, []);
    expect(down.wetLog).toContain("delete ConfigMap demo/fresh");
  });

  test("a cluster-scoped object of the stage's CRD that someone else made keeps the CRD at down, with a warning; what the stage's own software made does not", async () => {
    const crd = ours(crdOf("demo.example.com", "Gadget", "Cluster"));
    const gadget = (name: string): KubeObject => ({
      apiVersion: "demo.example.com/v1",
      kind: "Gadget",
      metadata: { name },
    });
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (
        await planStageObjects(
          c,
          client,
          [...groups([]), { title: "gadgets", objects: [crd, ours(gadget("mine"))] }],
          OPTS,
        )
      ).changes,
      "demo",
    );
    // The stage's operator's own (its status, say), and someone's own, made with kubectl.
    const other = await createKubeClient(server.kubeconfigPath, { fieldManager: "kubectl-create" });
    await other.create(gadget("operator-status"));
    await other.create(gadget("theirs"));
    const madeByStage = (o: KubeObject) => o.metadata.name === "operator-status";
    const reporter = memoryReporter();
    const down = createPluginContext({
      cluster: labCluster(),
      plugin,
      options: {},
      stateDir,
      clusterId: CLUSTER_ID,
      dryRun: false,
      kube: async () => client,
      reporter,
    });
    await destroyStageObjects(down, client, [], { madeByStage });
    expect(
      server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.metadata.name),
    ).toBeDefined();
    expect(server.get("demo.example.com/v1", "Gadget", "theirs")).toBeDefined();
    expect(server.get("demo.example.com/v1", "Gadget", "mine")).toBeUndefined();
    expect(reporter.events).toContainEqual(
      expect.objectContaining({
        type: "log",
        level: "warn",
        message:
          "left CustomResourceDefinition gadgets.demo.example.com: 1 object of it that this stage did not make (theirs) would go with it; once they are not needed: kubectl delete crd gadgets.demo.example.com",
      }),
    );
    // Once theirs is gone, only what the stage's software made is left: the CRD goes too.
    await other.delete("demo.example.com/v1", "Gadget", "theirs");
    // (The CRD was kept, unchanged, so it is named: as a stage names the kinds it renders.)
    await destroyStageObjects(
      ctx(),
      client,
      [{ apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition" }],
      {
        madeByStage,
      },
    );
    expect(
      server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.metadata.name),
    ).toBeUndefined();
  });

  test("a stage's object still being deleted (a namespace in Terminating, a finalizer that has not cleared) is an error finding, not a plan that fails half-way", async () => {
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, groups([cm("kept", "k", "demo")]), OPTS)).changes,
      "demo",
    );
    // As kube-apiserver shows a namespace whose deletion waits for its finalizers: deletionTimestamp
    // set, phase Terminating (pkg/registry/core/namespace/storage Delete).
    const ns = server.get("v1", "Namespace", "demo") as KubeObject;
    server.put({
      ...ns,
      metadata: { ...ns.metadata, deletionTimestamp: "2026-01-01T00:00:00Z" },
      spec: { finalizers: ["kubernetes"] },
      status: { phase: "Terminating" },
    });
    const before = writes().length;
    const plan = await planStageObjects(
      ctx(),
      client,
      groups([cm("kept", "k", "demo"), cm("new", "n", "demo")]),
      OPTS,
    );
    expect(plan.findings).toEqual([
      {
        code: "demo.being-deleted",
        severity: "error",
        summary: "1 object of the demo's is being deleted: applying to it now would be lost once it goes",
        detail: "Namespace demo (since 2026-01-01T00:00:00Z, waiting for finalizers: kubernetes)",
        hint: "wait until it is gone (kubectl get namespace demo), then run again; a finalizer that never clears belongs to a controller that no longer runs",
      },
    ]);
    expect(() => changesOrRefusal(plan)).toThrow("is being deleted");
    // And one that goes into deletion between the plan and apply stops apply at it.
    const fresh = ctx();
    const c2 = await planStageObjects(
      fresh,
      client,
      [{ title: "other", objects: [ours(cm("late", "l", "default"))] }],
      OPTS,
    );
    const late = server.get("v1", "ConfigMap", "late", "default");
    expect(late).toBeUndefined();
    await applyStageObjects(fresh, client, c2.changes, "demo");
    const live = server.get("v1", "ConfigMap", "late", "default") as KubeObject;
    server.put({
      ...live,
      metadata: {
        ...live.metadata,
        deletionTimestamp: "2026-01-01T00:00:00Z",
        finalizers: ["example.com/hold"],
      },
    });
    await expect(
      applyStageObjects(
        ctx(),
        client,
        [{ kind: "demo.apply", summary: "again", data: [ours(cm("late", "L", "default"))] }],
        "demo",
      ),
    ).rejects.toThrow("ConfigMap default/late is being deleted");
    expect(writes().length).toBeGreaterThan(before);
    server.delete("v1", "ConfigMap", "late", "default");
    server.put({ ...ns });
  });

  test("down names what carries the stage's labels without proof that kubehyve set them, and leaves it", async () => {
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, groups([cm("cleared", "c", "demo")]), OPTS)).changes,
      "demo",
    );
    // Someone cleared its managedFields; another tool made one with the labels copied.
    await client.mergePatch(
      { apiVersion: "v1", kind: "ConfigMap", name: "cleared", namespace: "demo" },
      { metadata: { managedFields: [{}] } },
    );
    const helm = await createKubeClient(server.kubeconfigPath, { fieldManager: "helm" });
    await helm.apply(ours(cm("copied", "h", "default")));
    const reporter = memoryReporter();
    const down = createPluginContext({
      cluster: labCluster(),
      plugin,
      options: {},
      stateDir,
      clusterId: CLUSTER_ID,
      dryRun: true,
      kube: async () => client,
      reporter,
    });
    await destroyStageObjects(down, client, []);
    const warnings = reporter.events.flatMap((e) =>
      e.type === "log" && e.level === "warn" ? [e.message] : [],
    );
    expect(warnings).toContain(
      "left ConfigMap default/copied: it carries this stage's labels, but nothing the server keeps says kubehyve set them (its fields are set by \"helm\"), so it is not deleted; if it is this stage's: kubectl delete configmap copied -n default",
    );
    expect(warnings).toContain(
      "left ConfigMap demo/cleared: it carries this stage's labels, but nothing the server keeps says kubehyve set them (the server keeps no record of who set its fields), so it is not deleted; if it is this stage's: kubectl delete configmap cleared -n demo",
    );
    expect(down.wetLog).not.toContain("delete ConfigMap demo/cleared");
    await helm.delete("v1", "ConfigMap", "copied", "default");
    server.delete("v1", "ConfigMap", "cleared", "demo");
  });

  test("a CRD of the stage's that serves no version keeps it at down: its objects cannot be listed to tell whose they are", async () => {
    const crd = ours(crdOf("demo.example.com", "Knob"));
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, [{ title: "knobs", objects: [crd] }], OPTS)).changes,
      "demo",
    );
    // Someone turned its only version off (kubectl edit): what is stored of it stays, unlistable.
    const live = server.get(
      "apiextensions.k8s.io/v1",
      "CustomResourceDefinition",
      crd.metadata.name,
    ) as KubeObject;
    server.put({ ...live, spec: { ...live.spec, versions: [{ ...live.spec.versions[0], served: false }] } });
    const reporter = memoryReporter();
    const down = createPluginContext({
      cluster: labCluster(),
      plugin,
      options: {},
      stateDir,
      clusterId: CLUSTER_ID,
      dryRun: false,
      kube: async () => client,
      reporter,
    });
    await destroyStageObjects(down, client, []);
    expect(
      server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.metadata.name),
    ).toBeDefined();
    expect(reporter.events).toContainEqual(
      expect.objectContaining({
        level: "warn",
        message:
          "left CustomResourceDefinition knobs.demo.example.com: it serves no version, so its objects cannot be listed to tell whether someone else's would go with it; once they are not needed: kubectl delete crd knobs.demo.example.com",
      }),
    );
    server.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.metadata.name);
  });

  test("down keeps or deletes a CRD only on a full answer: a refused list of its objects stops down before anything is deleted", async () => {
    const crd = ours(crdOf("demo.example.com", "Gizmo"));
    const c = ctx();
    await applyStageObjects(
      c,
      client,
      (await planStageObjects(c, client, [...groups([]), { title: "gizmos", objects: [crd] }], OPTS)).changes,
      "demo",
    );
    // Someone's Gizmos could be there; a viewer without the right to list them cannot tell.
    const refusing = {
      ...client,
      list: async (apiVersion: string, kind: string, opts?: Parameters<KubeClientImpl["list"]>[2]) => {
        if (kind === "Gizmo")
          throw new KubeApiError("GET", "/apis/demo.example.com/v1/gizmos", 403, "Forbidden", "forbidden");
        return client.list(apiVersion, kind, opts);
      },
    } as KubeClientImpl;
    const down = ctx();
    await expect(destroyStageObjects(down, refusing, [])).rejects.toThrow("403 Forbidden");
    expect(down.wetLog.filter((l) => l.startsWith("delete "))).toEqual([]);
    expect(
      server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.metadata.name),
    ).toBeDefined();
    await destroyStageObjects(ctx(), client, []);
    expect(
      server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.metadata.name),
    ).toBeUndefined();
  });
});

describe.skipIf(!have("openssl", "openssl"))(
  "a stage's cluster that is not there, or stops answering",
  () => {
    test("no kubeconfig yet is the finding <prefix>.no-cluster, not a failure", async () => {
      const found = await stageCluster(
        {
          kube: async () => {
            throw new Error("no kubeconfig at /var/db/kubehyve/lab/kubeconfig");
          },
        },
        "demo",
      );
      expect(isStageFinding(found)).toBe(true);
      expect(found).toEqual({
        code: "demo.no-cluster",
        severity: "error",
        summary: "there is no Kubernetes cluster to reach yet",
        detail: "no kubeconfig at /var/db/kubehyve/lab/kubeconfig",
        hint: "kubehyve up",
      });
    });

    test("an API that stops answering during check is the finding <prefix>.api-unreachable with no changes; any other failure is thrown", async () => {
      const server = await startKubeApiServer();
      const client = await createKubeClient(server.kubeconfigPath, { retries: 0 });
      const reached = await stageCluster({ kube: async () => client }, "demo");
      expect(isStageFinding(reached)).toBe(false);
      await server.stop();
      const answer = await checkReachable("demo", async () => {
        await client.list("v1", "ConfigMap");
        return { changes: [{ summary: "never planned" }], diagnostics: [] };
      });
      expect(answer).toEqual({
        changes: [],
        diagnostics: [
          {
            code: "demo.api-unreachable",
            severity: "error",
            summary: "the Kubernetes API does not answer",
            detail: expect.stringContaining("cannot connect"),
            hint: "kubehyve doctor (is the control plane up?)",
          },
        ],
      });
      await expect(
        checkReachable("demo", async () => {
          throw new Error("a bug");
        }),
      ).rejects.toThrow("a bug");
    });
  },
);
