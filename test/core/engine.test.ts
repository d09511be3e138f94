import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ArtifactCache } from "../../src/artifacts/types.ts";
import type { Stage } from "../../src/core/config.ts";
import { type AnyPlugin, type Change, definePlugin } from "../../src/core/contract.ts";
import { diag } from "../../src/core/diagnostics.ts";
import { type EngineRequest, runEngine } from "../../src/core/engine.ts";
import { machineId, processStart } from "../../src/core/holder.ts";
import { Journal } from "../../src/core/journal.ts";
import { orderStages } from "../../src/core/order.ts";
import { memoryReporter } from "../../src/core/reporter.ts";
import { RUNBOOKS } from "../../src/core/runbooks.ts";
import type { KubeClient } from "../../src/kube/types.ts";
import { InputError, LockHeldError } from "../../src/lib/errors.ts";
import { pending, poll, sleep } from "../../src/lib/poll.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import { RecordingTarget } from "../../src/targets/recording.ts";
import { labCluster, labNode } from "../lab/cluster.ts";

// One node is enough: the core treats every node alike.
const cluster = labCluster({ name: "t", nodes: [labNode("cp1", "control-plane", "192.168.1.21")] });

/**
 * A tiny plugin whose world is one in-memory "desired vs actual" flag. Every call is written to the
 * shared log so tests can assert the order of phases across stages.
 */
function fakePlugin(
  slot: string,
  log: string[],
  world: Record<string, boolean>,
  opts: {
    checkError?: boolean;
    verifyError?: boolean;
    applyThrows?: boolean;
    disruptive?: boolean;
    after?: string[];
    onApply?: () => void;
  } = {},
): Stage {
  const plugin = definePlugin({
    id: `${slot}/fake`,
    title: `fake ${slot}`,
    apiVersion: 1,
    after: opts.after,
    async check(ctx) {
      log.push(`${slot}:check${ctx.upstreamPending ? ":pending" : ""}`);
      const changes: Change[] = world[slot] ? [] : [{ summary: `make ${slot}`, disruptive: opts.disruptive }];
      return {
        changes,
        diagnostics: opts.checkError
          ? [diag.error(`${slot}.broken`, `${slot} is broken`, { hint: "fix it" })]
          : [],
      };
    },
    async apply(ctx) {
      log.push(`${slot}:apply`);
      opts.onApply?.();
      if (opts.applyThrows) throw new Error(`${slot} exploded`);
      await ctx.wet(`set ${slot}`, async () => {
        log.push(`${slot}:mutate`);
        world[slot] = true;
      });
    },
    async verify() {
      log.push(`${slot}:verify`);
      return opts.verifyError
        ? [diag.error(`${slot}.unhealthy`, `${slot} is unhealthy`)]
        : [diag.ok(`${slot}.fine`, `${slot} works`)];
    },
    async destroy(ctx) {
      log.push(`${slot}:destroy`);
      await ctx.wet(`remove ${slot}`, async () => {
        world[slot] = false;
      });
    },
  });
  return { slot, plugin: plugin as AnyPlugin, options: {} };
}

