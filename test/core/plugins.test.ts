/**
 * The plugin loader, in-process: drop-in files written into a fresh directory per test (the module
 * cache keys on the path), loaded next to a built-in.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseClusterText } from "../../src/core/config.ts";
import { type AnyPlugin, definePlugin } from "../../src/core/contract.ts";
import { diag } from "../../src/core/diagnostics.ts";
import { HOP_PLACES } from "../../src/core/expose.ts";
import { loadPlugins } from "../../src/core/plugins.ts";

const builtin = definePlugin({
  id: "greeter/hello",
  title: "built-in greeter",
  apiVersion: 1,
  async check() {
    return { changes: [], diagnostics: [] };
  },
}) as AnyPlugin;

const dropIn = (id: string) => `import { definePlugin } from "kubehyve";
export default definePlugin({
  id: ${JSON.stringify(id)},
  title: "drop-in",
  apiVersion: 1,
  version: "0.1.0",
  async check() {
    return { changes: [], diagnostics: [] };
  },
});
`;

let root: string;
let dir: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "kubehyve-loader-"));
  dir = join(root, "plugins");
  mkdirSync(dir);
  chmodSync(dir, 0o755);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function write(name: string, text: string, mode = 0o644): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

/** The problems of a one-node cluster file with these `stages:` lines, read against `registry`. */
function problemsOf(stages: string, registry: Parameters<typeof parseClusterText>[2]): unknown {
  const text = `name: lab\nnetwork:\n  gateway: 10.9.0.1\n  subnet: 10.9.0.0/24\nnodes:\n  - name: n1\n    role: control-plane\n    address: 10.9.0.10\nstages:\n${stages}`;
  try {
    parseClusterText(text, "lab.yaml", registry);
  } catch (error) {
    return (error as { problems?: unknown }).problems;
  }
  return undefined;
}

