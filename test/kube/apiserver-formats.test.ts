/**
 * Formats of the test server held to kube-apiserver's: field validation messages (the cases of
 * kubernetes/kubernetes test/integration/apiserver/field_validation_test.go), OpenAPI documents,
 * Table answers, and the upstream release manifests passing Strict validation.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { applyManifests, parseManifests } from "../../src/kube/apply.ts";
import { createKubeClient, type KubeClientImpl, parseWarnings } from "../../src/kube/client.ts";
import { parseWithDuplicates, parseWithYamlLibrary } from "../lab/kube/fieldvalidation.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { oracle } from "../lab/oracles.ts";
import { have } from "../lab/prereq.ts";

// biome-ignore lint/suspicious/noExplicitAny: API answers
type Json = any;

const fast = { baseDelayMs: 10, maxDelayMs: 50 };

/** A Deployment body with duplicate and unknown fields, as JSON text (duplicates need raw text). */
const badDeployment = (name: string) => `{
  "apiVersion": "apps/v1",
  "kind": "Deployment",
  "metadata": {"name": "${name}", "name": "${name}", "labels": {"app": "web"}, "unknownMeta": "x"},
  "spec": {
    "unknown1": "x",
    "paused": true,
    "paused": false,
    "selector": {"matchLabels": {"app": "web"}},
    "template": {
      "metadata": {"labels": {"app": "web"}},
      "spec": {"containers": [{"name": "web", "image": "nginx", "unknownNested": "x", "imagePullPolicy": "Always", "imagePullPolicy": "Never"}]}
    }
  }
}`;

const badDeploymentYaml = (name: string) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  name: ${name}
  unknownMeta: x
spec:
  unknown1: x
  paused: true
  paused: false
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx
        unknownNested: x
