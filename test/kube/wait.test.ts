import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createKubeClient, type KubeClientImpl } from "../../src/kube/client.ts";
import { waitFor } from "../../src/kube/readiness.ts";
import { CancelledError } from "../../src/lib/errors.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { have } from "../lab/prereq.ts";

const deployment = (name: string, replicas = 2) => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name, namespace: "kube-system" },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: {
      metadata: { labels: { app: name } },
      spec: { containers: [{ name, image: `registry.k8s.io/${name}:1` }] },
    },
  },
});

describe.skipIf(!have("openssl", "openssl"))("waiting for readiness", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;

  beforeAll(async () => {
    server = await startKubeApiServer({ reconcileDelayMs: 150 });
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("returns the Deployment once the controller reports its replicas available", async () => {
    const ref = { apiVersion: "apps/v1", kind: "Deployment", name: "coredns", namespace: "kube-system" };
    // Held back until the wait has seen it not ready once, however slow this machine is today.
    server.setReady(ref, false);
    const applied = await client.apply(deployment("coredns"));
    expect(applied.status).toBeUndefined();
    const progress: string[] = [];
    const ready = await waitFor(client, ref, {
      timeoutMs: 5000,
      intervalMs: 50,
      onProgress: (r) => {
        progress.push(r);
        server.setReady(ref, true);
      },
    });
    expect(ready.status.availableReplicas).toBe(2);
    // The controller's first step (updating the replicas) may be done before the first poll on a
    // loaded machine; either way the wait says which replicas it waits for.
    expect(progress[0]).toMatch(/^0\/2 replicas (updated|available)$/);
  });

  test("times out with a message naming the object and why it is not ready", async () => {
    const ref = { apiVersion: "apps/v1", kind: "Deployment", name: "stuck", namespace: "kube-system" };
    server.setReady(ref, false);
    await client.apply(deployment("stuck", 3));
    const started = Date.now();
    const error = await waitFor(client, ref, { timeoutMs: 600, intervalMs: 50 }).catch((e) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    expect(error.message).toBe(
      "timed out after 0.6s waiting for Deployment kube-system/stuck to be ready: 0/3 replicas available",
    );
  });

  test("names an object that never appears", async () => {
    const error = await waitFor(
      client,
      { apiVersion: "v1", kind: "PersistentVolumeClaim", name: "data", namespace: "default" },
      { timeoutMs: 200, intervalMs: 50 },
    ).catch((e) => e);
    expect(error.message).toBe(
      "timed out after 0.2s waiting for PersistentVolumeClaim default/data to be ready: not found",
    );
  });

  test("a wait for a named condition says so when it times out", async () => {
    await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "flag", namespace: "default" },
    });
    const error = await waitFor(
      client,
      { apiVersion: "v1", kind: "ConfigMap", name: "flag", namespace: "default" },
      {
        timeoutMs: 200,
        intervalMs: 50,
        condition: "to hold data.ready",
        until: (o) => ({
          ready: (o.data as { ready?: string } | undefined)?.ready === "yes",
          reason: "data.ready is not yes",
        }),
      },
    ).catch((e) => e);
    expect(error.message).toBe(
      "timed out after 0.2s waiting for ConfigMap default/flag to hold data.ready: data.ready is not yes",
    );
  });

  test("waits for DaemonSet pods on every Ready node", async () => {
    server.setNodeReady("cp1", true);
    server.setNodeReady("w1", false);
    await client.apply({
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: "calico-node", namespace: "kube-system" },
      spec: {
        selector: { matchLabels: { k8s: "calico-node" } },
        template: { metadata: { labels: { k8s: "calico-node" } } },
      },
    });
    const ref = { apiVersion: "apps/v1", kind: "DaemonSet", name: "calico-node", namespace: "kube-system" };
    const error = await waitFor(client, ref, { timeoutMs: 500, intervalMs: 50 }).catch((e) => e);
    expect(error.message).toBe(
      "timed out after 0.5s waiting for DaemonSet kube-system/calico-node to be ready: 1/2 pods available",
    );
    setTimeout(() => server.setNodeReady("w1", true), 100);
    const ds = await waitFor(client, ref, { timeoutMs: 3000, intervalMs: 50 });
    expect(ds.status.numberReady).toBe(2);
  });

  test("waits for a Node to become Ready", async () => {
    server.setNodeReady("w2", false);
    setTimeout(() => server.setNodeReady("w2", true), 100);
    const node = await waitFor(
      client,
      { apiVersion: "v1", kind: "Node", name: "w2" },
      { timeoutMs: 3000, intervalMs: 50 },
    );
    expect(node.status.conditions.find((c: { type: string }) => c.type === "Ready").status).toBe("True");
  });

  test("stops at once when its signal is aborted", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    const error = await waitFor(
      client,
      { apiVersion: "v1", kind: "ConfigMap", name: "never", namespace: "default" },
      { timeoutMs: 10_000, intervalMs: 1000, signal: controller.signal },
    ).catch((e) => e);
    expect(error).toBeInstanceOf(CancelledError);
    expect(error.message).toBe(
      "interrupted while waiting for ConfigMap default/never to be ready: not found",
    );
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
