/**
 * Benchmark of the hypervisor/bhyve stage: `plan` and a no-op `up` (check, then verify; nothing to
 * apply) against the simulated FreeBSD host with 5 nodes and a fixed latency per host command.
 * Prints wall time and host commands per phase, and fails when a phase repeats a command needlessly
 * or takes longer than the target. Each host command is a Bun process on the simulated host, so on
 * a busy machine its start-up adds to the latency.
 *
 *   bun scripts/bench-bhyve.ts [--latency-ms 50] [--nodes 5] [--target-ms 1000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bhyvePlugin } from "../plugins/hypervisor/bhyve/index.ts";
import { createFreebsdHost, hostTarget } from "../test/lab/freebsd/host.ts";
import { exampleCluster, labContext, up, workers } from "../test/plugins/hypervisor/bhyve/lab.ts";

const { values } = parseArgs({
  options: {
    "latency-ms": { type: "string", default: "50" },
    nodes: { type: "string", default: "5" },
    "target-ms": { type: "string", default: "1000" },
  },
});
const latency = Number(values["latency-ms"]);
const nodeCount = Number(values.nodes);
const targetMs = Number(values["target-ms"]);

const host = createFreebsdHost({ stopDelayMs: 50 });
const stateDir = mkdtempSync(join(tmpdir(), "kubehyve-bench-"));
const base = exampleCluster();
const cluster = { ...base, nodes: [base.nodes[0]!, ...workers(nodeCount - 1)] };
const ctx = () =>
  labContext({ host: hostTarget(host), stateDir, cluster, options: { firmware: host.firmwarePath } });

let failed = false;
try {
  await up(ctx());
  host.setLatency(latency);

  const phases: { name: string; run: () => Promise<unknown> }[] = [
    { name: "plan", run: () => bhyvePlugin.check(ctx()) },
    {
      name: "up (no-op)",
      run: async () => {
        const result = await up(ctx());
        if (result.plan.changes.length)
          throw new Error(
            `no-op up planned changes: ${result.plan.changes.map((c) => c.summary).join("; ")}`,
          );
      },
    },
  ];
  console.log(`hypervisor/bhyve, ${nodeCount} nodes, ${latency} ms per host command`);
  for (const phase of phases) {
    host.clearLog();
    const started = performance.now();
    await phase.run();
    const ms = performance.now() - started;
    const commands = host.log().map((argv) => argv.join(" "));
    const repeated = commands.filter((c, i) => commands.indexOf(c) !== i);
    console.log(
      `  ${phase.name.padEnd(12)} ${ms.toFixed(0).padStart(5)} ms  ${commands.length} host commands${repeated.length ? `, repeated: ${repeated.join(" | ")}` : ""}`,
    );
    // up runs check and then verify, which must read the guests again after a possible apply
    // (kldstat first: vm, which loads vmm, runs only when it is loaded; ls: what the configs are).
    const allowed = phase.name.startsWith("up")
      ? new Set([
          "kldstat -q -m vmm",
          commands.find((c) => c.startsWith("ls -lnd -- ")) ?? "",
          "vm list",
          "vm switch list",
          "ifconfig",
          "zfs get -Hp -d 2 -t filesystem,volume -o name,property,value,source mounted,mountpoint,volsize,volblocksize,kubehyve:cluster,kubehyve:cluster-name zroot/vm",
        ])
      : new Set<string>();
    if (repeated.some((c) => !allowed.has(c)) || ms >= targetMs) failed = true;
  }
  console.log(`  target: each under ${targetMs} ms, no command repeated within a phase`);
} finally {
  host.cleanup();
  rmSync(stateDir, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
