/**
 * Where the start-up time of `config validate --example` goes: an instrumented entry point, built
 * exactly as the binary is (with and without bytecode), does what that command does one step at a
 * time, taking a timestamp after each, and prints the steps as JSON; the median of N runs of each
 * step is shown. The steps run in the command's own order, so each one pays for what it is the
 * first to load (a library shared by two steps counts in the first).
 *
 * Run by `bun scripts/bench-startup.ts --breakdown`.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { MiB, median, peakRss } from "./bench-common.ts";

function entry(root: string): string {
  const src = (p: string) => JSON.stringify(join(root, p));
  return `
const marks = [["runtime start, to the first line of JavaScript", performance.now(), process.memoryUsage.rss()]];
const mark = (name) => marks.push([name, performance.now(), process.memoryUsage.rss()]);
await import("node:fs");
mark("node:fs");
await import("citty");
mark("citty (the command-line parser)");
const { logger } = await import(${src("src/cli/output.ts")});
mark("the output layer: consola's core and the line reporter");
const { runCli } = await import(${src("src/cli/index.ts")});
mark("the command line: the command table");
await import("valibot");
mark("valibot");
await import(${src("src/core/schema.ts")});
mark("the core schema (built at module top level) and its helpers");
await import(${src("src/core/config.ts")});
mark("core config: the checks across fields");
const command = await import(${src("src/cli/config.ts")});
mark("the config command and the CLI's shared code (flags, finding the file)");
const { builtinPlugins } = await import(${src("plugins/index.ts")});
mark("built-in plugins' declarations, with the plugin API they import");
const { loadPlugins, pluginSearchPath } = await import(${src("src/core/plugins.ts")});
const registry = await loadPlugins(builtinPlugins, pluginSearchPath());
mark("plugin registry (and the plugin path scanned)");
const { exampleText } = await import(${src("src/cli/_shared.ts")});
const { parseBoundedYaml } = await import(${src("src/core/yaml-input.ts")});
const parsed = parseBoundedYaml(exampleText);
mark("YAML: the example lab read by the yaml library, limits checked");
const v = await import("valibot");
const { ClusterFileSchema } = await import(${src("src/core/schema.ts")});
const core = v.safeParse(ClusterFileSchema, parsed.value);
if (!core.success) throw new Error("the example lab is invalid");
mark("core schema: the example validated");
for (const [slot, stage] of Object.entries(parsed.value.stages)) {
  const { plugin, ...options } = stage;
  const p = registry.find(plugin.includes("/") ? plugin : slot + "/" + plugin);
  if (p?.options && !v.safeParse(p.options, options).success) throw new Error(slot + " is invalid");
}
mark("stages' option schemas: the example's options validated");
const { parseClusterText } = await import(${src("src/core/config.ts")});
const config = parseClusterText(exampleText, "<built-in example lab>", registry);
mark("parseClusterText once more (warm YAML and schemas), with the stages' validate()");
logger().success("valid: " + config.cluster.name);
mark("the one line printed");
console.error(JSON.stringify(marks));
void runCli, command;
`;
}

export async function breakdown(opts: {
  root: string;
  dir: string;
  runs: number;
  compile: (entry: string, outfile: string, bytecode: boolean) => Promise<string>;
  env: Record<string, string>;
}): Promise<void> {
  const file = join(opts.root, "scripts", `.bench-breakdown-${process.pid}.ts`);
  writeFileSync(file, entry(opts.root));
  let bins: string[];
  try {
    bins = [
      await opts.compile(file, join(opts.dir, "breakdown"), true),
      await opts.compile(file, join(opts.dir, "breakdown-no-bytecode"), false),
    ];
  } finally {
    (await import("node:fs")).rmSync(file, { force: true });
  }
  // Per step and binary: milliseconds, and growth of the resident set (current, not peak).
  const steps = bins.map(() => new Map<string, { ms: number[]; rss: number[] }>());
  for (let i = 0; i < opts.runs; i++) {
    bins.forEach((bin, b) => {
      const p = Bun.spawnSync([bin], {
        env: { ...process.env, ...opts.env },
        stdout: "ignore",
        stderr: "pipe",
      });
      if (!p.success) throw new Error(`${bin} failed: ${p.stderr}`);
      const marks = JSON.parse(p.stderr.toString().trim().split("\n").pop()!) as [string, number, number][];
      marks.forEach(([name, at, rss], k) => {
        const step = steps[b]!.get(name) ?? { ms: [], rss: [] };
        step.ms.push(at - (k ? marks[k - 1]![1] : 0));
        step.rss.push(rss - (k ? marks[k - 1]![2] : 0));
        steps[b]!.set(name, step);
      });
    });
  }
  const peaks = peakRss(bins.map((argv) => ({ argv: [argv], env: opts.env })));
  const fmt = (ms: number, rss: number) =>
    `${ms.toFixed(1).padStart(6)} ms ${(rss / MiB).toFixed(1).padStart(5)} MiB`;
  console.log(`where the time of config validate --example goes (median of ${opts.runs} runs per step;`);
  console.log("MiB: growth of the resident set in the step; the first line is the whole set at that point)");
  console.log(`${"".padEnd(80)} ${"bytecode".padEnd(20)} no bytecode`);
  const totals = [0, 0];
  for (const name of steps[0]!.keys()) {
    const cells = steps.map((s, b) => {
      const { ms, rss } = s.get(name)!;
      totals[b]! += median(ms);
      return fmt(median(ms), median(rss));
    });
    console.log(`  ${name.padEnd(78)} ${cells.join("   ")}`);
  }
  console.log(
    `  ${"sum of the medians; peak RSS".padEnd(78)} ${totals.map((t, b) => fmt(t, peaks[b]!)).join("   ")}`,
  );
}
