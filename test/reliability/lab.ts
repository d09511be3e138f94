/**
 * The stage engine running hypervisor/bhyve against the simulated FreeBSD host, as `kubehyve up`
 * does, for the reliability tests: faults and latency on the host, Ctrl-C and hard aborts, and
 * what is left behind afterwards.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { bhyvePlugin } from "../../plugins/hypervisor/bhyve/index.ts";
import { parseBhyveOptions } from "../../plugins/hypervisor/bhyve/options.ts";
import type { AnyPlugin } from "../../src/core/contract.ts";
import { type EngineRequest, runEngine } from "../../src/core/engine.ts";
import type { CommandTimeouts } from "../../src/core/model.ts";
import { memoryReporter } from "../../src/core/reporter.ts";
import { labNode } from "../lab/cluster.ts";
import { type FreebsdHost, hostTarget } from "../lab/freebsd/host.ts";
import { exampleCluster } from "../plugins/hypervisor/bhyve/lab.ts";

export interface LabRun {
  promise: ReturnType<typeof runEngine>;
  reporter: ReturnType<typeof memoryReporter>;
}

/** `up` (or another command) of a one-node lab on `host`, its state in `stateDir`. */
export function engineOn(
  host: FreebsdHost,
  stateDir: string,
  opts: { timeouts?: CommandTimeouts; nodes?: number } & Partial<EngineRequest> = {},
): LabRun {
  const { timeouts, nodes = 1, ...extra } = opts;
  const reporter = memoryReporter();
  const all = [
    labNode("cp1", "control-plane", "192.168.1.21"),
    labNode("w1", "worker", "192.168.1.22"),
    labNode("w2", "worker", "192.168.1.23"),
  ];
  const promise = runEngine({
    command: "up",
    cluster: { ...exampleCluster({ nodes: all.slice(0, nodes) }), timeouts },
    stages: [
      {
        slot: "hypervisor",
        plugin: bhyvePlugin as AnyPlugin,
        options: parseBhyveOptions({ nic: "em0", firmware: host.firmwarePath, stopTimeoutSec: 5 }),
      },
    ],
    stateDir,
    reporter,
    assumeYes: true,
    targets: {
      host: () => hostTarget(host),
      node: () => hostTarget(host),
      hostLock: join(host.root, "kubehyve.lock"),
    },
    ...extra,
  });
  return { promise, reporter };
}

/** The run's last line. */
export function endOf(run: LabRun): { status: string; exitCode: number; message: string } {
  return run.reporter.events.at(-1) as never;
}

/** Pids of the processes still running a command of `host` (its shims carry its root in argv). */
export function processesOf(host: FreebsdHost): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (stat[stat.lastIndexOf(")") + 2] === "Z") continue;
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(host.root)) pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Waits until `ok` holds, polling; false when it never did within `ms`. */
export async function eventually(ok: () => boolean, ms = 10_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await Bun.sleep(20)) if (ok()) return true;
  return ok();
}

/**
 * Files kubehyve left on the host that are not meant to last: vm-bhyve templates of ours, the
 * temporary names of atomic writes, lock drafts.
 */
export function leftovers(host: FreebsdHost): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (path.startsWith(join(host.root, ".sim"))) continue;
      if (entry.isDirectory()) walk(path);
      else if (/\.kubehyve\.\d+$|\.\d+\.(new|stale)$|\/\.templates\/kubehyve-/.test(path)) found.push(path);
    }
  };
  walk(host.root);
  return found;
}
