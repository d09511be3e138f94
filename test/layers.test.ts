/**
 * The layers of the picture in DESIGN.md, enforced: each rule names which folders a file may import
 * from. Imports are read with Bun's own parser (every static and dynamic import and re-export).
 *
 *   src/lib                          leaves: import nothing of ours
 *   src/targets, src/kube, src/artifacts   import src/lib only
 *   src/core                         never src/cli or plugins/, and never prints (no consola, citty)
 *   src/cli                          anything of src/
 *   plugins/<slot>/<name>            only "kubehyve" (src/api.ts), node: built-ins and their own folder
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { Glob } from "bun";

const ROOT = join(import.meta.dir, "..");
const transpiler = new Bun.Transpiler({ loader: "ts" });

interface Edge {
  from: string;
  /** Repository-relative path of a file of ours, or the bare name of a package. */
  to: string;
  bare: boolean;
}

function importsOf(glob: string): Edge[] {
  const edges: Edge[] = [];
  for (const from of new Glob(glob).scanSync(ROOT)) {
    for (const { path } of transpiler.scanImports(readFileSync(join(ROOT, from), "utf8"))) {
      const bare = !path.startsWith(".");
      edges.push({
        from,
        to: bare ? path : relative(ROOT, resolve(dirname(join(ROOT, from)), path)),
        bare,
      });
    }
  }
  return edges;
}

const under = (dir: string) => (path: string) => path === dir || path.startsWith(`${dir}/`);
const show = (edges: Edge[]) => edges.map((e) => `${e.from} imports ${e.to}`);

describe("the layers", () => {
  test("src/lib imports nothing of ours", () => {
    const bad = importsOf("src/lib/**/*.ts").filter((e) => !e.bare && !under("src/lib")(e.to));
    expect(show(bad)).toEqual([]);
  });

  test("targets, kube and artifacts import only src/lib of ours, and not each other", () => {
    const bad = ["src/targets", "src/kube", "src/artifacts"].flatMap((dir) =>
      importsOf(`${dir}/**/*.ts`).filter((e) => !e.bare && !under(dir)(e.to) && !under("src/lib")(e.to)),
    );
    expect(show(bad)).toEqual([]);
  });

  test("the core never reaches into the CLI or a plugin, and never prints", () => {
    const edges = importsOf("src/core/**/*.ts");
    const bad = edges.filter(
      (e) =>
        (!e.bare && (under("src/cli")(e.to) || under("plugins")(e.to) || e.to === "src/main.ts")) ||
        (e.bare && ["consola", "citty"].includes(e.to)) ||
        // Only the loader of drop-in plugins serves them the public API.
        (e.to === "src/api.ts" && e.from !== "src/core/plugin-api-module.ts"),
    );
    expect(show(bad)).toEqual([]);
  });

  test("below the CLI nothing writes to the terminal or ends the process", () => {
    const bad: string[] = [];
    for (const file of new Glob("src/{core,lib,targets,kube,artifacts}/**/*.ts").scanSync(ROOT)) {
      readFileSync(join(ROOT, file), "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (/\b(console\.\w+|process\.(stdout|stderr)|process\.exit)\b/.test(line.replace(/\/\/.*$/, "")))
            bad.push(`${file}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(bad).toEqual([]);
  });

  test("a plugin imports only the public API, node built-ins and files of its own folder", () => {
    const bad = importsOf("plugins/*/*/**/*.ts").filter((e) => {
      const own = e.from.split("/").slice(0, 3).join("/");
      if (e.bare) return e.to !== "kubehyve" && !e.to.startsWith("node:");
      return !under(own)(e.to);
    });
    expect(show(bad)).toEqual([]);
  });

  test("only the entry point and the list of built-ins name a plugin", () => {
    const bad = importsOf("src/**/*.ts").filter(
      (e) => !e.bare && under("plugins")(e.to) && e.from !== "src/main.ts",
    );
    expect(show(bad)).toEqual([]);
  });

  test("the rules see the imports they judge", () => {
    // A parser that found no imports would pass every rule above.
    const core = importsOf("src/core/engine.ts");
    expect(core.some((e) => e.to === "src/lib/errors.ts")).toBe(true);
    expect(importsOf("plugins/os/coreos/index.ts").some((e) => e.to === "kubehyve")).toBe(true);
  });
});
