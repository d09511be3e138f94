/**
 * doctor's engine: a machine that cannot be reached is one error naming it, and every check that
 * needed it a skip (through the plugin API's checkEach, and for a whole phase through the engine);
 * one check that hangs is one error and only its commands are killed; --ignore turns an error into a
 * warning marked ignored. Real OpenSSH: a loopback sshd answers for the node that is up, and a
 * closed loopback port stands for the one that is down.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHECK_TIMEOUT_MS, checkEach } from "../../src/core/checks.ts";
import type { Stage } from "../../src/core/config.ts";
import { type AnyPlugin, definePlugin } from "../../src/core/contract.ts";
import { type Diagnostic, diag } from "../../src/core/diagnostics.ts";
import { type EngineRequest, runEngine } from "../../src/core/engine.ts";
import { memoryReporter } from "../../src/core/reporter.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import { sleep } from "../../src/lib/poll.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import { SshTarget } from "../../src/targets/ssh.ts";
import type { Target } from "../../src/targets/target.ts";
import { labCluster, labNode } from "../lab/cluster.ts";
import { startKubeApiServer } from "../lab/kube/server.ts";
import { have } from "../lab/prereq.ts";
import { type Sshd, startSshd } from "../lab/sshd.ts";

const cluster = labCluster({
  name: "t",
  nodes: [labNode("n1", "control-plane", "192.168.1.21"), labNode("n2", "worker", "192.168.1.22")],
});

/**
 * A stage whose check runs `uname -s` on every node, one check per node, through checkEach; it
 * starts after `delayMs`, so that the stages' first contacts with a node do not overlap.
 */
function perNodeStage(slot: string, delayMs = 0): Stage {
  const plugin = definePlugin({
    id: `${slot}/per-node`,
    title: slot,
    apiVersion: 1,
    async check(ctx) {
      await Bun.sleep(delayMs);
      const diagnostics = await checkEach(
        ctx,
        ctx.cluster.nodes,
        async (node): Promise<Diagnostic[]> => {
          const r = await ctx.node(node.name).run(["uname", "-s"]);
          return [diag.ok(`${slot}.uname`, `${node.name} runs ${r.stdout.trim()}`, { target: node.name })];
        },
        { id: `${slot}.node`, title: (n) => `the ${slot} checks of ${n.name}`, target: (n) => n.name },
      );
      return { changes: [], diagnostics };
    },
  });
  return { slot, plugin: plugin as AnyPlugin, options: {} };
}

/** A closed port on loopback: connecting is refused at once, which ssh classifies as unreachable. */
async function closedPort(): Promise<number> {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}

function engine(stages: Stage[], extra: Partial<EngineRequest>, stateDir: string) {
  const reporter = memoryReporter();
  return {
    reporter,
    promise: runEngine({ command: "doctor", cluster, stages, stateDir, reporter, ...extra }),
  };
}