/** Running, and not a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

let stateDir: string;
beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), "kubehyve-engine-"));
});
afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

function run(command: EngineRequest["command"], stages: Stage[], extra: Partial<EngineRequest> = {}) {
  const reporter = memoryReporter();
  const host = new RecordingTarget();
  const promise = runEngine({
    command,
    cluster,
    stages,
    stateDir,
    reporter,
    targets: { host: () => host, node: () => host },
    ...extra,
  });
  return { promise, reporter };
}

describe("the runbooks", () => {
  test("the run's log names every step of a stage in the runbook's order, so the last one is where it stopped", async () => {
    const { promise, reporter } = run("up", [fakePlugin("hypervisor", [], {}, { verifyError: true })]);
    expect((await promise).exitCode).toBe(1);
    const steps = reporter.events.flatMap((e) =>
      e.type === "log" && e.level === "debug" && e.message.startsWith("step: ") ? [e.message.slice(6)] : [],
    );
    expect(steps).toEqual(RUNBOOKS.up.eachStage.map((s) => s.title));
    expect(steps.at(-1)).toBe("stop on errors of verify");
  });

  test("every command has one", () => {
    expect(Object.keys(RUNBOOKS).sort()).toEqual([
      "doctor",
      "down",
      "expose",
      "plan",
      "render",
      "up",
      "verify",
    ]);
  });
});

describe("up", () => {
  test("runs check, apply and verify stage by stage in pipeline order", async () => {
    const log: string[] = [];
    const world = {};
    // Listed out of order on purpose: the pipeline decides.
    const stages = [
      fakePlugin("k8s", log, world),
      fakePlugin("hypervisor", log, world),
      fakePlugin("os", log, world),
    ];
    const { promise } = run("up", stages);
    expect((await promise).exitCode).toBe(0);
    expect(log).toEqual([
      "hypervisor:check",
      "hypervisor:apply",
      "hypervisor:mutate",
      "hypervisor:verify",
      "os:check",
      "os:apply",
      "os:mutate",
      "os:verify",
      "k8s:check",
      "k8s:apply",
      "k8s:mutate",
      "k8s:verify",
    ]);
  });

  test("skips apply when check finds nothing to change, and still verifies", async () => {
    const log: string[] = [];
    const { promise, reporter } = run("up", [fakePlugin("hypervisor", log, { hypervisor: true })]);
    const result = await promise;
    expect(result.exitCode).toBe(0);
    expect(log).toEqual(["hypervisor:check", "hypervisor:verify"]);
    expect(reporter.events).toContainEqual(
      expect.objectContaining({ type: "phase.end", phase: "check", status: "up-to-date" }),
    );
  });

  test("stops at the first stage whose check reports an error", async () => {
    const log: string[] = [];
    const world = {};
    const { promise, reporter } = run("up", [
      fakePlugin("hypervisor", log, world, { checkError: true }),
      fakePlugin("os", log, world),
    ]);
    const result = await promise;
    expect(result.exitCode).toBe(1);
    expect(log).toEqual(["hypervisor:check"]);
    const end = reporter.events.at(-1);
    expect(end).toMatchObject({ type: "run.end", status: "failed", exitCode: 1 });
    expect((end as { message: string }).message).toContain("hypervisor check failed: hypervisor is broken");
  });

  test("stops when verify reports an error after apply", async () => {
    const log: string[] = [];
    const world = {};
    const { promise } = run("up", [
      fakePlugin("hypervisor", log, world, { verifyError: true }),
      fakePlugin("os", log, world),
    ]);
    expect((await promise).exitCode).toBe(1);
    expect(log).toEqual(["hypervisor:check", "hypervisor:apply", "hypervisor:mutate", "hypervisor:verify"]);
  });

  test("a crashing apply fails the run with the stage, the phase and the message", async () => {
    const log: string[] = [];
    const { promise, reporter } = run("up", [fakePlugin("os", log, {}, { applyThrows: true })]);
    expect((await promise).exitCode).toBe(1);
    expect(reporter.events).toContainEqual(
      expect.objectContaining({
        type: "phase.end",
        stage: "os",
        phase: "apply",
        status: "failed",
        error: "os exploded",
      }),
    );
  });

  test("asks before disruptive changes and changes nothing when refused", async () => {
    const log: string[] = [];
    const world: Record<string, boolean> = {};
    const questions: string[] = [];
    const { promise } = run("up", [fakePlugin("hypervisor", log, world, { disruptive: true })], {
      ask: async (q) => {
        questions.push(q);
        return false;
      },
    });
    const result = await promise;
    expect(result.exitCode).toBe(1);
    expect(questions).toEqual(["hypervisor: make hypervisor. Go ahead?"]);
    expect(world.hypervisor).toBeUndefined();
    expect(log).toEqual(["hypervisor:check"]);
  });

  test("--yes lets disruptive changes through without asking", async () => {
    const log: string[] = [];
    const world: Record<string, boolean> = {};
    const { promise } = run("up", [fakePlugin("hypervisor", log, world, { disruptive: true })], {
      assumeYes: true,
      ask: async () => {
        throw new Error("must not ask");
      },
    });
    expect((await promise).exitCode).toBe(0);
    expect(world.hypervisor).toBe(true);
  });

  test("--only, --from and --until select stages; an unknown one is bad input", async () => {
    const log: string[] = [];
    const world = {};
    const stages = ["hypervisor", "os", "k8s", "net"].map((s) => fakePlugin(s, log, world));
    await run("up", stages, { select: { from: "os", until: "k8s" } }).promise;
    expect(log.filter((l) => l.endsWith(":check"))).toEqual(["os:check", "k8s:check"]);
    log.length = 0;
    await run("up", stages, { select: { only: ["net"] } }).promise;
    expect(log.filter((l) => l.endsWith(":check"))).toEqual(["net:check"]);
    await expect(run("up", stages, { select: { only: ["storage"] } }).promise).rejects.toThrow(
      'no stage "storage"',
    );
  });
});

describe("a selection of stages that selects none", () => {
  test("--from after --until, or --only outside them, is bad input, not a run of nothing", async () => {
    const log: string[] = [];
    const stages = ["hypervisor", "os", "k8s", "net"].map((s) => fakePlugin(s, log, {}));
    await expect(run("up", stages, { select: { from: "k8s", until: "os" } }).promise).rejects.toThrow(
      new InputError("--from k8s comes after --until os in the run order: no stage would run"),
    );
    await expect(run("up", stages, { select: { only: ["net"], until: "os" } }).promise).rejects.toThrow(
      new InputError("--only net, --until os select no stage: nothing would run"),
    );
    expect(log).toEqual([]);
  });
});

describe("canaries in up", () => {
  /** A stage that changes nothing itself, and whose verify runs a canary. */
  const proving = (slot: string, log: string[]): Stage => ({
    slot,
    plugin: definePlugin({
      id: `${slot}/proving`,
      title: `proving ${slot}`,
      apiVersion: 1,
      async check() {
        return { changes: [], diagnostics: [] };
      },
      async verify(ctx) {
        const r = await ctx.canary(
          { name: "path", description: `${slot} canary`, passed: () => true },
          async () => log.push(`${slot}:canary`),
        );
        return [diag.ok(`${slot}.canary`, r.ran ? "ran" : r.why)];
      },
    }) as AnyPlugin,
    options: {},
  });

  test("a stage's canary runs again when an earlier stage changed in the run, and not in a no-op up, doctor or verify", async () => {
    const log: string[] = [];
    const world: Record<string, boolean> = {};
    const stages = () => [fakePlugin("hypervisor", log, world), proving("net", log)];
    expect((await run("up", stages()).promise).exitCode).toBe(0);
    expect(log).toEqual([
      "hypervisor:check",
      "hypervisor:apply",
      "hypervisor:mutate",
      "hypervisor:verify",
      "net:canary",
    ]);
    log.length = 0;
    for (const command of ["up", "doctor", "verify"] as const)
      expect((await run(command, stages()).promise).exitCode).toBe(0);
    expect(log.filter((l) => l.endsWith("canary"))).toEqual([]);
    // Something below the net stage changes: what its canary proved may no longer hold.
    world.hypervisor = false;
    expect((await run("up", stages()).promise).exitCode).toBe(0);
    expect(log.filter((l) => l.endsWith("canary"))).toEqual(["net:canary"]);
    expect((await run("up", stages(), { canaries: true }).promise).exitCode).toBe(0);
    expect(log.filter((l) => l.endsWith("canary"))).toEqual(["net:canary", "net:canary"]);
  });
});