`;

describe("the test server's reading of a JSON body", () => {
  test("gives the value and the duplicates, in order and in both wordings, that the yaml library's reading gives", () => {
    const texts = [
      badDeployment("web"),
      '{"a":1,"a":2,"b":{"c":[{"d":1,"d":2},{"e":"x\\"y","e":3}],"c":4},"s":"}{,[","s":0}',
      '[{"k":1},{"k":2,"k":3}]',
      '{\n  "spec": {\n    "x": 1,\n    "x": 2\n  },\n  "spec": {}\n}',
      "{}",
      '{"a":{}, "b":[], "a":[1,[2,{"z":1,"z":1}]]}',
    ];
    for (const text of texts)
      for (const yaml of [false, true]) {
        const fast = parseWithDuplicates(text, yaml);
        expect(fast).toEqual(parseWithYamlLibrary(text, yaml));
      }
    expect(parseWithDuplicates(texts[1]!, false).duplicates).toEqual([
      'duplicate field "a"',
      'duplicate field "b.c[0].d"',
      'duplicate field "b.c[1].e"',
      'duplicate field "b.c"',
      'duplicate field "s"',
    ]);
  });
});

describe.skipIf(!have("openssl", "openssl"))("formats of the test server", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;
  let call: (
    method: string,
    path: string,
    body?: string,
    headers?: Record<string, string>,
  ) => Promise<Response>;

  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, fast);
    const tls = { ca: server.pki.caCert, cert: server.pki.clientCert, key: server.pki.clientKey };
    call = (method, path, body, headers = {}) =>
      fetch(`${server.url}${path}`, {
        method,
        tls,
        headers: { "Content-Type": "application/json", ...headers },
        body,
      });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("Strict create names every duplicate and unknown field of a JSON body in document order", async () => {
    const res = await call(
      "POST",
      "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict",
      badDeployment("strict"),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).message).toBe(
      'strict decoding error: duplicate field "metadata.name", unknown field "metadata.unknownMeta", unknown field "spec.unknown1", duplicate field "spec.paused", unknown field "spec.template.spec.containers[0].unknownNested", duplicate field "spec.template.spec.containers[0].imagePullPolicy"',
    );
    expect(server.get("apps/v1", "Deployment", "strict", "default")).toBeUndefined();
  });

  test("Strict create of a YAML body lists goyaml's duplicate lines, then the unknown fields in sorted order", async () => {
    const res = await call(
      "POST",
      "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict",
      badDeploymentYaml("strict-yaml"),
      {
        "Content-Type": "application/yaml",
      },
    );
    expect(((await res.json()) as Json).message).toBe(
      'strict decoding error: yaml: unmarshal errors:\n  line 5: key "name" already set in map\n  line 10: key "paused" already set in map, unknown field "metadata.unknownMeta", unknown field "spec.template.spec.containers[0].unknownNested", unknown field "spec.unknown1"',
    );
  });

  test("without fieldValidation (Warn) each problem is a Warning header and the unknown fields are dropped", async () => {
    const res = await call("POST", "/apis/apps/v1/namespaces/default/deployments", badDeployment("warned"));
    expect(res.status).toBe(201);
    const warnings = (res.headers.get("warning") ?? "").split(/, (?=299 )/);
    expect(warnings).toEqual([
      '299 - "duplicate field \\"metadata.name\\""',
      '299 - "unknown field \\"metadata.unknownMeta\\""',
      '299 - "unknown field \\"spec.unknown1\\""',
      '299 - "duplicate field \\"spec.paused\\""',
      '299 - "unknown field \\"spec.template.spec.containers[0].unknownNested\\""',
      '299 - "duplicate field \\"spec.template.spec.containers[0].imagePullPolicy\\""',
    ]);
    const stored = server.get("apps/v1", "Deployment", "warned", "default") as Json;
    expect(stored.spec.unknown1).toBeUndefined();
    expect(stored.metadata.unknownMeta).toBeUndefined();
    expect(stored.spec.paused).toBe(false);
  });

  test("Ignore drops unknown fields without a warning", async () => {
    const res = await call(
      "POST",
      "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Ignore",
      badDeployment("ignored"),
    );
    expect(res.status).toBe(201);
    expect(res.headers.get("warning")).toBeNull();
  });

  test("our client reads the server's Warning headers back into their texts", async () => {
    const res = await call("POST", "/apis/apps/v1/namespaces/default/deployments", badDeployment("heard"));
    expect(parseWarnings(res.headers.get("warning"))).toEqual([
      'duplicate field "metadata.name"',
      'unknown field "metadata.unknownMeta"',
      'unknown field "spec.unknown1"',
      'duplicate field "spec.paused"',
      'unknown field "spec.template.spec.containers[0].unknownNested"',
      'duplicate field "spec.template.spec.containers[0].imagePullPolicy"',
    ]);
  });

  test("an apply with a duplicate field is refused after the apply itself, as patch.go does", async () => {
    const yaml = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\ndata:\n  a: "1"\n  a: "2"\n`;
    const res = await call(
      "PATCH",
      "/api/v1/namespaces/default/configmaps/dup?fieldManager=t&fieldValidation=Strict",
      yaml,
      {
        "Content-Type": "application/apply-patch+yaml",
      },
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).message).toBe(
      'error strict decoding patch: error converting YAML to JSON: yaml: unmarshal errors:\n  line 7: key "a" already set in map',
    );
    const warned = await call("PATCH", "/api/v1/namespaces/default/configmaps/dup?fieldManager=t", yaml, {
      "Content-Type": "application/apply-patch+yaml",
    });
    expect(warned.status).toBe(201);
    expect(warned.headers.get("warning")).toBe('299 - "line 7: key \\"a\\" already set in map"');
  });

  test("an applied field a built-in kind does not declare is the typed-patch error, with the list item by key", async () => {
    const error = await client
      .apply({
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "typo", namespace: "default" },
        spec: {
          selector: { matchLabels: { app: "t" } },
          template: {
            metadata: { labels: { app: "t" } },
            spec: { containers: [{ name: "web", image: "x", imagePolcy: "Always" }] },
          },
        },
      })
      .catch((e) => e);
    expect(error.httpStatus).toBe(500);
    expect(error.apiMessage).toBe(
      'failed to create typed patch object (default/typo; apps/v1, Kind=Deployment): .spec.template.spec.containers[name="web"].imagePolcy: field not declared in schema',
    );
  });

  test("a Strict merge patch names the patch's duplicates, then the patched object's unknown fields, as a 422 on patch", async () => {
    await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "merged", namespace: "default" },
      data: { a: "1" },
    });
    const res = await call(
      "PATCH",
      "/api/v1/namespaces/default/configmaps/merged?fieldValidation=Strict",
      '{"data": {"a": "2", "a": "3"}, "extra": 1}',
      {
        "Content-Type": "application/merge-patch+json",
      },
    );
    expect(res.status).toBe(422);
    const body = (await res.json()) as Json;
    expect(body.details.causes[0].field).toBe("patch");
    expect(body.message).toEndWith('strict decoding error: duplicate field "data.a", unknown field "extra"');
  });

  test("a strategic merge patch merges containers by name and honours $patch: delete; a JSON patch edits by pointer", async () => {
    await client.apply({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "patched", namespace: "default" },
      spec: {
        selector: { matchLabels: { app: "p" } },
        template: {
          metadata: { labels: { app: "p" } },
          spec: {
            containers: [
              { name: "a", image: "a:1" },
              { name: "b", image: "b:1" },
            ],
          },
        },
      },
    });
    const smp = (patch: unknown) =>
      call(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/patched?fieldManager=kubectl-edit",
        JSON.stringify(patch),
        {
          "Content-Type": "application/strategic-merge-patch+json",
        },
      );
    const first = (await (
      await smp({ spec: { template: { spec: { containers: [{ name: "b", image: "b:2" }] } } } })
    ).json()) as Json;
    expect(first.spec.template.spec.containers).toEqual([
      { name: "a", image: "a:1" },
      { name: "b", image: "b:2" },
    ]);
    const second = (await (
      await smp({ spec: { template: { spec: { containers: [{ name: "a", $patch: "delete" }] } } } })
    ).json()) as Json;
    expect(second.spec.template.spec.containers.map((c: Json) => c.name)).toEqual(["b"]);
    const json = await call(
      "PATCH",
      "/apis/apps/v1/namespaces/default/deployments/patched",
      JSON.stringify([
        { op: "add", path: "/metadata/labels", value: { tier: "web" } },
        { op: "replace", path: "/spec/template/spec/containers/0/image", value: "b:3" },
      ]),
      { "Content-Type": "application/json-patch+json" },
    );
    const patched = (await json.json()) as Json;
    expect(patched.metadata.labels).toEqual({ tier: "web" });
    expect(patched.spec.template.spec.containers[0].image).toBe("b:3");
    const failed = await call(
      "PATCH",
      "/apis/apps/v1/namespaces/default/deployments/patched",
      JSON.stringify([{ op: "test", path: "/spec/replicas", value: 7 }]),
      { "Content-Type": "application/json-patch+json" },
    );
    expect(failed.status).toBe(422);
  });

  test("a bad dryRun or fieldValidation value is refused like the options validation does", async () => {
    const res = await call(
      "POST",
      "/api/v1/namespaces/default/configmaps?dryRun=Some",
      JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "opt" } }),
    );
    expect(res.status).toBe(422);
    expect(((await res.json()) as Json).message).toBe(
      'CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["Some"]: supported values: "All"',
    );
  });

  test("serves the OpenAPI v3 discovery, each group version's document, and v2", async () => {
    const crds = parseManifests(
      readFileSync(oracle("metallb/crds/metallb.io_ipaddresspools.yaml"), "utf8"),
      "crd",
    );
    await applyManifests(
      client,
      [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "metallb-system" } }, ...crds],
      { intervalMs: 10 },
    );
    const root = (await (await call("GET", "/openapi/v3")).json()) as Json;
    expect(Object.keys(root.paths)).toEqual(
      expect.arrayContaining(["api/v1", "apis/apps/v1", "apis/metallb.io/v1beta1"]),
    );
    const url = root.paths["apis/metallb.io/v1beta1"].serverRelativeURL as string;
    expect(url).toMatch(/^\/openapi\/v3\/apis\/metallb\.io\/v1beta1\?hash=[0-9A-F]{128}$/);
    const doc = (await (await call("GET", url)).json()) as Json;
    expect(doc.openapi).toBe("3.0.0");
    const pool = doc.components.schemas["io.metallb.v1beta1.IPAddressPool"];
    expect(pool["x-kubernetes-group-version-kind"]).toEqual([
      { group: "metallb.io", kind: "IPAddressPool", version: "v1beta1" },
    ]);
    expect(pool.properties.spec.properties.addresses.type).toBe("array");
    expect(doc.components.schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]).toBeDefined();
    const apps = (await (await call("GET", "/openapi/v3/apis/apps/v1")).json()) as Json;
    const patch = apps.paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"].patch;
    expect(patch["x-kubernetes-group-version-kind"]).toEqual({
      group: "apps",
      kind: "Deployment",
      version: "v1",
    });
    expect(patch.parameters.filter((p: Json) => p.in === "query").map((p: Json) => p.name)).toContain(
      "fieldValidation",
    );
    const containers = apps.components.schemas["io.k8s.api.core.v1.PodSpec"].properties.containers;
    expect(containers["x-kubernetes-list-type"]).toBe("map");
    expect(containers["x-kubernetes-list-map-keys"]).toEqual(["name"]);
    const v2 = (await (await call("GET", "/openapi/v2")).json()) as Json;
    expect(v2.swagger).toBe("2.0");
    expect(JSON.stringify(v2.definitions["io.k8s.api.apps.v1.Deployment"])).toContain(
      "#/definitions/io.k8s.api.apps.v1.DeploymentSpec",
    );
  });

  test("answers Tables with the columns kube-apiserver prints, and a CRD's additionalPrinterColumns", async () => {
    const table = { Accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" };
    await client.apply({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "tabled", namespace: "default" },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "t" } },
        template: {
          metadata: { labels: { app: "t" } },
          spec: { containers: [{ name: "web", image: "nginx:1" }] },
        },
      },
    });
    server.reconcile();
    const deployments = (await (
      await call("GET", "/apis/apps/v1/namespaces/default/deployments/tabled", undefined, table)
    ).json()) as Json;
    expect(deployments.kind).toBe("Table");
    expect(deployments.apiVersion).toBe("meta.k8s.io/v1");
    expect(deployments.columnDefinitions.map((c: Json) => [c.name, c.priority])).toEqual([
      ["Name", 0],
      ["Ready", 0],
      ["Up-to-date", 0],
      ["Available", 0],
      ["Age", 0],
      ["Containers", 1],
      ["Images", 1],
      ["Selector", 1],
    ]);
    expect(deployments.rows[0].cells.slice(0, 4)).toEqual(["tabled", "2/2", 2, 2]);
    expect(deployments.rows[0].cells.slice(5)).toEqual(["web", "nginx:1", "app=t"]);
    expect(deployments.rows[0].object).toMatchObject({
      kind: "PartialObjectMetadata",
      metadata: { name: "tabled" },
    });

    await client.apply({
      apiVersion: "metallb.io/v1beta1",
      kind: "IPAddressPool",
      metadata: { name: "lab", namespace: "metallb-system" },
      spec: { addresses: ["192.168.1.240/28"] },
    });
    const pools = (await (
      await call("GET", "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools", undefined, table)
    ).json()) as Json;
    expect(pools.columnDefinitions.map((c: Json) => c.name)).toEqual([
      "Name",
      "Auto Assign",
      "Avoid Buggy IPs",
      "Addresses",
    ]);
    expect(pools.rows[0].cells).toEqual(["lab", null, null, ["192.168.1.240/28"]]);

    const roles = (await (
      await call("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", undefined, table)
    ).json()) as Json;
    expect(roles.columnDefinitions.map((c: Json) => [c.name, c.type])).toEqual([
      ["Name", "string"],
      ["Created At", "date"],
    ]);
  });

  test("the built-in objects of the upstream release manifests pass Strict validation", async () => {
    const files = [
      "releases/metallb/config/manifests/metallb-native.yaml",
      "releases/calico/manifests/tigera-operator.yaml",
      "releases/rook/deploy/examples/common.yaml",
      "releases/rook/deploy/examples/operator.yaml",
      "traefik/kubernetes-crd-rbac.yml",
      "traefik/kubernetes-gateway-traefik-lb-svc.yml",
      "traefik/kubernetes-whoami-svc.yml",
    ];
    const objects = files.flatMap((f) => parseManifests(readFileSync(oracle(f), "utf8"), f));
    const clusterScoped = [
      "Namespace",
      "ClusterRole",
      "ClusterRoleBinding",
      "CustomResourceDefinition",
      "ValidatingWebhookConfiguration",
      "StorageClass",
    ];
    const builtIn = objects
      .filter((o) => !o.apiVersion.includes(".") || o.apiVersion.includes("k8s.io"))
      // Traefik's samples rely on kubectl's default namespace.
      .map((o) =>
        o.metadata.namespace || clusterScoped.includes(o.kind)
          ? o
          : { ...o, metadata: { ...o.metadata, namespace: "default" } },
      );
    expect(builtIn.length).toBeGreaterThan(60);
    // Namespaces the manifests assume exist.
    for (const ns of ["tigera-operator", "rook-ceph"])
      await client.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    const applied = await applyManifests(client, builtIn, { intervalMs: 10 });
    expect(applied).toHaveLength(builtIn.length);
  });
});
