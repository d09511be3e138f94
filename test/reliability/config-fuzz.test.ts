/**
 * Bad input costs little: every mutated cluster file goes through the real loader (the built-in
 * plugins' schemas and validate hooks included), in process and, for a sample, through the
 * compiled binary's `config validate`. Each must end in exit 0 (valid) or 2 (refused with a
 * message), never a crash or a stack trace, within 2 s and, for the binary, 200 MiB. Time is CPU
 * time: the machine is shared, and a loaded one must not turn a cheap refusal into a failure (a
 * wall-clock limit five times as long still catches a file that blocks).
 *
 * KUBEHYVE_FUZZ_SEED and KUBEHYVE_FUZZ_COUNT replay or widen a run; the figures are printed.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinPlugins } from "../../plugins/index.ts";
import { loadClusterFile } from "../../src/core/config.ts";
import { loadPlugins, type PluginRegistry } from "../../src/core/plugins.ts";
import { InputError } from "../../src/lib/errors.ts";
import { userEnv } from "../lab/cli.ts";
import { have } from "../lab/prereq.ts";
import { runMeasured } from "./measure.ts";
import { fuzzCases } from "./mutate.ts";

const ROOT = join(import.meta.dir, "../..");
const BIN = join(ROOT, "dist/kubehyve-linux-x64");
const SEED = Number(process.env.KUBEHYVE_FUZZ_SEED || 20_250_501);
const COUNT = Number(process.env.KUBEHYVE_FUZZ_COUNT || 1200);
const TIME_LIMIT_MS = 2000;
const WALL_LIMIT_MS = 10_000;
const RSS_LIMIT = 200 * 1024 * 1024;
const STACK = /\n\s+at |\bat \S+ \(.*:\d+:\d+\)/;

let registry: PluginRegistry;
let dir: string;

beforeAll(async () => {
  registry = await loadPlugins(builtinPlugins, []);
  dir = mkdtempSync(join(tmpdir(), "kubehyve-fuzz-"));
  const build = Bun.spawnSync([process.execPath, "build.ts", "--target", "linux-x64"], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  if (!build.success) throw new Error(`build failed: ${build.stderr.toString()}`);
}, 120_000);

interface Outcome {
  index: number;
  how: string;
  kind: "valid" | "refused" | "crash";
  /** CPU time of this process (every thread: GC included). */
  ms: number;
  wallMs: number;
  text: string;
}

/** The loader's verdict on one file: what the CLI would make of it, without the process around it. */
async function judge(path: string): Promise<Omit<Outcome, "index" | "how">> {
  const wall0 = performance.now();
  const cpu0 = process.cpuUsage();
  const took = () => {
    const cpu = process.cpuUsage(cpu0);
    return { ms: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - wall0 };
  };
  try {
    await loadClusterFile(path, registry);
    return { kind: "valid", ...took(), text: "" };
  } catch (error) {
    const time = took();
    if (error instanceof InputError) {
      const text = [
        error.message,
        error.hint ?? "",
        ...error.problems.map((p) => `${p.where} ${p.path} ${p.message}`),
      ].join("\n");
      return { kind: "refused", ...time, text };
    }
    return { kind: "crash", ...time, text: (error as Error)?.stack ?? String(error) };
  }
}

