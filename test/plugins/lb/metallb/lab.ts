/**
 * A lab for the lb stage, all of it on loopback: a /24 of 127.0.0.0/8 picked per run stands for
 * the lab's LAN (nodes, gateway, DHCP range, pools); the Kubernetes API test server plays MetalLB
 * v0.16.1 (controller, speakers, webhook) from its own release manifest; the hypervisor host is a
 * local target whose `fetch` is a stand-in of FreeBSD's fetch(1); and the LAN answers HTTP on a
 * pool address only while MetalLB announces it (startL2DataPlane).
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Cluster, v } from "kubehyve";
import metallbPlugin from "../../../../plugins/lb/metallb/index.ts";
import { optionsSchema } from "../../../../plugins/lb/metallb/options.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";
import { createPluginContext, type TestablePluginContext } from "../../../../src/core/context.ts";
import { type EngineRequest, runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import { createKubeClient, type KubeClientImpl } from "../../../../src/kube/client.ts";
import { LocalTarget } from "../../../../src/targets/local.ts";
import type { RunOptions, Target } from "../../../../src/targets/target.ts";
import { labCluster, labNode } from "../../../lab/cluster.ts";
import { type FileServer, serveFiles } from "../../../lab/http.ts";
import {
  type L2DataPlane,
  type MetallbLab as MetallbControllers,
  metallbControllers,
  startL2DataPlane,
} from "../../../lab/kube/controllers/metallb.ts";
import { podControllers } from "../../../lab/kube/controllers/pods.ts";
import { defaultControllers } from "../../../lab/kube/controllers.ts";
import { type KubeApiServer, startKubeApiServer } from "../../../lab/kube/server.ts";
import { validatingWebhooks } from "../../../lab/kube/webhooks.ts";
import { oracle } from "../../../lab/oracles.ts";

export const CLUSTER_ID = "7c3e2a1b-9d8f-4e6a-b5c4-3d2e1f0a9b8c";
export const RELEASE_PATH = "/metallb/metallb/v0.16.1/config/manifests/metallb-native.yaml";

/** A /24 of loopback for this run, so that labs running side by side do not share addresses. */
export function loopbackNet(): string {
  return `127.${64 + Math.floor(Math.random() * 180)}.${1 + Math.floor(Math.random() * 250)}`;
}

export function loopbackCluster(net: string): Cluster {
  return labCluster({
    network: {
      domain: "lab.home.arpa",
      gateway: `${net}.1`,
      dns: [`${net}.1`],
      subnet: `${net}.0/24`,
      dhcpRange: { start: `${net}.100`, end: `${net}.199` },
      podCidr: "10.233.64.0/18",
      serviceCidr: "10.233.0.0/18",
    },
    nodes: [
      labNode("cp1", "control-plane", `${net}.21`),
      labNode("w1", "worker", `${net}.22`),
      labNode("w2", "worker", `${net}.23`),
    ],
    stages: { lb: { plugin: "lb/metallb", options: {} } },
  });
}

/** The hypervisor host: this machine, with the fetch(1) stand-in first on PATH; each fetch is logged. */
export function shimHost(dir: string): Target & { fetches(): string[][] } {
  const bin = join(dir, "bin");
  mkdirSync(bin, { recursive: true });
  const log = join(dir, "fetch.log");
  writeFileSync(log, "");
  const shim = join(import.meta.dir, "fetch-shim.ts");
  writeFileSync(join(bin, "fetch"), `#!/bin/sh\nexec '${process.execPath}' '${shim}' "$@"\n`);
  chmodSync(join(bin, "fetch"), 0o755);
  const local = new LocalTarget();
  return {
    name: "root@hv1",
    run: (argv: readonly string[], opts: RunOptions = {}) =>
      local.run(argv, {
        ...opts,
        env: { ...opts.env, PATH: `${bin}:${process.env.PATH}`, FETCH_SHIM_LOG: log },
      }),
    close: async () => {},
    fetches: () =>
      readFileSync(log, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as string[]),
  };
}

