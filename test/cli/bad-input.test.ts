/**
 * What a careless or hostile user types at the commands that touch no host: each gets a message
 * naming what and where, the documented exit code, and nothing half-done. In process, through
 * test/lab/cli.ts runInProcess, as the binary would run.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runInProcess } from "../lab/cli.ts";

/** A fresh directory with a plugin folder that `loadPlugins` trusts (0755, files 0644). */
function workdir() {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-bad-input-"));
  const plugins = join(dir, "plugins");
  mkdirSync(plugins, { mode: 0o755 });
  chmodSync(plugins, 0o755);
  const plugin = (name: string, text: string) => {
    writeFileSync(join(plugins, name), text);
    chmodSync(join(plugins, name), 0o644);
    return join(plugins, name);
  };
  return { dir, plugins, plugin, run: (args: string[]) => runInProcess(args, { cwd: dir }) };
}

describe("kubehyve plugins", () => {
  test("says why a file was not loaded, not only that it was not", async () => {
    const { plugins, plugin, run } = workdir();
    const file = plugin("broken.ts", 'throw new Error("the vendor forgot a file");\n');
    const r = await run(["plugins", "--plugin-dir", plugins]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      `  ✖ plugin file ${file} failed to load\n      the vendor forgot a file\n      → fix the file, or move it out of the plugin path\n`,
    );
  });
});
