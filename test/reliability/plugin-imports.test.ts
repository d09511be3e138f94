/**
 * A drop-in plugin runs as root: every file it loads must be as safe as the plugin file itself
 * (owned by root or this user, not group- or world-writable, in directories that are the same all
 * the way up), and it imports nothing bare but "kubehyve" and node: built-ins, since anything else
 * is looked up in whatever node_modules a parent directory holds. In-process, through the loader;
 * test/e2e runs the same inside the compiled binary. Each test writes into fresh directories: the
 * module cache keys on the path.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadPlugins } from "../../src/core/plugins.ts";

const plugin = (id: string, imports: string, title = '"drop-in"') => `import { definePlugin } from "kubehyve";
${imports}
export default definePlugin({
  id: ${JSON.stringify(id)},
  title: ${title},
  apiVersion: 1,
  async check() { return { changes: [], diagnostics: [] }; },
});
`;

/** `root/plugins` (0755) in a fresh 0755 directory, with files written 0644 unless told. */
function lab() {
  const root = mkdtempSync(join(tmpdir(), "kubehyve-imports-"));
  chmodSync(root, 0o755);
  const dir = join(root, "plugins");
  mkdirSync(dir, { mode: 0o755 });
  const write = (rel: string, text: string, mode = 0o644) => {
    const path = join(root, rel);
    writeFileSync(path, text);
    chmodSync(path, mode);
    return path;
  };
  return { root, dir, write };
}

