/**
 * The command line: a lazy map of commands (only the one being run is imported), flags checked
 * before anything runs, and errors turned into messages and exit codes. This is the only layer that
 * prints errors or exits.
 */
import { type ArgsDef, type CommandDef, defineCommand, renderUsage, runCommand } from "citty";
import { quoted } from "../core/config.ts";
import { CancelledError, ExitCode, InputError, KubehyveError } from "../lib/errors.ts";
import { globalArgs, selectionArgs, shownRequired } from "./_args.ts";
import { coloredFor, jsonLine, output } from "./output.ts";

type Loader = () => Promise<CommandDef<ArgsDef>>;
const load = (p: Promise<{ default: unknown }>) => p.then((m) => m.default as CommandDef<ArgsDef>);

export const commands: Record<string, Loader> = {
  init: () => load(import("./init.ts")),
  plan: () => load(import("./plan.ts")),
  up: () => load(import("./up.ts")),
  verify: () => load(import("./verify.ts")),
  expose: () => load(import("./expose.ts")),
  doctor: () => load(import("./doctor.ts")),
  down: () => load(import("./down.ts")),
  render: () => load(import("./render.ts")),
  plugins: () => load(import("./plugins.ts")),
  config: () => load(import("./config.ts")),
  kubeconfig: () => load(import("./kubeconfig.ts")),
  version: () => load(import("./version.ts")),
};

export const main = defineCommand({
  meta: { name: "kubehyve", description: "A production-shaped Kubernetes lab on one FreeBSD host" },
  subCommands: commands,
});

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

export function suggest(input: string, candidates: readonly string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of candidates) {
    const d = name.startsWith(input) && input.length >= 2 ? 0.5 : distance(input, name);
    if (d <= Math.max(2, Math.floor(name.length / 3)) && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

function flagNames(args: ArgsDef): {
  names: Set<string>;
  values: Set<string>;
  /** Every name and alias → the flag's own name. */
  canonical: Map<string, string>;
  /** Flags that may be given more than once: their description says so, as the usage shows it. */
  repeatable: Set<string>;
  /** How many positional arguments the command takes. */
  positionals: number;
} {
  const names = new Set(["help", "h"]);
  const values = new Set<string>();
  const canonical = new Map<string, string>();
  const repeatable = new Set<string>();
  let positionals = 0;
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") {
      positionals++;
      continue;
    }
    const alias = (def as { alias?: string | string[] }).alias;
    const aliases = alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
    if (/\brepeatable\b/.test(def.description ?? "")) repeatable.add(name);
    for (const n of [name, ...aliases]) {
      names.add(n);
      canonical.set(n, name);
      if (def.type === "string" || def.type === "enum") values.add(n);
    }
  }
  return { names, values, canonical, repeatable, positionals };
}

/**
 * Refuses what citty would quietly get wrong: flags a command does not know (with a suggestion),
 * a flag without its value, an empty value, one flag given two values (citty keeps the last: `-c
 * a.yaml … -c b.yaml` would act on b.yaml), and words no flag takes (citty drops them: `kubehyve
 * plan offline` would inspect the host).
 */
