import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { applyManifests, parseManifests } from "../../src/kube/apply.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import { defaultControllers } from "../lab/kube/controllers.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { oracle } from "../lab/oracles.ts";
import { have } from "../lab/prereq.ts";

// biome-ignore lint/suspicious/noExplicitAny: walking JSON documents
type Json = any;

const SAMPLES = oracle("kubernetes/api-samples");
const sampleText = (name: string) => readFileSync(join(SAMPLES, name), "utf8");
const oracleText = (path: string) => readFileSync(join(SAMPLES, "../..", path), "utf8");

/** The body of a raw HTTP exchange sample: whatever follows the first blank line. */
function httpBody(name: string): unknown {
  const text = sampleText(name).replace(/\r\n/g, "\n");
  return JSON.parse(text.slice(text.indexOf("\n\n") + 2));
}

describe.skipIf(!have("openssl", "openssl"))("the Kubernetes API test server", () => {
  let server: KubeApiServer;
  let call: (method: string, path: string, body?: unknown, contentType?: string) => Promise<Response>;

  beforeAll(async () => {
    server = await startKubeApiServer();
    const tls = { ca: server.pki.caCert, cert: server.pki.clientCert, key: server.pki.clientKey };
    call = (method, path, body, contentType = "application/json") =>
      fetch(`${server.url}${path}`, {
        method,
        tls,
        headers: body === undefined ? {} : { "Content-Type": contentType },
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("answers a missing object with a NotFound Status shaped like upstream's", async () => {
    const res = await call("GET", "/api/v1/namespaces/default/services/missing");
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("application/json");
    const upstream = JSON.parse(sampleText("status-404-notfound-service.kubectl-edit-recorded.json"));
    expect(await res.json()).toEqual(upstream);
  });

  test("names the group of a missing object outside the core group", async () => {
    const res = await call("GET", "/apis/apps/v1/namespaces/default/deployments/web");
    expect(await res.json()).toMatchObject({
      message: 'deployments.apps "web" not found',
      details: { name: "web", group: "apps", kind: "deployments" },
    });
  });

  test("answers an unknown path with the generic NotFound", async () => {
    const res = await call("GET", "/apis/metallb.io/v1beta1/namespaces/default/ipaddresspools");
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({
      message: "the server could not find the requested resource",
      details: {},
    });
  });

  test("serves lists like upstream: XList, metadata.resourceVersion, items without kind", async () => {
    const sa = {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "foobar", namespace: "default" },
    };
    expect((await call("POST", "/api/v1/namespaces/default/serviceaccounts", sa)).status).toBe(201);
    const list = (await (await call("GET", "/api/v1/namespaces/default/serviceaccounts")).json()) as Record<
      string,
      unknown
    >;
    const upstream = httpBody("list-serviceaccounts.client-go-golden.http") as Record<string, unknown>;
    expect(Object.keys(list).sort()).toEqual(Object.keys(upstream).sort());
    expect(list).toMatchObject({
      kind: "ServiceAccountList",
      apiVersion: "v1",
      metadata: { resourceVersion: expect.any(String) },
    });
    const items = list.items as Record<string, Record<string, unknown>>[];
    expect(items).toHaveLength(1);
    expect(Object.keys(items[0]!)).toEqual(["metadata"]);
    const upstreamMeta = Object.keys((upstream as Json).items[0].metadata).sort();
    for (const k of upstreamMeta) expect(Object.keys(items[0]!.metadata!)).toContain(k);
  });

  test("refuses to create an object twice with AlreadyExists", async () => {
    const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "twice" } };
    expect((await call("POST", "/api/v1/namespaces/default/configmaps", cm)).status).toBe(201);
    const res = await call("POST", "/api/v1/namespaces/default/configmaps", cm);
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({
      reason: "AlreadyExists",
      message: 'configmaps "twice" already exists',
    });
  });

  test("refuses an update based on a stale resourceVersion with Conflict", async () => {
    const created = (await (
      await call("POST", "/api/v1/namespaces/default/configmaps", {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "rv" },
      })
    ).json()) as Record<string, unknown>;
    const fresh = await call("PUT", "/api/v1/namespaces/default/configmaps/rv", {
      ...created,
      data: { a: "1" },
    });
    expect(fresh.status).toBe(200);
    const stale = await call("PUT", "/api/v1/namespaces/default/configmaps/rv", {
      ...created,
      data: { a: "2" },
    });
    expect(stale.status).toBe(409);
    expect(((await stale.json()) as { message: string }).message).toBe(
      'Operation cannot be fulfilled on configmaps "rv": the object has been modified; please apply your changes to the latest version and try again',
    );
  });

  test("holds an apply to the uid and resourceVersion it names, as kube-apiserver does", async () => {
    const path = "/api/v1/namespaces/default/configmaps/pinned";
    const applyAs = (metadata: Record<string, unknown>) =>
      call(
        "PATCH",
        `${path}?fieldManager=test`,
        { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "pinned", ...metadata }, data: { a: "1" } },
        "application/apply-patch+yaml",
      );
    // Nothing there: a uid is a 409 and nothing is created (patch.go applyPatch).
    const absent = await applyAs({ uid: "0e6f3a6e-0000-4000-8000-000000000001" });
    expect(absent.status).toBe(409);
    expect(await absent.json()).toMatchObject({
      reason: "Conflict",
      message:
        'Operation cannot be fulfilled on configmaps "pinned": uid mismatch: the provided object specified uid 0e6f3a6e-0000-4000-8000-000000000001, and no existing object was found',
    });
    expect(server.get("v1", "ConfigMap", "pinned", "default")).toBeUndefined();
    // A resourceVersion on create-via-apply is wiped (store.go Update).
    expect((await applyAs({ resourceVersion: "1" })).status).toBe(201);
    const live = server.get("v1", "ConfigMap", "pinned", "default")!;
    const meta = live.metadata as { uid: string; resourceVersion: string };
    expect((await applyAs({ uid: meta.uid, resourceVersion: meta.resourceVersion })).status).toBe(200);
    const stale = await applyAs({ resourceVersion: "1" });
    expect(stale.status).toBe(409);
    expect(((await stale.json()) as { message: string }).message).toContain("the object has been modified");
    const other = await applyAs({ uid: "0e6f3a6e-0000-4000-8000-000000000002" });
    expect(other.status).toBe(422);
    expect(await other.json()).toMatchObject({
      reason: "Invalid",
      message:
        'ConfigMap "pinned" is invalid: metadata.uid: Invalid value: "0e6f3a6e-0000-4000-8000-000000000002": field is immutable',
      details: { causes: [{ reason: "FieldValueInvalid", field: "metadata.uid" }] },
    });
  });

  test("takes managedFields a patch sets, resets them on one empty entry, and holds a patch to its resourceVersion", async () => {
    const path = "/api/v1/namespaces/default/configmaps/fields";
    const merge = (body: unknown) =>
      call("PATCH", `${path}?fieldManager=editor`, body, "application/merge-patch+json");
    expect(
      (
        await call(
          "PATCH",
          `${path}?fieldManager=one`,
          { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "fields" }, data: { a: "1" } },
          "application/apply-patch+yaml",
        )
      ).status,
    ).toBe(201);
    const live = server.get("v1", "ConfigMap", "fields", "default")!;
    const entries = (live.metadata as { managedFields: Record<string, unknown>[] }).managedFields;
    const renamed = entries.map((e) => ({ ...e, manager: "two" }));
    const set = await merge({ metadata: { managedFields: renamed } });
    expect(set.status).toBe(200);
    // Nothing but managedFields changed: the editor owns nothing (fieldmanager.go decodeLiveOrNew).
    const after = server.get("v1", "ConfigMap", "fields", "default")!;
    expect(
      (after.metadata as { managedFields: { manager: string }[] }).managedFields.map((e) => e.manager),
    ).toEqual(["two"]);
    const stale = await merge({ metadata: { resourceVersion: "1", labels: { x: "y" } } });
    expect(stale.status).toBe(409);
    expect((await merge({ metadata: { managedFields: [{}] } })).status).toBe(200);
    expect(
      (server.get("v1", "ConfigMap", "fields", "default")!.metadata as { managedFields?: unknown })
        .managedFields,
    ).toBeUndefined();
  });

  test("serves lists in chunks with limit and continue, and refuses a token it did not make", async () => {
    for (const n of ["c1", "c2", "c3"])
      await call("POST", "/api/v1/namespaces/kube-public/configmaps", {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: n },
      });
    const first = (await (
      await call("GET", "/api/v1/namespaces/kube-public/configmaps?limit=2")
    ).json()) as Json;
    expect(first.items.map((i: Json) => i.metadata.name)).toEqual(["c1", "c2"]);
    expect(first.metadata.remainingItemCount).toBe(1);
    const token = first.metadata.continue as string;
    expect(JSON.parse(Buffer.from(token, "base64url").toString())).toMatchObject({ v: "meta.k8s.io/v1" });
    const rest = (await (
      await call("GET", `/api/v1/namespaces/kube-public/configmaps?limit=2&continue=${token}`)
    ).json()) as Json;
    expect(rest.items.map((i: Json) => i.metadata.name)).toEqual(["c3"]);
    expect(rest.metadata.continue).toBeUndefined();
    expect(rest.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
    const bad = await call("GET", "/api/v1/namespaces/kube-public/configmaps?limit=2&continue=bm9wZQ");
    expect(bad.status).toBe(400);
    // A write after the first chunk, then the compaction of the revisions before it.
    await call("POST", "/api/v1/namespaces/kube-public/configmaps", {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "c0" },
    });
    server.compact();
    const expired = await call("GET", `/api/v1/namespaces/kube-public/configmaps?limit=2&continue=${token}`);
    expect(expired.status).toBe(410);
    const status = (await expired.json()) as Json;
    expect(status.reason).toBe("Expired");
    expect(status.message).toStartWith(
      "The provided continue parameter is too old to display a consistent list result.",
    );
    expect(JSON.parse(Buffer.from(status.metadata.continue, "base64url").toString()).rv).toBe(-1);
  });

  test("requires a field manager for apply, as upstream does", async () => {
    const res = await call(
      "PATCH",
      "/api/v1/namespaces/default/configmaps/x",
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
      "application/apply-patch+yaml",
    );
    expect(res.status).toBe(422);
    expect(((await res.json()) as { message: string }).message).toContain("fieldManager: Required value");
  });

  test("refuses a body whose name differs from the URL", async () => {
    const res = await call(
      "PATCH",
      "/api/v1/namespaces/default/configmaps/x?fieldManager=t",
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n",
      "application/apply-patch+yaml",
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toBe(
      "the name of the object (y) does not match the name on the URL (x)",
    );
  });

  test("reports invalid objects with causes, like the upstream 422 sample", async () => {
    server.validators.push((obj) =>
      obj.kind === "Service" && (obj as { spec?: { clusterIP?: string } }).spec?.clusterIP === "bad"
        ? [
            {
              reason: "FieldValueInvalid",
              message: "Invalid value: \"bad\": must be empty, 'None', or a valid IP address",
              field: "spec.clusterIP",
            },
          ]
        : [],
    );
    const res = await call("POST", "/api/v1/namespaces/default/services", {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "svc2" },
      spec: { clusterIP: "bad" },
    });
    server.validators.pop();
    const body = (await res.json()) as Record<string, unknown>;
    const upstream = JSON.parse(sampleText("status-422-invalid-service-create.kubectl-edit-recorded.json"));
    expect(Object.keys(body).sort()).toEqual(Object.keys(upstream).sort());
    expect(body).toMatchObject({
      code: 422,
      reason: "Invalid",
      message:
        'Service "svc2" is invalid: spec.clusterIP: Invalid value: "bad": must be empty, \'None\', or a valid IP address',
      details: {
        name: "svc2",
        kind: "Service",
        causes: [{ field: "spec.clusterIP", reason: "FieldValueInvalid" }],
      },
    });
  });

  test("serves a Namespace at /api/v1/namespaces/NAME and deletes what is in it with it", async () => {
    await call("POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "scratch" },
    });
    const ns = (await (await call("GET", "/api/v1/namespaces/scratch")).json()) as {
      status: { phase: string };
    };
    expect(ns.status.phase).toBe("Active");
    await call("POST", "/api/v1/namespaces/scratch/configmaps", {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "c" },
    });
    expect((await call("DELETE", "/api/v1/namespaces/scratch")).status).toBe(200);
    expect(server.get("v1", "ConfigMap", "c", "scratch")).toBeUndefined();
  });

  test("keeps status out of main-resource writes and takes it through the status subresource", async () => {
    server.controllers.length = 0;
    try {
      const pvc = {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name: "data" },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
        status: { phase: "Bound" },
      };
      const created = (await (
        await call("POST", "/api/v1/namespaces/default/persistentvolumeclaims", pvc)
      ).json()) as Record<string, unknown>;
      expect(created.status).toBeUndefined();
      const patched = await call(
        "PATCH",
        "/api/v1/namespaces/default/persistentvolumeclaims/data/status",
        { status: { phase: "Bound" } },
        "application/merge-patch+json",
      );
      expect(((await patched.json()) as { status: unknown }).status).toEqual({ phase: "Bound" });
    } finally {
      server.controllers.push(...defaultControllers());
    }
  });

  test("serves a CRD's kind once it is Established and forgets it when the CRD goes", async () => {
    const crd = parse(sampleText("crd-established-namesaccepted.argo-cd.yaml"));
    delete crd.status;
    const res = await call(
      "PATCH",
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}?fieldManager=t`,
      JSON.stringify(crd),
      "application/apply-patch+yaml",
    );
    expect(res.status).toBe(201);
    server.reconcile();
    const stored = server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "examples.example.io");
    expect((stored?.status as Json)?.conditions.map((c: Json) => [c.type, c.status])).toEqual([
      ["NamesAccepted", "True"],
      ["Established", "True"],
    ]);
    const ex = {
      apiVersion: "example.io/v1alpha1",
      kind: "Example",
      metadata: { name: "one" },
      spec: { x: 1 },
    };
    expect((await call("POST", "/apis/example.io/v1alpha1/namespaces/default/examples", ex)).status).toBe(
      201,
    );
    const list = (await (await call("GET", "/apis/example.io/v1alpha1/examples")).json()) as {
      items: { kind: string }[];
    };
    // Custom resource lists are unstructured: their items keep kind and apiVersion.
    expect(list.items.map((i) => i.kind)).toEqual(["Example"]);
    await call("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/examples.example.io");
    expect((await call("GET", "/apis/example.io/v1alpha1/namespaces/default/examples/one")).status).toBe(404);
    const legacy = await call("GET", "/apis/example.io/v1alpha1");
    expect(legacy.status).toBe(404);
  });

  test("rejects with 429 text like API Priority and Fairness, with Retry-After", async () => {
    server.injectFault({ path: /^\/version$/, status: 429, times: 1, retryAfter: 3 });
    const res = await call("GET", "/version");
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("3");
    expect(await res.text()).toBe("Too many requests, please try again later.\n");
    expect((await call("GET", "/version")).status).toBe(200);
  });

  test("reports a Node created by setNodeReady with the kubelet's fields", async () => {
    server.setNodeReady("cp1", true, {
      address: "192.168.1.21",
      labels: { "node-role.kubernetes.io/control-plane": "" },
    });
    const node = (await (await call("GET", "/api/v1/nodes/cp1")).json()) as Record<
      string,
      Record<string, unknown>
    >;
    const upstream = parse(sampleText("node-v1.23.3-kube-worker-1.website-debug-cluster-excerpt.yaml"));
    const upstreamReady = upstream.status.conditions.find((c: { type: string }) => c.type === "Ready");
    const ready = (node.status!.conditions as Json[]).find((c) => c.type === "Ready");
    expect(Object.keys(ready).sort()).toEqual(Object.keys(upstreamReady).sort());
    expect(ready).toMatchObject({ status: "True", reason: "KubeletReady" });
    expect(node.status!.addresses).toEqual([
      { address: "192.168.1.21", type: "InternalIP" },
      { address: "cp1", type: "Hostname" },
    ]);
  });
});

describe.skipIf(!have("openssl", "openssl"))("validation of custom resources against their CRD", () => {
  let server: KubeApiServer;
  let client: Awaited<ReturnType<typeof createKubeClient>>;
  const pool = () => parse(oracleText("metallb/samples/ipaddresspool_simple.yaml"));

  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
    const crd = parseManifests(oracleText("metallb/crds/metallb.io_ipaddresspools.yaml"), "crd");
    await applyManifests(
      client,
      [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "metallb-system" } }, ...crd],
      {
        intervalMs: 10,
      },
    );
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("accepts the upstream sample", async () => {
    const stored = await client.apply(pool());
    expect(stored.spec.addresses).toEqual(pool().spec.addresses);
  });

  test("refuses an applied field the schema lacks the way the API server does, and the client does not retry it", async () => {
    const typo = pool();
    typo.spec.adresses = typo.spec.addresses;
    server.requests.length = 0;
    await expect(client.apply(typo)).rejects.toThrow(
      "PATCH /apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/example?fieldManager=kubehyve&force=true&fieldValidation=Strict: 500 InternalError: failed to create typed patch object (metallb-system/example; metallb.io/v1beta1, Kind=IPAddressPool): .spec.adresses: field not declared in schema",
    );
    expect(server.requests.filter((r) => r.method === "PATCH")).toHaveLength(1);
  });

  test("refuses a wrongly typed value with 422 and its field", async () => {
    const wrong = pool();
    wrong.spec.autoAssign = "yes";
    const error = await client.apply(wrong).catch((e) => e);
    expect(error.httpStatus).toBe(422);
    expect(error.apiMessage).toBe(
      'IPAddressPool.metallb.io "example" is invalid: spec.autoAssign: Invalid value: "yes": spec.autoAssign in body must be of type boolean: "yes"',
    );
    expect(error.causes).toEqual([
      {
        reason: "FieldValueTypeInvalid",
        field: "spec.autoAssign",
        message: 'Invalid value: "yes": spec.autoAssign in body must be of type boolean: "yes"',
      },
    ]);
  });

  test("refuses unknown fields on create with fieldValidation=Strict", async () => {
    const tls = { ca: server.pki.caCert, cert: server.pki.clientCert, key: server.pki.clientKey };
    const body = {
      ...pool(),
      metadata: { name: "strict", namespace: "metallb-system" },
      spec: { addresses: ["10.0.0.0/30"], extra: 1 },
    };
    const res = await fetch(
      `${server.url}/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools?fieldValidation=Strict`,
      {
        method: "POST",
        tls,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      },
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toBe(
      'strict decoding error: unknown field "spec.extra"',
    );
  });
});
