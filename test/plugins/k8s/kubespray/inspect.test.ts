import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeObject } from "kubehyve";
import { v } from "kubehyve";
import { kubesprayPlugin } from "../../../../plugins/k8s/kubespray/index.ts";
import { assessCluster, verifyCluster } from "../../../../plugins/k8s/kubespray/inspect.ts";
import { optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import { createPluginContext } from "../../../../src/core/context.ts";
import { createKubeClient } from "../../../../src/kube/client.ts";
import { writeFileAtomic } from "../../../../src/lib/fsutil.ts";
import type { Target } from "../../../../src/targets/target.ts";
import { type KubeApiServer, startKubeApiServer } from "../../../lab/kube/server.ts";
import { have } from "../../../lab/prereq.ts";
import { KUBELET_ENV_FCOS, startFakeNode } from "./fake-node.ts";
import { labCluster, node } from "./lab.ts";

const cp1 = node("cp1", "control-plane");
const w1 = node("w1", "worker");
const w2 = node("w2", "worker");

function registered(name: string, ready: boolean, version = "v1.35.4"): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name },
    status: {
      conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
      nodeInfo: { kubeletVersion: version },
    },
  };
}

describe("assessCluster", () => {
  test("finds nothing to do when every declared node is registered, Ready and at the version", () => {
    expect(assessCluster([cp1, w1], [registered("cp1", true), registered("w1", true)], "1.35.4")).toEqual({
      kind: "up-to-date",
    });
  });

  test("adds missing workers with scale", () => {
    expect(assessCluster([cp1, w1, w2], [registered("cp1", true), registered("w1", true)], "1.35.4")).toEqual(
      { kind: "scale", nodes: ["w2"] },
    );
  });

  test("runs cluster.yml for a missing control plane, which scale.yml cannot add", () => {
    const cp2 = node("cp2", "control-plane");
    expect(
      assessCluster([cp1, cp2, w1], [registered("cp1", true), registered("w1", true)], "1.35.4"),
    ).toMatchObject({ kind: "converge", reason: expect.stringContaining("cp2") });
  });

  test("upgrades when a registered node runs another version, before adding nodes", () => {
    expect(
      assessCluster([cp1, w1, w2], [registered("cp1", true, "v1.34.3"), registered("w1", true)], "1.35.4"),
    ).toEqual({
      kind: "upgrade",
      from: ["v1.34.3"],
      to: "v1.35.4",
    });
  });

  test("runs cluster.yml again for a node that is not Ready", () => {
    expect(assessCluster([cp1, w1], [registered("cp1", true), registered("w1", false)], "1.35.4")).toEqual({
      kind: "converge",
      reason: "w1 not Ready",
    });
  });

  test("ignores registered nodes the cluster file does not declare", () => {
    expect(
      assessCluster([cp1], [registered("cp1", true), registered("old", false, "v1.30.0")], "1.35.4"),
    ).toEqual({ kind: "up-to-date" });
  });
});

/** kube-system as Kubespray leaves it: CoreDNS (Deployment and Service coredns) and nodelocaldns. */
function kubeSystem(server: KubeApiServer): void {
  const labels = { "k8s-app": "kube-dns" };
  server.put({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "coredns", namespace: "kube-system", labels },
    spec: {
      replicas: 2,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: { containers: [{ name: "coredns", image: "registry.k8s.io/coredns/coredns:v1.12.1" }] },
      },
    },
  });
  server.put({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "coredns", namespace: "kube-system", labels },
    // skydns_server: the third address of kube_service_addresses.
    spec: { selector: labels, clusterIP: "10.233.0.3", ports: [{ name: "dns", port: 53, protocol: "UDP" }] },
  });
  const ds = { "k8s-app": "nodelocaldns" };
  server.put({
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: { name: "nodelocaldns", namespace: "kube-system", labels: ds },
    spec: {
      selector: { matchLabels: ds },
      template: {
        metadata: { labels: ds },
        spec: {
          containers: [{ name: "node-cache", image: "registry.k8s.io/dns/k8s-dns-node-cache:1.25.0" }],
        },
      },
    },
  });
}

