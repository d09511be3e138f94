/**
 * What a write does to last a power cut, as strace sees it: `script` run by bun under strace, and
 * its fsync, fdatasync and rename calls in order, each descriptor shown with its path (-y).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { findTool } from "./prereq.ts";

export function syncsAndRenames(
  script: string,
  logDir: string,
): { exitCode: number | null; calls: string[] } {
  const log = join(logDir, "strace.log");
  const proc = Bun.spawnSync([
    findTool("strace")!,
    "-f",
    "-y",
    "-e",
    "trace=fsync,fdatasync,rename,renameat,renameat2",
    "-o",
    log,
    process.execPath,
    "-e",
    script,
  ]);
  const calls = readFileSync(log, "utf8")
    .split("\n")
    .filter((line) => /\b(fsync|fdatasync|rename\w*)\(/.test(line) && !line.includes("unfinished"));
  return { exitCode: proc.exitCode, calls };
}