describe.skipIf(!have("sshd", "openssh-server"))("doctor and a machine it cannot reach", () => {
  let sshd: Sshd;
  let dir: string;
  let down: number;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    chmodSync(dir, 0o755);
    sshd = await startSshd();
    down = await closedPort();
  });
  afterAll(async () => {
    await sshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Node targets over real ssh: n1 to the sshd, n2 to the closed port; counts n2's commands. */
  function nodes(stateDir: string) {
    const made: Target[] = [];
    const calls = { n2: 0 };
    const factory = (node: { name: string }): Target => {
      const ssh = new SshTarget({
        user: sshd.user,
        host: "127.0.0.1",
        port: node.name === "n2" ? down : sshd.port,
        identityFile: sshd.identityFile,
        stateDir,
        name: `core@${node.name}`,
      });
      made.push(ssh);
      if (node.name !== "n2") return ssh;
      return {
        name: ssh.name,
        run: (argv, opts) => {
          calls.n2++;
          return ssh.run(argv, opts);
        },
        close: () => ssh.close(),
      };
    };
    return { factory, calls, close: () => Promise.all(made.map((t) => t.close())) };
  }

  test("is one error naming it, and every check that needed it is a skip naming that error", async () => {
    const stateDir = mkdtempSync(join(dir, "state-"));
    const t = nodes(stateDir);
    try {
      const { promise } = engine(
        [perNodeStage("os"), perNodeStage("k8s", 300)],
        { targets: { host: () => new LocalTarget(), node: t.factory } },
        stateDir,
      );
      const result = await promise;
      expect(result.exitCode).toBe(1);
      // One finding of the run names n2; none of the stages reports it as an error of its own.
      expect(result.findings.map((d) => [d.code, d.severity, d.target])).toEqual([
        ["target.unreachable", "error", "n2"],
      ]);
      expect(result.findings[0]!.detail).toContain("Connection refused");
      expect(result.findings[0]!.hint).toContain(`nc -z 127.0.0.1 ${down}`);
      for (const o of result.outcomes) {
        expect(o.diagnostics.map((d) => [d.code, d.severity, d.target])).toEqual([
          [`${o.slot}.uname`, "ok", "n1"],
          [`${o.slot}.node`, "skip", "n2"],
        ]);
        expect(o.diagnostics[1]!.summary).toBe(`the ${o.slot} checks of n2: skipped, n2 is unreachable`);
        expect(o.diagnostics[1]!.hint).toContain("target.unreachable");
      }
      // Two stages needed n2; the one that came later was told at once, without a command of its own.
      expect(t.calls.n2).toBe(1);
    } finally {
      await t.close();
    }
  });

  test("machines it cannot reach are reported in the cluster file's order, not in the order they were met", async () => {
    const stateDir = mkdtempSync(join(dir, "state-"));
    const made: Target[] = [];
    const factory = (node: { name: string }): Target => {
      const ssh = new SshTarget({
        user: sshd.user,
        host: "127.0.0.1",
        port: down,
        identityFile: sshd.identityFile,
        stateDir,
        name: `core@${node.name}`,
      });
      made.push(ssh);
      return ssh;
    };
    const backwards = definePlugin({
      id: "os/backwards",
      title: "os",
      apiVersion: 1,
      async check(ctx) {
        // n2 first, then n1: each is met down, the run reports both.
        for (const node of [...ctx.cluster.nodes].reverse())
          await ctx
            .node(node.name)
            .run(["true"])
            .catch(() => undefined);
        return { changes: [], diagnostics: [] };
      },
    });
    try {
      const { promise } = engine(
        [{ slot: "os", plugin: backwards as AnyPlugin, options: {} }],
        { targets: { host: () => new LocalTarget(), node: factory } },
        stateDir,
      );
      const result = await promise;
      expect(result.findings.map((d) => [d.code, d.target])).toEqual([
        ["target.unreachable", "n1"],
        ["target.unreachable", "n2"],
      ]);
    } finally {
      await Promise.all(made.map((t) => t.close()));
    }
  });

  test("a phase that needs the unreachable host is a skip, and the stage's verify still runs", async () => {
    const stateDir = mkdtempSync(join(dir, "state-"));
    const hostAt = new SshTarget({
      user: sshd.user,
      host: "127.0.0.1",
      port: down,
      identityFile: sshd.identityFile,
      stateDir,
      name: "root@hv1",
    });
    const verified: string[] = [];
    const plugin = definePlugin({
      id: "hypervisor/direct",
      title: "direct",
      apiVersion: 1,
      // No checkEach: the phase throws, and the engine turns that into one skip.
      async check(ctx) {
        await ctx.host.run(["vm", "list"]);
        return { changes: [], diagnostics: [] };
      },
      async verify(ctx) {
        verified.push("verify");
        await ctx.host.run(["vm", "list"]);
        return [];
      },
    });
    const { promise } = engine(
      [{ slot: "hypervisor", plugin: plugin as AnyPlugin, options: {} }],
      { targets: { host: () => hostAt, node: () => new LocalTarget() } },
      stateDir,
    );
    const result = await promise;
    await hostAt.close();
    expect(verified).toEqual(["verify"]);
    expect(result.findings.map((d) => [d.code, d.target])).toEqual([["target.unreachable", "root@hv1"]]);
    expect(result.outcomes[0]!.diagnostics.map((d) => [d.code, d.severity, d.summary])).toEqual([
      ["engine.phase-skipped", "skip", "hypervisor check: skipped, root@hv1 is unreachable"],
      ["engine.phase-skipped", "skip", "hypervisor verify: skipped, root@hv1 is unreachable"],
    ]);
  });
});

