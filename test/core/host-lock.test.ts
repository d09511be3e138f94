/**
 * The lock on the hypervisor host: two state dirs (or two clusters) on one host never change it at
 * once, a lock left by a run that is gone is taken over, and one whose holder cannot be checked
 * from here is refused without naming a process to kill.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Stage } from "../../src/core/config.ts";
import { type AnyPlugin, definePlugin } from "../../src/core/contract.ts";
import { type EngineRequest, runEngine } from "../../src/core/engine.ts";
import { machineId, processStart } from "../../src/core/holder.ts";
import { Journal } from "../../src/core/journal.ts";
import { memoryReporter } from "../../src/core/reporter.ts";
import { LockHeldError } from "../../src/lib/errors.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import { SshTarget } from "../../src/targets/ssh.ts";
import { labCluster, labNode } from "../lab/cluster.ts";
import { have } from "../lab/prereq.ts";
import { loginOf, startSshd } from "../lab/sshd.ts";

let dir: string;
let hostLock: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kubehyve-host-lock-"));
  hostLock = join(dir, "host", "kubehyve.lock");
  Bun.spawnSync(["mkdir", "-p", join(dir, "host")]);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A stage whose apply waits for `gate` and writes `file` on the host. */
function gated(gate: Promise<void>, file: string): Stage {
  const plugin = definePlugin({
    id: "hypervisor/gated",
    title: "gated",
    apiVersion: 1,
    async check(ctx) {
      const have = await ctx.host.run(["cat", file]);
      return { changes: have.code === 0 ? [] : [{ summary: `write ${file}` }], diagnostics: [] };
    },
    async apply(ctx) {
      await gate;
      await ctx.wet(`write ${file}`, async () => {
        await ctx.host.run(["sh", "-c", 'echo done > "$1"', "sh", file]);
      });
    },
  });
  return { slot: "hypervisor", plugin: plugin as AnyPlugin, options: {} };
}

function up(cluster: string, stateDir: string, stage: Stage, extra: Partial<EngineRequest> = {}) {
  const reporter = memoryReporter();
  const promise = runEngine({
    command: "up",
    cluster: labCluster({ name: cluster, nodes: [labNode("cp1", "control-plane", "192.168.1.21")] }),
    stages: [stage],
    stateDir,
    reporter,
    targets: { host: () => new LocalTarget(), node: () => new LocalTarget(), hostLock },
    ...extra,
  });
  return { promise, reporter };
}

describe("the host lock", () => {
  test("keeps a second state dir off the host while the first run changes it, and is gone after", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const first = up("one", join(dir, "state-one"), gated(gate, join(dir, "one.txt")));
    for (let i = 0; i < 500 && !existsSync(hostLock); i++) await Bun.sleep(10);
    expect(JSON.parse(readFileSync(hostLock, "utf8"))).toMatchObject({
      pid: process.pid,
      command: "up",
      cluster: "one",
      stateDir: join(dir, "state-one"),
      machine: machineId(),
    });

    const second = up("two", join(dir, "state-two"), gated(Promise.resolve(), join(dir, "two.txt")));
    const refused = (await second.promise.catch((e) => e)) as LockHeldError;
    expect(refused).toBeInstanceOf(LockHeldError);
    expect(refused.exitCode).toBe(3);
    // This very process holds it (the first run is in it): recognised, so its pid may be named.
    expect(refused.message).toContain(
      `another kubehyve run (pid ${process.pid}, on local: \`up\` of cluster one`,
    );
    expect(existsSync(join(dir, "two.txt"))).toBe(false);

    open();
    expect((await first.promise).exitCode).toBe(0);
    expect(existsSync(hostLock)).toBe(false);
    expect(
      (await up("two", join(dir, "state-two"), gated(Promise.resolve(), join(dir, "two.txt"))).promise)
        .exitCode,
    ).toBe(0);
  });

  test("left by a run that is gone, is taken over with a warning and a journal line", async () => {
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    writeFileSync(
      hostLock,
      `${JSON.stringify({ pid: dead.pid, start: "linux:x:1", machine: machineId(), command: "up", cluster: "old", run: "r0" })}\n`,
    );
    const stateDir = join(dir, "state");
    const { promise, reporter } = up("lab", stateDir, gated(Promise.resolve(), join(dir, "x.txt")));
    const { runId, exitCode } = await promise;
    expect(exitCode).toBe(0);
    expect(reporter.events).toContainEqual(
      expect.objectContaining({
        level: "warn",
        message: `took over the host lock ${hostLock} left by a run that is gone (pid ${dead.pid} is not running)`,
      }),
    );
    expect(
      new Journal(stateDir).read().find((e) => e.run === runId && e.status === "lock-taken-over")!.message,
    ).toBe(`took over the host lock ${hostLock} of \`up\` of cluster old: pid ${dead.pid} is not running`);
    expect(existsSync(hostLock)).toBe(false);
  });

  test("held by a process that started after the lock was taken (its pid reused) is taken over", async () => {
    const live = Bun.spawn(["sleep", "30"]);
    try {
      writeFileSync(
        hostLock,
        JSON.stringify({ pid: live.pid, start: "linux:earlier:1", machine: machineId(), command: "up" }),
      );
      expect(
        (await up("lab", join(dir, "s"), gated(Promise.resolve(), join(dir, "y.txt"))).promise).exitCode,
      ).toBe(0);
      // The unrelated process was left alone.
      expect(processStart(live.pid)).toBeDefined();
    } finally {
      live.kill();
    }
  });

  test("taken from another machine is refused, naming its cluster, and no process to kill", async () => {
    const record = {
      pid: 4242,
      start: "ps:x",
      machine: "laptop/123",
      command: "down",
      cluster: "other",
      stateDir: "/var/db/kubehyve/other",
    };
    writeFileSync(hostLock, JSON.stringify(record));
    const error = (await up(
      "lab",
      join(dir, "s"),
      gated(Promise.resolve(), join(dir, "z.txt")),
    ).promise.catch((e) => e)) as LockHeldError;
    expect(error).toBeInstanceOf(LockHeldError);
    expect(error.message).toBe(
      `the lock ${hostLock} names pid 4242, which runs but cannot be recognised as the kubehyve run that took it (on local: \`down\` of cluster other (state dir /var/db/kubehyve/other) from laptop; it was taken on another machine, laptop)`,
    );
    expect(error.hint).toBe(`if no kubehyve run is going on, remove it: rm ${hostLock}`);
    // Left as it was.
    expect(JSON.parse(readFileSync(hostLock, "utf8"))).toEqual(record);
  });

  test("that cannot be created fails the run with the place and the reason, before any stage", async () => {
    hostLock = join(dir, "missing-dir", "kubehyve.lock");
    const seen: string[] = [];
    const probe = definePlugin({
      id: "hypervisor/probe",
      title: "probe",
      apiVersion: 1,
      async check() {
        seen.push("check");
        return { changes: [], diagnostics: [] };
      },
    });
    const error = (await up("lab", join(dir, "s"), {
      slot: "hypervisor",
      plugin: probe as AnyPlugin,
      options: {},
    }).promise.catch((e) => e)) as Error;
    expect(error.message).toMatch(
      new RegExp(`^cannot take the host lock ${hostLock} on local: .*(No such file|cannot create)`),
    );
    expect(seen).toEqual([]);
  });

  test("is not taken by a dry run or a plan", async () => {
    const seen: boolean[] = [];
    const probe = definePlugin({
      id: "hypervisor/probe",
      title: "probe",
      apiVersion: 1,
      async check() {
        seen.push(existsSync(hostLock));
        return { changes: [], diagnostics: [] };
      },
    });
    const stage = { slot: "hypervisor", plugin: probe as AnyPlugin, options: {} };
    await up("lab", join(dir, "s"), stage, { dryRun: true }).promise;
    await up("lab", join(dir, "s"), stage, { command: "plan" }).promise;
    await up("lab", join(dir, "s"), stage).promise;
    expect(seen).toEqual([false, false, true]);
  });
});