describe("plan", () => {
  test("performs no mutation and records what would be done", async () => {
    const log: string[] = [];
    const world: Record<string, boolean> = {};
    const { promise, reporter } = run("plan", [fakePlugin("hypervisor", log, world)]);
    // A plan never calls apply; a dry-run ctx.wet never calls its function.
    expect((await promise).exitCode).toBe(0);
    expect(world).toEqual({});
    expect(log).toEqual(["hypervisor:check"]);
    expect(reporter.events).toContainEqual(
      expect.objectContaining({ type: "change", stage: "hypervisor", summary: "make hypervisor" }),
    );
  });

  test("up --dry-run with a plugin that applies anyway records wet lines and runs nothing", async () => {
    const world: Record<string, boolean> = {};
    const log: string[] = [];
    const stage = fakePlugin("os", log, world);
    const { createPluginContext } = await import("../../src/core/context.ts");
    const ctx = createPluginContext({ cluster, plugin: stage.plugin, options: {}, stateDir, dryRun: true });
    await stage.plugin.apply!(ctx, []);
    expect(ctx.wetLog).toEqual(["set os"]);
    expect(log).toEqual(["os:apply"]);
    expect(world).toEqual({});
  });

  test("tells later stages that an earlier one still has pending changes", async () => {
    const log: string[] = [];
    const world = { hypervisor: true };
    const stages = [
      fakePlugin("hypervisor", log, world),
      fakePlugin("os", log, world),
      fakePlugin("k8s", log, world),
    ];
    await run("plan", stages).promise;
    expect(log).toEqual(["hypervisor:check", "os:check", "k8s:check:pending"]);
  });

  test("--offline marks every stage pending and refuses to reach any machine", async () => {
    const log: string[] = [];
    let error: unknown;
    const probing = definePlugin({
      id: "hypervisor/probe",
      title: "probe",
      apiVersion: 1,
      async check(ctx) {
        log.push(`pending=${ctx.upstreamPending}`);
        try {
          await ctx.host.run(["uname"]);
        } catch (e) {
          error = e;
        }
        return { changes: [], diagnostics: [] };
      },
    });
    const reporter = memoryReporter();
    await runEngine({
      command: "plan",
      offline: true,
      cluster,
      stages: [{ slot: "hypervisor", plugin: probing as AnyPlugin, options: {} }],
      stateDir,
      reporter,
    });
    expect(log).toEqual(["pending=true"]);
    expect(String(error)).toContain("offline: refusing to run `uname`");
  });
});

