/**
 * The simulated FreeBSD host's state: one JSON file in the host's temp root, read and written under a
 * lock by every shim invocation, so `vm create`, `vm start`, `vm list` and `zfs list` agree with each
 * other whichever process runs them. Files that FreeBSD keeps on disk (rc.conf, vm-bhyve's
 * system.conf, guest configs and logs, disk images) are real files under the root instead.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

export interface PoolState {
  size: number;
  /** Bytes allocated by everything that is not a simulated thick zvol. */
  baseAlloc: number;
}

export interface DatasetState {
  type: "filesystem" | "volume" | "snapshot";
  /** Real directory under the root (filesystems only). */
  mountpoint?: string;
  mounted?: boolean;
  volsize?: number;
  /** Sparse volumes (`zfs create -s -V`) reserve nothing. */
  sparse?: boolean;
  origin?: string;
  /** zvols: volblocksize (OpenZFS 2.2 default 16K) and volmode (vm-bhyve creates them volmode=dev). */
  volblocksize?: number;
  volmode?: string;
  /** Properties set on this dataset itself (`zfs create -o`, `zfs set`): user properties such as kubehyve:cluster. */
  props?: Record<string, string>;
}

export interface InterfaceState {
  kind: "ether" | "bridge" | "tap" | "loopback";
  ether: string;
  mtu: number;
  up: boolean;
  description?: string;
  groups: string[];
  members: string[];
  inet?: string;
  openedBy?: number;
  /** The enabled capabilities ifconfig prints in `options=` (none printed when undefined). */
  caps?: string[];
  /** A bridge member's own capabilities, given back when it leaves the bridge (bif_savedcaps). */
  savedCaps?: string[];
}

export interface PfState {
  /** pf.ko is loaded: /dev/pf exists. */
  loaded: boolean;
  enabled: boolean;
  /** When `pfctl -e` ran (epoch ms), for the status line's running time. */
  enabledAt?: number;
  /** The translation rules as `pfctl -s nat` prints them. */
  nat: string[];
}

export interface GuestRun {
  pid: number;
  taps: string[];
  /** When bhyve started (epoch ms), for `vm list -v`'s UPTIME. */
  startedAt: number;
  /** vm stop is asynchronous: the guest goes down at this time (epoch ms). */
  stopAt?: number;
}

export interface ShimFault {
  command: string;
  /** Leading arguments the invocation must have, e.g. ["start"] for `vm start …`. */
  args?: string[];
  code: number;
  stderr: string;
  /** A hang instead of a failure: the invocation sleeps this long, then does its work. */
  hangMs?: number;
}

export interface HostState {
  version: string;
  osreldate: number;
  uid: number;
  hostname: string;
  cpuVendor: "intel" | "amd";
  physmem: number;
  ncpu: number;
  arcMax: number;
  vmm: { loaded: boolean; loadable: boolean; unrestrictedGuest: boolean; maxcpu: number };
  /** Kernel message buffer lines, as dmesg(8) prints them. */
  dmesg: string[];
  packages: Record<string, string>;
  pools: Record<string, PoolState>;
  datasets: Record<string, DatasetState>;
  interfaces: Record<string, InterfaceState>;
  running: Record<string, GuestRun>;
  /** Kernel modules loaded besides kernel, zfs and vmm (vm init loads nmdm, if_bridge, if_tuntap). */
  modules: string[];
  /** Guests whose next `vm start` fails the way a broken guest does (bhyve exits 4). */
  failingGuests: string[];
  faults: ShimFault[];
  /** Commands that take this much longer than the latency, every time (a slow copy, a slow vm create). */
  slow: { command: string; args?: string[]; ms: number }[];
  latencyMs: number;
  stopDelayMs: number;
  /** sysctl values set on this host (`sysctl name=value`, a test's set-up), over the defaults. */
  sysctls?: Record<string, string>;
  pf?: PfState;
  /** Real programs (sh, cat, test, …) that are logged like the shims, then run as they are. */
  passthrough: Record<string, string>;
  nextPid: number;
}

export const stateFile = (root: string) => join(root, ".sim", "state.json");
export const commandLog = (root: string) => join(root, ".sim", "commands.ndjson");
/** Where the vm-bhyve package installs its sample templates, under the root (its Makefile: EXAMPLESDIR). */
export const VM_BHYVE_EXAMPLES = "usr/local/share/examples/vm-bhyve";
/** The simulated contents of zvol NAME, which the host shows as /dev/zvol/NAME. */
export const zvolBacking = (root: string, name: string) => join(root, ".sim", "zvol", name);
const lockDir = (root: string) => join(root, ".sim", "lock");

export function readState(root: string): HostState {
  return JSON.parse(readFileSync(stateFile(root), "utf8")) as HostState;
}

