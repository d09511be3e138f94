/**
 * Peak memory of a child process, measured without the test runner's own: Bun starts children with
 * vfork, and Linux counts the parent's pages that the child shared before exec in the child's
 * ru_maxrss (the test process's 800 MiB would show up as every child's peak). A small Python
 * parent forks and execs the command, then reports wait4's rusage for it alone.
 */
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const LAUNCHER = `
import json, os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"maxRssKiB": ru.ru_maxrss, "cpuSeconds": ru.ru_utime + ru.ru_stime}, f)
sys.exit(os.waitstatus_to_exitcode(status))
`;

export interface Measured {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  wallMs: number;
  cpuMs: number;
  maxRssBytes: number;
}

let counter = 0;

export function runMeasured(
  argv: string[],
  opts: { cwd: string; env: Record<string, string>; timeoutMs: number },
): Measured {
  const out = join(tmpdir(), `kubehyve-rusage-${process.pid}-${counter++}.json`);
  const t0 = performance.now();
  const proc = Bun.spawnSync(["python3", "-c", LAUNCHER, out, ...argv], {
    cwd: opts.cwd,
    env: opts.env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: opts.timeoutMs,
  });
  const wallMs = performance.now() - t0;
  let usage = { maxRssKiB: 0, cpuSeconds: 0 };
  try {
    usage = JSON.parse(readFileSync(out, "utf8"));
  } catch {
    // Killed by the timeout: no figures, and the exit code says so.
  } finally {
    rmSync(out, { force: true });
  }
  return {
    exitCode: proc.exitCode,
    stdout: proc.stdout.toString(),
    stderr: proc.stderr.toString(),
    wallMs,
    cpuMs: usage.cpuSeconds * 1000,
    maxRssBytes: usage.maxRssKiB * 1024,
  };
}