describe("order", () => {
  test("puts a third-party slot where its after says", () => {
    const log: string[] = [];
    const w = {};
    const ordered = orderStages([
      fakePlugin("backup", log, w, { after: ["k8s"] }),
      fakePlugin("net", log, w),
      fakePlugin("k8s", log, w),
      fakePlugin("hypervisor", log, w),
    ]);
    expect(ordered.map((s) => s.slot)).toEqual(["hypervisor", "k8s", "net", "backup"]);
  });

  test("runs a third-party slot without after at the end", () => {
    const log: string[] = [];
    const w = {};
    expect(
      orderStages([fakePlugin("extra", log, w), fakePlugin("lb", log, w), fakePlugin("k8s", log, w)]).map(
        (s) => s.slot,
      ),
    ).toEqual(["k8s", "lb", "extra"]);
  });

  test("refuses a cycle and names the slots on it", () => {
    const log: string[] = [];
    const w = {};
    expect(() =>
      orderStages([fakePlugin("a", log, w, { after: ["b"] }), fakePlugin("b", log, w, { after: ["a"] })]),
    ).toThrow(/cycle: a \(after b\); b \(after a\)/);
  });
});

describe("journal and lock", () => {
  test("the journal records every phase and the run's outcome", async () => {
    const log: string[] = [];
    const { promise } = run("up", [
      fakePlugin("hypervisor", log, {}),
      fakePlugin("os", log, {}, { verifyError: true }),
    ]);
    const { runId } = await promise;
    const entries = new Journal(stateDir).read().filter((e) => e.run === runId);
    expect(entries.map((e) => [e.stage ?? "-", e.phase ?? "-", e.status])).toEqual([
      ["-", "-", "started"],
      ["hypervisor", "check", "changes"],
      ["hypervisor", "apply", "ok"],
      ["hypervisor", "verify", "ok"],
      ["os", "check", "changes"],
      ["os", "apply", "ok"],
      ["os", "verify", "ok"],
      ["-", "-", "failed"],
    ]);
    expect(entries.at(-1)!.message).toBe("os verify failed: os is unhealthy");
  });

  test("a second run is refused while the first holds the lock, naming its pid", async () => {
    const holder = Bun.spawn(["sleep", "30"]);
    const since = new Date().toISOString();
    try {
      writeFileSync(
        join(stateDir, "lock"),
        JSON.stringify({
          pid: holder.pid,
          start: processStart(holder.pid),
          machine: machineId(),
          command: "up",
          since,
        }),
      );
      const promise = run("up", [fakePlugin("hypervisor", [], {})]).promise;
      await expect(promise).rejects.toBeInstanceOf(LockHeldError);
      await expect(promise).rejects.toThrow(
        `another kubehyve run (pid ${holder.pid}, \`up\` since ${since}) holds the lock`,
      );
      await expect(promise).rejects.toMatchObject({
        hint: `wait for it to finish, or stop it: kill ${holder.pid}`,
      });
      // The other run's lock is left alone.
      expect(JSON.parse(readFileSync(join(stateDir, "lock"), "utf8")).pid).toBe(holder.pid);
    } finally {
      holder.kill();
    }
  });

  test("a lock left by a dead run is taken over with a warning, and released at the end", async () => {
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    writeFileSync(join(stateDir, "lock"), JSON.stringify({ pid: dead.pid, command: "up" }));
    const { promise, reporter } = run("up", [fakePlugin("hypervisor", [], {})]);
    expect((await promise).exitCode).toBe(0);
    expect(reporter.events).toContainEqual({
      type: "log",
      level: "warn",
      message: `took over the lock left by a run that is gone (pid ${dead.pid})`,
    });
    expect(existsSync(join(stateDir, "lock"))).toBe(false);
  });
});

