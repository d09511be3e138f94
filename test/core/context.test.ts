/**
 * The plugin context as a plugin sees it, and the state-dir files under it: the cluster key, the
 * state store, ctx.wet, the journal, the lock and atomic writes. Real files in a temporary state
 * dir, real ssh-keygen and real child processes.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPluginContext } from "../../src/core/context.ts";
import { type AnyPlugin, definePlugin } from "../../src/core/contract.ts";
import { machineId, processStart } from "../../src/core/holder.ts";
import { readClusterId } from "../../src/core/identity.ts";
import { acquireLock, Journal } from "../../src/core/journal.ts";
import { CommandTimeoutError, policyBinder } from "../../src/core/signal-target.ts";
import { CancelledError, KubehyveError, LockHeldError } from "../../src/lib/errors.ts";
import { tempPathFor, writeFileAtomic } from "../../src/lib/fsutil.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import { RecordingTarget } from "../../src/targets/recording.ts";
import { labCluster, labNode } from "../lab/cluster.ts";
import { have } from "../lab/prereq.ts";

// One node is enough: the core treats every node alike.
const cluster = labCluster({ name: "ctxlab", nodes: [labNode("cp1", "control-plane", "192.168.1.21")] });

const plugin = definePlugin({
  id: "os/probe",
  title: "probe",
  apiVersion: 1,
  async check() {
    return { changes: [], diagnostics: [] };
  },
}) as AnyPlugin;

let stateDir: string;
beforeEach(() => {
  stateDir = join(mkdtempSync(join(tmpdir(), "kubehyve-ctx-")), "state");
});
afterEach(() => rmSync(join(stateDir, ".."), { recursive: true, force: true }));

const mode = (path: string) => statSync(path).mode & 0o777;
const context = (extra: Partial<Parameters<typeof createPluginContext>[0]> = {}) =>
  createPluginContext({ cluster, plugin, options: {}, stateDir, ...extra });

describe.skipIf(!have("ssh-keygen", "openssh-client"))("the cluster key", () => {
  test("is generated once, 0600 in a 0700 dir, and the same key on every later call and context", async () => {
    const first = await context().clusterKey();
    expect(first.privateKeyPath).toBe(join(stateDir, "ssh", "id_ed25519"));
    expect(first.publicKey).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]+=* kubehyve@ctxlab$/);
    expect(mode(first.privateKeyPath)).toBe(0o600);
    expect(mode(join(stateDir, "ssh"))).toBe(0o700);
    expect(mode(stateDir)).toBe(0o700);
    const inode = statSync(first.privateKeyPath).ino;

    const again = await context().clusterKey();
    expect(again).toEqual(first);
    expect(statSync(again.privateKeyPath).ino).toBe(inode);

    // The public key really belongs to the private key on disk.
    const derived = Bun.spawnSync(["ssh-keygen", "-y", "-f", first.privateKeyPath]);
    expect(derived.exitCode).toBe(0);
    expect(first.publicKey.startsWith(derived.stdout.toString().trim())).toBe(true);
  });

  test("made by another kubehyve run at the same moment is waited for and used, never replaced", async () => {
    // The other run (a render started next to this plan) holds the key's lock while it writes.
    const ssh = join(stateDir, "ssh");
    mkdirSync(ssh, { recursive: true, mode: 0o700 });
    mkdirSync(join(ssh, "id_ed25519.lock"), { mode: 0o700 });
    const mine = context().clusterKey();
    await Bun.sleep(150);
    expect(existsSync(join(ssh, "id_ed25519"))).toBe(false);
    const theirs = Bun.spawnSync([
      "ssh-keygen",
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      "other",
      "-f",
      join(ssh, "other"),
    ]);
    expect(theirs.exitCode).toBe(0);
    writeFileSync(join(ssh, "id_ed25519.pub"), readFileSync(join(ssh, "other.pub")), { mode: 0o644 });
    writeFileSync(join(ssh, "id_ed25519"), readFileSync(join(ssh, "other")), { mode: 0o600 });
    rmSync(join(ssh, "id_ed25519.lock"), { recursive: true });
    expect((await mine).publicKey).toBe(readFileSync(join(ssh, "other.pub"), "utf8").trim());
    expect(readFileSync(join(ssh, "id_ed25519"), "utf8")).toBe(readFileSync(join(ssh, "other"), "utf8"));
  });

  test("is not kept waiting by a lock a killed run left: once the key is there, or once the lock is 30 s old", async () => {
    const ssh = join(stateDir, "ssh");
    const lock = join(ssh, "id_ed25519.lock");
    mkdirSync(ssh, { recursive: true, mode: 0o700 });
    // Another run holds the lock, writes both halves and is killed before it lets go of the lock.
    mkdirSync(lock, { mode: 0o700 });
    const started = Date.now();
    const waiting = context().clusterKey();
    await Bun.sleep(150);
    const keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "theirs", "-f"];
    expect(Bun.spawnSync([...keygen, join(ssh, "id_ed25519")]).exitCode).toBe(0);
    const theirs = await waiting;
    // The lock would be taken for stale only after 30 s; the key is used long before.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(theirs.publicKey).toBe(readFileSync(join(ssh, "id_ed25519.pub"), "utf8").trim());

    // Killed before it wrote anything: its lock, 31 s old, is nobody's, and is taken at once.
    rmSync(join(ssh, "id_ed25519"));
    rmSync(join(ssh, "id_ed25519.pub"));
    const old = (Date.now() - 31_000) / 1000;
    utimesSync(lock, old, old);
    const again = Date.now();
    const mine = await context().clusterKey();
    expect(Date.now() - again).toBeLessThan(20_000);
    expect(mine.publicKey).not.toBe(theirs.publicKey);
    expect(mode(mine.privateKeyPath)).toBe(0o600);
    expect(existsSync(lock)).toBe(false);
  }, 90_000);

  test("is generated in a dry run too, so plan and up show the same key", async () => {
    const planned = await context({ dryRun: true }).clusterKey();
    expect(existsSync(planned.privateKeyPath)).toBe(true);
    expect((await context().clusterKey()).publicKey).toBe(planned.publicKey);
  });
});

describe("the state store", () => {
  test("persists each value at once, 0600 in a 0700 dir, for the next run's context", async () => {
    const ctx = context();
    await ctx.state.set("image", { version: "41.1", sha256: "ab" });
    await ctx.state.set("vms", ["cp1"]);
    await ctx.state.delete("vms");
    const file = join(stateDir, "state", "os.json");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ image: { version: "41.1", sha256: "ab" } });
    expect(mode(file)).toBe(0o600);
    expect(mode(join(stateDir, "state"))).toBe(0o700);
    expect(context().state.get("image")).toEqual({ version: "41.1", sha256: "ab" });
  });

  test("writes into a state directory made 0755 by someone else without changing its mode", async () => {
    mkdirSync(join(stateDir, "state"), { recursive: true, mode: 0o755 });
    await context().state.set("k", 1);
    expect(mode(join(stateDir, "state"))).toBe(0o755);
    expect(mode(join(stateDir, "state", "os.json"))).toBe(0o600);
  });

  test("refuses a state directory that others can write, and leaves it as it is", async () => {
    mkdirSync(join(stateDir, "state"), { recursive: true });
    chmodSync(join(stateDir, "state"), 0o777);
    await expect(context().state.set("k", 1)).rejects.toThrow(
      `directory ${join(stateDir, "state")} is writable by group or others`,
    );
    expect(mode(join(stateDir, "state"))).toBe(0o777);
    expect(existsSync(join(stateDir, "state", "os.json"))).toBe(false);
  });

  test("refuses a state file that is a symbolic link instead of reading where it leads", async () => {
    mkdirSync(join(stateDir, "state"), { recursive: true, mode: 0o700 });
    const elsewhere = join(stateDir, "..", "planted.json");
    writeFileSync(elsewhere, '{"image": "planted"}');
    symlinkSync(elsewhere, join(stateDir, "state", "os.json"));
    expect(() => context()).toThrow(`${join(stateDir, "state", "os.json")} is a symbolic link`);
  });

  test("keeps every key when values are set in parallel", async () => {
    const ctx = context();
    await Promise.all(Array.from({ length: 20 }, (_, i) => ctx.state.set(`node${i}`, i)));
    const saved = JSON.parse(readFileSync(join(stateDir, "state", "os.json"), "utf8"));
    expect(Object.keys(saved)).toHaveLength(20);
    expect(readdirSync(join(stateDir, "state"))).toEqual(["os.json"]);
  });

  test("in a dry run keeps writes in memory only", async () => {
    const ctx = context({ dryRun: true });
    await ctx.state.set("planned", true);
    expect(ctx.state.get("planned")).toBe(true);
    expect(existsSync(join(stateDir, "state", "os.json"))).toBe(false);
    expect(context().state.get("planned")).toBeUndefined();
  });

  test("refuses a corrupt state file with its path and a way out", () => {
    const file = join(stateDir, "state", "os.json");
    mkdirSync(join(stateDir, "state"), { recursive: true });
    writeFileSync(file, '{"image": ');
    const error = (() => {
      try {
        context();
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(KubehyveError);
    expect((error as KubehyveError).message).toStartWith(`state file ${file} is not valid JSON: `);
    expect((error as KubehyveError).hint).toBe(`move it aside and re-run: mv ${file} ${file}.broken`);
  });

  test("refuses a state file that is valid JSON but not an object", () => {
    const file = join(stateDir, "state", "os.json");
    mkdirSync(join(stateDir, "state"), { recursive: true });
    for (const text of ["null", "[1,2]", '"text"']) {
      writeFileSync(file, text);
      expect(() => context()).toThrow(`state file ${file} does not hold a JSON object`);
    }
  });
});

describe("ctx.wet", () => {
  test("records every description in order and runs the mutation, in the plugin's private dir", async () => {
    const ctx = context();
    const done: string[] = [];
    expect(await ctx.wet("first", async () => done.push("first"))).toBe(1);
    await ctx.wet("second", async () => {
      done.push("second");
    });
    expect(ctx.wetLog).toEqual(["first", "second"]);
    expect(done).toEqual(["first", "second"]);
    expect(mode(ctx.dir)).toBe(0o700);
  });

  test("in a dry run records the description and does not call the mutation", async () => {
    const ctx = context({ dryRun: true });
    let called = false;
    expect(
      await ctx.wet("delete everything", async () => {
        called = true;
      }),
    ).toBeUndefined();
    expect(called).toBe(false);
    expect(ctx.wetLog).toEqual(["delete everything"]);
  });

  test("after Ctrl-C does not start a mutation, but still lists it", async () => {
    const controller = new AbortController();
    const ctx = context({ signal: controller.signal });
    await ctx.wet("before", async () => {});
    controller.abort();
    let called = false;
    const attempt = ctx.wet("after", async () => {
      called = true;
    });
    await expect(attempt).rejects.toBeInstanceOf(CancelledError);
    await expect(attempt).rejects.toThrow("interrupted before: after");
    expect(called).toBe(false);
    expect(ctx.wetLog).toEqual(["before", "after"]);
  });

  test("confirm says yes under --yes and no when nobody can answer", async () => {
    expect(await context({ assumeYes: true }).confirm("restart?")).toBe(true);
    expect(await context().confirm("restart?")).toBe(false);
    expect(await context({ ask: async () => true }).confirm("restart?")).toBe(true);
  });
});

describe("ctx.canary", () => {
  /** A canary that counts its runs and passes as told. */
  const probe = (passes = () => true) => {
    let runs = 0;
    return {
      canary: { name: "path", description: "make a test pod", passed: (r: boolean) => r },
      fn: async () => {
        runs++;
        return passes();
      },
      runs: () => runs,
    };
  };

  test("runs in the first up, and a later up that changed nothing does not run it again but says when it passed", async () => {
    const p = probe();
    expect(await context().canary(p.canary, p.fn)).toEqual({ ran: true, result: true });
    const again = await context().canary(p.canary, p.fn);
    expect(again).toMatchObject({ ran: false, why: "proven" });
    expect(Date.parse((again as { passedAt: string }).passedAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(p.runs()).toBe(1);
  });

  test("never runs in a read-only run, which still lists it", async () => {
    const p = probe();
    const ctx = context({ dryRun: true });
    expect(await ctx.canary(p.canary, p.fn)).toEqual({ ran: false, why: "read-only" });
    expect(ctx.wetLog).toEqual(["make a test pod"]);
    expect(p.runs()).toBe(0);
  });

  test("runs again in an up that changed the stage, and in the up after one that stopped between change and canary", async () => {
    const p = probe();
    await context().canary(p.canary, p.fn);
    const changing = context();
    await changing.wet("update a manifest", async () => {});
    expect(changing.changed).toBe(true);
    expect((await changing.canary(p.canary, p.fn)).ran).toBe(true);
    // This up changes the stage and stops before its verify.
    await context().wet("update a manifest", async () => {});
    expect((await context().canary(p.canary, p.fn)).ran).toBe(true);
    expect((await context().canary(p.canary, p.fn)).ran).toBe(false);
    expect(p.runs()).toBe(3);
  });

  test("runs again after a canary that failed, threw or was interrupted, since none of them left a record", async () => {
    let outcome: "fail" | "throw" | "pass" = "fail";
    const p = probe(() => {
      if (outcome === "throw") throw new Error("interrupted");
      return outcome === "pass";
    });
    expect(await context().canary(p.canary, p.fn)).toEqual({ ran: true, result: false });
    outcome = "throw";
    await expect(context().canary(p.canary, p.fn)).rejects.toThrow("interrupted");
    outcome = "pass";
    expect((await context().canary(p.canary, p.fn)).ran).toBe(true);
    expect((await context().canary(p.canary, p.fn)).ran).toBe(false);
    expect(p.runs()).toBe(3);
  });

  test("runs when an earlier stage changed in this run, or when up is asked to run every canary", async () => {
    const p = probe();
    await context().canary(p.canary, p.fn);
    expect((await context({ upstreamChanged: () => true }).canary(p.canary, p.fn)).ran).toBe(true);
    expect((await context({ canaries: true }).canary(p.canary, p.fn)).ran).toBe(true);
    expect((await context({ upstreamChanged: () => false }).canary(p.canary, p.fn)).ran).toBe(false);
  });

  test("does not count as a change of the stage: it leaves the stage unchanged and keeps its own record", async () => {
    const p = probe();
    const ctx = context();
    await ctx.canary(p.canary, async () => {
      await ctx.wet("a step inside the canary", async () => {});
      return p.fn();
    });
    expect(ctx.changed).toBe(false);
    expect((await context().canary(p.canary, p.fn)).ran).toBe(false);
  });

  test("keeps one record per canary name", async () => {
    const a = probe();
    const b = { ...probe(), canary: { name: "other", description: "another", passed: () => true } };
    await context().canary(a.canary, a.fn);
    expect((await context().canary(b.canary, b.fn)).ran).toBe(true);
    expect((await context().canary(a.canary, a.fn)).ran).toBe(false);
    expect((await context().canary(b.canary, b.fn)).ran).toBe(false);
  });
});

