/**
 * What the command line prints must arrive, and must say what matters: `--json` events past a
 * pipe's buffer were cut off when the run failed (the process exited before the pipe drained), and
 * `down --dry-run` listed what it would destroy only with --verbose. The command line from source
 * with drop-in plugins, a pipe read slowly by the test.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dropInLab, runCli, runInProcess, userEnv } from "../lab/cli.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

// Each test starts the command line a few times: room for a 2-core machine under load.
setDefaultTimeout(30_000);

/** Says a great deal in check, then fails it (or not). */
const NOISY = `import { definePlugin, diag } from "kubehyve";
export default definePlugin({
  id: "noisy/talk",
  title: "talks a lot",
  apiVersion: 1,
  async check(ctx) {
    for (let i = 0; i < 2000; i++) ctx.log.info("line " + i + " " + "x".repeat(200));
    return { changes: [], diagnostics: ctx.options.fail ? [diag.error("noisy.broke", "it broke")] : [] };
  },
});
`;

/** Its destroy removes a file the cluster owns. */
const MARKER = `import { definePlugin } from "kubehyve";
import { rmSync } from "node:fs";
export default definePlugin({
  id: "marker/file",
  title: "a file the cluster owns",
  apiVersion: 1,
  async check() { return { changes: [], diagnostics: [] }; },
  async destroy(ctx) {
    await ctx.wet("remove " + ctx.options.file, async () => rmSync(ctx.options.file), { target: "local" });
  },
});
`;

describe("--json on a pipe", () => {
  for (const fail of [true, false]) {
    test(`delivers every event whole when the run ${fail ? "fails" : "succeeds"} and the reader is slow`, async () => {
      const { dir, plugins, state } = dropInLab({
        prefix: "kubehyve-json-",
        name: "noisy",
        plugins: { "noisy.ts": NOISY },
        stages: () => `  noisy:\n    plugin: talk\n    fail: ${fail}\n`,
      });
      // A pipe of the kernel's (64 KiB) that nobody reads for a second: kubehyve has long
      // finished writing by then, and must not leave before what it wrote has gone through.
      const proc = Bun.spawn(
        [
          "bash",
          "-c",
          'set -o pipefail; "$@" | { sleep 1; cat; }',
          "bash",
          process.execPath,
          MAIN,
          "plan",
          "--json",
          "--plugin-dir",
          plugins,
          "--state-dir",
          state,
        ],
        { cwd: dir, env: userEnv(dir), stdin: "ignore", stdout: "pipe", stderr: "pipe" },
      );
      const [code, text] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
      expect(code).toBe(fail ? 1 : 0);
      expect(text.length).toBeGreaterThan(256 * 1024);
      expect(text.endsWith("\n")).toBe(true);
      const events = text
        .trimEnd()
        .split("\n")
        .map((line) => JSON.parse(line));
      expect(events.filter((e) => e.type === "log" && e.stage === "noisy")).toHaveLength(2000);
      expect(events.at(-1)).toMatchObject({ type: "run.end", status: fail ? "failed" : "ok" });
    }, 30_000);
  }
});

describe("down --dry-run", () => {
  test("lists what it would destroy without --verbose, and destroys nothing", () => {
    const { dir, plugins, state } = dropInLab({
      prefix: "kubehyve-down-",
      name: "downlab",
      plugins: { "marker.ts": MARKER },
      stages: (dir) => `  marker:\n    plugin: file\n    file: ${join(dir, "marker.txt")}\n`,
    });
    const marker = join(dir, "marker.txt");
    writeFileSync(marker, "the cluster's");
    const r = runCli(
      [process.execPath, MAIN, "down", "--dry-run", "--plugin-dir", plugins, "--state-dir", state],
      { cwd: dir },
    );
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")).toContain(`  would remove ${marker} [local]`);
    expect(r.stdout).toContain("down: dry run, nothing changed");
    expect(existsSync(marker)).toBe(true);
  });
});