describe("a journal that cannot be written", () => {
  test("fails the run before any stage, naming the journal, and leaves the state dir's lock free", async () => {
    // A directory where the journal belongs passes the state dir's check, and takes no line.
    mkdirSync(join(stateDir, "journal.ndjson"));
    const log: string[] = [];
    const { promise } = run("up", [fakePlugin("hypervisor", log, {})]);
    await expect(promise).rejects.toThrow(`${join(stateDir, "journal.ndjson")} is a directory, not a file`);
    expect(log).toEqual([]);
    expect(existsSync(join(stateDir, "lock"))).toBe(false);
  });
});

describe("a lock whose pid now names another process", () => {
  test("pid 1 with another start time is taken over, and the killed run's journal is closed", async () => {
    const journal = new Journal(stateDir);
    journal.record({ run: "2025-01-01T00-00-00-000Z-1", command: "up", status: "started" });
    journal.record({
      run: "2025-01-01T00-00-00-000Z-1",
      command: "up",
      stage: "hypervisor",
      phase: "apply",
      status: "ok",
    });
    writeFileSync(
      join(stateDir, "lock"),
      JSON.stringify({
        pid: 1,
        start: "linux:another-boot:17",
        machine: machineId(),
        run: "2025-01-01T00-00-00-000Z-1",
        command: "up",
        since: new Date().toISOString(),
      }),
    );
    const { promise } = run("up", [fakePlugin("hypervisor", [], {})]);
    const { runId, exitCode } = await promise;
    expect(exitCode).toBe(0);
    const lines = journal.read();
    expect(lines.find((e) => e.run === "2025-01-01T00-00-00-000Z-1" && e.status === "killed")).toMatchObject({
      command: "up",
      message: expect.stringContaining(`found by run ${runId}, which took over its lock`),
    });
    expect(lines.find((e) => e.run === runId && e.status === "lock-taken-over")!.message).toMatch(
      /^took over the lock of pid 1 \(run 2025-01-01T00-00-00-000Z-1\): /,
    );
  });

  test("an old lock without a start time, naming a live program that is not kubehyve, is taken over", async () => {
    const other = Bun.spawn(["sleep", "30"]);
    try {
      // Until the child has exec'd, /proc shows no command line to judge it by.
      for (let i = 0; i < 200 && !readFileSync(`/proc/${other.pid}/cmdline`, "utf8").includes("sleep"); i++)
        await Bun.sleep(5);
      writeFileSync(
        join(stateDir, "lock"),
        JSON.stringify({ pid: other.pid, command: "up", since: new Date().toISOString() }),
      );
      const { promise, reporter } = run("up", [fakePlugin("hypervisor", [], {})]);
      expect((await promise).exitCode).toBe(0);
      expect(reporter.events).toContainEqual(
        expect.objectContaining({
          level: "warn",
          message: `took over the lock left by a run that is gone (pid ${other.pid})`,
        }),
      );
    } finally {
      other.kill();
    }
  });

  test("a holder on another machine cannot be checked: refused, and no process is named to kill", async () => {
    writeFileSync(
      join(stateDir, "lock"),
      JSON.stringify({
        pid: 1,
        start: "x",
        machine: "elsewhere/boot",
        command: "up",
        since: new Date().toISOString(),
      }),
    );
    const promise = run("up", [fakePlugin("hypervisor", [], {})]).promise;
    await expect(promise).rejects.toBeInstanceOf(LockHeldError);
    const error = (await promise.catch((e) => e)) as LockHeldError;
    expect(error.message).toContain("it was taken on another machine, elsewhere");
    expect(error.hint).toBe(`if no kubehyve run is going on, remove it: rm ${join(stateDir, "lock")}`);
    expect(error.hint).not.toContain("kill");
  });
});

describe("the journal's check lines", () => {
  test("count the changes check found", async () => {
    const { promise } = run("up", [fakePlugin("hypervisor", [], {}), fakePlugin("os", [], { os: true })]);
    const { runId } = await promise;
    const checks = new Journal(stateDir).read().filter((e) => e.run === runId && e.phase === "check");
    expect(checks.map((e) => [e.stage, e.changes])).toEqual([
      ["hypervisor", 1],
      ["os", 0],
    ]);
  });
});