describe("a plugin's targets", () => {
  const timeouts = { read: 60_000, change: 60_000, long: 60_000 };
  const pidOf = async (pidFile: string) => {
    while (!existsSync(pidFile) || !readFileSync(pidFile, "utf8").trim()) await Bun.sleep(10);
    return Number(readFileSync(pidFile, "utf8"));
  };
  /** No such process, or only its zombie left for whoever adopted it to reap. */
  const gone = (pid: number) => {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    try {
      // proc(5): "pid (comm) state …"; the state letter follows the last ")".
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat[stat.lastIndexOf(")") + 2] === "Z";
    } catch {
      return true;
    }
  };

  test("let a running command finish after Ctrl-C, even one given the run's signal", async () => {
    const run = new AbortController();
    const host = policyBinder({ signal: run.signal, timeouts })(new LocalTarget());
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-bind-"));
    const marker = join(dir, "started");
    const running = host.run(["sh", "-c", 'touch "$1"; sleep 0.5; echo finished', "sh", marker], {
      signal: run.signal,
    });
    while (!existsSync(marker)) await Bun.sleep(10);
    run.abort();
    expect(await running).toMatchObject({ code: 0, stdout: "finished\n" });
    rmSync(dir, { recursive: true, force: true });
  });

  test("kill a command declared cancellable at Ctrl-C, and do not start one after it", async () => {
    const run = new AbortController();
    const host = policyBinder({ signal: run.signal, timeouts })(new LocalTarget());
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-bind-"));
    const pidFile = join(dir, "pid");
    const started = Date.now();
    const running = host.run(["sh", "-c", `echo $$ > ${pidFile}; exec sleep 60`], { cancellable: true });
    const pid = await pidOf(pidFile);
    run.abort();
    await expect(running).rejects.toBeInstanceOf(CancelledError);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(gone(pid)).toBe(true);
    await expect(host.run(["true"], { cancellable: true })).rejects.toBeInstanceOf(CancelledError);
    // A command that is not cancellable still runs: a cleanup after Ctrl-C needs the host.
    expect((await host.run(["true"])).code).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  test("kill every command, with what it started, at the hard abort", async () => {
    const run = new AbortController();
    const hard = new AbortController();
    const host = policyBinder({ signal: run.signal, abort: hard.signal, timeouts })(new LocalTarget());
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-bind-"));
    const pidFile = join(dir, "pid");
    const running = host.run(["sh", "-c", `sleep 60 & echo $! > ${pidFile}; wait`]);
    const child = await pidOf(pidFile);
    run.abort();
    hard.abort();
    await expect(running).rejects.toBeInstanceOf(CancelledError);
    // The group got its signal together; the child may take a moment longer than the shell to go.
    for (let i = 0; i < 100 && !gone(child); i++) await Bun.sleep(20);
    expect(gone(child)).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });

  test("combine the caller's own signal with the hard abort, and pass the rest through", async () => {
    const run = new AbortController();
    const hard = new AbortController();
    const own = new AbortController();
    const recording = new RecordingTarget().on(["true"], { code: 0 });
    const bind = policyBinder({ signal: run.signal, abort: hard.signal, timeouts });
    const host = bind(recording);
    await host.run(["true"], { signal: run.signal });
    await host.run(["true"], { signal: own.signal, timeoutMs: 5 });
    expect(recording.calls[0]!.opts.signal).toBe(hard.signal);
    const combined = recording.calls[1]!.opts.signal!;
    expect(recording.calls[1]!.opts.timeoutMs).toBe(5);
    expect(combined.aborted).toBe(false);
    own.abort();
    expect(combined.aborted).toBe(true);

    // One wrapper per target, and everything else passes through to the target itself.
    expect(bind(recording)).toBe(host);
    expect(host.name).toBe("recording");
    expect((host as RecordingTarget).calls).toBe(recording.calls);
  });

  test("give every command its kind's limit: a query, a change inside ctx.wet, or a long step", async () => {
    const recording = new RecordingTarget().on(["true"], { code: 0 });
    const ctx = createPluginContext({
      cluster,
      plugin,
      options: {},
      stateDir,
      timeouts: { read: 1000, change: 2000, long: 3000 },
      targets: { host: recording },
    });
    await ctx.host.run(["true"]);
    await ctx.wet("change", () => ctx.host.run(["true"]));
    await ctx.wet("nested", async () => {
      await Bun.sleep(1);
      await ctx.host.run(["true"], { kind: "long" });
    });
    await ctx.host.run(["true"], { timeoutMs: 7 });
    expect(recording.calls.map((c) => c.opts.timeoutMs)).toEqual([1000, 2000, 3000, 7]);
  });

  test("fail a command that passes its default limit, naming it and the limit, and kill it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-bind-"));
    const pidFile = join(dir, "pid");
    const host = policyBinder({
      signal: new AbortController().signal,
      timeouts: { read: 300, change: 60_000, long: 60_000 },
    })(new LocalTarget());
    // Run in the temp dir, so that the command, and the message that shows it, is one length.
    const running = host.run(["sh", "-c", "echo $$ > pid; exec sleep 60"], { cwd: dir });
    const pid = await pidOf(pidFile);
    const error = (await running.catch((e) => e)) as CommandTimeoutError;
    expect(error).toBeInstanceOf(CommandTimeoutError);
    expect(error.message).toBe(
      "local: `sh -c echo $$ > pid; exec sleep 60` did not finish within 300 ms (the limit for a query) and was killed",
    );
    expect(error.hint).toBe(
      "if it needs longer, raise timeouts.read in the cluster file; otherwise find out why it hangs on local",
    );
    expect(gone(pid)).toBe(true);
    // A caller's own limit: the timed-out result is the caller's to judge.
    expect(await host.run(["sleep", "5"], { timeoutMs: 200 })).toMatchObject({ code: 124, timedOut: true });
    rmSync(dir, { recursive: true, force: true });
  });
});