describe("verify and check against the Kubernetes API test server", () => {
  let server: KubeApiServer;
  let stateDir: string;

  beforeAll(async () => {
    server = await startKubeApiServer({ gitVersion: "v1.35.4" });
    stateDir = await mkdtemp(join(tmpdir(), "kubehyve-kubespray-verify-"));
    kubeSystem(server);
    for (const name of ["cp1", "w1", "w2"]) server.setNodeReady(name, true);
    server.reconcile();
  });
  afterEach(() => {
    for (const name of ["cp1", "w1", "w2"]) server.setNodeReady(name, true);
    server.setReady(
      { apiVersion: "apps/v1", kind: "Deployment", name: "coredns", namespace: "kube-system" },
      true,
    );
    server.reconcile();
  });
  afterAll(async () => {
    await server.stop();
    await rm(stateDir, { recursive: true, force: true });
  });

  test("a healthy cluster passes: nodes Ready at the version, kube-system ready, CoreDNS answering", async () => {
    const found = await verifyCluster(await createKubeClient(server.kubeconfigPath), [cp1, w1, w2], "1.35.4");
    expect(found.filter((d) => d.severity !== "ok")).toEqual([]);
    expect(found.map((d) => d.code)).toEqual([
      "kubespray.node",
      "kubespray.node",
      "kubespray.node",
      "kubespray.kube-system",
      "kubespray.coredns",
    ]);
    expect(found.at(-1)!.summary).toBe("CoreDNS answering on 10.233.0.3 (2 ready pods)");
  });

  test("a node that is not Ready, a missing node and a wrong version are each an error on that node", async () => {
    server.setNodeReady("w1", false);
    const found = await verifyCluster(
      await createKubeClient(server.kubeconfigPath),
      [cp1, w1, w2, node("w3", "worker")],
      "1.35.5",
    );
    const errors = found.filter((d) => d.severity === "error").map((d) => [d.code, d.target]);
    expect(errors).toEqual(
      expect.arrayContaining([
        ["kubespray.node-version", "cp1"],
        ["kubespray.node-not-ready", "w1"],
        ["kubespray.node-version", "w2"],
        ["kubespray.node-missing", "w3"],
      ]),
    );
    // nodelocaldns runs on every node; one is not Ready, so the DaemonSet is short of a pod.
    const kubeSystemError = found.find((d) => d.code === "kubespray.kube-system-not-ready");
    expect(kubeSystemError?.detail).toBe("DaemonSet nodelocaldns: 2 of 3 pods available");
  });

  test("CoreDNS without a ready pod is reported as not answering", async () => {
    server.setReady(
      { apiVersion: "apps/v1", kind: "Deployment", name: "coredns", namespace: "kube-system" },
      false,
    );
    server.reconcile();
    const found = await verifyCluster(await createKubeClient(server.kubeconfigPath), [cp1, w1, w2], "1.35.4");
    expect(found.find((d) => d.code.startsWith("kubespray.coredns"))).toMatchObject({
      code: "kubespray.coredns-not-answering",
      severity: "error",
    });
  });

  test.skipIf(!(have("sshd", "openssh-server") && have("sudo", "sudo")))(
    "the plugin's verify reads the cluster through ctx.kube() and looks at every node",
    async () => {
      const fake = await startFakeNode(stateDir);
      const targets: Target[] = [];
      try {
        await fake.write("/etc/kubernetes/kubelet.env", KUBELET_ENV_FCOS);
        await fake.mkdir("/var/lib/kubelet/volumeplugins");
        const ctx = createPluginContext({
          cluster: labCluster([cp1, w1, w2]),
          plugin: kubesprayPlugin,
          options: v.parse(optionsSchema, { runner: { kind: "system" } }),
          stateDir,
          kube: () => createKubeClient(server.kubeconfigPath),
          targets: {
            node: (n) => {
              const t = fake.target(n, stateDir);
              targets.push(t);
              return t;
            },
          },
        });
        const found = await kubesprayPlugin.verify!(ctx);
        expect(found.filter((d) => d.severity !== "ok")).toEqual([]);
        expect(found.filter((d) => d.code === "kubespray.volume-plugin-dir").map((d) => d.target)).toEqual([
          "cp1",
          "w1",
          "w2",
        ]);
      } finally {
        await Promise.all(targets.map((t) => t.close()));
        await fake.sshd.stop();
      }
    },
    60_000,
  );

  test("verify before any install reports the missing kubeconfig instead of throwing", async () => {
    const ctx = createPluginContext({
      cluster: labCluster([cp1, w1]),
      plugin: kubesprayPlugin,
      options: v.parse(optionsSchema, { runner: { kind: "system" } }),
      stateDir: join(stateDir, "never-installed"),
    });
    expect(await kubesprayPlugin.verify!(ctx)).toEqual([
      expect.objectContaining({ code: "kubespray.no-kubeconfig", severity: "error", hint: "kubehyve up" }),
    ]);
  });

  test("check plans a Kubespray run when a kubeconfig exists but the API server does not answer", async () => {
    // The test server's own kubeconfig, pointed at a port where nothing listens.
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const text = (await readFile(server.kubeconfigPath, "utf8")).replace(
      `127.0.0.1:${server.port}`,
      `127.0.0.1:${port}`,
    );
    const dir = join(stateDir, "unreachable");
    await writeFileAtomic(join(dir, "kubeconfig"), text);
    const ctx = createPluginContext({
      cluster: labCluster([cp1, w1]),
      plugin: kubesprayPlugin,
      options: v.parse(optionsSchema, { runner: { kind: "system" } }),
      stateDir: dir,
    });
    const { changes, diagnostics } = await kubesprayPlugin.check(ctx);
    expect(changes.map((c) => c.kind)).toEqual(["kubespray.converge"]);
    expect(diagnostics.find((d) => d.code === "kubespray.api-unreachable")?.severity).toBe("warn");
  }, 60_000);

  test("a control plane added while the API does not answer is refused, not run through cluster.yml", async () => {
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const text = (await readFile(server.kubeconfigPath, "utf8")).replace(
      `127.0.0.1:${server.port}`,
      `127.0.0.1:${port}`,
    );
    const dir = join(stateDir, "unreachable-grown");
    await writeFileAtomic(join(dir, "kubeconfig"), text);
    const cp2 = node("cp2", "control-plane");
    const cp3 = node("cp3", "control-plane");
    const ctx = createPluginContext({
      cluster: labCluster([cp1, cp2, cp3, w1]),
      plugin: kubesprayPlugin,
      options: v.parse(optionsSchema, { runner: { kind: "system" } }),
      stateDir: dir,
    });
    await ctx.state.set("installed", {
      kubesprayVersion: "v2.31.0",
      kubernetesVersion: "1.35.4",
      nodes: ["cp1", "w1"],
      groupVars: "",
    });
    await ctx.state.set("etcd", { order: ["cp1"], names: { cp1: "cp1" } });
    const { changes, diagnostics } = await kubesprayPlugin.check(ctx);
    expect(changes).toEqual([]);
    expect(diagnostics.find((d) => d.code === "kubespray.control-plane-add")?.summary).toBe(
      "adding control planes cp2, cp3 to a running cluster is not done by kubehyve",
    );
  }, 60_000);
});
