/**
 * A lab for the exposure walk, all of it on a /24 of loopback picked per run: the Kubernetes API
 * test server with the controllers the path needs (Traefik's Deployment, a LoadBalancer address,
 * pods and EndpointSlices), the real ingress stage installed on it from its pinned release files,
 * Traefik's web entrypoint answering on the LoadBalancer address (traefik-web.ts), a real dnsmasq
 * on the address the cluster file names as the lab's DNS server (port 53), and the simulated
 * FreeBSD host as the hypervisor host, whose bhyve stage answers `lb:l2-host` and whose curl is the
 * real one.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { v } from "kubehyve";
import { bhyvePlugin } from "../../plugins/hypervisor/bhyve/index.ts";
import { parseBhyveOptions } from "../../plugins/hypervisor/bhyve/options.ts";
import traefikPlugin from "../../plugins/ingress/traefik/index.ts";
import { TraefikOptionsSchema } from "../../plugins/ingress/traefik/options.ts";
import metallbPlugin from "../../plugins/lb/metallb/index.ts";
import { optionsSchema as metallbOptions } from "../../plugins/lb/metallb/options.ts";
import type { Stage } from "../../src/core/config.ts";
import { type EngineRequest, runEngine } from "../../src/core/engine.ts";
import type { ExposeRequest } from "../../src/core/expose.ts";
import type { Cluster } from "../../src/core/model.ts";
import { memoryReporter, type RunEvent } from "../../src/core/reporter.ts";
import type { KubeObject } from "../../src/kube/types.ts";
import { labCluster, labNode } from "./cluster.ts";
import { type Dnsmasq, startDnsmasq } from "./dnsmasq.ts";
import { createFreebsdHost, type FreebsdHost, hostTarget } from "./freebsd/host.ts";
import { podControllers } from "./kube/controllers/pods.ts";
import { loadBalancerStandIn, traefikDeploymentController } from "./kube/controllers/traefik.ts";
import { workloadControllers } from "./kube/controllers/workloads.ts";
import { defaultControllers, deploymentController } from "./kube/controllers.ts";
import { type StageLab, startStageLab } from "./kube/stage-lab.ts";
import { serveTraefikWeb, type TraefikWeb } from "./kube/traefik-web.ts";

/** The identity stage-lab.ts gives the contexts it makes: the stages' objects carry it. */
export const CLUSTER_ID = "9b6f1c4e-7d2a-4e8b-9a31-5c0d2e7f4a10";
export const TRAEFIK_OPTIONS = { namespace: "traefik", replicas: 1 };

export interface ExposeLab {
  net: string;
  /** The LoadBalancer address Traefik's Service gets. */
  address: string;
  /** The lab's DNS server (network.dns). */
  dnsAddress: string;
  cluster: Cluster;
  stages: Stage[];
  kube: StageLab;
  freebsd: FreebsdHost;
  stateDir: string;
  /** Traefik's web entrypoint on `address`:80, while it runs. */
  web(): TraefikWeb | undefined;
  startWeb(): void;
  stopWeb(): Promise<void>;
  /** Starts the lab's dnsmasq with these lines (the previous one is stopped). */
  dns(lines: string[]): Promise<Dnsmasq>;
  /** The line that makes the walk's name resolve to the LoadBalancer address. */
  record(host?: string): string;
  run(
    command: EngineRequest["command"],
    expose: ExposeRequest | undefined,
    extra?: Partial<EngineRequest>,
  ): Promise<{ exitCode: number; events: RunEvent[] }>;
  /** Every request that was not a read (dry runs are reads). */
  mutations(): string[];
  /**
   * Objects of the canary (by name) left in the store, of every kind it makes or causes, once the
   * controllers (the garbage collector among them) have made a pass.
   */
  canaryLeft(): string[];
  stop(): Promise<void>;
}

function loopbackNet(): string {
  return `127.${64 + Math.floor(Math.random() * 180)}.${1 + Math.floor(Math.random() * 250)}`;
}

export function exposeCluster(net: string): Cluster {
  return labCluster({
    network: {
      domain: "lab.home.arpa",
      gateway: `${net}.1`,
      dns: [`${net}.2`],
      subnet: `${net}.0/24`,
      podCidr: "10.233.64.0/18",
      serviceCidr: "10.233.0.0/18",
    },
    nodes: [labNode("cp1", "control-plane", `${net}.21`), labNode("w1", "worker", `${net}.22`)],
    stages: {
      hypervisor: { plugin: "hypervisor/bhyve", options: { nic: "em0" } },
      lb: {
        plugin: "lb/metallb",
        options: { pools: [{ name: "lab", addresses: [`${net}.240-${net}.243`] }] },
      },
      ingress: { plugin: "ingress/traefik", options: TRAEFIK_OPTIONS },
    },
  });
}