describe("the plugin loader", () => {
  test("loads a drop-in file next to the built-ins", async () => {
    const file = write("other.ts", dropIn("extra/thing"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.diagnostics).toEqual([]);
    expect(registry.find("greeter/hello")).toBe(builtin);
    expect(registry.find("extra/thing")?.title).toBe("drop-in");
    expect(registry.entries.map((e) => [e.id, e.origin, e.status])).toEqual([
      ["greeter/hello", "built-in", "loaded"],
      ["extra/thing", file, "loaded"],
    ]);
  });

  test("refuses a drop-in that repeats a built-in's id, naming both origins, and keeps the built-in", async () => {
    const file = write("greeter.ts", dropIn("greeter/hello"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.find("greeter/hello")).toBe(builtin);
    expect(registry.entries.find((e) => e.origin === file)?.status).toBe("refused");
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.duplicate-id",
        severity: "error",
        summary: `plugin greeter/hello from ${file} repeats the id of a built-in plugin, which stays in use`,
        hint: `give the plugin in ${file} an id of its own, or remove it`,
      }),
    ]);
  });

  test("refuses a file whose default export is not a plugin, saying why", async () => {
    const number = write("number.ts", "export default 42;\n");
    const none = write("none.ts", "export const plugin = {};\n");
    const badId = write(
      "bad-id.ts",
      'export default { id: "Not An Id", title: "x", apiVersion: 1, check: async () => ({ changes: [], diagnostics: [] }) };\n',
    );
    const noCheck = write("no-check.ts", 'export default { id: "a/b", title: "x", apiVersion: 1 };\n');
    const registry = await loadPlugins([], [dir]);
    expect(registry.entries.every((e) => e.status === "failed")).toBe(true);
    expect(registry.diagnostics.map((d) => [d.code, d.summary])).toEqual([
      [
        "plugin.invalid",
        `plugin file ${badId} is not loaded: its id "Not An Id" is not of the form slot/name (lower-case)`,
      ],
      ["plugin.invalid", `plugin file ${noCheck} is not loaded: it has no check function`],
      [
        "plugin.invalid",
        `plugin file ${none} is not loaded: its default export is not a plugin object (use \`export default definePlugin({...})\`)`,
      ],
      [
        "plugin.invalid",
        `plugin file ${number} is not loaded: its default export is not a plugin object (use \`export default definePlugin({...})\`)`,
      ],
    ]);
  });

  test("refuses a group-writable file in a safe directory, and loads its safe neighbour", async () => {
    const unsafe = write("unsafe.ts", dropIn("extra/unsafe"), 0o664);
    write("safe.ts", dropIn("extra/safe"), 0o644);
    const registry = await loadPlugins([], [dir]);
    expect(registry.find("extra/unsafe")).toBeUndefined();
    expect(registry.find("extra/safe")).toBeDefined();
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.unsafe-permissions",
        summary: `plugin file ${unsafe} is not loaded: it is writable by group or others`,
        hint: `chmod go-w ${unsafe}`,
      }),
    ]);
  });

  test("judges a symlinked plugin by the directory it leads into", async () => {
    const open = join(root, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    writeFileSync(join(open, "real.ts"), dropIn("extra/linked"));
    chmodSync(join(open, "real.ts"), 0o644);
    symlinkSync(join(open, "real.ts"), join(dir, "linked.ts"));
    const registry = await loadPlugins([], [dir]);
    expect(registry.find("extra/linked")).toBeUndefined();
    expect(registry.diagnostics[0]).toMatchObject({
      code: "plugin.unsafe-permissions",
      summary: `plugin file ${join(dir, "linked.ts")} is not loaded: ${open}, where it leads, is writable by group or others`,
      hint: `chmod go-w ${open}`,
    });
  });

  test("reports a dangling symlink as a diagnostic instead of failing every command", async () => {
    symlinkSync(join(root, "gone.ts"), join(dir, "gone.ts"));
    write("safe.ts", dropIn("extra/safe"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.find("extra/safe")).toBeDefined();
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.unreadable",
        summary: `plugin file ${join(dir, "gone.ts")} cannot be read`,
      }),
    ]);
  });

  test("a file that throws at import, whatever it throws, is one diagnostic with what it threw", async () => {
    const nothing = write("nothing.ts", "throw null;\n");
    const words = write("words.ts", 'throw "the config is gone";\n');
    const error = write("error.ts", 'throw new Error("boom at import");\n');
    write("safe.ts", dropIn("extra/safe"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.find("extra/safe")).toBeDefined();
    expect(registry.diagnostics.map((d) => [d.code, d.summary, d.detail])).toEqual([
      ["plugin.load-failed", `plugin file ${error} failed to load`, "boom at import"],
      ["plugin.load-failed", `plugin file ${nothing} failed to load`, "it threw null"],
      ["plugin.load-failed", `plugin file ${words} failed to load`, "it threw the config is gone"],
    ]);
  });

  test("of two drop-ins with one id the first in the path stays in use, and the message says so", async () => {
    const first = write("a.ts", dropIn("extra/twin"));
    const second = write("b.ts", dropIn("extra/twin"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.entries.find((e) => e.origin === first)?.status).toBe("loaded");
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.duplicate-id",
        summary: `plugin extra/twin from ${second} repeats the id of the one from ${first}, which stays in use`,
        hint: `rename one of them, or remove ${second}`,
      }),
    ]);
  });

  test("a plugin directory that is a file is a diagnostic naming the directory to give instead; a missing one is a warning", async () => {
    const file = write("thing.ts", dropIn("extra/thing"));
    const registry = await loadPlugins([builtin], [file, join(root, "not-there")]);
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.dir-unreadable",
        severity: "error",
        summary: `plugin directory ${file} cannot be read, so no plugin is loaded from it`,
        detail: expect.stringContaining("ENOTDIR"),
        hint: `name the directory that holds the plugin files: --plugin-dir ${dir}`,
      }),
      expect.objectContaining({
        code: "plugin.dir-missing",
        severity: "warn",
        summary: `plugin directory ${join(root, "not-there")} does not exist, so no plugin is loaded from it`,
        hint: "create it, or correct --plugin-dir or $KUBEHYVE_PLUGIN_PATH",
      }),
    ]);
  });

  test("a FIFO or a device given as the plugin directory is named as such, not taken for a plugin file", async () => {
    const fifo = join(root, "pipe");
    Bun.spawnSync(["mkfifo", fifo]);
    const registry = await loadPlugins([builtin], [fifo, "/dev/null"]);
    expect(registry.diagnostics.map((d) => [d.code, d.hint])).toEqual([
      [
        "plugin.dir-unreadable",
        `${fifo} is a FIFO: name a directory of plugin files, or leave it out of the plugin path`,
      ],
      [
        "plugin.dir-unreadable",
        "/dev/null is a device: name a directory of plugin files, or leave it out of the plugin path",
      ],
    ]);
  });

  test("a file whose loading never ends is one diagnostic after a limit, and the others still load", async () => {
    const file = write("hangs.ts", "await new Promise(() => {});\nexport default {};\n");
    write("safe.ts", dropIn("extra/safe"));
    const registry = await loadPlugins([builtin], [dir], { importTimeoutMs: 300 });
    expect(registry.find("extra/safe")).toBeDefined();
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.load-failed",
        summary: `plugin file ${file} failed to load`,
        detail: "it did not finish loading within 0.3s (a top-level await that never ends?)",
      }),
    ]);
  }, 5000);

  test("files whose loading never ends cost one limit between them, not one each", async () => {
    const hung = ["a.ts", "b.ts", "c.ts", "d.ts"].map((name) =>
      write(name, "await new Promise(() => {});\nexport default {};\n"),
    );
    write("safe.ts", dropIn("extra/safe"));
    const started = Date.now();
    const registry = await loadPlugins([builtin], [dir], { importTimeoutMs: 400 });
    expect(Date.now() - started).toBeLessThan(1200);
    expect(registry.find("extra/safe")).toBeDefined();
    expect(registry.diagnostics.map((d) => d.summary)).toEqual(
      hung.map((file) => `plugin file ${file} failed to load`),
    );
  }, 5000);

  test("a syntax error names the file, line and column of the first error", async () => {
    const file = write(
      "broken.ts",
      'import { definePlugin } from "kubehyve";\nconst x = ;\nexport default {{{ broken\n',
    );
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.load-failed",
        summary: `plugin file ${file} failed to load`,
        detail: `${file}:2:11: Unexpected ;`,
      }),
    ]);
  });

  test("what a module throws never makes loading throw: a Proxy whose reads throw, a toString that throws", async () => {
    const proxy = write("proxy.ts", 'throw new Proxy({}, { get() { throw new Error("trap"); } });\n');
    const text = write("text.ts", 'throw { toString() { throw new Error("no text"); } };\n');
    write("safe.ts", dropIn("extra/safe"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.find("extra/safe")).toBeDefined();
    expect(registry.diagnostics.map((d) => [d.code, d.summary, d.detail])).toEqual([
      [
        "plugin.load-failed",
        `plugin file ${proxy} failed to load`,
        "it threw an object, which cannot be shown",
      ],
      [
        "plugin.load-failed",
        `plugin file ${text} failed to load`,
        "it threw an object, which cannot be shown",
      ],
    ]);
  });

  test("a malformed apiVersion, version or title is refused at load, saying which and what it is", async () => {
    const plugin = (fields: string) =>
      `export default { id: "extra/odd", title: "odd", apiVersion: 1, ${fields} check: async () => ({ changes: [], diagnostics: [] }) };\n`;
    const api = write("api.ts", plugin('apiVersion: "1",'));
    const version = write("version.ts", plugin("version: 42,"));
    const escaped = write("escape.ts", plugin('version: "1.0\\u001b[2J",'));
    const title = write("title.ts", plugin('title: "odd\\u001b]0;owned\\u0007",'));
    const registry = await loadPlugins([], [dir]);
    expect(registry.find("extra/odd")).toBeUndefined();
    expect(registry.diagnostics.map((d) => d.summary)).toEqual([
      `plugin file ${api} is not loaded: its apiVersion is not a whole number ("1"; this kubehyve speaks 1)`,
      `plugin file ${escaped} is not loaded: its version is not a release name such as 1.2.0 ("1.0\\u001b[2J")`,
      `plugin file ${title} is not loaded: its title "odd\\u001b]0;owned\\u0007" holds control characters`,
      `plugin file ${version} is not loaded: its version is not a release name such as 1.2.0 (42, a number)`,
    ]);
    // Listed under the id they declare: the id a cluster file names them by.
    expect(registry.entries.map((e) => [e.id, e.status])).toEqual(
      Array.from({ length: 4 }, () => ["extra/odd", "failed"]),
    );
  });

  test("an after entry that could never be a slot is refused at load instead of passed over", async () => {
    const file = write(
      "after.ts",
      dropIn("extra/after").replace('version: "0.1.0",', 'version: "0.1.0",\n  after: ["k8s/kubespray"],'),
    );
    const registry = await loadPlugins([], [dir]);
    expect(registry.diagnostics.map((d) => d.summary)).toEqual([
      `plugin file ${file} is not loaded: its after names "k8s/kubespray", which is no slot name (lower-case, such as k8s)`,
    ]);
  });

  test("a hook handler under a name that is no hook name, or one that is no function, is refused at load", async () => {
    const plugin = (hooks: string) =>
      `export default { id: "extra/hooks", title: "h", apiVersion: 1, hooks: ${hooks}, check: async () => ({ changes: [], diagnostics: [] }) };\n`;
    const odd = write("odd.ts", plugin('{ "os-node-files": () => ({}) }'));
    const value = write("value.ts", plugin('{ "os:node-files": 42 }'));
    const registry = await loadPlugins([], [dir]);
    expect(registry.diagnostics.map((d) => d.summary)).toEqual([
      `plugin file ${odd} is not loaded: its hooks names "os-node-files", which is no hook name (slot:what, such as os:node-files)`,
      `plugin file ${value} is not loaded: its handler of hook os:node-files is 42, a number, not a function`,
    ]);
  });

  test("a drop-in cannot change what the plugin API hands everyone: diag and the other shared values", async () => {
    const file = write(
      "meddle.ts",
      `import { diag, HOP_PLACES } from "kubehyve";
const tries = [
  () => { diag.error = diag.ok; },
  () => { (HOP_PLACES as string[]).push("nowhere"); },
];
export const refused = tries.filter((t) => { try { t(); return false; } catch (e) { return e instanceof TypeError; } }).length;
${dropIn("extra/meddle").replace('import { definePlugin } from "kubehyve";\n', "")}`.replace(
        'import { diag, HOP_PLACES } from "kubehyve";',
        'import { definePlugin, diag, HOP_PLACES } from "kubehyve";',
      ),
    );
    const before = diag.error;
    const places = [...HOP_PLACES];
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.diagnostics).toEqual([]);
    expect((await import(file)).refused).toBe(2);
    expect(diag.error).toBe(before);
    expect([...HOP_PLACES]).toEqual(places);
  });

  test("the plugin object is used as it was judged: a getter answers once, a hook is no Object method", async () => {
    write(
      "fickle.ts",
      `let reads = 0;
const plugin = {
  id: "extra/fickle",
  title: "fickle",
  apiVersion: 1,
  hooks: {},
  helper() { return "from the prototype chain"; },
  get apply() { return reads++ === 0 ? async () => undefined : "no longer a function"; },
  async check() { return { changes: [{ summary: this.helper() }], diagnostics: [] }; },
};
export default plugin;
export const later = () => { plugin.id = "os/coreos"; plugin.hooks["os:node-files"] = 42; };
`,
    );
    const registry = await loadPlugins([], [dir]);
    const plugin = registry.find("extra/fickle")!;
    const mod = await import(join(dir, "fickle.ts"));
    mod.later();
    expect(typeof plugin.apply).toBe("function");
    expect(typeof plugin.apply).toBe("function");
    expect(plugin.id).toBe("extra/fickle");
    expect(plugin.hooks?.["os:node-files"]).toBeUndefined();
    expect((plugin.hooks as Record<string, unknown>).toString).toBeUndefined();
    expect((await plugin.check({} as never)).changes).toEqual([{ summary: "from the prototype chain" }]);
  });

  test("a directory others can write is one finding for all its files, not one per file", async () => {
    for (let i = 0; i < 50; i++) write(`p${i}.ts`, dropIn(`extra/p${i}`));
    chmodSync(dir, 0o777);
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.unsafe-permissions",
        summary: `no plugin is loaded from ${dir} (50 files): it is writable by group or others`,
        hint: `chmod go-w ${dir}`,
      }),
    ]);
    expect(registry.entries.filter((e) => e.status === "refused")).toHaveLength(50);
  });

  test("a FIFO or a device under a plugin's name is a finding, never read, and the rest still loads", async () => {
    const fifo = join(dir, "fifo.ts");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    symlinkSync("/dev/zero", join(dir, "zero.ts"));
    mkdirSync(join(dir, "folder.ts"));
    write("safe.ts", dropIn("extra/safe"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.find("extra/safe")).toBeDefined();
    expect(registry.diagnostics.map((d) => [d.code, d.summary])).toEqual([
      ["plugin.not-a-file", `plugin file ${fifo} is not loaded: it is a FIFO, not a regular file`],
      [
        "plugin.not-a-file",
        `plugin file ${join(dir, "zero.ts")} is not loaded: it is a device, not a regular file`,
      ],
    ]);
  }, 5000);

  test("a file whose name is not UTF-8 is reported as such, not as missing", async () => {
    const bytes = Buffer.concat([Buffer.from(`${dir}/bad`), Buffer.from([0xff]), Buffer.from(".ts")]);
    writeFileSync(bytes, dropIn("extra/bytes"));
    const registry = await loadPlugins([], [dir]);
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.bad-name",
        summary: `the plugin file "bad\ufffd.ts" in ${dir} is not loaded: its name is not UTF-8`,
        hint: `rename it (ls -b ${dir} shows its name's bytes)`,
      }),
    ]);
  });

  test("a cluster file naming a plugin that was found but refused says what is wrong with it, not that it is missing", async () => {
    const file = write("future.ts", dropIn("extra/future").replace("apiVersion: 1", "apiVersion: 2"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(problemsOf("  extra:\n    plugin: future\n", registry)).toEqual([
      expect.objectContaining({
        path: "stages.extra.plugin",
        message: `plugin extra/future in ${file} is not loaded: it needs plugin API 2; this kubehyve speaks 1`,
      }),
    ]);
  });

  test("a stage option its plugin's plain object schema does not know is refused, not dropped", async () => {
    // valibot's v.object drops unknown keys without a word: a typo in the cluster file would be
    // taken as the option's default. An explicit looseObject keeps what it does not know, and a
    // plugin without a schema is handed the keys as they are.
    const withOptions = (id: string, options: string) =>
      dropIn(id)
        .replace('import { definePlugin } from "kubehyve";', 'import { definePlugin, v } from "kubehyve";')
        .replace('version: "0.1.0",', `version: "0.1.0",\n  options: ${options},`);
    write("plain.ts", withOptions("extra/plain", 'v.object({ text: v.optional(v.string(), "hi") })'));
    write("loose.ts", withOptions("loose/one", "v.looseObject({ text: v.optional(v.string()) })"));
    write("none.ts", dropIn("bare/none"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.diagnostics).toEqual([]);
    const unknown = (key: string) => `unknown field (${key} is not one of the fields allowed here)`;
    expect(
      problemsOf(
        "  extra:\n    plugin: plain\n    txt: hello\n  bare:\n    plugin: none\n    colour: red\n",
        registry,
      ),
    ).toEqual([
      expect.objectContaining({ path: "stages.extra.txt", message: unknown("txt"), where: "lab.yaml:12:5" }),
    ]);
    expect(
      problemsOf(
        "  extra:\n    plugin: plain\n    text: hello\n  loose:\n    plugin: one\n    more: 1\n  bare:\n    plugin: none\n    colour: red\n",
        registry,
      ),
    ).toBeUndefined();
  });

  test("stages whose after lists form a cycle make the cluster file invalid, before any run", async () => {
    const after = (id: string, slot: string) =>
      dropIn(id).replace('version: "0.1.0",', `version: "0.1.0",\n  after: ["${slot}"],`);
    write("a.ts", after("first/a", "second"));
    write("b.ts", after("second/b", "first"));
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.diagnostics).toEqual([]);
    expect(problemsOf("  first:\n    plugin: a\n  second:\n    plugin: b\n", registry)).toEqual([
      expect.objectContaining({
        path: "stages",
        message: `the stages' "after" lists form a cycle: first (after second); second (after first)`,
      }),
    ]);
  });

  test("a syntax error in a file the plugin imports names that file, not the plugin's", async () => {
    mkdirSync(join(dir, "lib"), { mode: 0o755 });
    const helper = write("lib/helper.ts", "export const x = ;\n");
    const file = write("uses.ts", 'import { x } from "./lib/helper.ts";\nexport default x;\n');
    const registry = await loadPlugins([builtin], [dir]);
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        summary: `plugin file ${file} failed to load`,
        detail: `${helper}:1:18: Unexpected ;`,
      }),
    ]);
  });

  test.skipIf(process.getuid?.() !== 0)(
    "refuses a file owned by another user, who could make it writable again at will",
    async () => {
      const file = write("theirs.ts", dropIn("extra/theirs"));
      chownSync(file, 65534, 65534);
      const registry = await loadPlugins([], [dir]);
      expect(registry.find("extra/theirs")).toBeUndefined();
      expect(registry.diagnostics[0]).toMatchObject({
        code: "plugin.unsafe-permissions",
        summary: `plugin file ${file} is not loaded: it is owned by another user (uid 65534)`,
        hint: `chown root ${file}, or remove it`,
      });
    },
  );
});
