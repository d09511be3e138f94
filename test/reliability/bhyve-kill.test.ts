/**
 * Kill trials: `kubehyve up --only hypervisor` on the simulated FreeBSD host, killed (SIGKILL) or
 * interrupted (SIGINT, as Ctrl-C) at a random point (seeded), then a converging `up`. Each trial
 * asserts that no VM that existed whole was made again, that every VM's disks are complete (the
 * boot image copied whole, every declared disk at its size), that nothing is left behind
 * (templates, temporary files and zvols, half-copied images), and that a last `plan` plans nothing.
 *
 * The CLI is run as a user runs it, with a drop-in plugin in the os stage's place that hands every
 * node a boot image through the `hypervisor:node-boot` hook, so that kills land in the copies too.
 * Trials take turns between a file image copied onto zvols with dd, a ZFS snapshot cloned, a
 * directory datastore whose disks are files, and file disks in a ZFS datastore.
 *
 *   KUBEHYVE_KILL_TRIALS=60 KUBEHYVE_INTERRUPT_TRIALS=8 KUBEHYVE_KILL_SEED=7 bun test test/reliability
 */
import { describe, expect, test } from "bun:test";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { userEnv } from "../lab/cli.ts";
import { createFreebsdHost, type FreebsdHost, run } from "../lab/freebsd/host.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");
// What fits in about a minute on a busy 2-core machine; KUBEHYVE_KILL_TRIALS=60 runs a longer series.
const KILLS = Number(process.env.KUBEHYVE_KILL_TRIALS ?? 18);
const INTERRUPTS = Number(process.env.KUBEHYVE_INTERRUPT_TRIALS ?? 6);
const SEED = Number(process.env.KUBEHYVE_KILL_SEED ?? 20261201);
/** Trials run side by side: most of a trial's time is host commands starting up. */
const PARALLEL = Number(process.env.KUBEHYVE_KILL_PARALLEL ?? 3);
const IMAGE_BYTES = 256 * 1024;
const NODES = ["cp1", "w1"];

/** mulberry32: small, seeded, good enough to spread kill points. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BOOT_PLUGIN = (image: { kind: "file"; path: string } | { kind: "zfs-snapshot"; snapshot: string }) => `
import { definePlugin } from "kubehyve";
export default definePlugin({
  id: "boot/image",
  title: "Boot image for every node",
  apiVersion: 1,
  after: ["hypervisor"],
  check: async () => ({ changes: [], diagnostics: [] }),
  hooks: { "hypervisor:node-boot": () => ({ bootImage: ${JSON.stringify(image)} }) },
});
`;

type Variant = "zvol-dd" | "zvol-clone" | "file" | "zfs-file";
const VARIANTS: Variant[] = ["zvol-dd", "zvol-clone", "file", "zfs-file"];

interface Lab {
  host: FreebsdHost;
  dir: string;
  config: string;
  state: string;
  plugins: string;
  image: Buffer;
  variant: Variant;
  /** The datastore directory. */
  vmDir: string;
}

function makeLab(index: number): Lab {
  const host = createFreebsdHost({ stopDelayMs: 50 });
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-kill-"));
  const plugins = join(dir, "plugins");
  mkdirSync(plugins, { mode: 0o755 });
  chmodSync(plugins, 0o755);
  chmodSync(dir, 0o755);
  const image = Buffer.from(Array.from({ length: IMAGE_BYTES }, (_, i) => (i * 7 + index) % 251));
  const variant = VARIANTS[index % VARIANTS.length]!;
  const vmDir = variant === "file" ? join(host.root, "vm") : join(host.root, "zroot/vm");
  let boot: Parameters<typeof BOOT_PLUGIN>[0];
  if (variant === "zvol-clone") {
    run(host, ["zfs", "create", "-p", "-V", String(1024 * 1024), "zroot/images/fcos"]);
    const raw = join(host.root, "fcos.raw");
    writeFileSync(raw, image);
    run(host, ["dd", `if=${raw}`, "of=/dev/zvol/zroot/images/fcos", "conv=sparse"]);
    run(host, ["zfs", "snapshot", "zroot/images/fcos@1"]);
    boot = { kind: "zfs-snapshot", snapshot: "zroot/images/fcos@1" };
  } else {
    const raw = join(host.root, "fcos.raw");
    writeFileSync(raw, image);
    boot = { kind: "file", path: raw };
  }
  writeFileSync(join(plugins, "boot.ts"), BOOT_PLUGIN(boot));
  chmodSync(join(plugins, "boot.ts"), 0o644);
  const config = join(dir, "kubehyve.yaml");
  writeFileSync(
    config,
    `name: lab
network:
  gateway: 192.168.1.1
  subnet: 192.168.1.0/24
nodes:
  - name: cp1
    role: control-plane
    address: 192.168.1.21
  - name: w1
    role: worker
    address: 192.168.1.22
    disks: [50GiB]
stages:
  hypervisor:
    plugin: bhyve
    vmDir: ${variant === "file" ? vmDir : "zfs:zroot/vm"}
    diskDev: ${variant.endsWith("file") ? "file" : "sparse-zvol"}
    nic: em0
    firmware: ${host.firmwarePath}
    stopTimeoutSec: 5
  boot:
    plugin: boot/image
`,
  );
  return { host, dir, config, state: join(dir, "state"), plugins, image, variant, vmDir };
}