describe("the journal and the lock", () => {
  test("a half-written last line (a run killed mid-append) does not hide the history before it", () => {
    mkdirSync(stateDir, { recursive: true });
    const journal = new Journal(stateDir);
    journal.record({ run: "r1", command: "up", status: "ok" });
    writeFileSync(journal.file, `${readFileSync(journal.file, "utf8")}{"run":"r2","comm`);
    expect(journal.read().map((e) => e.run)).toEqual(["r1"]);
  });

  test("a lock held by a live run is refused; one from before the last boot is taken over", async () => {
    mkdirSync(stateDir, { recursive: true });
    const live = Bun.spawn(["sleep", "30"]);
    try {
      const file = join(stateDir, "lock");
      const holder = { pid: live.pid, start: processStart(live.pid), machine: machineId() };
      writeFileSync(file, JSON.stringify({ ...holder, command: "up", since: new Date().toISOString() }));
      expect(() => acquireLock(stateDir, "up")).toThrow(LockHeldError);

      // Same pid, but written before the machine booted: that pid is someone else's now.
      const longAgo = new Date(Date.now() - 10 * 365 * 86_400_000).toISOString();
      writeFileSync(file, JSON.stringify({ ...holder, command: "up", since: longAgo }));
      const lock = acquireLock(stateDir, "up");
      expect(lock.tookOverFrom).toBe(live.pid);
      expect(JSON.parse(readFileSync(file, "utf8")).pid).toBe(process.pid);
      lock.release();
      expect(existsSync(file)).toBe(false);
    } finally {
      live.kill();
    }
  });

  test("a takeover lock a run left when it died is cleared after 10 s; a fresh one keeps the stale lock in place", () => {
    mkdirSync(stateDir, { recursive: true });
    const file = join(stateDir, "lock");
    const takeover = `${file}.takeover`;
    const dead = { pid: 2 ** 22 + 1, command: "up", since: new Date().toISOString() };
    // Another run is taking the stale lock over this very moment: not this run's to remove.
    writeFileSync(file, JSON.stringify(dead));
    writeFileSync(takeover, "1");
    expect(() => acquireLock(stateDir, "up")).toThrow(LockHeldError);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual(dead);
    expect(existsSync(takeover)).toBe(true);

    // That run died holding it: a takeover takes microseconds, so one of 11 s is nobody's.
    const old = (Date.now() - 11_000) / 1000;
    utimesSync(takeover, old, old);
    const lock = acquireLock(stateDir, "up");
    expect(JSON.parse(readFileSync(file, "utf8")).pid).toBe(process.pid);
    expect(existsSync(takeover)).toBe(false);
    lock.release();
  });

  test("a lock naming no usable pid is stale, not a process group or every process", () => {
    mkdirSync(stateDir, { recursive: true });
    for (const pid of [0, -1, "12", null]) {
      writeFileSync(join(stateDir, "lock"), JSON.stringify({ pid, command: "up" }));
      const lock = acquireLock(stateDir, "up");
      expect(lock.tookOverFrom).toBe(-1);
      lock.release();
    }
  });
});

