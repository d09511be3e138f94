/**
 * What the command line prints must arrive: `--json` events past a pipe's buffer were cut off (the
 * process exited before the pipe drained). The command line from source with a drop-in plugin, a
 * pipe read slowly.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { dropInLab, userEnv } from "../lab/cli.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

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
