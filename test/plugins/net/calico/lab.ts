/**
 * A lab for the net stage: the Kubernetes API test server playing the tigera operator, kubelets
 * and the DaemonSet controller; a loopback HTTP server serving Calico v3.32.1's release files at
 * their raw.githubusercontent.com paths, reached through the download cache's mirror; and a
 * cluster of three nodes. Nothing leaves 127.0.0.0/8: the nodes' addresses are API objects only.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Cluster, v } from "kubehyve";
import calicoPlugin from "../../../../plugins/net/calico/index.ts";
import { optionsSchema } from "../../../../plugins/net/calico/options.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";
import { createPluginContext, type TestablePluginContext } from "../../../../src/core/context.ts";
import { type EngineRequest, runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import { createKubeClient, type KubeClientImpl } from "../../../../src/kube/client.ts";
import { labCluster } from "../../../lab/cluster.ts";
import { type FileServer, serveFiles } from "../../../lab/http.ts";
import { calicoControllers, calicoNetworkReady } from "../../../lab/kube/controllers/calico.ts";
import { podControllers } from "../../../lab/kube/controllers/pods.ts";
import { defaultControllers } from "../../../lab/kube/controllers.ts";
import { type KubeApiServer, startKubeApiServer } from "../../../lab/kube/server.ts";
import { oracle } from "../../../lab/oracles.ts";

export const CLUSTER_ID = "2b7d1e9c-5a4f-4c3e-9d8b-7a6f5e4d3c2b";
export const RELEASE_PATH = "/projectcalico/calico/v3.32.1/manifests";

export interface CalicoLab {
  server: KubeApiServer;
  client: KubeClientImpl;
  files: FileServer;
  cache: DownloadCache;
  stateDir: string;
  cluster: Cluster;
  /** A plugin context as the engine makes one for `up` (or a dry run). */
  ctx(
    options?: Record<string, unknown>,
    extra?: { dryRun?: boolean; upstreamPending?: boolean },
  ): TestablePluginContext;
  /** A whole command of the engine with this stage alone. */
  run(
    command: "up" | "plan" | "down" | "verify",
    options?: Record<string, unknown>,
    request?: Pick<EngineRequest, "canaries">,
  ): Promise<{ exitCode: number; reporter: ReturnType<typeof memoryReporter> }>;
  /** Requests that changed something: writes that were not dry runs. */
  mutations(): { method: string; path: string }[];
  stop(): Promise<void>;
}

export async function startCalicoLab(
  opts: { reachable?: (from: string, to: string) => boolean; reconcileDelayMs?: number } = {},
): Promise<CalicoLab> {
  const cluster = labCluster({ stages: { net: { plugin: "net/calico", options: {} } } });
  const server = await startKubeApiServer({
    controllers: [
      ...defaultControllers(),
      ...podControllers({
        podCidr: cluster.network.podCidr,
        networkReady: calicoNetworkReady,
        reachable: opts.reachable,
      }),
      ...calicoControllers(),
    ],
    reconcileDelayMs: opts.reconcileDelayMs,
  });
  for (const node of cluster.nodes) server.setNodeReady(node.name, true, { address: node.address });
  const client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10, maxDelayMs: 50 });
  const files = serveFiles({
    [`${RELEASE_PATH}/operator-crds.yaml`]: Bun.file(oracle("releases/calico/manifests/operator-crds.yaml")),
    [`${RELEASE_PATH}/tigera-operator.yaml`]: Bun.file(
      oracle("releases/calico/manifests/tigera-operator.yaml"),
    ),
  });
  const stateDir = mkdtempSync(join(tmpdir(), "kubehyve-calico-"));
  // The engine reads the cluster's identity from here; plugin contexts made directly get the same.
  writeFileSync(join(stateDir, "cluster-id"), `${CLUSTER_ID}\n`, { mode: 0o600 });
  const cache = new DownloadCache({ dir: join(stateDir, "cache"), mirror: files.url });
  const parse = (options: Record<string, unknown> = {}) =>
    v.parse(optionsSchema, { readyTimeoutSec: 20, canary: { timeoutSec: 10 }, ...options });
  return {
    server,
    client,
    files,
    cache,
    stateDir,
    cluster,
    ctx(options = {}, extra = {}) {
      return createPluginContext({
        cluster,
        plugin: calicoPlugin,
        options: parse(options),
        stateDir,
        clusterId: CLUSTER_ID,
        kube: async () => client,
        artifacts: cache,
        ...extra,
      });
    },
    async run(command, options = {}, request = {}) {
      const reporter = memoryReporter();
      const result = await runEngine({
        command,
        cluster,
        stages: [{ slot: "net", plugin: calicoPlugin, options: parse(options) }],
        stateDir,
        reporter,
        assumeYes: true,
        kube: async () => client,
        artifacts: cache,
        ...request,
      });
      return { exitCode: result.exitCode, reporter };
    },
    mutations: () =>
      server.requests
        .filter((r) => r.method !== "GET" && !r.query.includes("dryRun=All"))
        .map((r) => ({ method: r.method, path: r.path })),
    async stop() {
      await server.stop();
      await files.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** A merge patch by someone else (kubectl edit's field manager), straight to the test server. */
export async function editByHand(server: KubeApiServer, path: string, patch: unknown): Promise<void> {
  const res = await fetch(`${server.url}${path}?fieldManager=kubectl-edit`, {
    method: "PATCH",
    headers: { "Content-Type": "application/merge-patch+json" },
    body: JSON.stringify(patch),
    tls: { cert: server.pki.clientCert, key: server.pki.clientKey, ca: server.caCert },
  } as RequestInit);
  if (res.status !== 200) throw new Error(`PATCH ${path}: ${res.status} ${await res.text()}`);
}