describe("cancellation", () => {
  test("Ctrl-C during a stage stops before the next step, runs cleanups and records where it stopped", async () => {
    const log: string[] = [];
    const world: Record<string, boolean> = {};
    const controller = new AbortController();
    const cleaned: string[] = [];
    const interrupting = definePlugin({
      id: "hypervisor/slow",
      title: "slow",
      apiVersion: 1,
      async check() {
        return { changes: [{ summary: "two steps" }], diagnostics: [] };
      },
      async apply(ctx) {
        ctx.onCleanup(() => {
          cleaned.push("hypervisor");
        });
        await ctx.wet("step 1", async () => {
          log.push("step 1");
          controller.abort(); // the user presses Ctrl-C during step 1
        });
        await ctx.wet("step 2", async () => {
          log.push("step 2");
        });
      },
    });
    const { promise, reporter } = run(
      "up",
      [{ slot: "hypervisor", plugin: interrupting as AnyPlugin, options: {} }, fakePlugin("os", log, world)],
      {
        signal: controller.signal,
      },
    );
    const result = await promise;
    expect(result.exitCode).toBe(130);
    expect(log).toEqual(["step 1"]);
    expect(cleaned).toEqual(["hypervisor"]);
    expect(world.os).toBeUndefined();
    expect(reporter.events.at(-1)).toMatchObject({ type: "run.end", status: "cancelled" });
    const last = new Journal(stateDir).read().filter((e) => e.stage);
    expect(last.at(-1)).toMatchObject({ stage: "hypervisor", phase: "apply", status: "cancelled" });
  });
});

describe("cleanups after Ctrl-C", () => {
  test("run with working targets: their host commands and their own steps still run", async () => {
    const controller = new AbortController();
    const marker = join(stateDir, "cleaned");
    const plugin = definePlugin({
      id: "hypervisor/tidy",
      title: "tidy",
      apiVersion: 1,
      async check() {
        return { changes: [{ summary: "one step" }], diagnostics: [] };
      },
      async apply(ctx) {
        ctx.onCleanup(() =>
          ctx.wet("remove the temporary file", async () => {
            const r = await ctx.host.run(["sh", "-c", 'echo cleaned > "$1"', "sh", marker]);
            if (r.code !== 0) throw new Error(r.stderr);
          }),
        );
        await ctx.wet("step", async () => controller.abort());
        await ctx.wet("next step", async () => {});
      },
    });
    const result = await run("up", [{ slot: "hypervisor", plugin: plugin as AnyPlugin, options: {} }], {
      signal: controller.signal,
      targets: { host: () => new LocalTarget(), node: () => new LocalTarget() },
    }).promise;
    expect(result.exitCode).toBe(130);
    expect(readFileSync(marker, "utf8")).toBe("cleaned\n");
  });
});

