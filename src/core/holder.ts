/**
 * Who holds a lock: a process recognised by its pid *and* its start time, on a machine recognised
 * by its name and boot. A pid alone names a process only until it exits: after a crash or a reboot
 * the same number belongs to another program (pid 1 is init), which no lock must keep waiting on,
 * and which no message must ever suggest killing.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { processAlive } from "../lib/process.ts";

/** What a lock records of the process that took it. */
export interface Holder {
  pid: number;
  /** The process's start, as `processStart` gives it; absent in locks of older versions. */
  start?: string;
  /** The machine the process runs on, as `machineId` gives it. */
  machine?: string;
}

export type HolderVerdict =
  /** The very process that took the lock is running: it holds it. */
  | { kind: "alive" }
  /** Nothing of it is left (or its pid now names another program): the lock is stale. */
  | { kind: "gone"; why: string }
  /** A process with that pid runs, but whether it is the holder cannot be told. */
  | { kind: "unknown"; why: string };

/**
 * When `pid` started, in a form that changes when the pid is reused: on Linux the start time in
 * clock ticks since boot (proc(5), /proc/PID/stat field 22) with the boot's id; elsewhere (FreeBSD)
 * `ps -o lstart=`, the start to the second (ps(1): "lstart: time started"). Undefined when the
 * process does not exist or cannot be asked.
 */
export function processStart(pid: number): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (process.platform === "linux") {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count from the last ")".
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const starttime = fields[22 - 3];
      return starttime ? `linux:${bootId() ?? "?"}:${starttime}` : undefined;
    } catch {
      return undefined;
    }
  }
  const ps = Bun.spawnSync(["ps", "-o", "lstart=", "-p", String(pid)], {
    env: { PATH: "/bin:/usr/bin", LC_ALL: "C", TZ: "UTC" },
    stdout: "pipe",
    stderr: "ignore",
    timeout: 5000,
  });
  const text = ps.stdout.toString().trim();
  return ps.exitCode === 0 && text ? `ps:${text}` : undefined;
}

/** The command line of `pid`, for messages and for locks of older versions; undefined if unknown. */
export function processCommand(pid: number): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (process.platform === "linux") {
    try {
      const text = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
      return text || undefined;
    } catch {
      return undefined;
    }
  }
  const ps = Bun.spawnSync(["ps", "-o", "command=", "-p", String(pid)], {
    env: { PATH: "/bin:/usr/bin", LC_ALL: "C" },
    stdout: "pipe",
    stderr: "ignore",
    timeout: 5000,
  });
  const text = ps.stdout.toString().trim();
  return ps.exitCode === 0 && text ? text : undefined;
}

let cachedBootId: string | undefined | null = null;

/** This boot of this machine: Linux's random boot id, or FreeBSD's kern.boottime seconds. */
export function bootId(): string | undefined {
  if (cachedBootId !== null) return cachedBootId;
  cachedBootId = undefined;
  try {
    cachedBootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || undefined;
  } catch {
    const sysctl = Bun.spawnSync(["sysctl", "-n", "kern.boottime"], {
      env: { PATH: "/sbin:/bin:/usr/sbin:/usr/bin", LC_ALL: "C" },
      stdout: "pipe",
      stderr: "ignore",
      timeout: 5000,
    });
    // "{ sec = 1733050000, usec = 123456 } Mon Dec  1 10:46:40 2025" (sysctl(8) on a timeval)
    cachedBootId = /sec = (\d+)/.exec(sysctl.stdout.toString())?.[1];
  }
  return cachedBootId;
}

/** This machine in this boot: a holder recorded elsewhere cannot be checked from here. */
export function machineId(): string {
  return `${hostname()}/${bootId() ?? "?"}`;
}

/** The Holder record of this process. */
export function me(): Holder {
  return { pid: process.pid, start: processStart(process.pid), machine: machineId() };
}

/** Judges a holder; one recorded on another machine cannot be checked from here (see HolderVerdict). */
export function judgeHolder(holder: Holder): HolderVerdict {
  const { pid } = holder;
  if (!Number.isInteger(pid) || pid <= 0) return { kind: "gone", why: "it names no process" };
  if (holder.machine !== undefined && holder.machine !== machineId()) {
    const [name, boot] = holder.machine.split("/");
    if (name !== hostname()) return { kind: "unknown", why: `it was taken on another machine, ${name}` };
    if (boot !== "?" && bootId() !== undefined)
      return { kind: "gone", why: "it was taken before the machine last booted" };
  }
  // This process itself (another run in it: a test, a program using the engine as a library)
  // holds it when the start matches, as for any other process.
  if (pid === process.pid && holder.start === undefined)
    return { kind: "gone", why: "its pid is this run's own" };
  if (!processAlive(pid)) return { kind: "gone", why: `pid ${pid} is not running` };
  if (holder.start !== undefined) {
    const now = processStart(pid);
    if (now === undefined)
      return { kind: "unknown", why: `pid ${pid} runs, but its start time cannot be read` };
    return now === holder.start
      ? { kind: "alive" }
      : { kind: "gone", why: `pid ${pid} now belongs to a process started later` };
  }
  // A lock of a version that recorded no start time: the command line is all there is to go by.
  const command = processCommand(pid);
  if (command === undefined)
    return { kind: "unknown", why: `pid ${pid} runs, but what it is cannot be read` };
  return /kubehyve/.test(command)
    ? { kind: "unknown", why: `pid ${pid} is ${JSON.stringify(command.slice(0, 120))}` }
    : { kind: "gone", why: `pid ${pid} is ${JSON.stringify(command.slice(0, 120))}, not kubehyve` };
}