export function checkFlags(rawArgs: readonly string[], args: ArgsDef, command: string): void {
  const { names, values, canonical, repeatable, positionals: allowed } = flagNames(args);
  const given = new Map<string, string>();
  /** Each switch given: on (--X) or off (--no-X). */
  const switches = new Map<string, boolean>();
  const words: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const token = rawArgs[i]!;
    if (token === "--") {
      words.push(...rawArgs.slice(i + 1));
      break;
    }
    if (!token.startsWith("-") || token === "-") {
      words.push(token);
      continue;
    }
    const [flag] = token.replace(/^--?/, "").split("=");
    // citty keeps the "=" of a short flag in its value: -c=lab.yaml would name the file
    // "=lab.yaml", and -y=no would be -y, -=, -n and -o.
    if (!token.startsWith("--") && token.includes("="))
      throw new InputError(
        `${token}: a short flag takes its value after a space, not after "="; nothing was done`,
        `write -${flag!.slice(-1)} VALUE, or the long flag with "=": see kubehyve ${command} --help`,
      );
    const shortGroup = !token.startsWith("--") && flag!.length > 1 ? flag!.split("") : [flag!];
    for (const [at, name] of shortGroup.entries()) {
      const negated = name.startsWith("no-") && names.has(name.slice(3));
      const plain = negated ? name.slice(3) : name;
      if (!names.has(plain)) {
        const guess = suggest(
          plain,
          [...names].filter((n) => n.length > 1),
        );
        throw new InputError(
          `unknown flag ${token} for kubehyve ${command}`,
          guess ? `did you mean --${guess}?` : `see kubehyve ${command} --help`,
        );
      }
      if (!values.has(plain)) {
        // citty reads --yes=no as yes (any word but "false" is true): a switch takes no value.
        if (token.includes("="))
          throw new InputError(
            `${token}: --${name} is a switch and takes no value; nothing was done`,
            `write --${name} to turn it on, or leave it out: see kubehyve ${command} --help`,
          );
        // citty lets --no-X win over --X, whichever comes last.
        const own = canonical.get(plain) ?? plain;
        const before = switches.get(own);
        if (before !== undefined && before !== !negated)
          throw new InputError(
            `--${own} and --no-${own} were both given; nothing was done`,
            `give one of them: see kubehyve ${command} --help`,
          );
        switches.set(own, !negated);
        continue;
      }
      // citty, like getopt, takes the rest of the group as the value (-cy: config "y"), while
      // the person meant the next word.
      if (at < shortGroup.length - 1) {
        const others = shortGroup.filter((_, k) => k !== at).join("");
        throw new InputError(
          `${token}: -${name} takes a value, so it must come last in a group of short flags`,
          `write -${others}${name} VALUE, or -${name} VALUE on its own`,
        );
      }
      const inline = token.includes("=");
      // citty would quietly take the flag as empty, and -c would fall back to the default file.
      if (!inline && (i + 1 >= rawArgs.length || rawArgs[i + 1] === "--"))
        throw new InputError(`${token} needs a value`, `see kubehyve ${command} --help`);
      const value = inline ? token.slice(token.indexOf("=") + 1) : rawArgs[++i]!;
      // An empty value is most often an unset variable (`-c "$CLUSTER"`): taken as "no value",
      // -c "" would act on ./kubehyve.yaml and --state-dir "" on the working directory.
      if (!value.trim()) {
        const shown = inline ? token.slice(0, token.indexOf("=")) : token;
        throw new InputError(
          `${shown} was given an empty value${inline ? "" : ` (${JSON.stringify(value)})`}; nothing was done`,
          `give ${shown} a value, or leave the flag out: see kubehyve ${command} --help`,
        );
      }
      const own = canonical.get(plain)!;
      const before = given.get(own);
      if (before !== undefined && before !== value && !repeatable.has(own))
        throw new InputError(
          `--${own} was given twice, as ${JSON.stringify(before)} and ${JSON.stringify(value)}; nothing was done`,
          `give --${own} once: see kubehyve ${command} --help`,
        );
      given.set(own, value);
    }
  }
  if (words.length > allowed)
    throw new InputError(
      allowed === 0
        ? `kubehyve ${command} takes no arguments, but got: ${words.join(" ")}`
        : `kubehyve ${command} takes ${allowed} argument${allowed === 1 ? "" : "s"}, but got ${words.length}: ${words.join(" ")}`,
      `see kubehyve ${command} --help`,
    );
}

async function usage(path: string[]): Promise<string> {
  let cmd: CommandDef<ArgsDef> = main as CommandDef<ArgsDef>;
  const walked: string[] = [];
  for (const name of path) {
    const subs = (await cmd.subCommands) as Record<string, Loader | CommandDef<ArgsDef>> | undefined;
    const sub = subs?.[name];
    if (!sub) break;
    walked.push(name);
    cmd = typeof sub === "function" ? await (sub as Loader)() : sub;
  }
  // citty names a command after its parent alone (`config validate`): the parent given here is
  // the whole way to it, so that the usage line is one to type.
  const parent = walked.length
    ? { meta: { name: ["kubehyve", ...walked.slice(0, -1)].join(" ") } }
    : undefined;
  // citty shows every alias with one dash (`-upgrade-image`), which the command line takes for a
  // group of short flags and refuses: a long alias is shown with two, as it is typed.
  const args = Object.fromEntries(
    Object.entries(((await cmd.args) ?? {}) as ArgsDef).map(([name, def]) => {
      const shown = shownRequired.has(def) ? { ...def, required: true } : def;
      const alias = (def as { alias?: string | string[] }).alias;
      if (alias === undefined) return [name, shown];
      const aliases = (Array.isArray(alias) ? alias : [alias]).map((a) => (a.length > 1 ? `-${a}` : a));
      return [name, { ...shown, alias: aliases }];
    }),
  ) as ArgsDef;
  return renderUsage({ ...cmd, args }, parent as CommandDef<ArgsDef> | undefined);
}

