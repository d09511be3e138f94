import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { applyManifests, applyOwned, parseManifests } from "../../src/kube/apply.ts";
import { createKubeClient, type KubeClientImpl } from "../../src/kube/client.ts";
import { isOwnedBy, withOwner } from "../../src/kube/ownership.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { oracle } from "../lab/oracles.ts";
import { have } from "../lab/prereq.ts";

const readOracle = (path: string) => readFileSync(oracle(path), "utf8");

describe("parsing manifests", () => {
  test("reads every CRD of Traefik's upstream multi-document file", () => {
    const objects = parseManifests(readOracle("traefik/kubernetes-crd-definition-v1.yml"), "traefik crds");
    expect(objects.length).toBeGreaterThan(5);
    expect(objects.every((o) => o.kind === "CustomResourceDefinition")).toBe(true);
    expect(objects.map((o) => o.metadata.name)).toContain("ingressroutes.traefik.io");
  });

  test("skips empty documents and flattens a List", () => {
    const text = `---
# only a comment
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a, namespace: default}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b, namespace: default}
`;
    expect(parseManifests(text, "list.yaml").map((o) => o.metadata.name)).toEqual(["a", "b"]);
  });

  test("names the document that lacks a name", () => {
    const text =
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n";
    expect(() => parseManifests(text, "bad.yaml")).toThrow(
      "manifest bad.yaml: document 2 (ConfigMap): metadata.name is missing",
    );
  });
});

describe.skipIf(!have("openssl", "openssl"))("applying manifests", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;

  beforeAll(async () => {
    server = await startKubeApiServer({ reconcileDelayMs: 100 });
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("applies MetalLB's CRD before its custom resource, whatever the input order", async () => {
    const crds = parseManifests(readOracle("metallb/crds/metallb.io_ipaddresspools.yaml"), "metallb crd");
    const pool = parseManifests(readOracle("metallb/samples/ipaddresspool_simple.yaml"), "metallb sample");
    const ns = { apiVersion: "v1", kind: "Namespace", metadata: { name: "metallb-system" } };
    // Discovery is cached before the CRD exists: the client must refresh it to find IPAddressPool.
    await client.resourceFor("v1", "Namespace");
    const applied = await applyManifests(client, [...pool, ...crds, ns], { intervalMs: 20 });
    expect(applied.map((o) => o.kind)).toEqual(["Namespace", "CustomResourceDefinition", "IPAddressPool"]);
    const patches = server.requests.filter((r) => r.method === "PATCH").map((r) => r.path);
    expect(patches).toEqual([
      "/api/v1/namespaces/metallb-system",
      "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ipaddresspools.metallb.io",
      `/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/${pool[0]!.metadata.name}`,
    ]);
  });

  test("fails naming the CRD that never becomes Established", async () => {
    const crds = parseManifests(readOracle("metallb/crds/metallb.io_l2advertisements.yaml"), "metallb crd");
    server.setReady(
      {
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        name: "l2advertisements.metallb.io",
      },
      false,
    );
    await expect(applyManifests(client, crds, { crdTimeoutMs: 400, intervalMs: 50 })).rejects.toThrow(
      "timed out after 0.4s waiting for CustomResourceDefinition l2advertisements.metallb.io to be Established: condition Established is False (Installing: the initial names have not been accepted yet)",
    );
  });
});

describe.skipIf(!have("openssl", "openssl"))("applying a stage's object without taking over another", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;
  const owner = { stage: "net", clusterId: "6f1c8a52-3d4e-4f8a-9b2c-1d2e3f4a5b6c" };
  const cm = (name: string, v: string) =>
    withOwner(
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "default" }, data: { v } },
      owner,
    );
  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("one of ours replaced by someone else's between the read and the apply is left to them", async () => {
    await applyOwned(client, cm("swapped", "1"), owner);
    let swapped = false;
    const racing = {
      ...client,
      get: async (...args: Parameters<KubeClientImpl["get"]>) => {
        const live = await client.get(...args);
        if (!swapped) {
          swapped = true;
          server.delete("v1", "ConfigMap", "swapped", "default");
          server.put({
            apiVersion: "v1",
            kind: "ConfigMap",
            metadata: { name: "swapped", namespace: "default" },
            data: { v: "theirs" },
          });
        }
        return live;
      },
    } as KubeClientImpl;
    await expect(applyOwned(racing, cm("swapped", "2"), owner)).rejects.toThrow(
      "ConfigMap default/swapped is there and stage net of this cluster did not make it",
    );
    expect(server.get("v1", "ConfigMap", "swapped", "default")?.data).toEqual({ v: "theirs" });
  });

  test("one of ours removed between the read and the apply is made again, and is ours", async () => {
    await applyOwned(client, cm("removed", "1"), owner);
    let removed = false;
    const racing = {
      ...client,
      get: async (...args: Parameters<KubeClientImpl["get"]>) => {
        const live = await client.get(...args);
        if (!removed) {
          removed = true;
          server.delete("v1", "ConfigMap", "removed", "default");
        }
        return live;
      },
    } as KubeClientImpl;
    const stored = await applyOwned(racing, cm("removed", "2"), owner);
    expect(stored.data).toEqual({ v: "2" });
    expect(isOwnedBy(stored, owner)).toBe(true);
  });
});

describe.skipIf(!have("openssl", "openssl"))("an object kubehyve created and did not get to apply", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;
  const owner = { stage: "net", clusterId: "6f1c8a52-3d4e-4f8a-9b2c-1d2e3f4a5b6c" };
  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("is the stage's, and the next apply leaves only its apply's managedFields entry", async () => {
    const obj = withOwner(
      {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "half", namespace: "default" },
        data: { v: "1" },
      },
      owner,
    );
    // A run stopped between the create and the apply (or a POST retried after a lost answer).
    await client.create(obj);
    const stored = await applyOwned(client, obj, owner);
    expect(isOwnedBy(stored, owner)).toBe(true);
    const entries = server.get("v1", "ConfigMap", "half", "default")!.metadata as {
      managedFields: { manager: string; operation: string }[];
    };
    expect(entries.managedFields.map((e) => `${e.manager} ${e.operation}`)).toEqual(["kubehyve Apply"]);
  });

  test("a writer that keeps changing it does not fail the apply: the create's entry is dropped by a later one", async () => {
    const obj = withOwner(
      {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "busy", namespace: "default" },
        data: { v: "1" },
      },
      owner,
    );
    // Before each tidy-up, a controller's write: its resourceVersion is always stale.
    const hook = (r: { contentType: string | null; path: string }) => {
      if (r.contentType !== "application/merge-patch+json" || !r.path.endsWith("/busy")) return;
      const live = server.get("v1", "ConfigMap", "busy", "default")!;
      server.put({
        ...live,
        metadata: { ...(live.metadata as object), annotations: { n: String(Math.random()) } },
      });
    };
    server.onRequest.push(hook);
    const managers = () =>
      (
        server.get("v1", "ConfigMap", "busy", "default")!.metadata as {
          managedFields: { operation: string }[];
        }
      ).managedFields
        .map((e) => e.operation)
        .sort();
    try {
      const stored = await applyOwned(client, obj, owner);
      expect(stored.data).toEqual({ v: "1" });
      expect(managers()).toEqual(["Apply", "Update"]);
    } finally {
      server.onRequest.splice(server.onRequest.indexOf(hook), 1);
    }
    await applyOwned(client, obj, owner);
    expect(managers()).toEqual(["Apply"]);
  });
});
