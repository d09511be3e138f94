/**
 * The README's doctor catalogue says "each entry is triggered by a test": every id it names must be
 * a finding some stage or the core makes, and a test must expect it. An id renamed in the code, or
 * an entry nothing triggers, fails here.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Glob } from "bun";

const ROOT = join(import.meta.dir, "..");
const readme = readFileSync(join(ROOT, "README.md"), "utf8");

/** The ids of the catalogue's rows: `a.b-c`, with `-d` short for the previous id's stem plus `-d`. */
function catalogueIds(): string[] {
  const start = readme.indexOf("### The doctor catalogue");
  const table = readme.slice(start, readme.indexOf("\n## ", start));
  const ids: string[] = [];
  for (const row of table.split("\n").filter((l) => l.startsWith("| `"))) {
    const first = row.split("|")[1]!;
    let last = "";
    for (const [, id] of first.matchAll(/`([^`]+)`/g)) {
      const full = id!.startsWith("-") ? last.replace(/-[^-]+$/, id!) : id!;
      ids.push(full);
      last = full;
    }
  }
  return ids;
}

function filesUnder(pattern: string): string[] {
  return [...new Glob(pattern).scanSync(ROOT)].map((f) => readFileSync(join(ROOT, f), "utf8"));
}

describe("the README's doctor catalogue", () => {
  const ids = catalogueIds();
  const code = filesUnder("{src,plugins}/**/*.ts").join("\n");
  const tests = filesUnder("test/**/*.test.ts").join("\n");

  test("names ids", () => {
    expect(ids.length).toBeGreaterThan(20);
    expect(ids).toContain("metallb.pool-overlaps-gateway");
  });

  for (const id of catalogueIds()) {
    // `rook.ceph.<CODE>` stands for every Ceph health code: its stem is what is made and tested.
    const stem = id.replace(/<[A-Z]+>$/, "");
    test(`${id} is made by the code and expected by a test`, () => {
      expect(code.includes(`"${stem}`) || code.includes(`\`${stem}`)).toBe(true);
      expect(tests.includes(stem)).toBe(true);
    });
  }
});

describe("the ids the README names anywhere", () => {
  const code = filesUnder("{src,plugins}/**/*.ts").join("\n");
  // The prefixes of findings: the stages' plugin names and the core's own.
  const prefixes = [
    "bhyve",
    "coreos",
    "kubespray",
    "calico",
    "metallb",
    "traefik",
    "rook",
    "expose",
    "engine",
    "target",
    "api",
  ];
  const named = [
    ...new Set(
      [...readme.matchAll(/(?<![\w./-])([a-z]+\.[a-z][a-z0-9-]*[a-z0-9])(?![\w/-]|\.\w)/g)]
        .map((m) => m[1]!)
        .filter((id) => prefixes.includes(id.split(".")[0]!)),
    ),
  ];

  test("are found", () => {
    expect(named).toContain("bhyve.cpu-overcommit");
    expect(named).toContain("engine.changes-pending");
  });

  test("are each made by the code", () => {
    expect(named.filter((id) => !code.includes(`"${id}"`) && !code.includes(`\`${id}`))).toEqual([]);
  });
});