describe("atomic writes", () => {
  test("several writes of one file at once all succeed, leave no temporary file and keep 0600", async () => {
    const dir = join(stateDir, "w");
    const file = join(dir, "secret");
    await Promise.all(Array.from({ length: 10 }, (_, i) => writeFileAtomic(file, `v${i}`)));
    expect(readFileSync(file, "utf8")).toMatch(/^v\d$/);
    expect(readdirSync(dir)).toEqual(["secret"]);
    expect(mode(file)).toBe(0o600);
    expect(mode(dir)).toBe(0o700);
  });

  test("keeps the mode it is given whatever the umask, as a report node_exporter reads must be 0644", async () => {
    const file = join(stateDir, "report.prom");
    const before = process.umask(0o077);
    try {
      await writeFileAtomic(file, "x", 0o644);
    } finally {
      process.umask(before);
    }
    expect(mode(file)).toBe(0o644);
  });

  test("never writes through a link planted at its temporary name", async () => {
    const file = join(stateDir, "state.json");
    const victim = join(stateDir, "victim");
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(victim, "theirs");
    // The names are `<file>.<pid>.<n>.tmp`, n counting up: the next few are planted as links.
    const n = Number(/\.(\d+)\.tmp$/.exec(tempPathFor(file))![1]);
    for (let i = n + 1; i <= n + 5; i++)
      symlinkSync(victim, join(stateDir, `state.json.${process.pid}.${i}.tmp`));
    await expect(writeFileAtomic(file, "ours")).rejects.toThrow("EEXIST");
    expect(readFileSync(victim, "utf8")).toBe("theirs");
    expect(existsSync(file)).toBe(false);
  });

  test("writes a file whose name is as long as the file system allows", async () => {
    // 255 bytes, the limit of ext4, ZFS and UFS: a temp name longer than the file's own would fail.
    const name = `${"é".repeat(100)}${"n".repeat(55)}`;
    expect(Buffer.byteLength(name)).toBe(255);
    const file = join(stateDir, "long", name);
    await writeFileAtomic(file, "x");
    expect(readFileSync(file, "utf8")).toBe("x");
    expect(readdirSync(join(stateDir, "long"))).toEqual([name]);
  });
});

