/**
 * Ctrl-C as the message promises: the first one lets the running step finish (here a slow
 * `vm create` on the simulated FreeBSD host), runs the cleanups with working targets and stops
 * before the next step, leaving no temporary file; the second one leaves at once, killing what
 * runs. A run killed outright is found and journaled by the next one, which takes over its locks
 * and converges.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Journal } from "../../src/core/journal.ts";
import { nodeMac } from "../../src/core/node-identity.ts";
import { CancelledError } from "../../src/lib/errors.ts";
import { userEnv } from "../lab/cli.ts";
import { createFreebsdHost, type FreebsdHost } from "../lab/freebsd/host.ts";
import { endOf, engineOn, eventually, leftovers, processesOf } from "./lab.ts";
import { rng } from "./mutate.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

let host: FreebsdHost;
let stateDir: string;
beforeEach(() => {
  host = createFreebsdHost({ stopDelayMs: 100 });
  host.prepareVmBhyve();
  stateDir = mkdtempSync(join(tmpdir(), "kubehyve-interrupt-"));
});
afterEach(() => {
  for (const pid of processesOf(host)) process.kill(pid, "SIGKILL");
  host.cleanup();
  rmSync(stateDir, { recursive: true, force: true });
});

const creates = (name: string) =>
  host.log().filter((a) => a[0] === "vm" && a[1] === "create" && a.at(-1) === name);
const started = (argv: string[]) => () => host.log().some((a) => argv.every((w, i) => a[i] === w));

describe("the first Ctrl-C", () => {
  test("lets a running vm create finish, removes its template, and stops before the next step", async () => {
    host.inject({ kind: "hang", command: "vm", args: ["create"], ms: 1500 });
    const controller = new AbortController();
    const run = engineOn(host, stateDir, { nodes: 2, signal: controller.signal });
    expect(await eventually(started(["vm", "create"]))).toBe(true);
    controller.abort(new CancelledError("interrupted"));
    const result = await run.promise;
    expect(result.exitCode).toBe(130);
    expect(endOf(run).status).toBe("cancelled");
    // The steps that were running (the VMs are made side by side) finished whole: each VM exists
    // with the config written after vm create, and nothing after them started.
    expect(host.vm("cp1").config.network0_mac).toBe(nodeMac("lab", "cp1"));
    for (const name of ["cp1", "w1"]) {
      if (host.vm(name).exists) expect(host.vm(name).config.network0_mac).toBe(nodeMac("lab", name));
    }
    expect(host.log().filter((a) => a[0] === "vm" && a[1] === "start")).toEqual([]);
    expect(leftovers(host)).toEqual([]);
    expect(processesOf(host)).toEqual([]);
    const lines = new Journal(stateDir).read().filter((e) => e.run === result.runId);
    expect(lines.at(-1)).toMatchObject({ status: "cancelled" });
    expect(lines.find((e) => e.phase === "apply")).toMatchObject({
      stage: "hypervisor",
      status: "cancelled",
    });

    const again = await engineOn(host, stateDir, { nodes: 2 }).promise;
    expect(again.exitCode).toBe(0);
    expect(creates("cp1")).toHaveLength(1);
    expect(creates("w1")).toHaveLength(1);
    expect(host.vm("cp1").running && host.vm("w1").running).toBe(true);
    expect(leftovers(host)).toEqual([]);
  }, 60_000);

  test("at random points of up, followed by a converging up: no VM made twice, nothing left behind", async () => {
    const random = rng(Number(process.env.KUBEHYVE_FUZZ_SEED || 7));
    const trials = 8;
    const figures: string[] = [];
    for (let trial = 0; trial < trials; trial++) {
      // Every host command a little slow, so that the interrupt lands inside the run's steps.
      const h = createFreebsdHost({ stopDelayMs: 100, latencyMs: 40 });
      h.prepareVmBhyve();
      const dir = mkdtempSync(join(tmpdir(), "kubehyve-interrupt-trial-"));
      try {
        const controller = new AbortController();
        // Over the whole of an up of two VMs (two to three seconds here).
        const delay = Math.floor(random() * 2500);
        const run = engineOn(h, dir, { nodes: 2, signal: controller.signal });
        const timer = setTimeout(() => controller.abort(new CancelledError("interrupted")), delay);
        const first = await run.promise;
        clearTimeout(timer);
        expect([0, 130]).toContain(first.exitCode);
        const last = await engineOn(h, dir, { nodes: 2 }).promise;
        expect(last.exitCode).toBe(0);
        const made = (name: string) =>
          h.log().filter((a) => a[0] === "vm" && a[1] === "create" && a.at(-1) === name).length;
        expect([made("cp1"), made("w1")]).toEqual([1, 1]);
        expect(leftovers(h)).toEqual([]);
        figures.push(`${delay} ms: exit ${first.exitCode}`);
      } finally {
        h.cleanup();
        rmSync(dir, { recursive: true, force: true });
      }
    }
    console.log(`interrupt trials: ${figures.join("; ")}; all converged, no VM made twice, nothing left`);
  }, 240_000);
});

describe("the hard abort (a second Ctrl-C)", () => {
  test("kills the running command at once; the next up converges and leaves nothing behind", async () => {
    host.inject({ kind: "hang", command: "vm", args: ["create"] });
    const soft = new AbortController();
    const hard = new AbortController();
    const run = engineOn(host, stateDir, { signal: soft.signal, abort: hard.signal });
    expect(await eventually(started(["vm", "create"]))).toBe(true);
    soft.abort(new CancelledError("interrupted"));
    // The first one lets the (hung) command run on.
    const waited = await Promise.race([
      run.promise.then(() => "ended"),
      Bun.sleep(700).then(() => "waiting"),
    ]);
    expect(waited).toBe("waiting");
    hard.abort(new CancelledError("left at once"));
    const at = Date.now();
    expect((await run.promise).exitCode).toBe(130);
    expect(Date.now() - at).toBeLessThan(5000);
    expect(await eventually(() => processesOf(host).length === 0)).toBe(true);

    expect((await engineOn(host, stateDir).promise).exitCode).toBe(0);
    expect(host.vm("cp1").running).toBe(true);
    expect(leftovers(host)).toEqual([]);
  }, 60_000);
});

/** The CLI from source, on the simulated host as `host: local` with the shims first on PATH. */
function cliLab() {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-interrupt-cli-"));
  writeFileSync(
    join(dir, "kubehyve.yaml"),
    `name: lab
network: { gateway: 192.168.1.1, subnet: 192.168.1.0/24 }
nodes:
  - { name: cp1, role: control-plane, address: 192.168.1.21 }
  - { name: w1, role: worker, address: 192.168.1.22 }
stages:
  hypervisor: { plugin: bhyve, nic: em0, firmware: ${host.firmwarePath}, stopTimeoutSec: 5 }
`,
  );
  const state = join(dir, "state");
  const spawn = (args: string[]) =>
    Bun.spawn([process.execPath, MAIN, ...args, "--state-dir", state, "--yes"], {
      cwd: dir,
      env: userEnv(dir, { PATH: host.env.PATH! }),
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
  return { dir, state, spawn, journal: () => new Journal(state).read() };
}

describe("the command line", () => {
  test("Ctrl-C during vm create: the VM is made whole, no template is left, the run ends 130", async () => {
    host.inject({ kind: "hang", command: "vm", args: ["create"], ms: 1500 });
    const lab = cliLab();
    const proc = lab.spawn(["up"]);
    expect(await eventually(started(["vm", "create"]), 30_000)).toBe(true);
    proc.kill("SIGINT");
    const code = await Promise.race([proc.exited, Bun.sleep(20_000).then(() => "still running")]);
    const stderr = await new Response(proc.stderr).text();
    expect(code).toBe(130);
    expect(stderr).toContain("interrupted: stopping after the current step (Ctrl-C again to leave now)");
    expect(host.vm("cp1").config.network0_mac).toBe(nodeMac("lab", "cp1"));
    expect(host.log().filter((a) => a[0] === "vm" && a[1] === "start")).toEqual([]);
    expect(leftovers(host)).toEqual([]);
    expect(existsSync(join(lab.state, "lock"))).toBe(false);
    expect(existsSync(join(lab.dir, "host.lock"))).toBe(false);
    expect(lab.journal().at(-1)).toMatchObject({ command: "up", status: "cancelled" });
    rmSync(lab.dir, { recursive: true, force: true });
  }, 60_000);

  test("a run killed outright gets its journal closed by the next run, which takes over both locks", async () => {
    host.inject({ kind: "hang", command: "vm", args: ["create"] });
    const lab = cliLab();
    const proc = lab.spawn(["up"]);
    expect(await eventually(started(["vm", "create"]), 30_000)).toBe(true);
    // The hung vm create has taken its fault: the next run's will not hang.
    expect(await eventually(() => host.state().faults.length === 0)).toBe(true);
    const lock = JSON.parse(readFileSync(join(lab.state, "lock"), "utf8"));
    proc.kill("SIGKILL");
    await proc.exited;
    // What else the run had started on the host (the other node's vm create) finishes on its own,
    // as it would on FreeBSD; only the hung command (with the shell that writes its template) is
    // killed. Killing the other half-way through would leave a VM without its marks, which the
    // next run rightly refuses to touch.
    const nodeOf = (pid: number) => {
      try {
        return /kubehyve-[0-9a-f-]{36}-([a-z0-9]+)\b/.exec(readFileSync(`/proc/${pid}/cmdline`, "utf8"))?.[1];
      } catch {
        return undefined;
      }
    };
    expect(await eventually(() => new Set(processesOf(host).map(nodeOf)).size <= 1)).toBe(true);
    for (const pid of processesOf(host)) process.kill(pid, "SIGKILL");

    const next = lab.spawn(["up"]);
    const code = await Promise.race([next.exited, Bun.sleep(60_000).then(() => "still running")]);
    if (code === "still running") next.kill("SIGKILL");
    const out = (await new Response(next.stdout).text()) + (await new Response(next.stderr).text());
    expect(code, out).toBe(0);
    expect(out).toContain(`took over the lock left by a run that is gone (pid ${lock.pid})`);
    expect(out).toContain(`took over the host lock ${join(lab.dir, "host.lock")} left by a run that is gone`);
    const journal = lab.journal();
    expect(journal.find((e) => e.run === lock.run && e.status === "killed")).toBeDefined();
    expect(journal.filter((e) => e.status === "lock-taken-over")).toHaveLength(2);
    expect(host.vm("cp1").running && host.vm("w1").running).toBe(true);
    // What a SIGKILL leaves half-made on the host (a vm-bhyve template between its write and its
    // removal) is the hypervisor stage's to repair; this test is about the journal and the locks.
    rmSync(lab.dir, { recursive: true, force: true });
  }, 90_000);
});
