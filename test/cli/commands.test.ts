/**
 * The command line as a user runs it: NO_COLOR, no terminal, a fresh directory, and a drop-in plugin
 * whose world is one file on this machine. Exact lines, exit codes, and what is (not) left behind.
 * Most run in process (test/lab/cli.ts runInProcess); Ctrl-C needs a child process of its own.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { mergeTarget } from "../../src/cli/kubeconfig.ts";
import { dropInLab, runInProcess, userEnv } from "../lab/cli.ts";
import { adminConf } from "../lab/kube/kubeconfig.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

/**
 * A drop-in plugin: keeps `file` saying "on". Its apply can fail, or run a command that writes its
 * pid to `pidFile` and sleeps (declared safe to cancel, or ignoring SIGTERM altogether).
 */
const PLUGIN = `import { definePlugin, readTargetFile, v, writeTargetFile } from "kubehyve";
export default definePlugin({
  id: "marker/file",
  title: "marker file",
  apiVersion: 1,
  options: v.object({
    file: v.string(),
    pidFile: v.optional(v.string()),
    mode: v.optional(v.picklist(["ok", "fail", "sleep", "hang", "stubborn", "exit"]), "ok"),
  }),
  async check(ctx) {
    const current = await readTargetFile(ctx.host, ctx.options.file);
    return { changes: current === "on" ? [] : [{ summary: "switch " + ctx.options.file + " on" }], diagnostics: [] };
  },
  async apply(ctx) {
    const { mode, pidFile, file } = ctx.options;
    if (mode === "fail") throw new Error("the disk caught fire");
    if (mode === "exit") process.exit(0);
    if (mode === "sleep")
      await ctx.host.run(["sh", "-c", 'echo $$ > "$1"; exec sleep 60', "sh", pidFile], { cancellable: true });
    if (mode === "stubborn")
      // A command that ignores SIGTERM (an ignored signal stays ignored across exec).
      await ctx.host.run(["sh", "-c", 'trap "" TERM; echo $$ > "$1"; exec sleep 60', "sh", pidFile]);
    if (mode === "hang") {
      await ctx.wet("note the pid", () => writeTargetFile(ctx.host, pidFile, String(process.pid)));
      await new Promise(() => {});
    }
    await ctx.wet("switch " + file + " on", () => writeTargetFile(ctx.host, file, "on"));
  },
  async destroy(ctx) {
    await ctx.wet("remove " + ctx.options.file, async () => {
      await ctx.host.run(["rm", "-f", ctx.options.file]);
    });
  },
});
`;