describe("doctor's checks, each under its own limit", () => {
  test("one that hangs is an error naming it; its command is killed and the others are reported", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    try {
      const pidFile = join(dir, "sleep.pid");
      const plugin = definePlugin({
        id: "os/slow",
        title: "slow",
        apiVersion: 1,
        async check(ctx) {
          const diagnostics = await checkEach(
            ctx,
            ctx.cluster.nodes,
            async (node) => {
              if (node.name === "n2")
                await ctx.node(node.name).run(["sh", "-c", 'echo $$ > "$1"; exec sleep 30', "sh", pidFile]);
              return [diag.ok("os.fine", `${node.name} fine`, { target: node.name })];
            },
            { id: "os.node", title: (n) => `the checks of ${n.name}`, target: (n) => n.name, timeoutMs: 500 },
          );
          return { changes: [], diagnostics };
        },
      });
      const started = Date.now();
      const { promise } = engine(
        [{ slot: "os", plugin: plugin as AnyPlugin, options: {} }],
        { targets: { host: () => new LocalTarget(), node: () => new LocalTarget() } },
        dir,
      );
      const result = await promise;
      expect(Date.now() - started).toBeLessThan(5000);
      expect(result.exitCode).toBe(1);
      expect(result.outcomes[0]!.diagnostics.map((d) => [d.code, d.severity, d.target, d.summary])).toEqual([
        ["os.fine", "ok", "n1", "n1 fine"],
        ["os.node", "error", "n2", "the checks of n2: did not finish within 500 ms"],
      ]);
      const pid = Number(readFileSync(pidFile, "utf8"));
      let gone = false;
      for (let i = 0; i < 100 && !gone; i++) {
        try {
          process.kill(pid, 0);
          await Bun.sleep(20);
        } catch {
          gone = true;
        }
      }
      expect(gone).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("doctor --ignore", () => {
  test("shows an ignored check's error as a warning marked ignored, and the exit code follows", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    try {
      const plugin = definePlugin({
        id: "os/broken",
        title: "broken",
        apiVersion: 1,
        check: async () => ({
          changes: [],
          diagnostics: [
            diag.error("os.broken", "os is broken", { hint: "fix it" }),
            diag.warn("os.odd", "os is odd", { hint: "look at it" }),
          ],
        }),
      });
      const stages = [{ slot: "os", plugin: plugin as AnyPlugin, options: {} }];
      const targets = { host: () => new LocalTarget(), node: () => new LocalTarget() };
      const plain = await engine(stages, { targets }, dir).promise;
      expect(plain.exitCode).toBe(1);

      const { promise, reporter } = engine(stages, { targets, ignore: ["os.broken", "os.odd"] }, dir);
      const ignored = await promise;
      expect(ignored.exitCode).toBe(0);
      expect(ignored.outcomes[0]!.diagnostics).toEqual([
        { code: "os.broken", severity: "warn", summary: "os is broken", hint: "fix it", ignored: true },
        // Only an error moves: a warning stays what it was.
        { code: "os.odd", severity: "warn", summary: "os is odd", hint: "look at it" },
      ]);
      expect(reporter.events).toContainEqual(
        expect.objectContaining({ type: "diagnostic", code: "os.broken", severity: "warn", ignored: true }),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("doctor and a Kubernetes API that does not answer", () => {
  test("is one error of the run, and each stage that needed it skips instead of failing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    const server = await startKubeApiServer({ namespaces: ["default"] });
    try {
      // The test server's kubeconfig, pointed at a loopback port where nothing listens.
      const port = await closedPort();
      const text = readFileSync(server.kubeconfigPath, "utf8").replace(
        `127.0.0.1:${server.port}`,
        `127.0.0.1:${port}`,
      );
      const kubeconfig = join(dir, "kubeconfig-closed");
      writeFileSync(kubeconfig, text, { mode: 0o600 });
      let requests = 0;
      const kubeStage = (slot: string, delayMs: number): Stage => ({
        slot,
        options: {},
        plugin: definePlugin({
          id: `${slot}/kube`,
          title: slot,
          apiVersion: 1,
          async check(ctx) {
            await Bun.sleep(delayMs);
            const kube = await ctx.kube();
            await kube.list("v1", "Namespace");
            return { changes: [], diagnostics: [] };
          },
        }) as AnyPlugin,
      });
      const { promise } = engine(
        [kubeStage("ingress", 0), kubeStage("storage", 300)],
        {
          targets: { host: () => new LocalTarget(), node: () => new LocalTarget() },
          // Counts the requests that reach the client itself, under the run's guard.
          kube: async () => {
            const client = await createKubeClient(kubeconfig);
            return {
              ...client,
              server: client.server,
              list: (...args: Parameters<typeof client.list>) => {
                requests++;
                return client.list(...args);
              },
            };
          },
        },
        dir,
      );
      const result = await promise;
      expect(result.exitCode).toBe(1);
      expect(result.findings.map((d) => [d.code, d.severity, d.target])).toEqual([
        ["api.unreachable", "error", `the Kubernetes API at 127.0.0.1:${port}`],
      ]);
      expect(result.findings[0]!.hint).toContain("crictl ps --name kube-apiserver");
      for (const o of result.outcomes)
        expect(o.diagnostics.map((d) => [d.code, d.severity])).toEqual([["engine.phase-skipped", "skip"]]);
      // The stage that came later was told at once: one request was tried in all.
      expect(requests).toBe(1);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    // The client retries a refused connection for some seconds before it gives up.
  }, 60_000);
});

describe("doctor's limits", () => {
  test("one node's checks get the 60 s the README gives them", () => {
    const readme = readFileSync(join(import.meta.dir, "../../README.md"), "utf8");
    const said = /one node's checks: (\d+) s\)/.exec(readme.replace(/\s+/g, " "));
    expect(Number(said?.[1]) * 1000).toBe(CHECK_TIMEOUT_MS);
  });
});

describe("doctor's stages", () => {
  test("run side by side, each one's lines printed in stage order", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    try {
      // os answers only once k8s has started: in turn, it would wait out its five seconds.
      let k8sStarted!: () => void;
      const started = new Promise<void>((resolve) => {
        k8sStarted = resolve;
      });
      const stage = (slot: string, check: () => Promise<Diagnostic>): Stage => ({
        slot,
        plugin: definePlugin({
          id: `${slot}/side`,
          title: slot,
          apiVersion: 1,
          check: async () => ({ changes: [], diagnostics: [await check()] }),
        }) as AnyPlugin,
        options: {},
      });
      const stages = [
        stage("os", async () => {
          const first = await Promise.race([
            started.then(() => "k8s"),
            Bun.sleep(5000).then(() => "nothing"),
          ]);
          return diag.ok("os.check", `os saw ${first} start`);
        }),
        stage("k8s", async () => {
          k8sStarted();
          return diag.ok("k8s.check", "k8s is fine");
        }),
      ];
      const targets = { host: () => new LocalTarget(), node: () => new LocalTarget() };
      const { promise, reporter } = engine(stages, { targets }, dir);
      const result = await promise;
      expect(result.outcomes.map((o) => o.diagnostics.map((d) => d.summary))).toEqual([
        ["os saw k8s start"],
        ["k8s is fine"],
      ]);
      const order = reporter.events.flatMap((e) => (e.type === "phase.start" ? [e.stage] : []));
      expect(order).toEqual(["os", "k8s"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a phase that passes --timeout is an error naming that limit, and the run goes on without it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    try {
      const slow = definePlugin({
        id: "os/slow",
        title: "slow",
        apiVersion: 1,
        check: async (ctx) => {
          // Ended by the stage's stop once the limit gives up on it.
          await sleep(20_000, ctx.signal).catch(() => undefined);
          return { changes: [], diagnostics: [diag.ok("os.check", "at last")] };
        },
      });
      const targets = { host: () => new LocalTarget(), node: () => new LocalTarget() };
      const started = Date.now();
      const result = await engine(
        [{ slot: "os", plugin: slow as AnyPlugin, options: {} }],
        { targets, phaseTimeoutMs: 300 },
        dir,
      ).promise;
      expect(result.exitCode).toBe(1);
      expect(JSON.stringify(result.outcomes[0]!.diagnostics)).toContain(
        "os check did not finish within 300 ms",
      );
      // Well before the check's own 20 s.
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("one whose context cannot be built is a finding of its own; the others are still looked at", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    try {
      const stage = (slot: string): Stage => ({
        slot,
        plugin: definePlugin({
          id: `${slot}/plain`,
          title: slot,
          apiVersion: 1,
          check: async () => ({ changes: [], diagnostics: [diag.ok(`${slot}.check`, `${slot} is fine`)] }),
        }) as AnyPlugin,
        options: {},
      });
      mkdirSync(join(dir, "state"), { recursive: true, mode: 0o700 });
      writeFileSync(join(dir, "state", "os.json"), '{"image": ', { mode: 0o600 });
      const targets = { host: () => new LocalTarget(), node: () => new LocalTarget() };
      const result = await engine([stage("os"), stage("k8s")], { targets }, dir).promise;
      expect(result.exitCode).toBe(1);
      const [os, k8s] = result.outcomes;
      expect(os!.diagnostics.map((d) => d.severity)).toEqual(["error"]);
      expect(JSON.stringify(os!.diagnostics)).toContain("is not valid JSON");
      expect(k8s!.diagnostics.map((d) => d.code)).toEqual(["k8s.check"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("doctor's check and verify of one stage", () => {
  test("run side by side, and their lines read as they would in turn", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    try {
      // check answers only once verify has been asked: in turn, it would wait out its limit.
      let verifyAsked!: () => void;
      const asked = new Promise<void>((resolve) => {
        verifyAsked = resolve;
      });
      const plugin = definePlugin({
        id: "os/both",
        title: "both",
        apiVersion: 1,
        check: async () => {
          const first = await Promise.race([
            asked.then(() => "verify"),
            Bun.sleep(5000).then(() => "nothing"),
          ]);
          return { changes: [], diagnostics: [diag.ok("os.check", `check saw ${first} asked first`)] };
        },
        verify: async () => {
          verifyAsked();
          return [diag.warn("os.verify", "verify answered", { hint: "look" })];
        },
      });
      const stages = [{ slot: "os", plugin: plugin as AnyPlugin, options: {} }];
      const targets = { host: () => new LocalTarget(), node: () => new LocalTarget() };
      const { promise, reporter } = engine(stages, { targets }, dir);
      const result = await promise;
      expect(result.outcomes[0]!.diagnostics.map((d) => [d.code, d.summary])).toEqual([
        ["os.check", "check saw verify asked first"],
        ["os.verify", "verify answered"],
      ]);
      const phases = reporter.events.flatMap((e) =>
        e.type === "phase.start" || e.type === "phase.end" ? [`${e.type} ${e.phase}`] : [],
      );
      expect(phases).toEqual([
        "phase.start check",
        "phase.end check",
        "phase.start verify",
        "phase.end verify",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a verify that fails is its phase's finding, after check's", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-doctor-"));
    try {
      const plugin = definePlugin({
        id: "os/failing",
        title: "failing",
        apiVersion: 1,
        check: async () => {
          await Bun.sleep(50);
          return { changes: [], diagnostics: [diag.ok("os.check", "check is fine")] };
        },
        verify: async () => {
          throw new Error("verify broke");
        },
      });
      const stages = [{ slot: "os", plugin: plugin as AnyPlugin, options: {} }];
      const targets = { host: () => new LocalTarget(), node: () => new LocalTarget() };
      const result = await engine(stages, { targets }, dir).promise;
      expect(result.exitCode).toBe(1);
      const found = result.outcomes[0]!.diagnostics;
      expect(found[0]).toMatchObject({ code: "os.check" });
      expect(found.slice(1).map((d) => d.severity)).toContain("error");
      expect(JSON.stringify(found.slice(1))).toContain("verify broke");
      expect(result.outcomes[0]!.failedPhase).toBe("verify");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