/**
 * Reports what a host command printed: a warning quoting its stdout, and with `fail` the command's
 * failure itself. The host here prints a terminal title, a screen clear and a bell, as a hostile
 * or broken program could.
 */
const ECHO = `import { definePlugin, diag, runOk } from "kubehyve";
const SCRIPT = "printf 'uid \\\\033]0;owned\\\\007\\\\033[2J\\\\tend'; printf 'no \\\\033[31mroot\\\\n\\\\033[0m' >&2";
export default definePlugin({
  id: "echo/host",
  title: "quotes the host",
  apiVersion: 1,
  async check(ctx) {
    const said = await ctx.host.run(["sh", "-c", SCRIPT]);
    if (ctx.options.fail) await runOk(ctx.host, ["sh", "-c", SCRIPT + "; exit 3"]);
    return {
      changes: [],
      diagnostics: [diag.warn("echo.said", "the host said " + said.stdout, { detail: said.stderr, hint: said.stdout })],
    };
  },
});
`;

/** A control character other than the line break and the tab, as a terminal would act on it. */
const rawControl = (text: string) =>
  [...text].some(
    (c) => (c < " " && c !== "\n" && c !== "\t") || c === "\x7f" || (c >= "\x80" && c <= "\x9f"),
  );

describe("what a host prints", () => {
  test("reaches the terminal with its control characters escaped, never raw, in a run, its failure and doctor's report", async () => {
    for (const [command, fail] of [
      ["plan", true],
      ["plan", false],
      ["doctor", false],
      ["doctor", true],
    ] as const) {
      const { dir, plugins, state } = dropInLab({
        prefix: "kubehyve-escape-",
        name: "echolab",
        plugins: { "echo.ts": ECHO },
        stages: () => `  echo:\n    plugin: host\n    fail: ${fail}\n`,
      });
      const r = await runInProcess([command, "--verbose", "--plugin-dir", plugins, "--state-dir", state], {
        cwd: dir,
      });
      expect([command, fail, r.code]).toEqual([command, fail, Number(fail)]);
      // NO_COLOR: kubehyve's own lines carry no escape sequence either.
      expect([command, fail, rawControl(r.out)]).toEqual([command, fail, false]);
      // The failure quotes the command's stderr, the warning its stdout: each shown escaped.
      expect(r.out).toContain(fail ? "no \\u001b[31mroot" : "uid \\u001b]0;owned\\u0007\\u001b[2J\tend");
    }
  });
});

/** Quotes 200 000 characters a host printed, in a warning and in its failure. */
const LOUD = `import { definePlugin, diag, KubehyveError } from "kubehyve";
const SAID = "the host said " + "x".repeat(200_000);
export default definePlugin({
  id: "loud/host",
  title: "quotes a lot",
  apiVersion: 1,
  async check(ctx) {
    if (ctx.options.fail) throw new KubehyveError(SAID);
    return { changes: [], diagnostics: [diag.warn("loud.said", SAID, { detail: SAID })] };
  },
});
`;

describe("a very long text a host printed", () => {
  test("is cut on the terminal, saying how much more the run's log holds, and kept whole in the log", async () => {
    for (const [command, fail] of [
      ["plan", true],
      ["doctor", false],
    ] as const) {
      const { dir, plugins, state } = dropInLab({
        prefix: "kubehyve-loud-",
        name: "loudlab",
        plugins: { "loud.ts": LOUD },
        stages: () => `  loud:\n    plugin: host\n    fail: ${fail}\n`,
      });
      const r = await runInProcess([command, "--plugin-dir", plugins, "--state-dir", state], { cwd: dir });
      expect([command, r.code]).toEqual([command, 1 - Number(command === "doctor")]);
      // Each text at most a few thousand characters, however many places show it.
      expect(r.out.length).toBeLessThan(40_000);
      expect(r.out).toContain("x… (190014 characters more: the whole text is in the run's log)");
      const logs = join(state, "logs");
      const log = readdirSync(logs)
        .map((f) => readFileSync(join(logs, f), "utf8"))
        .join("");
      expect(log).toContain("x".repeat(200_000));
    }
  });
});