export interface MetallbLab {
  net: string;
  server: KubeApiServer;
  metallb: MetallbControllers;
  client: KubeClientImpl;
  files: FileServer;
  dataPlane: L2DataPlane;
  host: ReturnType<typeof shimHost>;
  cluster: Cluster;
  stateDir: string;
  /** The options of the cluster file's lb stage, with the lab's pools unless given. */
  options(extra?: Record<string, unknown>): Record<string, unknown>;
  ctx(
    options?: Record<string, unknown>,
    extra?: { dryRun?: boolean; upstreamPending?: boolean },
  ): TestablePluginContext;
  run(
    command: "up" | "plan" | "down" | "verify",
    options?: Record<string, unknown>,
    request?: Pick<EngineRequest, "canaries">,
  ): Promise<{ exitCode: number; reporter: ReturnType<typeof memoryReporter> }>;
  mutations(): { method: string; path: string }[];
  stop(): Promise<void>;
}

export async function startMetallbLab(opts: { webhookRefusesForMs?: number } = {}): Promise<MetallbLab> {
  const net = loopbackNet();
  const cluster = loopbackCluster(net);
  const metallb = metallbControllers({ webhookRefusesForMs: opts.webhookRefusesForMs });
  const server = await startKubeApiServer({
    controllers: [
      ...defaultControllers(),
      ...podControllers({ podCidr: cluster.network.podCidr }),
      ...metallb.controllers,
    ],
  });
  server.admission.push(
    validatingWebhooks(
      () => server.list("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
      metallb.backends,
    ),
  );
  for (const node of cluster.nodes) server.setNodeReady(node.name, true, { address: node.address });
  const client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 20, maxDelayMs: 100 });
  const files = serveFiles({
    [RELEASE_PATH]: Bun.file(oracle("releases/metallb/config/manifests/metallb-native.yaml")),
  });
  const stateDir = mkdtempSync(join(tmpdir(), "kubehyve-metallb-"));
  writeFileSync(join(stateDir, "cluster-id"), `${CLUSTER_ID}\n`, { mode: 0o600 });
  const cache = new DownloadCache({ dir: join(stateDir, "cache"), mirror: files.url });
  const host = shimHost(join(stateDir, "host"));
  // The first pool address picks a free port; the others of this run's own /24 take the same.
  const addresses = [240, 241, 242, 243, 244, 245].map((n) => `${net}.${n}`);
  const probe = Bun.serve({ hostname: addresses[0], port: 0, fetch: () => new Response() });
  const port = probe.port as number;
  await probe.stop(true);
  const dataPlane = startL2DataPlane(server, addresses, port);
  const options = (extra: Record<string, unknown> = {}) => ({
    pools: [
      { name: "lab", addresses: [`${net}.240-${net}.243`] },
      { name: "spare", addresses: [`${net}.244/31`], autoAssign: false },
    ],
    readyTimeoutSec: 20,
    canary: { port, timeoutSec: 8 },
    ...extra,
  });
  const parse = (o: Record<string, unknown>) => v.parse(optionsSchema, o);
  return {
    net,
    server,
    metallb,
    client,
    files,
    dataPlane,
    host,
    cluster,
    stateDir,
    options,
    ctx(o = options(), extra = {}) {
      return createPluginContext({
        cluster,
        plugin: metallbPlugin,
        options: parse(o),
        stateDir,
        clusterId: CLUSTER_ID,
        kube: async () => client,
        artifacts: cache,
        targets: { host },
        ...extra,
      });
    },
    async run(command, o = options(), request = {}) {
      const reporter = memoryReporter();
      const result = await runEngine({
        command,
        cluster,
        stages: [{ slot: "lb", plugin: metallbPlugin, options: parse(o) }],
        stateDir,
        reporter,
        assumeYes: true,
        kube: async () => client,
        artifacts: cache,
        targets: { host: () => host, node: () => host },
        ...request,
      });
      return { exitCode: result.exitCode, reporter };
    },
    mutations: () =>
      server.requests
        .filter((r) => r.method !== "GET" && !r.query.includes("dryRun=All"))
        .map((r) => ({ method: r.method, path: r.path })),
    async stop() {
      await dataPlane.stop();
      await server.stop();
      await files.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
