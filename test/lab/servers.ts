/**
 * The long-lived programs test/lab starts (sshd, dnsmasq, node_exporter) end with the test file
 * that started them, even when a test forgot stop():
 * - each is tracked here, and test/setup.ts's afterAll kills what is still running once the file's
 *   own hooks are done. A process "exit" handler would not do: bun test (1.4.5) runs none.
 * - a server that keeps the uid it was started with also gets a parent-death signal (setpriv
 *   --pdeathsig KILL, prctl(2) PR_SET_PDEATHSIG), so the kernel ends it when the test process dies
 *   before any hook can run (a crash, SIGKILL). A program that changes its credentials, as a root
 *   dnsmasq does when it becomes nobody, loses that signal (the kernel clears it on a change of
 *   uid), so for it the afterAll is the one guard.
 */
import { findTool, have } from "./prereq.ts";

const running = new Set<Bun.Subprocess>();

/** Remembers a server until it has exited; returns it. */
export function track<T extends Bun.Subprocess>(proc: T): T {
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  return proc;
}

/** Kills every tracked server still running and waits for each to be gone. */
export async function killLeftovers(): Promise<void> {
  const left = [...running];
  for (const proc of left) proc.kill("SIGKILL");
  await Promise.all(left.map((p) => p.exited));
}

/** setpriv, which the parent-death signal needs (under CI=true, its absence throws). */
export function haveSetpriv(): boolean {
  return have("setpriv", "util-linux");
}

/**
 * `argv` run so that the kernel kills it with SIGKILL when the test process ends. setpriv execs
 * the program, so the pid Bun returns is the server's own; the signal follows the thread that
 * spawned it, the JavaScript thread, which lives as long as the test process.
 */
export function dyingWithParent(argv: string[]): string[] {
  const setpriv = findTool("setpriv");
  if (!setpriv) throw new Error("setpriv is needed: install util-linux");
  return [setpriv, "--pdeathsig", "KILL", "--", ...argv];
}