describe("a lock that cannot be taken over", () => {
  test("names no pid to kill when it names no holder", () => {
    mkdirSync(join(stateDir, "lock"), { recursive: true });
    const error = (() => {
      try {
        acquireLock(stateDir, "up");
      } catch (e) {
        return e as LockHeldError;
      }
    })();
    expect(error).toBeInstanceOf(LockHeldError);
    expect(error!.message).toBe(`the lock ${join(stateDir, "lock")} cannot be taken over`);
    expect(error!.hint).toBe(`if no kubehyve run is going on, remove it: rm -r ${join(stateDir, "lock")}`);
  });
});

describe("the cluster identity", () => {
  test("is made once by a real run, kept 0600, and the same in every later context", () => {
    const id = context().clusterId;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(mode(join(stateDir, "cluster-id"))).toBe(0o600);
    expect(context({ dryRun: true }).clusterId).toBe(id);
    expect(readClusterId(stateDir)).toBe(id);
  });

  test("a plan before the first up gets an id that is not kept", () => {
    expect(context({ dryRun: true }).clusterId).toMatch(/^[0-9a-f-]{36}$/);
    expect(existsSync(join(stateDir, "cluster-id"))).toBe(false);
  });

  test("a damaged id file is refused with its path, not replaced", () => {
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(join(stateDir, "cluster-id"), "not an id\n");
    expect(() => context().clusterId).toThrow(/cluster-id does not hold a cluster id/);
    expect(readFileSync(join(stateDir, "cluster-id"), "utf8")).toBe("not an id\n");
  });
});
