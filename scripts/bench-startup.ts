/**
 * Cold start of the compiled binary against a compiled hello-world Bun binary, side by side (the
 * commands alternate, so that load on the machine weighs on all alike), median of N runs each, and
 * the peak RSS of each (the child's ru_maxrss).
 *
 * - `--version`: ratio at most 1.5 and under 60 ms.
 * - The commands that touch no host, on the example lab (`--example`, and the file `kubehyve init`
 *   writes): `config validate`, `plan --offline`, `render -o DIR`. Ratio at most 3, peak RSS at most
 *   40 MiB.
 *
 * Each is measured twice: the Linux binary as build.ts makes it (with bytecode, as every binary is,
 * the FreeBSD one too), and the same build without bytecode, to show what the bytecode is worth.
 *
 * `--breakdown` also builds instrumented binaries that time each step of `config validate
 * --example` (runtime start, module evaluation, plugin loading, YAML, schemas) and prints them.
 *
 *   bun scripts/bench-startup.ts [--runs 20] [--breakdown]
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildConfig } from "../build.ts";
import { alternate, header, load, MiB, median, peakRss, verdict } from "./bench-common.ts";

const { values } = parseArgs({
  options: { runs: { type: "string", default: "20" }, breakdown: { type: "boolean", default: false } },
});
const runs = Number(values.runs);
const root = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "kubehyve-bench-"));
const linux = `${process.platform}-${process.arch}` as const;
if (linux !== "linux-x64") throw new Error(`this benchmark builds linux-x64 binaries; this is ${linux}`);

async function compile(entry: string, outfile: string, bytecode: boolean): Promise<string> {
  const config = buildConfig({ target: "linux-x64", outfile, commit: "bench", bytecode });
  const result = await Bun.build({ ...config, entrypoints: [entry] });
  if (!result.success) throw new Error(result.logs.join("\n"));
  return outfile;
}

writeFileSync(join(dir, "hello.ts"), 'console.log("hello");\n');
const hello = join(dir, "hello");
{
  const build = Bun.spawnSync(
    [process.execPath, "build", "--compile", "--minify", join(dir, "hello.ts"), "--outfile", hello],
    { stderr: "pipe" },
  );
  if (!build.success) throw new Error(build.stderr.toString());
}
const main = join(root, "src/main.ts");
const binaries = {
  bytecode: await compile(main, join(dir, "kubehyve"), true),
  "without bytecode": await compile(main, join(dir, "kubehyve-no-bytecode"), false),
};

// Everything a run writes (state dirs, the rendered files) stays in the benchmark's directory.
const env = { HOME: dir, XDG_STATE_HOME: join(dir, "state"), NO_COLOR: "1" };
const initFile = join(dir, "kubehyve.yaml");
{
  const init = Bun.spawnSync([binaries.bytecode, "init", "-c", initFile], {
    env: { ...process.env, ...env },
  });
  if (!init.success) throw new Error(`kubehyve init failed: ${init.stderr}`);
}

const cases = [
  { name: "--version", args: ["--version"], ratio: 1.5, maxMs: 60 },
  { name: "config validate --example", args: ["config", "validate", "--example"], ratio: 3, rssMiB: 40 },
  { name: "config validate -c FILE", args: ["config", "validate", "-c", initFile], ratio: 3, rssMiB: 40 },
  { name: "plan --example --offline", args: ["plan", "--example", "--offline"], ratio: 3, rssMiB: 40 },
  { name: "plan -c FILE --offline", args: ["plan", "-c", initFile, "--offline"], ratio: 3, rssMiB: 40 },
  // Into a directory render made before: render replaces its own files.
  {
    name: "render --example -o DIR",
    args: ["render", "--example", "-o", join(dir, "out")],
    ratio: 3,
    rssMiB: 40,
  },
];

header(`start-up against a compiled hello-world, median of ${runs} runs each, alternating`);
const commands = [
  { argv: [hello], env },
  ...Object.values(binaries).flatMap((bin) => cases.map((c) => ({ argv: [bin, ...c.args], env }))),
];
const times = alternate(commands, runs).map(median);
const peaks = peakRss(commands);
const helloMs = times[0]!;
const helloRss = peaks[0]!;
console.log(`hello-world: ${helloMs.toFixed(1)} ms, peak RSS ${(helloRss / MiB).toFixed(1)} MiB`);

let allMet = true;
Object.keys(binaries).forEach((kind, b) => {
  console.log(`kubehyve, ${kind}:`);
  cases.forEach((c, i) => {
    const ms = times[1 + b * cases.length + i]!;
    const rss = peaks[1 + b * cases.length + i]!;
    const ratio = ms / helloMs;
    const met =
      ratio <= c.ratio &&
      (c.maxMs === undefined || ms < c.maxMs) &&
      (c.rssMiB === undefined || rss <= c.rssMiB * MiB);
    const target = `target ≤ ${c.ratio}×${c.maxMs ? `, < ${c.maxMs} ms` : ""}${c.rssMiB ? `, ≤ ${c.rssMiB} MiB` : ""}`;
    allMet =
      verdict(
        `  ${c.name.padEnd(26)} ${ms.toFixed(1).padStart(6)} ms  ${ratio.toFixed(2).padStart(5)}×  peak RSS ${(rss / MiB).toFixed(1).padStart(5)} MiB  (${target})`,
        met,
      ) && allMet;
  });
});
console.log(`load average at the end: ${load()}`);

if (values.breakdown) {
  const { breakdown } = await import("./bench-startup-breakdown.ts");
  await breakdown({ root, dir, runs, compile, env });
}
process.exit(allMet ? 0 : 1);
