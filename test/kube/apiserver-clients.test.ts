/**
 * The test server through two clients: @kubernetes/client-node, which nobody here wrote, and our
 * src/kube client. Where the server departs from kube-apiserver, the two disagree with each other
 * or with the upstream formats asserted here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createKubeClient, type KubeClientImpl } from "../../src/kube/client.ts";
import { KubeApplyConflictError } from "../../src/kube/status.ts";
import { type ClientNode, clientNode } from "../lab/kube/client-node.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { oracle } from "../lab/oracles.ts";
import { have } from "../lab/prereq.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects and error bodies
type Json = any;

const fast = { baseDelayMs: 10, maxDelayMs: 50 };
const SAMPLES = oracle("kubernetes/api-samples");

function configMap(name: string, data: Record<string, string>, namespace = "default") {
  return { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data };
}

/** The body of a client-node ApiException as JSON. */
function bodyOf(error: Json): Json {
  return typeof error.body === "string" ? JSON.parse(error.body) : error.body;
}

function entry(obj: Json, manager: string, operation = "Apply"): Json {
  return (obj.metadata.managedFields as Json[]).find(
    (m) => m.manager === manager && m.operation === operation,
  );
}

describe.skipIf(!have("openssl", "openssl"))("the test server through client-node and our client", () => {
  let server: KubeApiServer;
  let ours: KubeClientImpl;
  let k8s: ClientNode;
  let kc: Json;
  let objects: Json;
  let core: Json;

  beforeAll(async () => {
    server = await startKubeApiServer({ bookmarkIntervalMs: 150 });
    ours = await createKubeClient(server.kubeconfigPath, fast);
    ({ k8s, kc } = await clientNode(server.kubeconfig));
    objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    core = kc.makeApiClient(k8s.CoreV1Api);
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("client-node reaches the server with the kubeconfig's CA and client certificate", async () => {
    const list = await core.listNamespace();
    expect(list.items.map((n: Json) => n.metadata.name)).toContain("kube-system");
  });

  test("a dry-run apply answers with what would be stored and stores nothing, for both clients", async () => {
    const before = server.resourceVersion();
    server.requests.length = 0;
    const theirs = await objects.patch(
      configMap("dry", { a: "1" }),
      undefined,
      "All",
      "client-node",
      true,
      k8s.PatchStrategy.ServerSideApply,
    );
    const mine = await ours.apply(configMap("dry", { a: "1" }), { dryRun: true });
    for (const answer of [theirs, mine] as Json[]) {
      expect(answer.data).toEqual({ a: "1" });
      expect(answer.metadata.uid).toBeString();
      // A dry-run create never reached storage, so it has no resourceVersion (dryrun.go copyInto).
      expect(answer.metadata.resourceVersion).toBeUndefined();
    }
    expect(entry(theirs, "client-node").fieldsV1).toEqual({ "f:data": { "f:a": {} } });
    expect(entry(mine, "kubehyve").fieldsV1).toEqual({ "f:data": { "f:a": {} } });
    expect(server.get("v1", "ConfigMap", "dry", "default")).toBeUndefined();
    expect(server.resourceVersion()).toBe(before);
    expect(
      server.requests.filter((r) => r.method === "PATCH").map((r) => r.query.includes("dryRun=All")),
    ).toEqual([true, true]);
  });

  test("dry-run create, update and delete are validated but change nothing", async () => {
    await core.createNamespacedConfigMap({ namespace: "default", body: configMap("kept", { a: "1" }) });
    const before = server.resourceVersion();
    const created = await core.createNamespacedConfigMap({
      namespace: "default",
      body: configMap("ghost", { a: "1" }),
      dryRun: "All",
    });
    expect(created.metadata.name).toBe("ghost");
    const refused = await core
      .createNamespacedConfigMap({ namespace: "default", body: configMap("Bad_Name", {}), dryRun: "All" })
      .catch((e: Json) => e);
    expect(refused.code).toBe(422);
    const replaced = await core.replaceNamespacedConfigMap({
      name: "kept",
      namespace: "default",
      body: configMap("kept", { a: "2" }),
      dryRun: "All",
    });
    expect(replaced.data).toEqual({ a: "2" });
    await core.deleteNamespacedConfigMap({ name: "kept", namespace: "default", dryRun: "All" });
    expect(await ours.delete("v1", "ConfigMap", "kept", "default", { dryRun: true })).toBe(true);
    expect(server.get("v1", "ConfigMap", "ghost", "default")).toBeUndefined();
    expect((server.get("v1", "ConfigMap", "kept", "default") as Json).data).toEqual({ a: "1" });
    expect(server.resourceVersion()).toBe(before);
  });

  test("applying a field another manager owns is a 409 naming the field and its manager; force moves it", async () => {
    await ours.apply(configMap("owned", { mode: "one", keep: "x" }));
    const conflict = await objects
      .patch(
        configMap("owned", { mode: "two" }),
        undefined,
        undefined,
        "tigera-operator",
        false,
        k8s.PatchStrategy.ServerSideApply,
      )
      .catch((e: Json) => e);
    expect(conflict.code).toBe(409);
    // managedfields/internal/conflict.go NewConflictError.
    expect(bodyOf(conflict)).toEqual({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'Apply failed with 1 conflict: conflict with "kubehyve": .data.mode',
      reason: "Conflict",
      details: {
        causes: [
          { reason: "FieldManagerConflict", message: 'conflict with "kubehyve"', field: ".data.mode" },
        ],
      },
      code: 409,
    });
    const forced = await objects.patch(
      configMap("owned", { mode: "two" }),
      undefined,
      undefined,
      "tigera-operator",
      true,
      k8s.PatchStrategy.ServerSideApply,
    );
    expect(forced.data).toEqual({ mode: "two", keep: "x" });
    expect(entry(forced, "tigera-operator").fieldsV1).toEqual({ "f:data": { "f:mode": {} } });
    expect(entry(forced, "kubehyve").fieldsV1).toEqual({ "f:data": { "f:keep": {} } });

    const ourConflict = await ours
      .apply(configMap("owned", { mode: "one", keep: "x" }), { force: false })
      .catch((e) => e);
    expect(ourConflict).toBeInstanceOf(KubeApplyConflictError);
    expect(ourConflict.message).toBe(
      'apply of ConfigMap default/owned conflicts with fields other managers own: .data.mode (owned by "tigera-operator")',
    );
    expect(ourConflict.conflicts).toEqual([{ field: ".data.mode", manager: '"tigera-operator"' }]);
    const back = await ours.apply(configMap("owned", { mode: "one", keep: "x" }));
    expect(back.data).toEqual({ mode: "one", keep: "x" });
    expect(entry(back, "tigera-operator")).toBeUndefined();
    expect(entry(back, "kubehyve").fieldsV1).toEqual({ "f:data": { "f:keep": {}, "f:mode": {} } });

    const two = await objects
      .patch(
        configMap("owned", { mode: "3", keep: "3" }),
        undefined,
        undefined,
        "rook",
        false,
        k8s.PatchStrategy.ServerSideApply,
      )
      .catch((e: Json) => e);
    expect(bodyOf(two).message).toBe(
      'Apply failed with 2 conflicts: conflicts with "kubehyve":\n- .data.keep\n- .data.mode',
    );
  });

  test("an update by another manager takes the fields it changes, and an apply then names it with its version and time", async () => {
    await ours.apply(configMap("edited", { a: "1", b: "1" }));
    const live = await objects.read({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "edited", namespace: "default" },
    });
    live.data.a = "2";
    const updated: Json = await objects.replace(live, undefined, undefined, "kubectl-edit");
    const edit = entry(updated, "kubectl-edit", "Update");
    expect(edit).toMatchObject({
      apiVersion: "v1",
      fieldsType: "FieldsV1",
      fieldsV1: { "f:data": { "f:a": {} } },
    });
    expect(entry(updated, "kubehyve").fieldsV1).toEqual({ "f:data": { "f:b": {} } });
    const error = await ours.apply(configMap("edited", { a: "1", b: "1" }), { force: false }).catch((e) => e);
    const time = new Date(edit.time).toISOString().replace(/\.\d{3}Z$/, "Z");
    expect(error.conflicts).toEqual([{ field: ".data.a", manager: `"kubectl-edit" using v1 at ${time}` }]);
  });

  test("managedFields key containers by name, ports by containerPort and protocol, env by name, as upstream records them", async () => {
    const deployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: "default" },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: {
            containers: [
              {
                name: "main-container",
                image: "nginx:latest",
                args: ["-g", "daemon off;"],
                env: [{ name: "A", value: "1" }],
                ports: [{ containerPort: 80, name: "http" }],
              },
            ],
          },
        },
      },
    };
    const applied: Json = await objects.patch(
      deployment,
      undefined,
      undefined,
      "argocd-controller",
      true,
      k8s.PatchStrategy.ServerSideApply,
    );
    const fields = entry(applied, "argocd-controller").fieldsV1;
    const upstream = JSON.parse(
      readFileSync(
        join(SAMPLES, "ssa-dryrun-response-deployment.managedFields.argo-gitops-engine.json"),
        "utf8",
      ),
    );
    const upstreamFields = entry(upstream, "argocd-controller").fieldsV1;
    const container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"main-container"}'];
    const upstreamContainer =
      upstreamFields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"main-container"}'];
    // The same port applied without protocol gets the same key, defaulted to TCP, and the same fields.
    expect(container["f:ports"]['k:{"containerPort":80,"protocol":"TCP"}']).toEqual(
      upstreamContainer["f:ports"]['k:{"containerPort":80,"protocol":"TCP"}'],
    );
    expect(Object.keys(container)).toEqual([".", "f:args", "f:env", "f:image", "f:name", "f:ports"]);
    expect(container["f:env"]).toEqual({ 'k:{"name":"A"}': { ".": {}, "f:name": {}, "f:value": {} } });
    expect(container["f:args"]).toEqual({});
    // LabelSelector is an atomic struct: one field, as in the upstream sample.
    expect(fields["f:spec"]["f:selector"]).toEqual(upstreamFields["f:spec"]["f:selector"]);

    server.reconcile();
    const withStatus: Json = await objects.read(deployment);
    const status = (withStatus.metadata.managedFields as Json[]).find((m) => m.subresource === "status");
    const upstreamStatus = (upstream.metadata.managedFields as Json[]).find(
      (m: Json) => m.subresource === "status",
    );
    expect(Object.keys(status).sort()).toEqual(Object.keys(upstreamStatus).sort());
    expect(status).toMatchObject({
      manager: "kube-controller-manager",
      operation: "Update",
      subresource: "status",
    });

    // Another manager's container joins the list by its key instead of replacing it.
    await ours
      .apply(
        {
          ...deployment,
          spec: {
            selector: deployment.spec.selector,
            template: { spec: { containers: [{ name: "sidecar", image: "busybox" }] } },
          },
        },
        { force: false },
      )
      .catch((e) => {
        throw e;
      });
    const both: Json = await objects.read(deployment);
    expect(both.spec.template.spec.containers.map((c: Json) => c.name)).toEqual([
      "main-container",
      "sidecar",
    ]);
    await objects.patch(
      deployment,
      undefined,
      undefined,
      "argocd-controller",
      false,
      k8s.PatchStrategy.ServerSideApply,
    );
    const still: Json = await objects.read(deployment);
    expect(still.spec.template.spec.containers.map((c: Json) => c.name)).toEqual([
      "main-container",
      "sidecar",
    ]);
  });

  test("a watch from a list's resourceVersion sees what happens after it, with bookmarks, through client-node's Watch", async () => {
    await ours.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "watched" } });
    await ours.apply(configMap("before", { a: "1" }, "watched"));
    const list = await core.listNamespacedConfigMap({ namespace: "watched" });
    const events: [string, Json][] = [];
    const watch = new k8s.Watch(kc);
    const controller = await watch.watch(
      "/api/v1/namespaces/watched/configmaps",
      { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true },
      (type: string, obj: Json) => events.push([type, obj]),
      () => {},
    );
    await ours.apply(configMap("after", { a: "1" }, "watched"));
    await ours.apply(configMap("after", { a: "2" }, "watched"));
    await ours.delete("v1", "ConfigMap", "after", "watched");
    await Bun.sleep(400);
    controller.abort();
    const changes = events.filter(([t]) => t !== "BOOKMARK");
    expect(changes.map(([t, o]) => [t, o.metadata.name, o.data?.a])).toEqual([
      ["ADDED", "after", "1"],
      ["MODIFIED", "after", "2"],
      ["DELETED", "after", "2"],
    ]);
    expect(changes[0]![1]).toMatchObject({ kind: "ConfigMap", apiVersion: "v1" });
    const bookmark = events.filter(([t]) => t === "BOOKMARK").at(-1)?.[1];
    // watch-stream-added-bookmark.client-go-golden.http: kind, apiVersion and a resourceVersion only.
    expect(bookmark).toEqual({
      kind: "ConfigMap",
      apiVersion: "v1",
      metadata: { resourceVersion: String(server.resourceVersion()) },
    });
  });

  test("a watch without a resourceVersion starts with the current objects, and one with a selector sees objects leave it", async () => {
    await ours.apply({
      ...configMap("labelled", { a: "1" }, "watched"),
      metadata: { name: "labelled", namespace: "watched", labels: { app: "x" } },
    });
    const events: string[] = [];
    const controller = await new k8s.Watch(kc).watch(
      "/api/v1/namespaces/watched/configmaps",
      { labelSelector: "app=x" },
      (type: string, obj: Json) => events.push(`${type} ${obj.metadata.name}`),
      () => {},
    );
    await Bun.sleep(50);
    await ours.apply({
      ...configMap("labelled", { a: "1" }, "watched"),
      metadata: { name: "labelled", namespace: "watched", labels: { app: "y" } },
    });
    await Bun.sleep(100);
    controller.abort();
    expect(events).toEqual(["ADDED labelled", "DELETED labelled"]);
  });

  test("a watch from a resourceVersion older than the kept history gets a 410 Expired ERROR event", async () => {
    const old = String(server.resourceVersion());
    await ours.apply(configMap("later", { a: "1" }));
    server.compact();
    const events: [string, Json][] = [];
    let finished = false;
    await new k8s.Watch(kc).watch(
      "/api/v1/namespaces/default/configmaps",
      { resourceVersion: old },
      (type: string, obj: Json) => events.push([type, obj]),
      () => {
        finished = true;
      },
    );
    for (let i = 0; i < 50 && !finished; i++) await Bun.sleep(10);
    expect(finished).toBe(true);
    expect(events).toEqual([
      [
        "ERROR",
        {
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Failure",
          message: `too old resource version: ${old} (${server.resourceVersion()})`,
          reason: "Expired",
          code: 410,
        },
      ],
    ]);
  });

  test("a watch ends when its timeoutSeconds are up", async () => {
    const started = Date.now();
    let finished = 0;
    await new k8s.Watch(kc).watch(
      "/api/v1/namespaces/default/configmaps",
      { timeoutSeconds: 1 },
      () => {},
      () => {
        finished = Date.now();
      },
    );
    for (let i = 0; i < 300 && !finished; i++) await Bun.sleep(10);
    expect(finished - started).toBeGreaterThanOrEqual(900);
    expect(finished - started).toBeLessThan(2500);
  });

  test("a list at an exact old resourceVersion shows the state then, and 410 once it is compacted", async () => {
    await ours.apply(configMap("history", { v: "1" }));
    const rv = String(server.resourceVersion());
    await ours.apply(configMap("history", { v: "2" }));
    const then = await objects.list(
      "v1",
      "ConfigMap",
      "default",
      undefined,
      undefined,
      undefined,
      "metadata.name=history",
    );
    expect(then.items[0].data).toEqual({ v: "2" });
    const tls = { ca: server.pki.caCert, cert: server.pki.clientCert, key: server.pki.clientKey };
    const at = (v: string) =>
      fetch(
        `${server.url}/api/v1/namespaces/default/configmaps?resourceVersion=${v}&resourceVersionMatch=Exact&fieldSelector=metadata.name%3Dhistory`,
        { tls },
      );
    const exact = (await (await at(rv)).json()) as Json;
    expect(exact.metadata.resourceVersion).toBe(rv);
    expect(exact.items[0].data).toEqual({ v: "1" });
    const everything = (await (
      await fetch(
        `${server.url}/api/v1/namespaces/default/configmaps?resourceVersion=${rv}&resourceVersionMatch=Exact`,
        { tls },
      )
    ).json()) as Json;
    // Only this namespace's ConfigMaps as they were: no other kind, no other namespace.
    expect(everything.items.length).toBeGreaterThan(1);
    expect(everything.items.every((i: Json) => i.metadata.namespace === "default" && "data" in i)).toBe(true);
    server.compact();
    const gone = await at(rv);
    expect(gone.status).toBe(410);
    expect(((await gone.json()) as Json).reason).toBe("Expired");
    const ahead = await fetch(`${server.url}/api/v1/namespaces/default/configmaps?resourceVersion=999999`, {
      tls,
    });
    expect(ahead.status).toBe(504);
  });

  test("both clients list by label and delete alike, client-node reading the Success Status a delete answers", async () => {
    for (const name of ["l1", "l2", "l3"]) {
      await ours.apply({
        ...configMap(name, {}),
        metadata: { name, namespace: "default", labels: { set: name === "l3" ? "b" : "a" } },
      });
    }
    const theirs = await core.listNamespacedConfigMap({ namespace: "default", labelSelector: "set=a" });
    const mine = await ours.list("v1", "ConfigMap", { namespace: "default", labelSelector: "set=a" });
    expect(theirs.items.map((i: Json) => i.metadata.name)).toEqual(mine.map((i) => i.metadata.name));
    expect(mine.map((i) => i.metadata.name)).toEqual(["l1", "l2"]);
    const uid = (server.get("v1", "ConfigMap", "l1", "default") as Json).metadata.uid;
    const status = await core.deleteNamespacedConfigMap({ name: "l1", namespace: "default" });
    // store.go finalizeDelete: a Success Status naming what went, the resource as kind.
    expect(status).toMatchObject({ status: "Success", details: { name: "l1", kind: "configmaps", uid } });
    expect(await ours.delete("v1", "ConfigMap", "l2", "default")).toBe(true);
    expect(await ours.delete("v1", "ConfigMap", "l1", "default")).toBe(false);
    const gone = await core
      .readNamespacedConfigMap({ name: "l2", namespace: "default" })
      .catch((e: Json) => e);
    expect(gone.code).toBe(404);
  });

  test("SelfSubjectAccessReview allows the admin everything", async () => {
    const authz = kc.makeApiClient(k8s.AuthorizationV1Api);
    const review = await authz.createSelfSubjectAccessReview({
      body: {
        spec: {
          resourceAttributes: {
            verb: "delete",
            group: "apps",
            resource: "deployments",
            namespace: "kube-system",
          },
        },
      },
    });
    expect(review.status).toEqual({ allowed: true });
  });
});

