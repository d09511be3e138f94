/**
 * The ingress and storage stages through the engine, as `kubehyve up`, `doctor` and `down` run them,
 * against the Kubernetes API test server: a second up finds nothing to do.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { builtinPlugins } from "../../../../plugins/index.ts";
import { parseClusterText } from "../../../../src/core/config.ts";
import { runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import exampleText from "../../../../src/example/kubehyve.yaml" with { type: "text" };
import { LocalTarget } from "../../../../src/targets/local.ts";
import { rookStandIn } from "../../../lab/kube/controllers/rook.ts";
import { loadBalancerStandIn, traefikDeploymentController } from "../../../lab/kube/controllers/traefik.ts";
import { defaultControllers, deploymentController, pvcController } from "../../../lab/kube/controllers.ts";
import { type StageLab, startStageLab } from "../../../lab/kube/stage-lab.ts";
import { have } from "../../../lab/prereq.ts";
import { type FakeNode, fakeNode } from "./fake-node.ts";

const lookup = { find: (id: string) => builtinPlugins.find((p) => p.id === id), searchPath: [] };
const parsed = parseClusterText(exampleText, "example", lookup);
const cluster = parsed.cluster;
// Only these two stages are handed to the engine: doctor runs every stage it is given, and the
// others would reach for the example's hosts and its 192.168.1.x addresses.
const stages = parsed.stages.filter((s) => s.slot === "ingress" || s.slot === "storage");

let lab: StageLab;
let http: ReturnType<typeof Bun.serve> | undefined;
const nodes = new Map<string, FakeNode>();
const ok = have("openssl", "openssl") && have("curl", "curl");

beforeAll(async () => {
  if (!ok) return;
  const b = () => 1 + Math.floor(Math.random() * 250);
  const address = `127.${b()}.${b()}.${b()}`;
  // Traefik's ping handler answer on the address the stand-in for MetalLB hands out.
  http = Bun.serve({ hostname: address, port: 80, fetch: () => new Response("OK") });
  for (const n of cluster.nodes) nodes.set(n.name, fakeNode(n.name));
  const controllers = [
    ...defaultControllers().filter((c) => c !== deploymentController && c !== pvcController),
    traefikDeploymentController,
    loadBalancerStandIn([address]),
    ...rookStandIn().controllers,
  ];
  lab = await startStageLab(cluster, controllers);
  for (const n of cluster.nodes) lab.server.setNodeReady(n.name, true, { address: n.address });
}, 60_000);
afterAll(async () => {
  await http?.stop(true);
  await lab?.stop();
});

function run(command: "up" | "doctor" | "down") {
  const reporter = memoryReporter();
  const result = runEngine({
    command,
    cluster,
    stages,
    stateDir: join(lab.dir, "state"),
    reporter,
    assumeYes: true,
    kube: lab.kube,
    artifacts: lab.artifacts,
    targets: { host: () => new LocalTarget(), node: (n) => nodes.get(n.name)!.target },
  });
  return result.then((r) => ({ ...r, events: reporter.events }));
}

const problems = (events: { type: string }[]) =>
  events
    .filter((e) => e.type === "diagnostic")
    .map((e) => e as unknown as { severity: string; code: string })
    .filter((d) => d.severity === "error")
    .map((d) => d.code);

test.if(ok)(
  "up installs both stages, a second up has nothing to do, doctor is clean and down removes them",
  async () => {
    const first = await run("up");
    expect(problems(first.events)).toEqual([]);
    expect(first.exitCode).toBe(0);
    expect(first.outcomes.map((o) => `${o.slot} ${o.changes.length}`)).toEqual(["ingress 3", "storage 5"]);
    for (const n of nodes.values()) n.disk.bluestore = true;

    const second = await run("up");
    expect(second.exitCode).toBe(0);
    expect(second.outcomes.map((o) => `${o.slot} ${o.changes.length}`)).toEqual(["ingress 0", "storage 0"]);

    const doctor = await run("doctor");
    expect(problems(doctor.events)).toEqual([]);
    expect(doctor.exitCode).toBe(0);

    const down = await run("down");
    expect(down.exitCode).toBe(0);
    expect(
      lab.server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "cephclusters.ceph.rook.io"),
    ).toBeUndefined();
    expect(lab.server.get("storage.k8s.io/v1", "StorageClass", "rook-ceph-block")).toBeUndefined();
    expect(lab.server.get("apps/v1", "Deployment", "traefik", "traefik")).toBeUndefined();
  },
  120_000,
);
