/**
 * Every `kubehyve …` command line the project shows a person, in the READMEs, BENCHMARKS.md and the
 * hints of its messages, names a command that exists and flags that command takes: a flag renamed
 * in the code and not in a hint would send the user to an error. Each is checked by the command
 * line's own flag check (checkFlags), as if typed.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Glob } from "bun";
import type { ArgsDef, CommandDef } from "citty";
import { globalArgs } from "../../src/cli/_args.ts";
import { checkFlags, commands } from "../../src/cli/index.ts";

const ROOT = join(import.meta.dir, "../..");
const SOURCES = ["README.md", "BENCHMARKS.md", "plugins/**/README.md", "src/**/*.ts", "plugins/**/*.ts"];

interface Shown {
  file: string;
  line: number;
  text: string;
  words: string[];
}

/**
 * Global flags may stand before the command (`kubehyve -c FILE doctor …`): they are moved after it,
 * where the command's own flag check sees them, as the command line itself takes them.
 */
function beforeCommand(words: string[]): string[] {
  const globals: string[] = [];
  let at = 0;
  while (at < words.length && words[at]!.startsWith("-")) {
    const name = words[at]!.replace(/^--?/, "").split("=")[0]!;
    const def = Object.entries(globalArgs).find(
      ([flag, d]) => flag === name || (d as { alias?: string }).alias === name,
    )?.[1];
    if (!def) break;
    globals.push(words[at++]!);
    if (def.type === "string" && !words[at - 1]!.includes("=") && at < words.length)
      globals.push(words[at++]!);
  }
  return at === 0 ? words : [words[at]!, ...globals, ...words.slice(at + 1)].filter(Boolean);
}

/** `kubehyve WORD…` up to the end of the line or of the quote, code span or sentence it stands in. */
function shownCommandLines(): Shown[] {
  const shown: Shown[] = [];
  for (const pattern of SOURCES)
    for (const file of new Glob(pattern).scanSync(ROOT)) {
      const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
      for (const [index, line] of lines.entries())
        for (const m of line.matchAll(/(?:^|[\s`"'(])kubehyve ([^`"'|;#)\n]*)/g)) {
          const words = beforeCommand(m[1]!.trim().split(/\s+/).filter(Boolean));
          if (words[0] && words[0] in commands)
            shown.push({ file, line: index + 1, text: m[0].trim(), words });
        }
    }
  return shown;
}

/**
 * The command, its subcommand and what follows, cut where prose starts: after the flags, their
 * values and as many positional words as the command takes. `${…}` stands for any one value.
 */
async function commandLine(words: string[]): Promise<{ path: string[]; rest: string[]; args: ArgsDef }> {
  const path = [words[0]!];
  let cmd = await commands[words[0]!]!();
  let at = 1;
  const subs = (await cmd.subCommands) as Record<string, CommandDef<ArgsDef>> | undefined;
  if (subs && words[1] && words[1] in subs) {
    path.push(words[1]);
    cmd = subs[words[1]]!;
    at = 2;
  }
  const args = ((await cmd.args) ?? {}) as ArgsDef;
  const takesValue = new Set<string>();
  let positionals = 0;
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") positionals++;
    if (def.type !== "string") continue;
    const alias = (def as { alias?: string | string[] }).alias;
    for (const n of [name, ...(alias === undefined ? [] : [alias].flat())]) takesValue.add(n);
  }
  const rest: string[] = [];
  for (; at < words.length; at++) {
    // Punctuation of the sentence the command stands in is not part of it.
    const word = words[at]!.replace(/[.,:]+$/, "");
    if (word.startsWith("-") && word.length > 1) {
      rest.push(word);
      const name = word.replace(/^--?/, "").split("=")[0]!;
      if (!word.includes("=") && takesValue.has(name) && at + 1 < words.length) rest.push(words[++at]!);
    } else if (positionals > 0) {
      positionals--;
      rest.push(word);
    } else break;
  }
  return { path, rest, args };
}

describe("the command lines shown to a person", () => {
  const shown = shownCommandLines();

  test("are found in the READMEs and in the hints of the code", () => {
    // The extraction itself: if it found nothing, every check below would pass for nothing.
    expect(shown.filter((s) => s.file === "README.md").length).toBeGreaterThan(15);
    expect(shown.filter((s) => s.file.startsWith("src/")).length).toBeGreaterThan(20);
    expect(shown.filter((s) => s.file.startsWith("plugins/")).length).toBeGreaterThan(20);
    expect(shown.some((s) => s.text.includes("doctor --format prometheus --output"))).toBe(true);
    // A line with a global flag before the command is checked too.
    expect(shown.some((s) => s.text.startsWith("kubehyve -c ") && s.words[0] === "doctor")).toBe(true);
  });

  test("name commands and flags that exist, with a value where a flag takes one", async () => {
    const wrong: string[] = [];
    for (const s of shown) {
      const { path, rest, args } = await commandLine(s.words);
      // A placeholder for a value the message fills in is any value.
      const typed = rest.map((w) => w.replace(/\$\{[^}]*\}?/g, "x"));
      try {
        checkFlags(typed, args, path.join(" "));
      } catch (error) {
        wrong.push(`${s.file}:${s.line}: ${s.text}: ${(error as Error).message}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test("a flag that does not exist is caught, so the check above can fail", async () => {
    const { path, rest, args } = await commandLine(["doctor", "--formats", "prometheus"]);
    expect(() => checkFlags(rest, args, path.join(" "))).toThrow(
      "unknown flag --formats for kubehyve doctor",
    );
  });
});
