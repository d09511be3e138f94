/**
 * A no-op `up` on a converged simulated lab: each stage goes through what `up` does with it
 * (check; apply only if check planned a change; verify), after a first `up` made the lab. Target:
 * under 2 s for all stages, with zero mutating commands on the simulated host and zero mutating
 * requests to the Kubernetes API test server (test/lab/kube).
 *
 * The stages the simulated labs can stand for:
 * - hypervisor/bhyve on the simulated FreeBSD host (test/lab/freebsd), the example's 3 nodes; a
 *   mutating command is what the bhyve lab's isMutating says (vm create, zfs set, sysrc x=y, …);
 * - net/calico and lb/metallb each in its stage lab (test/plugins/net/calico/lab.ts,
 *   test/plugins/lb/metallb/lab.ts): an API test server playing the tigera operator or MetalLB from
 *   the pinned release files, served from loopback through the download cache's mirror;
 * - ingress/traefik and storage/rook on one API test server with the controllers of their stage
 *   labs (a Deployment controller that runs Traefik's probe, a LoadBalancer stand-in, Rook's
 *   operator stand-in), Traefik's /ping served on a loopback address, Rook's nodes answering as
 *   Fedora CoreOS would (test/plugins/storage/rook/fake-node.ts). A mutating request is a POST,
 *   PUT, PATCH or DELETE that is not a dry run (server-side dry runs are how check plans).
 * os/coreos and k8s/kubespray have no simulated lab that a whole up can converge (Fedora CoreOS
 * nodes over SSH; Ansible against them): they are not in this figure.
 *
 * `--no-canary` sets Rook's `canary: false`: its verify then writes no test claim and Pod.
 *
 *   bun scripts/bench-up.ts [--runs 3] [--no-canary]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as v from "valibot";
import { bhyvePlugin } from "../plugins/hypervisor/bhyve/index.ts";
import traefik from "../plugins/ingress/traefik/index.ts";
import { TraefikOptionsSchema } from "../plugins/ingress/traefik/options.ts";
import metallb from "../plugins/lb/metallb/index.ts";
import calico from "../plugins/net/calico/index.ts";
import rook from "../plugins/storage/rook/index.ts";
import { RookOptionsSchema } from "../plugins/storage/rook/options.ts";
import type { AnyPlugin, Change } from "../src/core/contract.ts";
import type { NodeSpec } from "../src/core/model.ts";
import { LocalTarget } from "../src/targets/local.ts";
import { labCluster } from "../test/lab/cluster.ts";
import { createFreebsdHost, hostTarget } from "../test/lab/freebsd/host.ts";
import { rookStandIn } from "../test/lab/kube/controllers/rook.ts";
import { loadBalancerStandIn, traefikDeploymentController } from "../test/lab/kube/controllers/traefik.ts";
import { defaultControllers, deploymentController, pvcController } from "../test/lab/kube/controllers.ts";
import type { RequestLogEntry } from "../test/lab/kube/server.ts";
import { startStageLab } from "../test/lab/kube/stage-lab.ts";
import { isMutating, labContext } from "../test/plugins/hypervisor/bhyve/lab.ts";
import { startMetallbLab } from "../test/plugins/lb/metallb/lab.ts";
import { startCalicoLab } from "../test/plugins/net/calico/lab.ts";
import { fakeNode } from "../test/plugins/storage/rook/fake-node.ts";
import { header, load, median, verdict } from "./bench-common.ts";

const { values } = parseArgs({
  options: { runs: { type: "string", default: "3" }, "no-canary": { type: "boolean", default: false } },
});
const runs = Number(values.runs);

const isMutatingRequest = (r: RequestLogEntry) =>
  ["POST", "PUT", "PATCH", "DELETE"].includes(r.method) &&
  new URLSearchParams(r.query.replace(/^\?/, "")).get("dryRun") !== "All";

// --- the lab ----------------------------------------------------------------------------------
const host = createFreebsdHost({ stopDelayMs: 50 });
const bhyveState = mkdtempSync(join(tmpdir(), "kubehyve-bench-up-"));
const bhyveCtx = () =>
  labContext({ host: hostTarget(host), stateDir: bhyveState, options: { firmware: host.firmwarePath } });

const b = () => 1 + Math.floor(Math.random() * 250);
const address = `127.${b()}.${b()}.${b()}`;
// Traefik's ping handler (pkg/ping/ping.go), at the address the load balancer hands out.
const ping = Bun.serve({
  hostname: address,
  port: 80,
  fetch: (req) =>
    new URL(req.url).pathname === "/ping"
      ? new Response("OK")
      : new Response("404 page not found\n", { status: 404 }),
});
const calicoLab = await startCalicoLab();
const metallbLab = await startMetallbLab();
const rookOperator = rookStandIn();
const cluster = labCluster({ stages: { os: { plugin: "os/coreos", options: {} } } });
const lab = await startStageLab(cluster, [
  ...defaultControllers().filter((c) => c !== deploymentController && c !== pvcController),
  traefikDeploymentController,
  loadBalancerStandIn([address]),
  ...rookOperator.controllers,
]);
const nodes = new Map(cluster.nodes.map((n) => [n.name, fakeNode(n.name)]));
for (const n of cluster.nodes) lab.server.setNodeReady(n.name, true, { address: n.address });
const nodeTarget = (n: NodeSpec) => nodes.get(n.name)!.target;
const localHost = new LocalTarget();

interface StageUnderTest {
  name: string;
  ctx: () => never;
  plugin: AnyPlugin;
}
const stages: StageUnderTest[] = [
  { name: "hypervisor/bhyve", plugin: bhyvePlugin as AnyPlugin, ctx: () => bhyveCtx() as never },
  { name: "net/calico", plugin: calico as AnyPlugin, ctx: () => calicoLab.ctx() as never },
  { name: "lb/metallb", plugin: metallb as AnyPlugin, ctx: () => metallbLab.ctx() as never },
  {
    name: "ingress/traefik",
    plugin: traefik as AnyPlugin,
    ctx: () => lab.ctx(traefik as AnyPlugin, v.parse(TraefikOptionsSchema, {}), { host: localHost }) as never,
  },
  {
    name: "storage/rook",
    plugin: rook as AnyPlugin,
    ctx: () =>
      lab.ctx(rook as AnyPlugin, v.parse(RookOptionsSchema, values["no-canary"] ? { canary: false } : {}), {
        node: nodeTarget,
        host: localHost,
      }) as never,
  },
];

/** Milliseconds per stage and phase, of the measured rounds. */
const phases = new Map<string, number[]>();
let measuring = false;
const record = (name: string, ms: number) => {
  if (measuring) phases.set(name, [...(phases.get(name) ?? []), ms]);
};