/** The shared flags that take a value: their value may stand before the command's name. */
const valueFlags = flagNames({ ...globalArgs, ...selectionArgs }).values;

/** Where the next command name is in `rest`: the first word that is neither a flag nor a flag's value. */
function nextWord(rest: readonly string[]): number {
  for (let i = 0; i < rest.length; i++) {
    const token = rest[i]!;
    if (token === "--") return -1;
    if (!token.startsWith("-") || token === "-") return i;
    const name = token.replace(/^--?/, "");
    // `-c FILE` / `--state-dir DIR`: FILE is the flag's value, not a command.
    if (!name.includes("=") && valueFlags.has(token.startsWith("--") ? name : name.slice(-1))) i++;
  }
  return -1;
}

/** Splits `kubehyve [flags] cmd [sub] [flags]` into the command path and the rest. */
async function resolvePath(
  rawArgs: string[],
): Promise<{ path: string[]; rest: string[]; leaf: CommandDef<ArgsDef> }> {
  let cmd: CommandDef<ArgsDef> = main as CommandDef<ArgsDef>;
  const path: string[] = [];
  const rest = [...rawArgs];
  for (;;) {
    const subs = (await cmd.subCommands) as Record<string, Loader | CommandDef<ArgsDef>> | undefined;
    if (!subs) break;
    const index = nextWord(rest);
    if (index < 0) break;
    const name = rest[index]!;
    const sub = subs[name];
    if (!sub) {
      const guess = suggest(name, Object.keys(subs));
      const where = path.length ? `kubehyve ${path.join(" ")}` : "kubehyve";
      throw new InputError(
        `unknown command "${name}" for ${where}`,
        guess ? `did you mean \`${where} ${guess}\`?` : `${where} --help lists the commands`,
      );
    }
    rest.splice(index, 1);
    path.push(name);
    cmd = typeof sub === "function" ? await (sub as Loader)() : sub;
  }
  return { path, rest, leaf: cmd };
}

/**
 * An error of the operating system on one of kubehyve's own files (the state dir, the cluster file,
 * the plugin path): the user's to fix, so it is shown as a message, not as a bug with a stack.
 */
function systemError(error: unknown): KubehyveError | undefined {
  const e = error as NodeJS.ErrnoException | undefined;
  if (!(e instanceof Error) || typeof e.code !== "string" || !/^E[A-Z]+$/.test(e.code) || !e.syscall)
    return undefined;
  const where = e.path ? ` ${e.path}` : "";
  const hints: Record<string, string> = {
    EACCES: `check the permissions of${where || " the path"}; kubehyve up and down normally run as root, or pass --state-dir DIR`,
    EPERM: `check the permissions of${where || " the path"}; kubehyve up and down normally run as root`,
    EROFS: "the file system is read-only: pass --state-dir DIR on a writable one",
    ENOTDIR: `a file stands where a directory is expected${where ? ` on the way to${where}` : ""}`,
    EEXIST: `something is in the way at${where || " the path"}`,
    ENOSPC: "the disk is full",
  };
  return new KubehyveError(e.message, ExitCode.phaseFailed, hints[e.code]);
}

/** `text` with every control or format character escaped as a JSON string would have it. */
const visible = (text: string) => text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (c) => quoted(c).slice(1, -1));

/** The most of one text of an error shown on the terminal (--json keeps it whole). */
const SHOWN_ERROR_CHARS = 4_000;

/**
 * `text` cut to SHOWN_ERROR_CHARS: a message echoes what it was given, and a 1 MB value pasted
 * into a flag must not come back as 1 MB on the terminal, once in the message and again in the hint.
 */
function cut(text: string): string {
  if (text.length <= SHOWN_ERROR_CHARS) return text;
  return `${text.slice(0, SHOWN_ERROR_CHARS)}… (${text.length - SHOWN_ERROR_CHARS} characters more)`;
}

