/**
 * `doctor` on the simulated FreeBSD host (test/lab/freebsd) with 5 nodes and a latency on every
 * host command, through the engine as `kubehyve doctor` runs it. The lab is converged first with
 * a real `up`. Target: doctor's wall time at most 1.3× its slowest single check; shown against the
 * serial sum too (every host command doctor ran, one after another).
 *
 * The stage the simulated host can stand for is hypervisor/bhyve: its check and its verify are the
 * two checks doctor runs, each timed alone as well. Every host command is a process of the
 * simulated host (a Bun script), so on a busy machine its start-up adds to the latency.
 *
 *   bun scripts/bench-doctor.ts [--latency-ms 100] [--nodes 5] [--runs 3]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bhyvePlugin } from "../plugins/hypervisor/bhyve/index.ts";
import { parseBhyveOptions } from "../plugins/hypervisor/bhyve/options.ts";
import type { AnyPlugin } from "../src/core/contract.ts";
import { runEngine } from "../src/core/engine.ts";
import type { Cluster } from "../src/core/model.ts";
import { memoryReporter } from "../src/core/reporter.ts";
import type { Target } from "../src/targets/target.ts";
import { createFreebsdHost, hostTarget } from "../test/lab/freebsd/host.ts";
import { exampleCluster, workers } from "../test/plugins/hypervisor/bhyve/lab.ts";
import { header, load, median, verdict } from "./bench-common.ts";

const { values } = parseArgs({
  options: {
    "latency-ms": { type: "string", default: "100" },
    nodes: { type: "string", default: "5" },
    runs: { type: "string", default: "3" },
  },
});
const latency = Number(values["latency-ms"]);
const nodeCount = Number(values.nodes);
const runs = Number(values.runs);

const host = createFreebsdHost({ stopDelayMs: 50 });
const stateDir = mkdtempSync(join(tmpdir(), "kubehyve-bench-doctor-"));
const base = exampleCluster();
const cluster: Cluster = { ...base, nodes: [base.nodes[0]!, ...workers(nodeCount - 1)] };
const stages = [
  {
    slot: "hypervisor",
    plugin: bhyvePlugin as AnyPlugin,
    options: parseBhyveOptions({ nic: "em0", firmware: host.firmwarePath }),
  },
];

/** Every host command with its start and end, for the serial sum. */
const spans: { argv: string; ms: number }[] = [];
function timed(target: Target): Target {
  return {
    ...target,
    run: async (argv, opts) => {
      const t0 = performance.now();
      try {
        return await target.run(argv, opts);
      } finally {
        spans.push({ argv: argv.join(" "), ms: performance.now() - t0 });
      }
    },
  };
}
const targets = {
  host: () => timed(hostTarget(host)),
  node: () => timed(hostTarget(host)),
  hostLock: join(host.root, "kubehyve.lock"),
};

async function engine(command: "up" | "doctor" | "verify") {
  const reporter = memoryReporter();
  const t0 = performance.now();
  const result = await runEngine({ command, cluster, stages, stateDir, reporter, assumeYes: true, targets });
  return { ms: performance.now() - t0, result, events: reporter.events };
}

let ok = true;
try {
  const converged = await engine("up");
  if (converged.result.exitCode !== 0)
    throw new Error(`the lab did not come up: exit ${converged.result.exitCode}`);
  host.setLatency(latency);
  header(`doctor, hypervisor/bhyve, ${nodeCount} nodes, ${latency} ms per host command, median of ${runs}`);

  const walls: number[] = [];
  const serial: number[] = [];
  const commands: number[] = [];
  const singles = { check: [] as number[], verify: [] as number[] };
  for (let round = 0; round < runs; round++) {
    spans.length = 0;
    const doctor = await engine("doctor");
    if (doctor.result.exitCode !== 0) {
      const errors = doctor.events.filter((e) => e.type === "diagnostic" && e.severity === "error");
      throw new Error(`doctor found errors on the converged lab: ${JSON.stringify(errors)}`);
    }
    walls.push(doctor.ms);
    serial.push(spans.reduce((sum, s) => sum + s.ms, 0));
    commands.push(spans.length);
    // Each of doctor's checks alone: the stage's check, then its verify.
    const { createPluginContext } = await import("../src/core/context.ts");
    const ctx = () =>
      createPluginContext({
        cluster,
        plugin: bhyvePlugin,
        options: stages[0]!.options,
        stateDir,
        targets: { host: targets.host() },
      });
    let t0 = performance.now();
    await bhyvePlugin.check(ctx());
    singles.check.push(performance.now() - t0);
    t0 = performance.now();
    await bhyvePlugin.verify!(ctx());
    singles.verify.push(performance.now() - t0);
  }
  const wall = median(walls);
  const check = median(singles.check);
  const verify = median(singles.verify);
  const slowest = Math.max(check, verify);
  const sum = median(serial);
  console.log(
    `doctor                          ${wall.toFixed(0).padStart(6)} ms  (${median(commands)} host commands)`,
  );
  console.log(`check alone                     ${check.toFixed(0).padStart(6)} ms`);
  console.log(`verify alone                    ${verify.toFixed(0).padStart(6)} ms`);
  console.log(`serial sum of doctor's commands ${sum.toFixed(0).padStart(6)} ms`);
  ok = verdict(
    `doctor ${(wall / slowest).toFixed(2)}× its slowest single check (target ≤ 1.3×); ${(wall / sum).toFixed(2)}× the serial sum`,
    wall <= 1.3 * slowest,
  );
  console.log(`load average at the end: ${load()}`);
} finally {
  host.cleanup();
  rmSync(stateDir, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
