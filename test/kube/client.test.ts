import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createKubeClient, type KubeClientImpl } from "../../src/kube/client.ts";
import { diffManifests } from "../../src/kube/diff.ts";
import { resolveKubeconfig } from "../../src/kube/kubeconfig.ts";
import { isOwnedBy } from "../../src/kube/ownership.ts";
import { isReady, waitFor } from "../../src/kube/readiness.ts";
import { KubeApiError, KubeTransportError } from "../../src/kube/status.ts";
import { pending, poll } from "../../src/lib/poll.ts";
import { createPki } from "../lab/kube/pki.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { have } from "../lab/prereq.ts";

const fast = { baseDelayMs: 10, maxDelayMs: 50 };

const crd = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: "ipaddresspools.metallb.io" },
  spec: {
    group: "metallb.io",
    names: {
      kind: "IPAddressPool",
      listKind: "IPAddressPoolList",
      plural: "ipaddresspools",
      singular: "ipaddresspool",
    },
    scope: "Namespaced",
    versions: [
      {
        name: "v1beta1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: "object",
            properties: {
              spec: {
                type: "object",
                properties: { addresses: { type: "array", items: { type: "string" } } },
              },
            },
          },
        },
      },
    ],
  },
};

describe.skipIf(!have("openssl", "openssl"))("the Kubernetes client against the API test server", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;

  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, fast);
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("reads the server version", async () => {
    expect(await client.version()).toMatchObject({ gitVersion: "v1.35.0", major: "1", minor: "35" });
  });

  test("maps core and apps kinds to resources through aggregated discovery", async () => {
    await client.refreshDiscovery();
    server.requests.length = 0;
    expect(await client.resourceFor("v1", "ConfigMap")).toMatchObject({
      group: "",
      resource: "configmaps",
      namespaced: true,
    });
    expect(await client.resourceFor("apps/v1", "DaemonSet")).toMatchObject({
      group: "apps",
      resource: "daemonsets",
      namespaced: true,
    });
    expect(await client.resourceFor("v1", "Node")).toMatchObject({ resource: "nodes", namespaced: false });
    const discovery = server.requests.filter((r) => r.path === "/api" || r.path === "/apis");
    expect(discovery.map((r) => r.path)).toEqual(["/api", "/apis"]);
    expect(discovery[0]?.accept).toContain("as=APIGroupDiscoveryList");
  });

  test("finds a CRD-defined kind only after the CRD is applied and discovery refreshed", async () => {
    await expect(client.resourceFor("metallb.io/v1beta1", "IPAddressPool")).rejects.toThrow(
      /serves no IPAddressPool in metallb.io\/v1beta1/,
    );
    await client.apply(crd);
    server.reconcile();
    await client.refreshDiscovery();
    expect(await client.resourceFor("metallb.io/v1beta1", "IPAddressPool")).toMatchObject({
      group: "metallb.io",
      resource: "ipaddresspools",
      namespaced: true,
    });
    await client.apply({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "metallb-system" },
    });
    const pool = await client.apply({
      apiVersion: "metallb.io/v1beta1",
      kind: "IPAddressPool",
      metadata: { name: "lab", namespace: "metallb-system" },
      spec: { addresses: ["192.168.1.240-192.168.1.250"] },
    });
    expect(pool.spec.addresses).toEqual(["192.168.1.240-192.168.1.250"]);
    expect(server.get("metallb.io/v1beta1", "IPAddressPool", "lab", "metallb-system")).toBeDefined();
  });

  test("applies with server-side apply: one PATCH per object, JSON body as kubectl sends it, kubehyve as forced field manager", async () => {
    server.requests.length = 0;
    const cm = await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "settings", namespace: "default", labels: { app: "lab" } },
      data: { mode: "one" },
    });
    expect(cm.metadata.resourceVersion).toMatch(/^\d+$/);
    const patch = server.requests.find((r) => r.method === "PATCH");
    expect(patch?.path).toBe("/api/v1/namespaces/default/configmaps/settings");
    expect(patch?.query).toBe("?fieldManager=kubehyve&force=true&fieldValidation=Strict");
    expect(patch?.contentType).toBe("application/apply-patch+yaml");
    expect(JSON.parse(patch!.body!)).toEqual({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "settings", namespace: "default", labels: { app: "lab" } },
      data: { mode: "one" },
    });
    const managed = cm.metadata.managedFields as { manager: string; operation: string }[];
    expect(managed.map((m) => [m.manager, m.operation])).toEqual([["kubehyve", "Apply"]]);
  });

  test("re-applying drops fields the previous apply set and keeps the rest", async () => {
    await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "prune", namespace: "default" },
      data: { a: "1", b: "2" },
    });
    const after = await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "prune", namespace: "default" },
      data: { a: "1" },
    });
    expect(after.data).toEqual({ a: "1" });
  });

  test("gets an object, and undefined for one that does not exist", async () => {
    const cm = await client.get("v1", "ConfigMap", "settings", "default");
    expect(cm?.data).toEqual({ mode: "one" });
    expect(await client.get("v1", "ConfigMap", "missing", "default")).toBeUndefined();
  });

  test("lists with a label selector and gives items their kind and apiVersion back", async () => {
    await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "other", namespace: "kube-system" },
    });
    const labelled = await client.list("v1", "ConfigMap", { labelSelector: "app=lab" });
    expect(labelled.map((o) => o.metadata.name)).toEqual(["settings"]);
    expect(labelled[0]).toMatchObject({ apiVersion: "v1", kind: "ConfigMap" });
    const inKubeSystem = await client.list("v1", "ConfigMap", { namespace: "kube-system" });
    expect(inKubeSystem.map((o) => o.metadata.name)).toEqual(["other"]);
    const byName = await client.list("v1", "ConfigMap", { fieldSelector: "metadata.name=prune" });
    expect(byName.map((o) => o.metadata.namespace)).toEqual(["default"]);
  });

  test("a list longer than a page is read to its end, chunk by chunk, as one list", async () => {
    const paged = await createKubeClient(server.kubeconfigPath, { ...fast, listPageSize: 2 });
    await client.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "paging" } });
    for (const n of [1, 2, 3, 4, 5])
      await client.apply({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: `page-${n}`, namespace: "paging" },
      });
    server.requests.length = 0;
    const all = await paged.list("v1", "ConfigMap", { namespace: "paging" });
    expect(all.map((o) => o.metadata.name)).toEqual(["page-1", "page-2", "page-3", "page-4", "page-5"]);
    const lists = server.requests.filter((r) => r.path === "/api/v1/namespaces/paging/configmaps");
    expect(lists.map((r) => new URLSearchParams(r.query).has("continue"))).toEqual([false, true, true]);
    expect(lists.every((r) => new URLSearchParams(r.query).get("limit") === "2")).toBe(true);
  });

  test("a continue token the server no longer honours (410) starts the list again whole, never going on with the inconsistent token", async () => {
    const paged = await createKubeClient(server.kubeconfigPath, { ...fast, listPageSize: 2 });
    let compacted = false;
    const hook = (r: { query: string; path: string }) => {
      if (compacted || !r.query.includes("continue=")) return;
      compacted = true;
      // Between two chunks: one object more, and the history of the first chunk's revision gone.
      server.put({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "page-0", namespace: "paging" } });
      server.compact();
    };
    server.onRequest.push(hook);
    server.requests.length = 0;
    const all = await paged.list("v1", "ConfigMap", { namespace: "paging" });
    server.onRequest.splice(server.onRequest.indexOf(hook), 1);
    expect(all.map((o) => o.metadata.name)).toEqual([
      "page-0",
      "page-1",
      "page-2",
      "page-3",
      "page-4",
      "page-5",
    ]);
    const lists = server.requests.filter((r) => r.path === "/api/v1/namespaces/paging/configmaps");
    expect(lists.map((r) => r.status)).toEqual([200, 410, 200]);
    // The whole list again, in one answer: no limit, no token (client-go's pager, FullListIfExpired).
    expect(lists.at(-1)!.query).toBe("");
  });

  test("deletes an object and reports false when it was already gone", async () => {
    expect(await client.delete("v1", "ConfigMap", "other", "kube-system")).toBe(true);
    expect(await client.delete("v1", "ConfigMap", "other", "kube-system")).toBe(false);
    expect(server.get("v1", "ConfigMap", "other", "kube-system")).toBeUndefined();
  });

  test("bumps the generation only when the spec changes", async () => {
    const base = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: "default" },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "web" } },
        template: { metadata: { labels: { app: "web" } } },
      },
    };
    const first = await client.apply(base);
    expect(first.metadata.generation).toBe(1);
    const same = await client.apply({ ...base, metadata: { ...base.metadata, labels: { tier: "front" } } });
    expect(same.metadata.generation).toBe(1);
    const changed = await client.apply({ ...base, spec: { ...base.spec, replicas: 3 } });
    expect(changed.metadata.generation).toBe(2);
  });

  test("carries the Status message and the path in API errors", async () => {
    const error = await client
      .apply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "Bad_Name", namespace: "default" } })
      .catch((e) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.httpStatus).toBe(422);
    expect(error.message).toContain("PATCH /api/v1/namespaces/default/configmaps/Bad_Name");
    expect(error.message).toContain(
      'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"',
    );
    const missingNs = await client
      .apply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x", namespace: "nowhere" } })
      .catch((e) => e);
    expect(missingNs.message).toContain('404 NotFound: namespaces "nowhere" not found');
  });

  test("retries on 429 honouring Retry-After, then succeeds", async () => {
    server.injectFault({ path: /^\/version$/, status: 429, times: 2, retryAfter: 1 });
    server.requests.length = 0;
    const started = Date.now();
    expect((await client.version()).gitVersion).toBe("v1.35.0");
    const elapsed = Date.now() - started;
    expect(server.requests.map((r) => r.status)).toEqual([429, 429, 200]);
    // Two Retry-After: 1 waits, far above the 10 ms backoff the client would otherwise use.
    expect(elapsed).toBeGreaterThanOrEqual(1900);
  });

  test("a Retry-After of hours is waited only up to the client's limit, and the error says what the server asked", async () => {
    const hasty = await createKubeClient(server.kubeconfigPath, { ...fast, retries: 2, maxRetryAfterMs: 50 });
    server.injectFault({ path: /^\/version$/, status: 503, times: 3, retryAfter: 36_000 });
    const started = Date.now();
    const error = await hasty.version().catch((e) => e);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.message).toStartWith("GET /version: 503");
    expect(error.message).toEndWith(
      "(gave up after 3 attempts; the server asked to retry after 10 h, and the client waits at most 50 ms)",
    );
  });

  test("retries on 503 and 500 with backoff, then succeeds", async () => {
    server.injectFault({ path: /configmaps\/settings$/, status: 503, times: 1 });
    server.injectFault({ path: /configmaps\/settings$/, status: 500, times: 1 });
    server.requests.length = 0;
    const cm = await client.get("v1", "ConfigMap", "settings", "default");
    expect(cm?.metadata.name).toBe("settings");
    expect(server.requests.map((r) => r.status)).toEqual([503, 500, 200]);
  });

  test("gives up after a bounded number of retries with a clear error", async () => {
    const limited = await createKubeClient(server.kubeconfigPath, { ...fast, retries: 3 });
    server.injectFault({ path: /^\/version$/, status: 503, times: Number.POSITIVE_INFINITY });
    server.requests.length = 0;
    const error = await limited.version().catch((e) => e);
    server.clearFaults();
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.message).toBe(
      "GET /version: 503 ServiceUnavailable: the server is currently unable to handle the request (gave up after 4 attempts)",
    );
    expect(server.requests).toHaveLength(4);
  });

  test("retries a request that times out, and names the timeout when it gives up", async () => {
    const impatient = await createKubeClient(server.kubeconfigPath, { ...fast, timeoutMs: 150, retries: 1 });
    server.injectFault({ path: /^\/version$/, status: 503, times: 1, delayMs: 600 });
    expect((await impatient.version()).gitVersion).toBe("v1.35.0");
    server.injectFault({ path: /^\/version$/, status: 503, times: 2, delayMs: 600 });
    const error = await impatient.version().catch((e) => e);
    expect(error).toBeInstanceOf(KubeTransportError);
    expect(error.message).toMatch(
      new RegExp(
        `^GET ${server.url}/version: no answer from the API server ${server.url} within 150 ms; waited \\d+ ms in all \\(gave up after 2 attempts\\)$`,
      ),
    );
  });

  test("a server that takes the connection and never answers is asked twice, not once per retry", async () => {
    const creds = await resolveKubeconfig(server.kubeconfig, "admin.conf");
    let connections = 0;
    // Accepts, reads and never writes: not even the TLS handshake's answer.
    const silent = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open() {
          connections++;
        },
        data() {},
      },
    });
    try {
      const url = `https://127.0.0.1:${silent.port}`;
      const client = await createKubeClient({ ...creds, server: url }, { ...fast, timeoutMs: 200 });
      const started = Date.now();
      const error = await client.version().catch((e) => e);
      const waited = Date.now() - started;
      expect(error).toBeInstanceOf(KubeTransportError);
      expect(connections).toBe(2);
      const m = error.message.match(
        /^GET (\S+)\/version: no answer from the API server (\S+) within 200 ms; waited (\d+) ms in all \(gave up after 2 attempts\)$/,
      );
      expect([m?.[1], m?.[2]]).toEqual([url, url]);
      expect(Number(m?.[3])).toBeGreaterThanOrEqual(400);
      expect(Number(m?.[3])).toBeLessThanOrEqual(waited);
    } finally {
      silent.stop(true);
    }
  });

  test("an answer that is not the object asked for fails naming the request, never passing for it", async () => {
    await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "real", namespace: "default" },
    });
    const path = "/api/v1/namespaces/default/configmaps/real";
    for (const body of ["{}", "[]", '"text"', '{"kind":"ConfigMap","metadata":{"name":"other"}}']) {
      server.injectFault({ path: /configmaps\/real$/, status: 200, body, times: 1 });
      const error = await client.get("v1", "ConfigMap", "real", "default").catch((e) => e);
      expect([body, error]).toEqual([body, expect.any(KubeApiError)]);
      expect(error.message).toStartWith(
        `GET ${path}: 200 BadResponse: the answer is not ConfigMap default/real: `,
      );
    }
    expect((await client.get("v1", "ConfigMap", "real", "default"))?.metadata.name).toBe("real");
  });

  test("a list answer without a list of objects fails naming the request, never passing for an empty list", async () => {
    for (const body of [
      "{}",
      '{"items":{}}',
      '{"items":[null]}',
      '{"items":[1]}',
      '{"items":[{"metadata":5}]}',
      "[]",
    ]) {
      server.injectFault({ path: /namespaces\/default\/configmaps$/, status: 200, body, times: 1 });
      const error = await client.list("v1", "ConfigMap", { namespace: "default" }).catch((e) => e);
      expect([body, error]).toEqual([body, expect.any(KubeApiError)]);
      expect(error.message).toStartWith(
        "GET /api/v1/namespaces/default/configmaps: 200 BadResponse: the answer is not a ConfigMapList: ",
      );
    }
    expect(Array.isArray(await client.list("v1", "ConfigMap", { namespace: "default" }))).toBe(true);
    server.injectFault({ path: /ingresses$/, status: 200, body: "{}", times: 1 });
    const ingresses = await client.list("networking.k8s.io/v1", "Ingress").catch((e) => e);
    expect(ingresses.message).toContain("the answer is not an IngressList: {}");
  });

  test("a list of another kind is no list of the kind asked for, whatever its items look like", async () => {
    const secrets = JSON.stringify({
      kind: "SecretList",
      apiVersion: "v1",
      metadata: {},
      items: [{ metadata: { name: "token", namespace: "default" }, data: { key: "c2VjcmV0" } }],
    });
    for (const body of [
      secrets,
      secrets.replace('"apiVersion":"v1"', '"apiVersion":"apps/v1"').replace("SecretList", "ConfigMapList"),
    ]) {
      server.injectFault({ path: /namespaces\/default\/configmaps$/, status: 200, body, times: 1 });
      const error = await client.list("v1", "ConfigMap", { namespace: "default" }).catch((e) => e);
      expect([body, error]).toEqual([body, expect.any(KubeApiError)]);
      expect(error.message).toStartWith(
        "GET /api/v1/namespaces/default/configmaps: 200 BadResponse: the answer is not a ConfigMapList of v1: ",
      );
    }
  });

  test("an object of the right name with a field of the wrong type fails naming the request, not in the code that reads it", async () => {
    await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "real", namespace: "default" },
    });
    const path = "/api/v1/namespaces/default/configmaps/real";
    const ref = { apiVersion: "v1", kind: "ConfigMap", name: "real", namespace: "default" };
    const configMap = (extra: Record<string, unknown>, metadata: Record<string, unknown> = {}) =>
      JSON.stringify({
        apiVersion: "v1",
        kind: "ConfigMap",
        ...extra,
        metadata: { name: "real", namespace: "default", ...metadata },
      });
    // Each is read by what reads such an answer: a wait for readiness, a plan, a check of ownership.
    const wait = () => waitFor(client, ref, { timeoutMs: 2000, intervalMs: 10 });
    const plan = () =>
      diffManifests(client, [
        { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "real", namespace: "default" } },
      ]);
    const owned = async () =>
      isOwnedBy((await client.get("v1", "ConfigMap", "real", "default"))!, { stage: "net", clusterId: "c1" });
    const cases: [string, () => Promise<unknown>, string][] = [
      [configMap({ status: { conditions: [null] } }), wait, "status.conditions[0] is not an object"],
      [configMap({ status: { conditions: {} } }), wait, "status.conditions is not a list"],
      [configMap({ status: "Ready" }), wait, "status is not an object"],
      [configMap({ apiVersion: 5 }), wait, "apiVersion is not a string"],
      [configMap({ kind: "Secret" }), wait, "the answer is not ConfigMap default/real: {"],
      [configMap({}, { managedFields: [null] }), plan, "metadata.managedFields[0] is not an object"],
      [
        configMap(
          {},
          {
            managedFields: [
              { manager: "kubehyve", operation: "Apply", fieldsV1: { "f:data": { "k:{bad": {} } } },
            ],
          },
        ),
        plan,
        'metadata.managedFields[0].fieldsV1["f:data"]["k:{bad"] is not a key of JSON',
      ],
      [configMap({}, { labels: "x" }), owned, "metadata.labels is not a map"],
      [
        configMap({}, { labels: { "kubehyve.io/stage": 5 } }),
        owned,
        "metadata.labels.kubehyve.io/stage is not a string",
      ],
    ];
    for (const [body, read, problem] of cases) {
      server.injectFault({ path: /configmaps\/real$/, method: "GET", status: 200, body, times: 1 });
      const error = (await read().catch((e) => e)) as Error;
      server.clearFaults();
      expect([body, error]).toEqual([body, expect.any(KubeApiError)]);
      const prefix = `GET ${path}: 200 BadResponse: ${problem.startsWith("the answer") ? problem : `the answer for ConfigMap default/real is malformed: ${problem}: {`}`;
      expect([body, error.message.slice(0, prefix.length)]).toEqual([body, prefix]);
    }
    // An answer that leaves out what it is is what was asked for, as list items are.
    server.injectFault({
      path: /configmaps\/real$/,
      method: "GET",
      status: 200,
      body: '{"metadata":{"name":"real"}}',
      times: 1,
    });
    expect(await waitFor(client, ref, { timeoutMs: 2000, intervalMs: 10 })).toMatchObject({
      apiVersion: "v1",
      kind: "ConfigMap",
    });
    expect(isReady((await client.get("v1", "ConfigMap", "real", "default"))!).ready).toBe(true);
  });

  test("a Service whose ports or load balancer addresses are no list of objects fails naming the request", async () => {
    const service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: "default" },
      spec: { type: "LoadBalancer", ports: [{ name: "http", port: 80 }] },
    };
    await client.apply(service);
    const ref = { apiVersion: "v1", kind: "Service", name: "web", namespace: "default" };
    for (const [extra, problem] of [
      [{ status: { loadBalancer: { ingress: [null] } } }, "status.loadBalancer.ingress[0] is not an object"],
      [{ status: { loadBalancer: "192.168.1.240" } }, "status.loadBalancer is not an object"],
      [{ spec: { type: "LoadBalancer", ports: { http: 80 } } }, "spec.ports is not a list"],
    ] as const) {
      const body = JSON.stringify({ ...service, ...extra });
      server.injectFault({ path: /services\/web$/, method: "GET", status: 200, body, times: 1 });
      const error = await waitFor(client, ref, { timeoutMs: 2000, intervalMs: 10 }).catch((e) => e);
      server.clearFaults();
      expect([body, error]).toEqual([body, expect.any(KubeApiError)]);
      expect(error.message).toStartWith(
        `GET /api/v1/namespaces/default/services/web: 200 BadResponse: the answer for Service default/web is malformed: ${problem}: `,
      );
    }
  });

  test("list items, apply answers, the version and discovery of the wrong shape fail naming the request", async () => {
    const list = "/api/v1/namespaces/default/configmaps";
    server.injectFault({
      path: /configmaps$/,
      method: "GET",
      status: 200,
      body: '{"items":[{"metadata":{"name":"a"}},{"metadata":{"name":5}}]}',
      times: 1,
    });
    expect((await client.list("v1", "ConfigMap", { namespace: "default" }).catch((e) => e)).message).toBe(
      `GET ${list}: 200 BadResponse: item 2 of a ConfigMapList is malformed: metadata.name is not a string: {"metadata":{"name":5}}`,
    );
    server.injectFault({
      path: /configmaps$/,
      method: "GET",
      status: 200,
      body: '{"items":[{"metadata":{}}]}',
      times: 1,
    });
    expect((await client.list("v1", "ConfigMap", { namespace: "default" }).catch((e) => e)).message).toBe(
      `GET ${list}: 200 BadResponse: item 1 of a ConfigMapList is malformed: metadata.name is missing: {"metadata":{}}`,
    );
    const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "real", namespace: "default" } };
    for (const [body, what] of [
      ["{}", "the answer is not ConfigMap default/real: {}"],
      [
        '{"metadata":{"name":"real","labels":[]}}',
        "the answer for ConfigMap default/real is malformed: metadata.labels is not a map: ",
      ],
      ["{", "the answer says it is JSON and is not: {"],
    ]) {
      server.injectFault({ path: /configmaps\/real$/, method: "PATCH", status: 200, body: body!, times: 1 });
      const error = await client.apply(cm, { dryRun: true }).catch((e) => e);
      expect([body, error]).toEqual([body, expect.any(KubeApiError)]);
      expect(error.message).toStartWith(`PATCH ${list}/real`);
      expect(error.message).toContain(`: 200 BadResponse: ${what}`);
    }
    server.injectFault({ path: /^\/version$/, status: 200, body: '{"gitVersion":135}', times: 1 });
    expect((await client.version().catch((e) => e)).message).toBe(
      'GET /version: 200 BadResponse: no gitVersion in {"gitVersion":135}',
    );
    const fresh = await createKubeClient(server.kubeconfigPath, fast);
    server.injectFault({ path: /^\/api$/, status: 200, body: "{}", times: 1 });
    server.injectFault({ path: /^\/api\/v1$/, status: 200, body: '{"kind":"APIResourceList"}', times: 1 });
    const discovery = await fresh.resourceFor("v1", "ConfigMap").catch((e) => e);
    expect(discovery).toBeInstanceOf(KubeApiError);
    expect(discovery.message).toBe(
      'GET /api/v1: 200 BadResponse: the answer is not an APIResourceList: {"kind":"APIResourceList"}',
    );
  });

  test("an error Status of the wrong shape is still the server's error, with its words where they are words", async () => {
    const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "real", namespace: "default" } };
    const body = JSON.stringify({
      kind: "Status",
      status: "Failure",
      reason: "Conflict",
      message: { text: "not a string" },
      details: { causes: { field: ".data.x" } },
      code: 409,
    });
    server.injectFault({ path: /configmaps\/real$/, method: "PATCH", status: 409, body, times: 1 });
    const error = await client.apply(cm).catch((e) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.message).toBe(
      `PATCH /api/v1/namespaces/default/configmaps/real?fieldManager=kubehyve&force=true&fieldValidation=Strict: 409 Conflict: ${body}`,
    );
  });

  test("explains a request it cannot make without asking the server", async () => {
    server.requests.length = 0;
    await expect(client.get("v1", "ConfigMap", "settings")).rejects.toThrow(
      "GET ConfigMap settings: configmaps are namespaced, so a namespace is required",
    );
    await expect(
      client.apply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "" } }),
    ).rejects.toThrow("cannot apply ConfigMap without metadata.name");
    expect(server.requests.filter((r) => r.path.includes("configmaps"))).toHaveLength(0);
  });

  test("a name or namespace of . or .., or with / or % in it, is refused before a request, since a URL would resolve it to another path", async () => {
    await client.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "victim" } });
    await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "kept", namespace: "victim" },
    });
    server.requests.length = 0;
    const refused = [
      () => client.delete("v1", "ConfigMap", "..", "victim"),
      () => client.delete("v1", "ConfigMap", "kept", "."),
      () => client.get("v1", "ConfigMap", ".", "victim"),
      () =>
        client.apply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "..", namespace: "victim" } }),
      () => client.list("v1", "ConfigMap", { namespace: ".." }),
      // A slash, even encoded, is a separator to kube-apiserver; "%" starts an encoding.
      () => client.delete("v1", "ConfigMap", "x/../../../namespaces/victim", "victim"),
      () => client.get("v1", "ConfigMap", "kept%2F..", "victim"),
      () => client.delete("v1", "ConfigMap", "kept", "victim/configmaps"),
    ];
    for (const call of refused) {
      const error = await call().catch((e) => e);
      expect(error).toBeInstanceOf(Error);
      expect(error.message).toMatch(/(name|namespace) "[^"]*" cannot be in a request path/);
    }
    expect(server.requests).toEqual([]);
    expect(server.get("v1", "Namespace", "victim")).toBeDefined();
    expect(server.get("v1", "ConfigMap", "kept", "victim")).toBeDefined();
  });

  test("does not retry a client error", async () => {
    server.requests.length = 0;
    await client
      .apply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "X", namespace: "default" } })
      .catch(() => {});
    expect(server.requests.filter((r) => r.method === "PATCH")).toHaveLength(1);
  });

  test("falls back to legacy discovery when the server does not speak the aggregated format", async () => {
    const legacy = await startKubeApiServer({ legacyDiscoveryOnly: true });
    try {
      const c = await createKubeClient(legacy.kubeconfigPath, fast);
      expect(await c.resourceFor("apps/v1", "StatefulSet")).toMatchObject({
        resource: "statefulsets",
        namespaced: true,
      });
      expect(await c.resourceFor("storage.k8s.io/v1", "StorageClass")).toMatchObject({ namespaced: false });
      const paths = legacy.requests.map((r) => r.path);
      expect(paths).toContain("/apis/apps/v1");
      expect(paths).toContain("/apis/storage.k8s.io/v1");
    } finally {
      await legacy.stop();
    }
  });

  test("lists every served resource, asking discovery again each time, in the aggregated and the legacy format alike", async () => {
    for (const legacyDiscoveryOnly of [false, true]) {
      const api = await startKubeApiServer({ legacyDiscoveryOnly });
      try {
        const c = await createKubeClient(api.kubeconfigPath, fast);
        const names = async () =>
          (await c.servedResources()).map((r) => `${r.group}/${r.version}/${r.kind} ${r.namespaced}`);
        expect(await names()).toEqual(
          expect.arrayContaining([
            "apps/v1/Deployment true",
            "/v1/PersistentVolumeClaim true",
            "/v1/Namespace false",
          ]),
        );
        // A CRD applied since the last answer is in the next one: what is in a namespace now.
        await c.apply({
          apiVersion: "apiextensions.k8s.io/v1",
          kind: "CustomResourceDefinition",
          metadata: { name: "widgets.demo.example.com" },
          spec: {
            group: "demo.example.com",
            names: { kind: "Widget", plural: "widgets", singular: "widget", listKind: "WidgetList" },
            scope: "Namespaced",
            versions: [
              { name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object" } } },
            ],
          },
        });
        // Served once the server has established it (a moment later): each answer asks again.
        const widget = "demo.example.com/v1/Widget true";
        await poll(
          `the Widget kind in discovery (legacy only: ${legacyDiscoveryOnly})`,
          async () => ((await names()).includes(widget) ? true : pending("not listed yet")),
          { timeoutMs: 20_000, intervalMs: 50 },
        );
        const verbs = (await c.servedResources()).find((r) => r.kind === "SelfSubjectAccessReview")?.verbs;
        expect(verbs).toEqual(["create"]);
      } finally {
        await api.stop();
      }
    }
  });
});

