/**
 * Cold start of `dist/kubehyve-linux-x64 --version` against a compiled hello-world Bun binary, side
 * by side, median of 20 runs each. Target: ratio at most 1.5 and under 60 ms.
 *
 *   bun build.ts --target linux-x64 && bun scripts/bench-startup.ts [runs]
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const runs = Number(process.argv[2] ?? 20);
const root = join(import.meta.dir, "..");
const kubehyve = join(root, "dist/kubehyve-linux-x64");

const dir = mkdtempSync(join(tmpdir(), "kubehyve-bench-"));
writeFileSync(join(dir, "hello.ts"), 'console.log("hello");\n');
const hello = join(dir, "hello");
const build = Bun.spawnSync(
  [process.execPath, "build", "--compile", "--minify", join(dir, "hello.ts"), "--outfile", hello],
  { stderr: "pipe" },
);
if (!build.success) throw new Error(build.stderr.toString());

/** Runs both commands alternately, so load on the machine weighs on both alike; median of each. */
function medians(commands: string[][]): number[] {
  const times = commands.map(() => [] as number[]);
  for (let i = 0; i < runs; i++) {
    commands.forEach((argv, j) => {
      const t0 = performance.now();
      const p = Bun.spawnSync(argv, { stdout: "ignore", stderr: "ignore" });
      times[j]!.push(performance.now() - t0);
      if (!p.success) throw new Error(`${argv.join(" ")} failed`);
    });
  }
  return times.map((t) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)]!);
}

medians([[hello], [kubehyve, "--version"]]); // warm the page cache for both
const [h, k] = medians([[hello], [kubehyve, "--version"]]) as [number, number];
const ratio = k / h;
console.log(`hello-world      ${h.toFixed(1)} ms (median of ${runs})`);
console.log(`kubehyve --version ${k.toFixed(1)} ms (median of ${runs})`);
console.log(
  `ratio            ${ratio.toFixed(2)} (target ≤ 1.5, and kubehyve < 60 ms): ${ratio <= 1.5 && k < 60 ? "met" : "NOT met"}`,
);