export function printError(thrown: unknown, json: boolean, verbose = false): number {
  const system = systemError(thrown);
  if (system && verbose && !json) output().stderr(`${(thrown as Error).stack}\n`);
  const error = system ?? thrown;
  const known = error instanceof KubehyveError;
  const exitCode = known ? error.exitCode : ExitCode.phaseFailed;
  if (json) {
    const problems = error instanceof InputError ? error.problems : undefined;
    const warnings = error instanceof InputError && error.warnings.length ? error.warnings : undefined;
    output().stdout(
      jsonLine({
        type: "error",
        message: (error as Error).message,
        hint: known ? error.hint : undefined,
        problems,
        warnings,
        exitCode,
      }),
    );
    return exitCode;
  }
  if (!known) {
    output().stderr(`✖ kubehyve hit a bug: ${(error as Error)?.stack ?? String(error)}\n`);
    return exitCode;
  }
  output().stderr(`✖ ${cut(visible(error.message))}\n`);
  if (error instanceof InputError) {
    for (const p of error.problems) {
      const where = p.where ? `${p.where}: ` : "";
      // One problem, one line: what the file put into a message (a name with a line break or an
      // escape sequence, in a stage's own message too) is shown escaped, never raw.
      output().stderr(`  ${cut(visible(`${where}${p.path ? `${p.path}: ` : ""}${p.message}`))}\n`);
      if (p.hint) output().stderr(`    → ${cut(visible(p.hint))}\n`);
    }
    for (const w of error.warnings) {
      output().stderr(`  ⚠ ${cut(visible(`${w.path ? `${w.path}: ` : ""}${w.summary}`))}\n`);
      if (w.hint) output().stderr(`    → ${cut(visible(w.hint))}\n`);
    }
  }
  if (error.hint) output().stderr(`  → ${cut(visible(error.hint))}\n`);
  if (error instanceof CancelledError)
    output().stderr("  stopped; the journal in the state dir says where\n");
  return exitCode;
}

/**
 * Refuses an argument that was not UTF-8. The runtime decodes argv as UTF-8 and puts U+FFFD for
 * every byte it cannot read, so `init -c $'x\xff.yaml'` would write "x\uFFFD.yaml", another file than
 * the one named, and `-c` of such a file would say it does not exist while it does.
 */
function refuseUndecodable(rawArgs: readonly string[]): void {
  const bad = rawArgs.find((a) => a.includes("\uFFFD"));
  if (bad !== undefined)
    throw new InputError(
      `the argument ${quoted(bad)} is not valid UTF-8 (or holds U+FFFD), so kubehyve cannot know which file or name it means; nothing was done`,
      "give names in UTF-8: rename the file, or reach it through a link with a UTF-8 name",
    );
}

/** Runs the CLI and returns the exit code. */
export async function runCli(rawArgs: string[]): Promise<number> {
  const json = rawArgs.includes("--json");
  try {
    refuseUndecodable(rawArgs);
    let { path, rest, leaf } = await resolvePath(rawArgs);
    const help = rest.includes("--help") || rest.includes("-h");
    // `kubehyve --verbose --version` is the version too, not a usage error: only the fast path in
    // main.ts needs --version alone.
    const versionFlag = rest.findIndex((a) => a === "--version" || a === "-V");
    if (path.length === 0 && versionFlag >= 0 && !help) {
      path = ["version"];
      rest = rest.filter((_, i) => i !== versionFlag);
      leaf = await commands.version!();
    }
    if (help) {
      output().stdout(coloredFor("stdout", `${await usage(path)}\n`));
      return 0;
    }
    // No command, or a group (config) without its subcommand: citty would throw "No command
    // specified", which is the user's slip, not a bug. The usage goes to stderr: stdout may be
    // promised to --json, or piped somewhere that expects the command's output.
    if (path.length === 0 || (!leaf.run && leaf.subCommands)) {
      if (json)
        throw new InputError(
          "no command given",
          `${["kubehyve", ...path].join(" ")} --help lists the commands`,
        );
      output().stderr(coloredFor("stderr", `${await usage(path)}\n`));
      return ExitCode.badInput;
    }
    const args = ((await leaf.args) ?? {}) as ArgsDef;
    checkFlags(rest, args, path.join(" "));
    const { result } = await runCommand(leaf, { rawArgs: rest });
    return typeof result === "number" ? result : 0;
  } catch (error) {
    return printError(error, json, rawArgs.includes("--verbose"));
  }
}