function cli(lab: Lab, args: string[]) {
  return Bun.spawn(
    [
      process.execPath,
      MAIN,
      ...args,
      "-c",
      lab.config,
      "--state-dir",
      lab.state,
      "--plugin-dir",
      lab.plugins,
    ],
    {
      cwd: lab.dir,
      env: userEnv(lab.dir, { PATH: `${lab.host.binDir}:${process.env.PATH ?? "/usr/bin:/bin"}` }),
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
}

async function runCli(lab: Lab, args: string[]) {
  const proc = cli(lab, args);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out: stdout + stderr, stdout };
}

/** Processes working on this host: the shims and what they run all name its root. */
function hostProcesses(lab: Lab): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(lab.host.root)) pids.push(Number(entry));
    } catch {
      // Gone already.
    }
  }
  return pids;
}

/**
 * A run killed with SIGKILL leaves the commands it started running (they sit in process groups of
 * their own): the next `up` is started once they are done, as a person re-running it would find.
 */
async function waitForHost(lab: Lab, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (hostProcesses(lab).length) {
    if (Date.now() > deadline) throw new Error(`commands of a killed run still run after ${ms} ms`);
    await Bun.sleep(25);
  }
}

function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/** Templates, temporary files and temporary zvols on the host. */
function leftovers(lab: Lab): string[] {
  const files = walk(lab.vmDir).filter(
    (f) => f.includes(".kubehyve-new") || /\/\.templates\/kubehyve-/.test(f),
  );
  const datasets = Object.keys(lab.host.state().datasets).filter((d) => d.includes(".kubehyve-new"));
  return [...files.map((f) => f.slice(lab.host.root.length)), ...datasets];
}

/** Every VM whose config exists (vm-bhyve sees it) before the converging run. */
function existingVms(lab: Lab): string[] {
  return NODES.filter((n) => existsSync(join(lab.vmDir, n, `${n}.conf`)));
}

function completeDisks(lab: Lab): string[] {
  const problems: string[] = [];
  if (lab.variant.endsWith("file")) {
    const disks = { "cp1/disk0.img": 20, "w1/disk0.img": 20, "w1/disk1.img": 50 };
    for (const [disk, gib] of Object.entries(disks)) {
      const path = join(lab.vmDir, disk);
      if (!existsSync(path)) {
        problems.push(`${disk} is missing`);
        continue;
      }
      const { size, mode } = statSync(path);
      if (size !== gib * 1024 ** 3) problems.push(`${disk} is ${size} bytes`);
      if ((mode & 0o777) !== 0o600) problems.push(`${disk} has mode ${(mode & 0o777).toString(8)}`);
      if (disk.endsWith("disk0.img")) {
        const head = Buffer.alloc(IMAGE_BYTES);
        const fd = openSync(path, "r");
        readSync(fd, head, 0, IMAGE_BYTES, 0);
        closeSync(fd);
        if (!head.equals(lab.image)) problems.push(`${disk} does not hold the whole boot image`);
      }
    }
    return problems;
  }
  const datasets = lab.host.state().datasets;
  for (const name of NODES) {
    const disk0 = datasets[`zroot/vm/${name}/disk0`];
    if (disk0?.volsize !== 20 * 1024 ** 3) problems.push(`${name}/disk0 is ${disk0?.volsize ?? "missing"}`);
    const head = lab.host.zvol(`zroot/vm/${name}/disk0`, IMAGE_BYTES);
    if (!head?.equals(lab.image)) problems.push(`${name}/disk0 does not hold the whole boot image`);
  }
  if (datasets["zroot/vm/w1/disk1"]?.volsize !== 50 * 1024 ** 3) problems.push("w1/disk1 is not 50 GiB");
  return problems;
}

interface TrialResult {
  kind: "kill" | "interrupt";
  index: number;
  after: number;
  converged: boolean;
  madeTwice: string[];
  leftAfterStop: string[];
  leftAfterUp: string[];
  incomplete: string[];
  planned: string[];
  log: string;
}