function lab(mode = "ok") {
  const paths = (dir: string) => ({ file: join(dir, "marker.txt"), pidFile: join(dir, "pid") });
  const { dir, plugins, state } = dropInLab({
    prefix: "kubehyve-cli-",
    name: "marklab",
    plugins: { "marker.ts": PLUGIN },
    stages: (dir) => {
      const { file, pidFile } = paths(dir);
      return `  marker:\n    plugin: file\n    file: ${file}\n    pidFile: ${pidFile}\n    mode: ${mode}\n`;
    },
  });
  const { file, pidFile } = paths(dir);
  const argv = (args: string[]) => [
    process.execPath,
    MAIN,
    ...args,
    "--plugin-dir",
    plugins,
    "--state-dir",
    state,
  ];
  // In process, as the binary would run it; the Ctrl-C tests below need a process of their own.
  const run = (args: string[], env: Record<string, string> = {}) =>
    runInProcess([...args, "--plugin-dir", plugins, "--state-dir", state], { cwd: dir, env });
  const spawn = (args: string[]) =>
    Bun.spawn(argv(args), { cwd: dir, env: userEnv(dir), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const journal = () =>
    readFileSync(join(state, "journal.ndjson"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
  return { dir, file, pidFile, state, run, spawn, journal };
}

async function waitForFile(path: string): Promise<string> {
  for (let i = 0; i < 1000; i++) {
    if (existsSync(path) && readFileSync(path, "utf8").trim()) return readFileSync(path, "utf8").trim();
    await Bun.sleep(10);
  }
  throw new Error(`${path} never appeared`);
}

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

describe("a failing run on a terminal-less NO_COLOR output", () => {
  test("names the stage, the phase and the private log file, one line each", async () => {
    const { run, state } = lab("fail");
    const r = await run(["up", "-c", "kubehyve.yaml"]);
    expect(r.code).toBe(1);
    const logLine = r.stdout.split("\n").find((l) => l.startsWith("ℹ full log: "));
    expect(logLine).toBeDefined();
    const logFile = logLine!.slice("ℹ full log: ".length);
    expect(logFile).toStartWith(`${join(state, "logs")}/`);
    expect(r.stdout).toContain("✔ marker check changes (");
    expect(r.stderr).toMatch(
      /^✖ marker apply failed after \d+ ms: the disk caught fire\n✖ marker apply failed: the disk caught fire\n$/,
    );
    // The log holds the same failure, privately.
    expect(statSync(logFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(state, "logs")).mode & 0o777).toBe(0o700);
    const events = readFileSync(logFile, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events).toContainEqual(
      expect.objectContaining({ type: "phase.end", stage: "marker", phase: "apply", status: "failed" }),
    );
  });
});

describe("a plugin that calls process.exit", () => {
  test("fails its phase, naming where it was called, instead of ending the run with success", async () => {
    const { spawn, file, journal, dir } = lab("exit");
    const proc = spawn(["up", "--yes"]);
    const [code, stdout, stderr] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    expect(code).toBe(1);
    const why = `process.exit(0) was called by a plugin, at apply (${join(dir, "plugins", "marker.ts")}:18:34): only kubehyve ends the run`;
    expect(stderr).toBe(
      `✖ marker apply failed after ${/after (\d+ ms)/.exec(stderr)?.[1]}: ${why}\n✖ marker apply failed: ${why}\n`,
    );
    expect(stdout).toContain("✔ marker check changes (");
    expect(existsSync(file)).toBe(false);
    // The run ended as a run does: its journal has the failed phase.
    expect(journal()).toContainEqual(
      expect.objectContaining({ stage: "marker", phase: "apply", status: "failed" }),
    );
  });
});

describe("down without a terminal", () => {
  test("cannot be confirmed: exits 1 and changes nothing; --yes tears down", async () => {
    const { run, file, journal } = lab();
    expect((await run(["up"])).code).toBe(0);
    expect(readFileSync(file, "utf8")).toBe("on");

    const no = await run(["down"]);
    expect(no.code).toBe(1);
    expect(no.stderr).toContain("✖ not confirmed: nothing was changed (run again with --yes to tear down)\n");
    expect(readFileSync(file, "utf8")).toBe("on");
    expect(journal().filter((e) => e.command === "down" && e.phase)).toEqual([]);

    const yes = await run(["down", "--yes"]);
    expect(yes.code).toBe(0);
    expect(existsSync(file)).toBe(false);
  });
});

describe("Ctrl-C", () => {
  test("kills a running command declared safe to cancel: the run ends 130 and frees the lock", async () => {
    const { spawn, pidFile, state, file, journal } = lab("sleep");
    const proc = spawn(["up"]);
    const pid = Number(await waitForFile(pidFile));
    proc.kill("SIGINT");
    const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "still running")]);
    expect(code).toBe(130);
    expect(gone(pid)).toBe(true);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(join(state, "lock"))).toBe(false);
    const stderr = await new Response(proc.stderr).text();
    expect(stderr).toContain("interrupted: stopping after the current step (Ctrl-C again to leave now)");
    expect(journal().at(-1)).toMatchObject({ command: "up", status: "cancelled" });
  });

  test("a hangup (the terminal or the ssh session gone) stops the run as Ctrl-C does: 130, lock freed, journaled", async () => {
    const { spawn, pidFile, state, file, journal } = lab("sleep");
    const proc = spawn(["up"]);
    const pid = Number(await waitForFile(pidFile));
    proc.kill("SIGHUP");
    const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(130);
    expect(gone(pid)).toBe(true);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(join(state, "lock"))).toBe(false);
    expect(journal().at(-1)).toMatchObject({ command: "up", status: "cancelled" });
  });

  test("a second SIGTERM leaves at once when a step does not stop", async () => {
    const { spawn, pidFile } = lab("hang");
    const proc = spawn(["up"]);
    await waitForFile(pidFile);
    proc.kill("SIGTERM");
    await Bun.sleep(200);
    expect(proc.exitCode).toBeNull();
    proc.kill("SIGTERM");
    const code = await Promise.race([proc.exited, Bun.sleep(5000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(143);
  });

  test("leaving at once also ends a running command that ignores SIGTERM", async () => {
    const { spawn, pidFile } = lab("stubborn");
    const proc = spawn(["up"]);
    const pid = Number(await waitForFile(pidFile));
    proc.kill("SIGINT");
    await Bun.sleep(200);
    // The first Ctrl-C lets the running command finish (it is not declared safe to cancel).
    expect(proc.exitCode).toBeNull();
    expect(gone(pid)).toBe(false);
    proc.kill("SIGINT");
    const code = await Promise.race([proc.exited, Bun.sleep(5000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(130);
    // Killed with kubehyve, not left behind to run out its minute.
    await Bun.sleep(100);
    expect(gone(pid)).toBe(true);
  });
});

describe("kubehyve kubeconfig", () => {
  const adminKubeconfig = adminConf("https://10.9.0.10:6443");

  test("before Kubernetes is installed is a clear error with the way forward", async () => {
    const { run, state } = lab();
    const r = await run(["kubeconfig"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `✖ no admin kubeconfig for marklab at ${join(state, "kubeconfig")} yet\n  → kubehyve up writes it once Kubernetes is installed\n`,
    );
    expect(r.stdout).toBe("");
  });

  test("prints the path, as a line or as one JSON event", async () => {
    const { run, state } = lab();
    mkdirSync(state, { recursive: true, mode: 0o700 });
    writeFileSync(join(state, "kubeconfig"), adminKubeconfig, { mode: 0o600 });
    const r = await run(["kubeconfig"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${join(state, "kubeconfig")}\n`);
    const json = await run(["kubeconfig", "--json"]);
    expect(JSON.parse(json.stdout)).toEqual({
      v: 1,
      ts: expect.any(String),
      type: "kubeconfig",
      path: join(state, "kubeconfig"),
    });
  });

  test("--merge adds the cluster to ~/.kube/config, 0600, under the cluster's name", async () => {
    const { run, state, dir } = lab();
    mkdirSync(state, { recursive: true, mode: 0o700 });
    writeFileSync(join(state, "kubeconfig"), adminKubeconfig, { mode: 0o600 });
    const r = await run(["kubeconfig", "--merge"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("merged marklab into ");
    const target = join(dir, ".kube", "config");
    expect(statSync(target).mode & 0o777).toBe(0o600);
    const merged = parse(readFileSync(target, "utf8"));
    expect(merged["current-context"]).toBe("marklab");
    expect(merged.contexts).toEqual([
      { name: "marklab", context: { cluster: "marklab", user: "marklab-admin" } },
    ]);
    expect(merged.clusters[0].cluster.server).toBe("https://10.9.0.10:6443");
  });

  test("--merge writes where kubectl would: the first $KUBECONFIG file that exists, else the last", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-kcfg-"));
    const [a, b, c] = [join(dir, "a"), join(dir, "b"), join(dir, "c")];
    expect(mergeTarget({ KUBECONFIG: `${a}:${b}:${c}` }, dir)).toBe(c);
    writeFileSync(b, "");
    expect(mergeTarget({ KUBECONFIG: `${a}:${b}:${c}` }, dir)).toBe(b);
    expect(mergeTarget({ KUBECONFIG: a }, dir)).toBe(a);
    expect(mergeTarget({ KUBECONFIG: "" }, dir)).toBe(join(dir, ".kube", "config"));
    expect(mergeTarget({}, dir)).toBe(join(dir, ".kube", "config"));
    // ~ is $HOME when it is set, as client-go reads it: never the account's own home behind its back.
    expect(mergeTarget({ HOME: dir })).toBe(join(dir, ".kube", "config"));
  });
});

describe("bad input is a message, not a stack trace", () => {
  test("global flags before the command are flags, not a command name", async () => {
    const { run } = lab();
    const plan = await run(["-c", "kubehyve.yaml", "plan"]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain("plan marklab: marker");
    const validate = await run(["config", "-c", "kubehyve.yaml", "validate"]);
    expect(validate.code).toBe(0);
    expect(validate.stdout).toContain("kubehyve.yaml is valid: cluster marklab");
  });

  test("a flag that needs a value and has none is refused, not taken as empty", async () => {
    const { dir } = lab();
    // Last on the line: anything after it would be taken as its value.
    const r = await runInProcess(["plan", "--example", "--only"], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("✖ --only needs a value\n  → see kubehyve plan --help\n");
  });

  test("a state dir that cannot be created names the path and what to do", async () => {
    const { run, dir } = lab();
    writeFileSync(join(dir, "in-the-way"), "");
    const bare = readFileSync(join(dir, "kubehyve.yaml"), "utf8").split("stages:")[0]!;
    writeFileSync(join(dir, "bare.yaml"), bare);
    const plan = (stateDir: string) =>
      runInProcess(["plan", "-c", "bare.yaml", "--state-dir", stateDir], { cwd: dir });
    const below = await plan(join(dir, "in-the-way", "state"));
    expect(below.code).toBe(2);
    expect(below.stderr).toBe(
      `✖ state dir ${join(dir, "in-the-way", "state")} cannot be made: ${join(dir, "in-the-way")} is a file\n  → a file stands where a directory is expected on the way to ${join(dir, "in-the-way", "state")}\n`,
    );
    const itself = await plan(join(dir, "in-the-way"));
    expect(itself.code).toBe(2);
    expect(itself.stderr).toBe(
      `✖ state dir ${join(dir, "in-the-way")} is a file, not a directory\n  → move ${join(dir, "in-the-way")} away\n`,
    );
    expect((await run(["doctor", "--timeout", "soon"])).stderr).toBe(
      '✖ --timeout "soon" is not a number of seconds (or a duration such as 90s, 10m, 2h)\n  → kubehyve doctor --timeout 300\n',
    );
  });
});
