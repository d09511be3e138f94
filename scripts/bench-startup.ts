/**
 * Cold start of `dist/kubehyve-linux-x64 --version` against a compiled hello-world Bun binary, side
 * by side, median of 20 runs each. Target: ratio at most 1.5 and under 60 ms.
 *
 * The FreeBSD binary cannot run here, and it has no bytecode (Bun cannot make bytecode when
 * cross-compiling). A Linux build made the same way, without bytecode, stands in for it.
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

const noBytecode = join(dir, "kubehyve-no-bytecode");
const plain = await Bun.build({
  entrypoints: [join(root, "src/main.ts")],
  minify: true,
  splitting: true,
  format: "esm",
  define: { KUBEHYVE_COMMIT: '"bench"', "process.env.NODE_ENV": '"production"' },
  compile: { outfile: noBytecode, autoloadBunfig: false, autoloadDotenv: false },
});
if (!plain.success) throw new Error(plain.logs.join("\n"));

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

const commands = [[hello], [kubehyve, "--version"], [noBytecode, "--version"]];
medians(commands); // warm the page cache for all
const [h, k, n] = medians(commands) as [number, number, number];
const verdict = (ms: number) => (ms / h <= 1.5 && ms < 60 ? "met" : "NOT met");
console.log(`hello-world                       ${h.toFixed(1)} ms (median of ${runs})`);
console.log(
  `kubehyve --version                ${k.toFixed(1)} ms, ratio ${(k / h).toFixed(2)}: ${verdict(k)}`,
);
console.log(
  `  without bytecode (as FreeBSD)   ${n.toFixed(1)} ms, ratio ${(n / h).toFixed(2)}: ${verdict(n)}`,
);
console.log("target: ratio at most 1.5 and under 60 ms");