async function trial(
  kind: "kill" | "interrupt",
  index: number,
  after: number,
  jitterMs: number,
): Promise<TrialResult> {
  const lab = makeLab(index);
  try {
    const first = cli(lab, ["up", "--yes", "--only", "hypervisor"]);
    // Stop it once the host has seen `after` commands (or when it ends by itself).
    const logFile = join(lab.host.stateDir, "commands.ndjson");
    for (;;) {
      const seen = readFileSync(logFile, "utf8").split("\n").length - 1;
      if (seen >= after || first.exitCode !== null) break;
      await Bun.sleep(5);
    }
    if (jitterMs) await Bun.sleep(jitterMs);
    first.kill(kind === "kill" ? "SIGKILL" : "SIGINT");
    await first.exited;
    await waitForHost(lab);
    // Ctrl-C: the interrupted commands cleaned up after themselves; a killed run's orphans too.
    const leftAfterStop = leftovers(lab);
    const existed = existingVms(lab);
    lab.host.clearLog();

    const again = await runCli(lab, ["up", "--yes", "--only", "hypervisor"]);
    const log = lab.host.log();
    const madeTwice = existed.filter((n) =>
      log.some(
        (a) =>
          (a[0] === "vm" && ["create", "destroy"].includes(a[1]!) && a.at(-1) === n) ||
          (a[0] === "zfs" && a[1] === "destroy" && a.includes(`zroot/vm/${n}`)) ||
          (a[0] === "rm" && a.includes(join(lab.vmDir, n))),
      ),
    );
    const plan = await runCli(lab, ["plan", "--json", "--only", "hypervisor"]);
    const planned = plan.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; summary?: string; severity?: string; code?: string })
      .filter((e) => e.type === "change" || (e.type === "diagnostic" && e.severity === "error"))
      .map((e) => e.summary ?? e.code ?? "?");
    return {
      kind,
      index,
      after,
      converged: again.code === 0 && NODES.every((n) => lab.host.vm(n).running),
      madeTwice,
      leftAfterStop: kind === "interrupt" ? leftAfterStop : [],
      leftAfterUp: leftovers(lab),
      incomplete: completeDisks(lab),
      planned,
      log: again.code === 0 ? "" : again.out,
    };
  } finally {
    lab.host.cleanup();
    rmSync(lab.dir, { recursive: true, force: true });
  }
}

/** How many host commands a whole `up` of the trial lab runs, to spread the kill points over it. */
async function commandsOfWholeUp(): Promise<number> {
  const lab = makeLab(0);
  try {
    const result = await runCli(lab, ["up", "--yes", "--only", "hypervisor"]);
    if (result.code !== 0) throw new Error(`a whole up of the trial lab failed:\n${result.out}`);
    return lab.host.log().length;
  } finally {
    lab.host.cleanup();
    rmSync(lab.dir, { recursive: true, force: true });
  }
}

describe("kubehyve up, killed or interrupted at random points on the simulated host", () => {
  test(`converges after ${KILLS} kills and ${INTERRUPTS} interrupts (seed ${SEED}), leaving nothing behind`, async () => {
    const started = performance.now();
    const total = await commandsOfWholeUp();
    const next = random(SEED);
    const plans = [
      ...Array.from({ length: KILLS }, () => "kill" as const),
      ...Array.from({ length: INTERRUPTS }, () => "interrupt" as const),
    ].map((kind, i) => ({
      kind,
      index: i,
      after: 1 + Math.floor(next() * total),
      jitter: Math.floor(next() * 40),
    }));
    const results: TrialResult[] = [];
    let cursor = 0;
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (cursor < plans.length) {
          const p = plans[cursor++]!;
          results.push(await trial(p.kind, p.index, p.after, p.jitter));
        }
      }),
    );
    const failed = results.filter(
      (r) =>
        !r.converged ||
        r.madeTwice.length ||
        r.leftAfterStop.length ||
        r.leftAfterUp.length ||
        r.incomplete.length ||
        r.planned.length,
    );
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const sum = (kind: string) => results.filter((r) => r.kind === kind);
    console.log(
      `kill trials (seed ${SEED}, a whole up is ${total} host commands): ` +
        `${sum("kill").length} SIGKILL, ${sum("interrupt").length} SIGINT, ` +
        `${results.filter((r) => r.converged).length} converged, ` +
        `${results.filter((r) => r.leftAfterStop.length || r.leftAfterUp.length).length} with leftovers, ` +
        `${results.filter((r) => r.madeTwice.length).length} with a VM made twice, ` +
        `${results.filter((r) => r.incomplete.length).length} with incomplete disks, ${seconds} s`,
    );
    expect(failed.map(({ log, ...r }) => ({ ...r, log: log.slice(-2000) }))).toEqual([]);
  }, 600_000);
});