export async function startExposeLab(): Promise<ExposeLab> {
  const net = loopbackNet();
  const address = `${net}.240`;
  const cluster = exposeCluster(net);
  const kube = await startStageLab(cluster, [
    ...defaultControllers().filter((c) => c !== deploymentController),
    traefikDeploymentController,
    loadBalancerStandIn([address]),
    ...podControllers({ podCidr: cluster.network.podCidr }),
    ...workloadControllers(),
  ]);
  for (const node of cluster.nodes) kube.server.setNodeReady(node.name, true, { address: node.address });
  const freebsd = createFreebsdHost();
  freebsd.prepareVmBhyve();
  const host = hostTarget(freebsd);
  // The ingress stage installed as `up` would: its check's changes, applied.
  const traefikCtx = kube.ctx(traefikPlugin, v.parse(TraefikOptionsSchema, TRAEFIK_OPTIONS), { host });
  const { changes } = await traefikPlugin.check(traefikCtx as never);
  await traefikPlugin.apply!(traefikCtx as never, changes);

  const stateDir = mkdtempSync(join(tmpdir(), "kubehyve-expose-"));
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(stateDir, "cluster-id"), `${CLUSTER_ID}\n`, { mode: 0o600 });
  const stages: Stage[] = [
    {
      slot: "hypervisor",
      plugin: bhyvePlugin,
      options: parseBhyveOptions({ nic: "em0", firmware: freebsd.firmwarePath }),
    },
    {
      slot: "lb",
      plugin: metallbPlugin,
      options: v.parse(metallbOptions, cluster.stages.lb!.options),
    },
    { slot: "ingress", plugin: traefikPlugin, options: v.parse(TraefikOptionsSchema, TRAEFIK_OPTIONS) },
  ];

  let web: TraefikWeb | undefined;
  let dnsmasq: Dnsmasq | undefined;
  const lab: ExposeLab = {
    net,
    address,
    dnsAddress: `${net}.2`,
    cluster,
    stages,
    kube,
    freebsd,
    stateDir,
    web: () => web,
    startWeb() {
      web ??= serveTraefikWeb(kube.server, address, 80);
    },
    async stopWeb() {
      await web?.stop();
      web = undefined;
    },
    async dns(lines) {
      await dnsmasq?.stop();
      dnsmasq = await startDnsmasq({ lines, address: `${net}.2`, port: 53 });
      return dnsmasq;
    },
    record: (host = `whoami.${cluster.network.domain}`) => `host-record=${host},${address}`,
    async run(command, expose, extra = {}) {
      const reporter = memoryReporter();
      const result = await runEngine({
        command,
        cluster,
        stages,
        stateDir,
        reporter,
        kube: kube.kube,
        artifacts: kube.artifacts,
        targets: { host: () => host, node: () => host },
        select: { only: ["ingress"] },
        ...(expose ? { expose } : {}),
        ...extra,
      });
      return { exitCode: result.exitCode, events: reporter.events };
    },
    mutations: () =>
      kube.server.requests
        .filter((r) => r.method !== "GET" && !r.query.includes("dryRun=All"))
        .map((r) => `${r.method} ${r.path}`),
    canaryLeft() {
      // The garbage collector's pass: pods and slices go with their owners.
      kube.server.reconcile();
      const kinds: [string, string][] = [
        ["apps/v1", "Deployment"],
        ["v1", "Service"],
        ["networking.k8s.io/v1", "Ingress"],
        ["v1", "Pod"],
        ["discovery.k8s.io/v1", "EndpointSlice"],
      ];
      return kinds.flatMap(([apiVersion, kind]) =>
        (kube.server.list(apiVersion, kind) as unknown as KubeObject[])
          .filter((o) => o.metadata.name.startsWith("kubehyve-whoami"))
          .map((o) => `${kind} ${o.metadata.namespace}/${o.metadata.name}`),
      );
    },
    async stop() {
      await web?.stop();
      await dnsmasq?.stop();
      await kube.stop();
      freebsd.cleanup();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  lab.startWeb();
  return lab;
}