export function writeState(root: string, state: HostState): void {
  const tmp = `${stateFile(root)}.${process.pid}`;
  writeFileSync(tmp, JSON.stringify(state, null, 1));
  renameSync(tmp, stateFile(root));
}

let signalsHeld = false;
let holdOnLock = false;

/**
 * Called by the shim, the process of one simulated command: from then on its first change of the
 * host's state holds signals (below). Only there: a test changes the state from its own process
 * too (faults, latency), and a handler that ends the process on SIGINT left in the test runner
 * would end the whole run at the first SIGINT a test sends to a command's handler in process.
 */
export function holdSignalsWhileChanging(): void {
  holdOnLock = true;
}

/**
 * A command stopped by a signal while it changes the host's state would leave the lock behind and
 * the state half-written, which no real host does: a signal that arrives once a command has started
 * changing the state ends it right after it is done (the handler runs when its synchronous work
 * has returned), as if it had come a moment later.
 */
function holdSignals() {
  if (signalsHeld || !holdOnLock) return;
  signalsHeld = true;
  for (const [signal, code] of [
    ["SIGTERM", 143],
    ["SIGINT", 130],
    ["SIGHUP", 129],
  ] as const)
    process.on(signal, () => process.exit(code));
}

/**
 * Of the process `pid`: its state letter and its start (proc(5), /proc/PID/stat fields 3 and 22,
 * the start in clock ticks since boot). The start tells the process that wrote a lock from a later
 * one given the same pid: pids here wrap at 32768, and a suite that starts thousands of commands
 * reuses one soon enough.
 */
function statOf(pid: number): { state: string; start: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0]!, start: fields[22 - 3]! };
  } catch {
    return undefined;
  }
}

/**
 * The lock's holder has died (a zombie too), or its pid now names another process. A lock without
 * its pid is being taken, unless it has been so for seconds (its taker died between the two steps).
 */
function holderGone(root: string): boolean {
  let text: string;
  try {
    text = readFileSync(join(lockDir(root), "pid"), "utf8");
  } catch {
    try {
      return Date.now() - statSync(lockDir(root)).mtimeMs > 2000;
    } catch {
      return false;
    }
  }
  const [pidText, start] = text.trim().split(" ");
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const now = statOf(pid);
  return now === undefined || now.state === "Z" || (start !== undefined && now.start !== start);
}

/** Runs `fn` holding the host lock (a directory, which mkdir creates atomically). */
export function withLock<T>(root: string, fn: () => T): T {
  holdSignals();
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      mkdirSync(lockDir(root));
      writeFileSync(join(lockDir(root), "pid"), `${process.pid} ${statOf(process.pid)?.start ?? ""}`.trim());
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      // The lock is the simulation's own, not FreeBSD's: a shim killed outright (the kill trials do
      // that) must not leave the host locked for the next run.
      if (holderGone(root)) {
        rmSync(lockDir(root), { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`simulated host lock ${lockDir(root)} held for 10 s`);
      Bun.sleepSync(2);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lockDir(root), { recursive: true, force: true });
  }
}

export function updateState<T>(root: string, fn: (state: HostState) => T): T {
  return withLock(root, () => {
    const state = readState(root);
    const result = fn(state);
    writeState(root, state);
    return result;
  });
}

/** rc.conf-style files (rc.conf, system.conf, guest configs): `name="value"` lines, `#` comments. */
export function parseRcText(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "");
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trimEnd());
    if (!m) continue;
    let value = m[2]!.trim();
    if (/^".*"$/.test(value) || /^'.*'$/.test(value)) value = value.slice(1, -1);
    vars.set(m[1]!, value);
  }
  return vars;
}

export function readRcFile(path: string): Map<string, string> {
  return existsSync(path) ? parseRcText(readFileSync(path, "utf8")) : new Map();
}

/** Sets or removes variables the way sysrc(8) does: the line is replaced in place or appended. */
export function writeRcVars(path: string, changes: Record<string, string | undefined>): void {
  const lines = existsSync(path) ? readFileSync(path, "utf8").split("\n") : [];
  if (lines.at(-1) === "") lines.pop();
  for (const [name, value] of Object.entries(changes)) {
    const index = lines.findIndex((l) => l.startsWith(`${name}=`));
    if (value === undefined) {
      if (index >= 0) lines.splice(index, 1);
    } else if (index >= 0) {
      lines[index] = `${name}="${value}"`;
    } else {
      lines.push(`${name}="${value}"`);
    }
  }
  writeFileSync(path, lines.length ? `${lines.join("\n")}\n` : "");
}

export function touch(path: string): void {
  closeSync(openSync(path, "a"));
}