describe.skipIf(!have("openssl", "openssl"))("a restricted user of the test server", () => {
  let server: KubeApiServer;
  let k8s: ClientNode;
  let kc: Json;

  beforeAll(async () => {
    server = await startKubeApiServer({ token: "admin-token", viewerToken: "viewer-token" });
    ({ k8s, kc } = await clientNode(server.viewerKubeconfig!));
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("may read but not write, and SelfSubjectAccessReview says so", async () => {
    const authz = kc.makeApiClient(k8s.AuthorizationV1Api);
    const ask = async (verb: string, resource: string, group = "") =>
      (
        await authz.createSelfSubjectAccessReview({
          body: { spec: { resourceAttributes: { verb, resource, group, namespace: "default" } } },
        })
      ).status;
    expect(await ask("list", "pods")).toEqual({
      allowed: true,
      reason:
        'RBAC: allowed by ClusterRoleBinding "kubehyve-viewer" of ClusterRole "view" to User "kubehyve-viewer"',
    });
    expect(await ask("create", "deployments", "apps")).toEqual({ allowed: false });
    expect(await ask("get", "secrets")).toEqual({ allowed: false });
    const core = kc.makeApiClient(k8s.CoreV1Api);
    expect((await core.listNamespacedConfigMap({ namespace: "default" })).items).toEqual([]);
    const refused = await core
      .createNamespacedConfigMap({ namespace: "default", body: configMap("no", {}) })
      .catch((e: Json) => e);
    expect(refused.code).toBe(403);
    const upstream = JSON.parse(
      readFileSync(join(SAMPLES, "status-403-forbidden-list-pods.kube-oidc-proxy-e2e-excerpt.json"), "utf8"),
    );
    const body = bodyOf(refused);
    expect(Object.keys(body)).toEqual(Object.keys(upstream));
    expect(body).toEqual({
      ...upstream,
      message:
        'configmaps is forbidden: User "kubehyve-viewer" cannot create resource "configmaps" in API group "" in the namespace "default"',
      details: { kind: "configmaps" },
    });
  });
});