describe("cluster files mutated by a seeded fuzzer", () => {
  test(`load in process with exit 0 or 2, no stack trace, within 2 s each (seed ${SEED}, ${COUNT} files)`, async () => {
    const outcomes: Outcome[] = [];
    const file = join(dir, "kubehyve.yaml");
    let peakRss = process.memoryUsage().rss;
    const startRss = peakRss;
    for (const c of fuzzCases(SEED, COUNT)) {
      writeFileSync(file, c.bytes);
      const o = await judge(file);
      outcomes.push({ index: c.index, how: c.how, ...o });
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }
    const crashes = outcomes.filter((o) => o.kind === "crash");
    const stacks = outcomes.filter((o) => STACK.test(o.text) && o.kind !== "crash");
    const slow = outcomes.filter((o) => o.ms > TIME_LIMIT_MS || o.wallMs > WALL_LIMIT_MS);
    const slowest = outcomes.reduce((a, b) => (b.ms > a.ms ? b : a));
    console.log(
      `fuzz seed ${SEED}: ${outcomes.length} files, ${outcomes.filter((o) => o.kind === "valid").length} valid, ` +
        `${outcomes.filter((o) => o.kind === "refused").length} refused (exit 2), ${crashes.length} crashes, ` +
        `${stacks.length} stack traces, ${slow.length} over ${TIME_LIMIT_MS} ms (slowest ${Math.round(slowest.ms)} ms of CPU: ` +
        `case ${slowest.index}, ${slowest.how}), in-process RSS ${Math.round(startRss / 2 ** 20)} → peak ${Math.round(peakRss / 2 ** 20)} MiB`,
    );
    const show = (list: Outcome[]) =>
      list.slice(0, 5).map((o) => `case ${o.index} (${o.how}): ${o.text.slice(0, 600)}`);
    expect(outcomes.length).toBeGreaterThanOrEqual(1000);
    expect(show(crashes)).toEqual([]);
    expect(show(stacks)).toEqual([]);
    expect(
      slow.map((o) => `case ${o.index} (${o.how}): ${Math.round(o.ms)} ms CPU, ${Math.round(o.wallMs)} ms`),
    ).toEqual([]);
    // Both verdicts happen: a fuzzer whose every file is refused (or accepted) tests little.
    expect(outcomes.some((o) => o.kind === "valid")).toBe(true);
    expect(outcomes.some((o) => o.kind === "refused")).toBe(true);
  }, 600_000);

  test.if(have("python3", "python3"))(
    "through the compiled binary's config validate: exit 0 or 2, never a bug report, within 2 s and 200 MiB",
    () => {
      const sampleDir = join(dir, "binary");
      mkdirSync(sampleDir, { recursive: true });
      const samples: { name: string; path: string }[] = [];
      for (const c of fuzzCases(SEED, COUNT)) {
        // Every 8th big file (where time and memory go) and every 50th of the rest: the in-process
        // pass above sees every file; this one shows the binary behaves the same, at a few seconds.
        const big = c.bytes.length >= 300_000;
        if (big ? c.index % 8 !== 0 : c.index % 50 !== 0) continue;
        const path = join(sampleDir, `case-${c.index}.yaml`);
        writeFileSync(path, c.bytes);
        samples.push({ name: `case ${c.index}`, path });
      }
      const fifo = join(sampleDir, "fifo");
      Bun.spawnSync(["mkfifo", fifo]);
      const huge = join(sampleDir, "huge.yaml");
      writeFileSync(huge, `name: lab\n#${"x".repeat(5 * 1024 * 1024)}\n`);
      const brackets = join(sampleDir, "brackets.yaml");
      writeFileSync(brackets, "[".repeat(1024 * 1024 - 1));
      samples.push(
        { name: "/dev/zero", path: "/dev/zero" },
        { name: "a FIFO", path: fifo },
        { name: "a directory", path: sampleDir },
        { name: "a 5 MiB file", path: huge },
        { name: "1 MiB of [", path: brackets },
      );

      const failures: string[] = [];
      let peak = 0;
      let slowest = 0;
      for (const s of samples) {
        const proc = runMeasured([BIN, "config", "validate", "-c", s.path], {
          cwd: dir,
          env: userEnv(dir),
          timeoutMs: 20_000,
        });
        const { wallMs, cpuMs: ms, maxRssBytes: rss } = proc;
        const out = proc.stdout + proc.stderr;
        peak = Math.max(peak, rss);
        slowest = Math.max(slowest, ms);
        if (proc.exitCode !== 0 && proc.exitCode !== 2)
          failures.push(`${s.name}: exit ${proc.exitCode}: ${out.slice(0, 300)}`);
        if (out.includes("hit a bug") || STACK.test(out)) failures.push(`${s.name}: ${out.slice(0, 300)}`);
        if (ms > TIME_LIMIT_MS || wallMs > WALL_LIMIT_MS)
          failures.push(`${s.name}: ${Math.round(ms)} ms CPU, ${Math.round(wallMs)} ms`);
        if (rss > RSS_LIMIT) failures.push(`${s.name}: ${Math.round(rss / 2 ** 20)} MiB`);
      }
      console.log(
        `binary sample: ${samples.length} runs of config validate, ${failures.length} failures, peak RSS ${Math.round(peak / 2 ** 20)} MiB, slowest ${Math.round(slowest)} ms of CPU`,
      );
      expect(failures).toEqual([]);
    },
    600_000,
  );
});
