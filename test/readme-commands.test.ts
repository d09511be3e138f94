/**
 * The README's table of commands is where a newcomer learns what each command takes: every command
 * and subcommand has a row, every flag a row shows is one the command takes, and every flag the
 * command takes is shown in its row (a flag only `--help` knows of is one nobody reads about).
 * The global flags are the paragraph's after the table.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ArgsDef, CommandDef } from "citty";
import { globalArgs } from "../src/cli/_args.ts";
import { commands } from "../src/cli/index.ts";

const readme = readFileSync(join(import.meta.dir, "..", "README.md"), "utf8");

/** The table's rows: the command line of each span of its first cell, and the flags it shows. */
function rows(): { command: string; flags: string[] }[] {
  const start = readme.indexOf("## Commands");
  const table = readme.slice(start, readme.indexOf("\n\n", readme.indexOf("| command", start)));
  const out: { command: string; flags: string[] }[] = [];
  for (const line of table.split("\n").filter((l) => l.startsWith("| `"))) {
    const cell = line.split(/(?<!\\)\|/)[1]!;
    for (const [, span] of cell.matchAll(/`([^`]+)`/g)) {
      const words = span!
        .replace(/\\\|/g, "|")
        .split(/[\s[\]|]+/)
        .filter(Boolean);
      const command = words.filter((w) => /^[a-z]+$/.test(w) && !w.startsWith("-"));
      out.push({
        command: words[0]!.startsWith("-") ? "" : command.slice(0, 2).join(" "),
        flags: words.filter((w) => /^--?[a-z]/.test(w)),
      });
    }
  }
  return out;
}

/** Every command's path (`config validate`) with its flags: name → its aliases. */
async function defined(): Promise<Map<string, Map<string, string[]>>> {
  const out = new Map<string, Map<string, string[]>>();
  for (const [name, load] of Object.entries(commands)) {
    const cmd = await load();
    const subs = (await cmd.subCommands) as Record<string, CommandDef<ArgsDef>> | undefined;
    const leaves: [string, CommandDef<ArgsDef>][] = subs
      ? Object.entries(subs).map(([sub, c]) => [`${name} ${sub}`, c])
      : [[name, cmd]];
    for (const [path, leaf] of leaves) {
      const flags = new Map<string, string[]>();
      for (const [flag, def] of Object.entries(((await leaf.args) ?? {}) as ArgsDef)) {
        if (def.type === "positional" || flag in globalArgs) continue;
        const alias = (def as { alias?: string | string[] }).alias;
        flags.set(flag, alias === undefined ? [] : [alias].flat());
      }
      out.set(path, flags);
    }
  }
  return out;
}

const spelled = (flag: string) => (flag.length === 1 ? `-${flag}` : `--${flag}`);

describe("the README's table of commands", () => {
  test("is found, with its rows", () => {
    const found = rows();
    expect(found.length).toBeGreaterThan(10);
    expect(found).toContainEqual({ command: "render", flags: ["-o", "--example", "--force"] });
  });

  test("has a row for every command, showing every flag it takes and no other", async () => {
    const table = rows();
    const wrong: string[] = [];
    for (const [path, flags] of await defined()) {
      const row = table.filter((r) => r.command === path);
      if (!row.length) {
        wrong.push(`${path}: no row`);
        continue;
      }
      const shown = new Set(row.flatMap((r) => r.flags));
      for (const [flag, aliases] of flags)
        if (![flag, ...aliases].some((n) => shown.has(spelled(n))))
          wrong.push(`${path}: ${spelled(flag)} is not in its row`);
      const known = new Set([...flags].flatMap(([flag, aliases]) => [flag, ...aliases].map(spelled)));
      for (const flag of shown)
        if (!known.has(flag) && !Object.keys(globalArgs).some((g) => spelled(g) === flag))
          wrong.push(`${path}: its row shows ${flag}, which it does not take`);
    }
    for (const r of table)
      if (r.command && !(await defined()).has(r.command)) wrong.push(`${r.command}: a row of no command`);
    expect(wrong).toEqual([]);
  });

  test("is followed by every global flag", () => {
    const start = readme.indexOf("Global flags:");
    const paragraph = readme.slice(start, readme.indexOf("\n\n", start));
    for (const [flag, def] of Object.entries(globalArgs)) {
      const alias = (def as { alias?: string }).alias;
      expect(paragraph).toContain(alias ? `-${alias}/--${flag}` : `--${flag}`);
    }
  });
});

describe("the README's exit codes", () => {
  test("are the codes kubehyve exits with, and only those", async () => {
    const { ExitCode } = await import("../src/lib/errors.ts");
    const start = readme.indexOf("### Exit codes");
    const table = readme.slice(start, readme.indexOf("\n### ", start + 1));
    const listed = table
      .split("\n")
      .filter((l) => /^\| \d/.test(l))
      .flatMap((l) =>
        l
          .split("|")[1]!
          .split(",")
          .map((c) => Number(c.trim())),
      );
    // A second SIGTERM or SIGHUP leaves at once with the shell's code for it (src/cli/_session.ts).
    const session = readFileSync(join(import.meta.dir, "..", "src", "cli", "_session.ts"), "utf8");
    const signals = [...session.matchAll(/on\("SIG[A-Z]+", (\d+),/g)].map((m) => Number(m[1]));
    expect(signals.length).toBe(3);
    const exits = [...new Set([...Object.values(ExitCode), ...signals])].sort((a, b) => a - b);
    expect(listed.sort((a, b) => a - b)).toEqual(exits);
  });
});

describe("the README's config validate sample", () => {
  test("is what config validate prints for the example lab with w1's memory and address mistyped", async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { exampleText } = await import("../src/cli/_shared.ts");
    const { runInProcess } = await import("./lab/cli.ts");
    const start = readme.indexOf("## The cluster file");
    const sample = /```\n(✖[\s\S]*?)\n```/.exec(readme.slice(start))![1]!;
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-readme-validate-"));
    const text = exampleText
      .replace("memory: 6GiB", "memory: 6 gigs")
      .replace("address: 192.168.1.22", "address: 192.168.1.150");
    writeFileSync(join(dir, "kubehyve.yaml"), text);
    const r = await runInProcess(["config", "validate"], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().replaceAll(dir, "/root")).toBe(sample);
  });
});
