/**
 * What the command line prints must arrive, and must say what matters: `--json` events past a
 * pipe's buffer were cut off when the run failed (the process exited before the pipe drained), and
 * `down --dry-run` listed what it would destroy only with --verbose. The command line from source
 * with drop-in plugins, a pipe read slowly by the test.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dropInLab, runCli, userEnv } from "../lab/cli.ts";

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