describe("a phase stuck in its plugin's own code", () => {
  // As long as a change may take, here 300 ms: a phase with nothing in flight that long is stuck.
  const impatient = { ...cluster, timeouts: { read: 60_000, change: 300, long: 60_000 } };

  test("fails the run naming the stage, the phase and the plugin, in check and in apply", async () => {
    for (const phase of ["check", "apply"] as const) {
      const stuck = definePlugin({
        id: "os/stuck",
        title: "stuck",
        apiVersion: 1,
        check: async () =>
          phase === "check" ? new Promise(() => {}) : { changes: [{ summary: "make os" }], diagnostics: [] },
        apply: () => new Promise(() => {}),
      });
      const started = Date.now();
      const { promise, reporter } = run("up", [{ slot: "os", plugin: stuck as AnyPlugin, options: {} }], {
        cluster: impatient,
        assumeYes: true,
      });
      const result = await promise;
      expect(result.exitCode).toBe(1);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(reporter.events).toContainEqual(
        expect.objectContaining({
          type: "phase.end",
          stage: "os",
          phase,
          status: "failed",
          error: `os ${phase} did nothing for 300 ms: no command, request, download, wait or question in flight, so os/stuck is stuck in its own code`,
        }),
      );
    }
  });

  /** A promise a plain timer settles (not our sleep, which counts as a wait itself). */
  const later = <T>(value: T) => new Promise<T>((resolve) => setTimeout(() => resolve(value), 800));
  const unanswering = { server: "https://127.0.0.1:6443", dir: stateDir };

  test("a phase that waits on a command, a sleep, a poll, a question, a request or a download longer than that is not stuck", async () => {
    const answered: string[] = [];
    const patient = definePlugin({
      id: "os/patient",
      title: "patient",
      apiVersion: 1,
      async check(ctx) {
        const r = await ctx.local.run(["sleep", "0.8"]);
        expect(r.code).toBe(0);
        await sleep(800);
        let probes = 0;
        await poll("three probes", async () => (++probes < 3 ? pending("not yet") : true), {
          timeoutMs: 10_000,
          intervalMs: 400,
        });
        expect(await ctx.confirm("go on?")).toBe(true);
        expect(await (await ctx.kube()).get("v1", "Namespace", "default")).toBeUndefined();
        expect(await ctx.artifacts.has({ url: "https://example.invalid/a", sha256: "0".repeat(64) })).toBe(
          false,
        );
        return { changes: [], diagnostics: [] };
      },
    });
    const { promise, reporter } = run("up", [{ slot: "os", plugin: patient as AnyPlugin, options: {} }], {
      cluster: impatient,
      targets: {
        host: () => new LocalTarget(),
        node: () => new LocalTarget(),
        local: () => new LocalTarget(),
      },
      // A slow API server and a slow disk: each answer takes longer than the phase may stay idle.
      kube: async () => ({ ...unanswering, get: () => later(undefined) }) as unknown as KubeClient,
      artifacts: { ...unanswering, has: () => later(false) } as unknown as ArtifactCache,
      ask: async (question) => {
        // A person answering, not a wait of the plugin's.
        await new Promise((resolve) => setTimeout(resolve, 800));
        answered.push(question);
        return true;
      },
    });
    const result = await promise;
    expect(reporter.events.filter((e) => e.type === "phase.end")).toEqual([
      expect.objectContaining({ stage: "os", phase: "check", status: "up-to-date" }),
    ]);
    expect(result.exitCode).toBe(0);
    expect(answered).toEqual(["go on?"]);
  });
});

describe("doctor, verify and down", () => {
  test("doctor inspects every stage, reports pending changes and errors, and changes nothing", async () => {
    const log: string[] = [];
    const world: Record<string, boolean> = { os: true };
    const { promise, reporter } = run("doctor", [
      fakePlugin("hypervisor", log, world),
      fakePlugin("os", log, world, { verifyError: true }),
    ]);
    const result = await promise;
    expect(result.exitCode).toBe(1);
    expect(log.filter((l) => l.includes("apply") || l.includes("mutate"))).toEqual([]);
    const diagnostics = reporter.events
      .filter((e) => e.type === "diagnostic")
      .map((e) => (e as { code: string }).code);
    expect(diagnostics).toEqual(["engine.changes-pending", "hypervisor.fine", "os.unhealthy"]);
    expect(reporter.events.at(-1)).toMatchObject({
      type: "run.end",
      message: "doctor: 1 error, 0 warnings, 0 skipped, 1 info, 1 ok",
    });
  });

  test("doctor gives up on a stage that hangs, and still reports the others", async () => {
    const hanging = definePlugin({
      id: "os/hang",
      title: "hang",
      apiVersion: 1,
      check: () => new Promise(() => {}),
    });
    const { promise, reporter } = run(
      "doctor",
      [
        fakePlugin("hypervisor", [], { hypervisor: true }),
        { slot: "os", plugin: hanging as AnyPlugin, options: {} },
      ],
      {
        phaseTimeoutMs: 200,
      },
    );
    const result = await promise;
    expect(result.exitCode).toBe(1);
    expect(reporter.events).toContainEqual(
      expect.objectContaining({
        type: "diagnostic",
        stage: "os",
        code: "engine.phase-failed",
        detail: "os check did not finish within 200 ms",
      }),
    );
    expect(reporter.events).toContainEqual(
      expect.objectContaining({ type: "diagnostic", stage: "hypervisor", code: "hypervisor.fine" }),
    );
  });

  test("doctor --timeout kills the commands of the stage it gives up on", async () => {
    const pidFile = join(stateDir, "sleep.pid");
    const hanging = definePlugin({
      id: "os/hang",
      title: "hang",
      apiVersion: 1,
      async check(ctx) {
        await ctx.host.run(["sh", "-c", 'echo $$ > "$1"; exec sleep 30', "sh", pidFile]);
        return { changes: [], diagnostics: [] };
      },
    });
    const started = Date.now();
    const result = await run("doctor", [{ slot: "os", plugin: hanging as AnyPlugin, options: {} }], {
      phaseTimeoutMs: 500,
      targets: { host: () => new LocalTarget(), node: () => new LocalTarget() },
    }).promise;
    expect(result.exitCode).toBe(1);
    expect(Date.now() - started).toBeLessThan(5000);
    const pid = Number(readFileSync(pidFile, "utf8"));
    for (let i = 0; i < 100 && alive(pid); i++) await Bun.sleep(20);
    expect(alive(pid)).toBe(false);
  });

  test("verify runs only verify", async () => {
    const log: string[] = [];
    expect(
      (await run("verify", [fakePlugin("hypervisor", log, {}), fakePlugin("os", log, {})]).promise).exitCode,
    ).toBe(0);
    expect(log).toEqual(["hypervisor:verify", "os:verify"]);
  });

  test("down destroys in reverse order, and only after confirmation", async () => {
    const log: string[] = [];
    const world = { hypervisor: true, os: true };
    const refused = await run("down", [fakePlugin("hypervisor", log, world), fakePlugin("os", log, world)], {
      ask: async () => false,
    }).promise;
    expect(refused.exitCode).toBe(1);
    expect(log).toEqual([]);
    const done = await run("down", [fakePlugin("hypervisor", log, world), fakePlugin("os", log, world)], {
      ask: async () => true,
    }).promise;
    expect(done.exitCode).toBe(0);
    expect(log).toEqual(["os:destroy", "hypervisor:destroy"]);
    expect(world).toEqual({ hypervisor: false, os: false });
  });
});