/** What up does with one stage; returns the changes check planned. */
async function up(stage: StageUnderTest): Promise<Change[]> {
  const ctx = stage.ctx();
  const c0 = performance.now();
  const plan = await stage.plugin.check(ctx);
  record(`${stage.name} check`, performance.now() - c0);
  const errors = plan.diagnostics.filter((d) => d.severity === "error");
  if (errors.length) throw new Error(`${stage.name} check: ${errors.map((d) => d.summary).join("; ")}`);
  if (plan.changes.length) await stage.plugin.apply!(ctx, plan.changes);
  const v0 = performance.now();
  const verified = (await stage.plugin.verify?.(ctx)) ?? [];
  record(`${stage.name} verify`, performance.now() - v0);
  const failed = verified.filter((d) => d.severity === "error");
  if (failed.length) throw new Error(`${stage.name} verify: ${failed.map((d) => d.summary).join("; ")}`);
  return plan.changes;
}

let ok = true;
try {
  for (const stage of stages) {
    await up(stage);
    // The OSDs hold the disks once Rook is up.
    if (stage.name === "storage/rook") for (const n of nodes.values()) n.disk.bluestore = true;
  }
  header(
    `no-op up of ${stages.map((s) => s.name).join(", ")} on a converged simulated lab, median of ${runs}${values["no-canary"] ? " (Rook's canary off)" : ""}`,
  );
  measuring = true;
  const totals: number[] = [];
  // On a shared machine the wall clock counts the others' load too: the CPU this process used (the
  // plugins and the in-process test servers alike) does not.
  const cpu: number[] = [];
  const perStage = new Map<string, number[]>();
  let changes = 0;
  let mutatingCommands: string[] = [];
  let mutatingRequests: string[] = [];
  for (let round = 0; round < runs; round++) {
    host.clearLog();
    const servers = [calicoLab.server, metallbLab.server, lab.server];
    const seen = servers.map((s) => s.requests.length);
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (const stage of stages) {
      const s0 = performance.now();
      changes += (await up(stage)).length;
      perStage.set(stage.name, [...(perStage.get(stage.name) ?? []), performance.now() - s0]);
    }
    totals.push(performance.now() - t0);
    const used = process.cpuUsage(c0);
    cpu.push((used.user + used.system) / 1000);
    mutatingCommands = [
      ...mutatingCommands,
      ...host
        .log()
        .filter(isMutating)
        .map((a) => a.join(" ")),
    ];
    mutatingRequests = [
      ...mutatingRequests,
      ...servers.flatMap((server, i) =>
        server.requests
          .slice(seen[i])
          .filter(isMutatingRequest)
          .map((r) => `${r.method} ${r.path}`),
      ),
    ];
  }
  for (const [name, ms] of perStage) {
    const [check, verify] = ["check", "verify"].map((p) => median(phases.get(`${name} ${p}`) ?? [0]));
    console.log(
      `  ${name.padEnd(18)} ${median(ms).toFixed(0).padStart(6)} ms  (check ${check!.toFixed(0)} ms, verify ${verify!.toFixed(0)} ms)`,
    );
  }
  const total = median(totals);
  const unique = (xs: string[]) => [...new Set(xs)].join("; ");
  const perRound = (n: number) => (n / runs).toFixed(n % runs ? 1 : 0);
  ok = [
    verdict(`no-op up ${total.toFixed(0)} ms (target < 2000 ms)`, total < 2000),
    verdict(`changes planned per round: ${perRound(changes)} (target 0)`, changes === 0),
    verdict(
      `mutating host commands per round: ${perRound(mutatingCommands.length)} (target 0)${mutatingCommands.length ? `: ${unique(mutatingCommands)}` : ""}`,
      mutatingCommands.length === 0,
    ),
    verdict(
      `mutating API requests per round: ${perRound(mutatingRequests.length)} (target 0)${mutatingRequests.length ? `: ${unique(mutatingRequests)}` : ""}`,
      mutatingRequests.length === 0,
    ),
  ].every(Boolean);
  console.log(`CPU time of a round (this process, servers included): ${median(cpu).toFixed(0)} ms`);
  console.log(`load average at the end: ${load()}`);
} finally {
  await ping.stop(true);
  await lab.stop();
  await calicoLab.stop();
  await metallbLab.stop();
  host.cleanup();
  rmSync(bhyveState, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