describe.skipIf(!have("openssl", "openssl"))("TLS and authentication of the client", () => {
  let server: KubeApiServer;
  beforeAll(async () => {
    server = await startKubeApiServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("refuses a server whose certificate is not signed by the kubeconfig's CA", async () => {
    const other = createPki({ cn: "some-other-ca" });
    try {
      const creds = await resolveKubeconfig(server.kubeconfig, "admin.conf");
      const client = await createKubeClient({ ...creds, ca: other.caCert }, fast);
      const error = await client.version().catch((e) => e);
      expect(error).toBeInstanceOf(KubeTransportError);
      expect(error.message).toContain(`GET ${server.url}/version: TLS verification failed`);
      expect(error.message).toContain("not signed by the kubeconfig's certificate authority");
      expect(server.requests.filter((r) => r.path === "/version")).toHaveLength(0);
    } finally {
      other.remove();
    }
  });

  test("is refused by the server without a client certificate", async () => {
    const creds = await resolveKubeconfig(server.kubeconfig, "admin.conf");
    const client = await createKubeClient({ ...creds, cert: undefined, key: undefined }, fast);
    const error = await client.version().catch((e) => e);
    expect(error).toBeInstanceOf(KubeTransportError);
    expect(error.message).toContain(
      "TLS handshake failed (EPROTO): the server may have refused the client certificate",
    );
    expect(server.requests.filter((r) => r.path === "/version")).toHaveLength(0);
  });

  test("is refused with a client certificate from another CA", async () => {
    const other = createPki({ cn: "rogue-ca" });
    try {
      const creds = await resolveKubeconfig(server.kubeconfig, "admin.conf");
      const client = await createKubeClient({ ...creds, cert: other.clientCert, key: other.clientKey }, fast);
      await expect(client.version()).rejects.toBeInstanceOf(KubeTransportError);
    } finally {
      other.remove();
    }
  });

  test("authenticates with a bearer token when the kubeconfig has one", async () => {
    const tokenServer = await startKubeApiServer({ token: "s3cr3t-token" });
    try {
      const good = await createKubeClient(tokenServer.kubeconfigPath, fast);
      expect((await good.version()).gitVersion).toBe("v1.35.0");
      const creds = await resolveKubeconfig(tokenServer.kubeconfig, "admin.conf");
      const bad = await createKubeClient({ ...creds, token: "wrong" }, fast);
      await expect(bad.version()).rejects.toThrow("GET /version: 401 Unauthorized: Unauthorized");
    } finally {
      await tokenServer.stop();
    }
  });

  test("retries refused connections and gives up with a clear error", async () => {
    const creds = await resolveKubeconfig(server.kubeconfig, "admin.conf");
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const closedPort = probe.port;
    await probe.stop(true);
    const client = await createKubeClient(
      { ...creds, server: `https://127.0.0.1:${closedPort}` },
      { ...fast, retries: 2 },
    );
    const error = await client.version().catch((e) => e);
    expect(error).toBeInstanceOf(KubeTransportError);
    expect(error.message).toMatch(
      new RegExp(
        `^GET https://127\\.0\\.0\\.1:${closedPort}/version: cannot connect \\(ECONNREFUSED\\).*\\(gave up after 3 attempts\\)$`,
      ),
    );
  });

  test("reaches a server that comes up while it is retrying", async () => {
    const pki = createPki({ cn: "restart-ca" });
    try {
      const first = await startKubeApiServer({ pki });
      const creds = await resolveKubeconfig(first.kubeconfig, "admin.conf");
      await first.stop();
      const client = await createKubeClient(creds, { baseDelayMs: 100, maxDelayMs: 200, retries: 10 });
      const pending = client.version();
      await Bun.sleep(300);
      const second = await startKubeApiServer({ pki, port: first.port });
      try {
        expect((await pending).gitVersion).toBe("v1.35.0");
        expect(second.requests.map((r) => r.path)).toEqual(["/version"]);
      } finally {
        await second.stop();
      }
    } finally {
      pki.remove();
    }
  });
});

describe.skipIf(!have("openssl", "openssl"))("a hostile or broken API server", () => {
  let pki: ReturnType<typeof createPki>;
  let answer: (req: Request) => Response | Promise<Response>;
  let server: ReturnType<typeof Bun.serve>;
  const credentials = (token?: string) => ({
    source: "admin.conf",
    context: "admin",
    server: `https://127.0.0.1:${server.port}`,
    ca: pki.caCert,
    ...(token ? { token } : { cert: pki.clientCert, key: pki.clientKey }),
  });

  beforeAll(() => {
    pki = createPki({ cn: "hostile-ca", serverSans: ["IP:127.0.0.1", "IP:127.0.0.2"] });
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: pki.serverCert, key: pki.serverKey },
      fetch: (req) => answer(req),
    });
  });
  afterAll(() => {
    server?.stop(true);
    pki?.remove();
  });

  test("a redirect to another host is an error naming it, and the other host is never asked", async () => {
    const asked: string[] = [];
    const elsewhere = Bun.serve({
      hostname: "127.0.0.2",
      port: 0,
      tls: { cert: pki.serverCert, key: pki.serverKey },
      fetch: (req) => {
        asked.push(`${req.method} ${new URL(req.url).pathname} ${req.headers.get("authorization")}`);
        return Response.json({ gitVersion: "v0.0.0-elsewhere" });
      },
    });
    try {
      const location = `https://127.0.0.2:${elsewhere.port}/version`;
      answer = () => new Response(null, { status: 307, headers: { location } });
      const client = await createKubeClient(credentials("s3cret"), fast);
      const error = await client.version().catch((e) => e);
      expect(error).toBeInstanceOf(KubeApiError);
      expect(error.message).toContain(`GET /version: 307`);
      expect(error.message).toContain(`redirects to ${location}`);
      expect(asked).toEqual([]);
    } finally {
      elsewhere.stop(true);
    }
  });

  test("a server certificate that names another address is refused, naming the mismatch and the kubeconfig", async () => {
    const other = createPki({ cn: "mismatch-ca", serverSans: ["IP:127.0.0.2", "DNS:elsewhere.example"] });
    const wrong = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: other.serverCert, key: other.serverKey },
      fetch: () => Response.json({ gitVersion: "v1.35.0" }),
    });
    try {
      const client = await createKubeClient(
        { ...credentials(), server: `https://127.0.0.1:${wrong.port}`, ca: other.caCert },
        fast,
      );
      const error = await client.version().catch((e) => e);
      expect(error).toBeInstanceOf(KubeTransportError);
      expect(error.message).toContain(`GET https://127.0.0.1:${wrong.port}/version: TLS verification failed`);
      expect(error.message).toContain("the server certificate does not name this host or address");
      expect(error.message).toContain("(kubeconfig admin.conf)");
    } finally {
      wrong.stop(true);
      other.remove();
    }
  });

  test("an error answer that is no Status is shown by its first 2 KiB, not whole", async () => {
    const page = `<html>${"<p>upstream trouble</p>".repeat(50_000)}</html>`;
    answer = () => new Response(page, { status: 502, headers: { "content-type": "text/html" } });
    const client = await createKubeClient(credentials(), { ...fast, retries: 0 });
    const error = await client.version().catch((e) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.message).toStartWith("GET /version: 502 HTTP502: <html><p>upstream trouble</p>");
    expect(error.message).toContain(`… (${page.length} characters in all)`);
    expect(error.message.length).toBeLessThan(2200);
  });

  test("an answer that never ends is cut off at the client's bound and named, not read into memory until the timeout", async () => {
    let sent = 0;
    answer = () =>
      new Response(
        new ReadableStream({
          pull(c) {
            sent += 65536;
            c.enqueue(new Uint8Array(65536).fill(32));
          },
        }),
        { headers: { "content-type": "application/json" } },
      );
    const client = await createKubeClient(credentials(), {
      ...fast,
      maxResponseBytes: 1024 * 1024,
      timeoutMs: 20_000,
    });
    const error = await client.version().catch((e) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.message).toContain("GET /version: 200");
    expect(error.message).toContain("the answer is longer than 1 MiB");
    expect(sent).toBeLessThan(50 * 1024 * 1024);
  }, 60_000);

  test("an answer that says in advance it is too long is refused without reading it", async () => {
    answer = () =>
      new Response("x".repeat(4096), {
        headers: { "content-type": "application/json", "content-length": "4096" },
      });
    const client = await createKubeClient(credentials(), { ...fast, maxResponseBytes: 1024 });
    const error = await client.version().catch((e) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.message).toContain("the answer is longer than 1 KiB");
  });

  test("an answer that trickles in is given up within the timeout per attempt", async () => {
    answer = () =>
      new Response(
        new ReadableStream({
          async pull(c) {
            await Bun.sleep(100);
            c.enqueue(new TextEncoder().encode(" "));
          },
        }),
        { headers: { "content-type": "application/json" } },
      );
    const client = await createKubeClient(credentials(), { ...fast, timeoutMs: 500 });
    const error = await client.version().catch((e) => e);
    expect(error).toBeInstanceOf(KubeTransportError);
    expect(error.message).toContain("no answer from the API server");
    expect(error.message).toContain("(gave up after 2 attempts)");
  }, 60_000);
});