describe("render", () => {
  test("writes each stage's files under DIR/<slot>/ and refuses paths that leave it", async () => {
    const out = join(stateDir, "out");
    const good = definePlugin({
      id: "os/files",
      title: "files",
      apiVersion: 1,
      check: async () => ({ changes: [], diagnostics: [] }),
      render: async () => [
        { path: "nodes/n1.ign", content: "{}" },
        { path: "secret.key", content: "k", mode: 0o600 },
      ],
    });
    const result = await run("render", [{ slot: "os", plugin: good as AnyPlugin, options: {} }], {
      renderDir: out,
    }).promise;
    expect(result.exitCode).toBe(0);
    expect(readFileSync(join(out, "os/nodes/n1.ign"), "utf8")).toBe("{}");
    const { statSync } = await import("node:fs");
    expect(statSync(join(out, "os/secret.key")).mode & 0o777).toBe(0o600);

    const evil = definePlugin({
      ...good,
      id: "k8s/evil",
      render: async () => [{ path: "../../escape", content: "x" }],
    });
    const bad = await run("render", [{ slot: "k8s", plugin: evil as AnyPlugin, options: {} }], {
      renderDir: out,
    }).promise;
    expect(bad.exitCode).toBe(1);
    expect(existsSync(join(stateDir, "escape"))).toBe(false);
  });
});

describe("the state dir's format", () => {
  test("a newer one is refused by the engine itself before the lock, the journal or any stage: down destroys nothing", async () => {
    const log: string[] = [];
    const world = { a: true };
    writeFileSync(join(stateDir, "format.json"), '{"format":99,"version":"9.0.0","commit":"feedface"}\n', {
      mode: 0o600,
    });
    const { promise } = run("down", [fakePlugin("a", log, world)], {
      assumeYes: true,
      kubehyve: { version: "0.1.0", commit: "c0ffee" },
    });
    await expect(promise).rejects.toThrow(
      `state dir ${stateDir} was last changed by kubehyve 9.0.0 (commit feedface), in state format 99; this is kubehyve 0.1.0 (commit c0ffee)`,
    );
    expect(log).toEqual([]);
    expect(world.a).toBe(true);
    expect(existsSync(join(stateDir, "journal.ndjson"))).toBe(false);
    expect(existsSync(join(stateDir, "lock"))).toBe(false);
  });

  test("a real up records the kubehyve that ran it; a dry run, a plan and doctor record nothing", async () => {
    const world = { a: false };
    const stages = [fakePlugin("a", [], world)];
    const kubehyve = { version: "0.1.0", commit: "c0ffee" };
    await run("up", stages, { dryRun: true, kubehyve }).promise;
    await run("plan", stages, { kubehyve }).promise;
    await run("doctor", stages, { kubehyve }).promise;
    expect(existsSync(join(stateDir, "format.json"))).toBe(false);
    await run("up", stages, { kubehyve }).promise;
    expect(JSON.parse(readFileSync(join(stateDir, "format.json"), "utf8"))).toEqual({
      format: 1,
      ...kubehyve,
    });
  });
});