describe("a drop-in plugin's imports", () => {
  test("a helper in a safe folder, JSON data and node: built-ins load as before", async () => {
    const { dir, write, root } = lab();
    mkdirSync(join(dir, "lib"), { mode: 0o755 });
    write("plugins/lib/name.ts", 'import data from "./data.json";\nexport const title = data.title;\n');
    write("plugins/lib/data.json", '{"title": "from a helper"}');
    write(
      "plugins/good.ts",
      plugin(
        "good/one",
        'import { join } from "node:path";\nimport { title } from "./lib/name.ts";',
        'title + join("", "x").slice(1)',
      ),
    );
    const registry = await loadPlugins([], [dir]);
    expect(registry.diagnostics).toEqual([]);
    expect(registry.find("good/one")?.title).toBe("from a helper");
    expect(root).toBeTruthy();
  });

  test("a relative import from a world-writable subfolder is refused, with the folder named", async () => {
    const { dir, write } = lab();
    mkdirSync(join(dir, "lib"));
    chmodSync(join(dir, "lib"), 0o777);
    write("plugins/lib/helper.ts", 'export const title = "from anyone";\n');
    const file = write("plugins/a.ts", plugin("a/a", 'import { title } from "./lib/helper.ts";', "title"));
    const registry = await loadPlugins([], [dir]);
    expect(registry.find("a/a")).toBeUndefined();
    expect(registry.entries).toEqual([
      {
        id: "a.ts",
        origin: file,
        status: "refused",
        problem: `${join(dir, "lib", "helper.ts")}, which it loads: its directory ${join(dir, "lib")} is writable by group or others`,
      },
    ]);
    expect(registry.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.unsafe-import",
        summary: `plugin file ${file} is not loaded: ${join(dir, "lib", "helper.ts")}, which it loads: its directory ${join(dir, "lib")} is writable by group or others`,
        hint: `chmod go-w ${join(dir, "lib")}`,
      }),
    ]);
  });

  test("a relative import of a group-writable file, or of a link leading somewhere others can write, is refused", async () => {
    const { dir, write, root } = lab();
    write("plugins/writable.ts", 'export const title = "x";\n', 0o664);
    const a = write("plugins/a.ts", plugin("a/a", 'import { title } from "./writable.ts";', "title"));
    const open = join(root, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    write("open/helper.ts", 'export const title = "x";\n');
    symlinkSync(join(open, "helper.ts"), join(dir, "linked.ts"));
    const b = write("plugins/b.ts", plugin("b/b", 'import { title } from "./linked.ts";', "title"));
    const registry = await loadPlugins([], [dir]);
    // linked.ts is itself in the plugin folder: refused as a plugin file of its own too.
    const summaries = registry.diagnostics.map((d) => d.summary);
    expect(summaries).toContain(
      `plugin file ${a} is not loaded: ${join(dir, "writable.ts")}, which it loads: it is writable by group or others`,
    );
    // Bun resolves the link before loading: what is judged is the file that would run.
    expect(summaries).toContain(
      `plugin file ${b} is not loaded: ${join(open, "helper.ts")}, which it loads: its directory ${open} is writable by group or others`,
    );
    expect(registry.find("a/a")).toBeUndefined();
    expect(registry.find("b/b")).toBeUndefined();
  });

  test("a bare import is refused, even when a node_modules in a parent directory would answer it", async () => {
    const { root, dir, write } = lab();
    mkdirSync(join(root, "node_modules", "evil"), { recursive: true });
    write("node_modules/evil/package.json", '{"name": "evil", "main": "index.js"}');
    write("node_modules/evil/index.js", 'module.exports = "EVIL";\n');
    const direct = write("plugins/direct.ts", plugin("d/d", 'import evil from "evil";', "evil"));
    const reexport = write("plugins/reexport.ts", plugin("r/r", 'export * from "evil";'));
    // A specifier computed at run time escapes the import scan; the package's file is still refused.
    const computed = write(
      "plugins/computed.ts",
      plugin("c/c", 'const evil = (await import(["ev", "il"].join(""))).default;', "evil"),
    );
    const registry = await loadPlugins([], [dir]);
    expect(registry.entries.map((e) => [e.id, e.status])).toEqual([
      ["computed.ts", "refused"],
      ["direct.ts", "refused"],
      ["reexport.ts", "refused"],
    ]);
    const summaries = registry.diagnostics.map((d) => d.summary);
    expect(summaries).toContain(
      `plugin file ${direct} is not loaded: it imports "evil", but a drop-in plugin imports only from "kubehyve" and node: built-ins`,
    );
    expect(summaries).toContain(
      `plugin file ${reexport} is not loaded: it imports "evil", but a drop-in plugin imports only from "kubehyve" and node: built-ins`,
    );
    expect(summaries).toContain(
      `plugin file ${computed} is not loaded: ${join(root, "node_modules", "evil", "index.js")}, which it loads: it lies in a node_modules folder, and drop-in plugins do not load packages`,
    );
  });

  test('an import of kubehyve\'s own source, by path or through a link, is refused: the API is "kubehyve"', async () => {
    const { dir, write } = lab();
    const own = join(import.meta.dir, "../../src/core/order.ts");
    const byPath = write(
      "plugins/by-path.ts",
      plugin("own/path", `import { PIPELINE } from ${JSON.stringify(own)};`, "PIPELINE[0]"),
    );
    symlinkSync(join(import.meta.dir, "../../src"), join(dir, "src-link"));
    const byLink = write(
      "plugins/by-link.ts",
      plugin("own/link", 'export * from "./src-link/core/order.ts";'),
    );
    const registry = await loadPlugins([], [dir]);
    expect(registry.find("own/path")).toBeUndefined();
    expect(registry.find("own/link")).toBeUndefined();
    expect(registry.diagnostics.map((d) => [d.code, d.summary, d.hint])).toEqual([
      [
        "plugin.unsafe-import",
        `plugin file ${byLink} is not loaded: it imports "./src-link/core/order.ts", which is kubehyve's own code, not its plugin API`,
        'import what the plugin needs from "kubehyve"; what it does not offer is not part of the plugin API',
      ],
      [
        "plugin.unsafe-import",
        `plugin file ${byPath} is not loaded: it imports ${JSON.stringify(own)}, which is kubehyve's own code, not its plugin API`,
        'import what the plugin needs from "kubehyve"; what it does not offer is not part of the plugin API',
      ],
    ]);
  });

  test("a file too large to be a plugin's code is refused before it is read, whether the plugin or a file it loads", async () => {
    const { dir, write } = lab();
    const huge = write("plugins/huge.ts", "export default 1;\n");
    truncateSync(huge, 64 * 2 ** 20 + 1);
    write("plugins/data.bin", "");
    truncateSync(join(dir, "data.bin"), 65 * 2 ** 20);
    const loads = write(
      "plugins/loads.ts",
      plugin("big/data", 'import data from "./data.bin";', "String(data.length)"),
    );
    const registry = await loadPlugins([], [dir]);
    expect(registry.diagnostics.map((d) => d.summary)).toEqual([
      `plugin file ${huge} is not loaded: it is 67108865 bytes, more than the 64 MiB a file of a plugin may be`,
      `plugin file ${loads} is not loaded: ${join(dir, "data.bin")}, which it loads: it is 68157440 bytes, more than the 64 MiB a file of a plugin may be`,
    ]);
  });

  test("a parent directory of the plugin folder that others can write is refused; a sticky one is not", async () => {
    const { root, write } = lab();
    const open = join(root, "open");
    mkdirSync(join(open, "plugins"), { recursive: true, mode: 0o755 });
    chmodSync(open, 0o777);
    write("open/plugins/p.ts", plugin("p/p", ""));
    const refused = await loadPlugins([], [join(open, "plugins")]);
    expect(refused.diagnostics).toEqual([
      expect.objectContaining({
        code: "plugin.unsafe-permissions",
        summary: `no plugin is loaded from ${join(open, "plugins")} (1 file): ${open}, a directory above it, is writable by group or others (and not sticky)`,
        hint: `chmod go-w ${open}`,
      }),
    ]);
    chmodSync(open, 0o1777);
    const sticky = await loadPlugins([], [join(open, "plugins")]);
    expect(sticky.diagnostics).toEqual([]);
    expect(sticky.find("p/p")).toBeDefined();
  });
});