describe.skipIf(!have("sshd", "openssh-server"))("the host lock over ssh", () => {
  test("is taken, refused to a second state dir and released through the remote shell", async () => {
    const sshd = await startSshd();
    const stateOne = join(dir, "state-one");
    const target = new SshTarget({ ...loginOf(sshd), stateDir: stateOne, name: "root@hv1" });
    try {
      let open!: () => void;
      const gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      const targets = { host: () => target, node: () => target, hostLock };
      const first = up("one", stateOne, gated(gate, join(dir, "one.txt")), { targets });
      for (let i = 0; i < 500 && !existsSync(hostLock); i++) await Bun.sleep(10);
      // The record went through the remote shell's quoting unchanged.
      expect(JSON.parse(readFileSync(hostLock, "utf8"))).toMatchObject({
        cluster: "one",
        stateDir: stateOne,
      });
      const second = await up("two", join(dir, "state-two"), gated(Promise.resolve(), join(dir, "two.txt")), {
        targets,
      }).promise.catch((e) => e);
      expect(second).toBeInstanceOf(LockHeldError);
      expect((second as LockHeldError).message).toContain("on root@hv1: `up` of cluster one");
      open();
      expect((await first.promise).exitCode).toBe(0);
      expect(existsSync(hostLock)).toBe(false);
    } finally {
      await target.close();
      await sshd.stop();
    }
  }, 60_000);
});

describe("the host lock's record", () => {
  test("is never written through a link planted at the name it is written to first", async () => {
    const { acquireHostLock } = await import("../../src/core/host-lock.ts");
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    // Someone who can write where the lock lives (KUBEHYVE_HOST_LOCK in /tmp) plants a link at
    // `LOCK.PID.new` for the shell's pid; `exec` keeps that pid for the lock's own script.
    const local = new LocalTarget();
    const planting = {
      name: "local",
      run: (argv: readonly string[], opts?: Parameters<LocalTarget["run"]>[1]) =>
        local.run(
          ["sh", "-c", 'ln -s "$0" "$1.$$.new" 2>/dev/null; shift; exec "$@"', victim, hostLock, ...argv],
          opts,
        ),
      close: () => local.close(),
    };
    const error = await acquireHostLock(planting, hostLock, {
      run: "r1",
      command: "up",
      cluster: "lab",
      stateDir: join(dir, "s"),
    }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(error?.message).toMatch(
      new RegExp(`^cannot take the host lock ${hostLock} on local: .*(exists|cannot create)`),
    );
    expect(existsSync(hostLock)).toBe(false);
  });
});
