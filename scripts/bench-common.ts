/**
 * What the benchmarks share: running commands side by side (alternately, so that load from other
 * work on the machine weighs on each alike), medians, peak RSS, the machine's load, and the lines
 * that say a result against its target. Benchmarks are not tests: they print, and exit 1 when a
 * target is not met.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";

export interface Command {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function load(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}

export function header(title: string, machine = true): void {
  console.log(title);
  if (machine) console.log(`load average (1, 5, 15 min): ${load()}`);
}

function run(c: Command, argv = c.argv): void {
  const p = Bun.spawnSync(argv, {
    stdout: "ignore",
    stderr: "pipe",
    env: c.env ? { ...process.env, ...c.env } : undefined,
    cwd: c.cwd,
  });
  // A figure for a command that did not do its work means nothing.
  if (!p.success) throw new Error(`${c.argv.join(" ")} failed (exit ${p.exitCode}): ${p.stderr}`);
}

/**
 * Wall time of every command, `runs` times each, in turn (a b c a b c …), after one round that
 * warms the page cache: milliseconds per command per run.
 */
export function alternate(commands: readonly Command[], runs: number): number[][] {
  const times = commands.map(() => [] as number[]);
  for (let round = -1; round < runs; round++) {
    commands.forEach((c, j) => {
      const t0 = performance.now();
      run(c);
      if (round >= 0) times[j]!.push(performance.now() - t0);
    });
  }
  return times;
}

/**
 * Peak RSS of every command in bytes, the largest of `rounds` runs, as `/usr/bin/time -f %M` reads
 * it (wait4's ru_maxrss). Not from Bun.spawnSync's resourceUsage: Linux carries a process's peak
 * across exec, so a child forked from this (large) Bun process would report Bun's own peak.
 */
export function peakRss(commands: readonly Command[], rounds = 3): number[] {
  const peaks = commands.map(() => 0);
  const out = join(mkdtempSync(join(tmpdir(), "kubehyve-bench-rss-")), "maxrss");
  for (let round = 0; round < rounds; round++) {
    commands.forEach((c, j) => {
      run(c, ["/usr/bin/time", "-f", "%M", "-o", out, ...c.argv]);
      peaks[j] = Math.max(peaks[j]!, Number(readFileSync(out, "utf8").trim()) * 1024);
    });
  }
  return peaks;
}

export const MiB = 1024 * 1024;

/** Prints one result line and returns whether it met its target. */
export function verdict(line: string, met: boolean): boolean {
  console.log(`${line}: ${met ? "met" : "NOT met"}`);
  return met;
}
