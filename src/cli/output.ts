/**
 * Where the CLI writes: the process's stdout and stderr, or, for a command run in process (tests, as
 * nuxt/cli's tests call citty's runCommand), buffers of the caller's. Everything the CLI prints goes
 * through `output()` and `logger()`, so a captured run prints exactly what the binary would.
 *
 * The process's own side writes to file descriptors 1 and 2 directly and never touches
 * process.stdout or process.stderr: in Bun their stream machinery (node:tty, node:net, node:stream)
 * costs 16 ms to set up even with bytecode, more than the whole rest of `config validate`, and
 * a command that prints one line should not pay for it.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { writeSync } from "node:fs";
import {
  type ConsolaInstance,
  type ConsolaOptions,
  type ConsolaReporter,
  createConsola,
  type LogObject,
} from "consola/core";

export interface Output {
  stdout(text: string): void;
  stderr(text: string): void;
  /** stderr is a terminal: progress is redrawn in place, and questions can be asked. */
  readonly interactive: boolean;
  /** Width of the terminal, for lines redrawn in place. */
  readonly columns?: number;
  /** stdout is a terminal: a report can be cleared and drawn anew (doctor --watch). */
  readonly stdoutTerminal?: boolean;
  /**
   * stdout takes nothing more: its reader went away (`kubehyve doctor --watch 5 | head -1`), or a
   * write failed (a full disk under `> file`); what is written there from now on is dropped.
   */
  readonly stdoutGone?: boolean;
  /** Lines on this side may be coloured (a terminal, and nobody said NO_COLOR). */
  colors?(side: "stdout" | "stderr"): boolean;
}

/**
 * One line of a command's `--json` answer (README, "--json"): version 1 and the time it was written,
 * as every event of a run has them, so that a script reads every command's lines alike.
 */
export function jsonLine(record: { type: string } & Record<string, unknown>): string {
  return `${JSON.stringify({ v: 1, ts: new Date().toISOString(), ...record })}\n`;
}

/**
 * isatty(3) of `fd`. Bun answers it natively through the tty_wrap binding (what Node's own tty
 * module calls); node:tty's isatty would load the stream machinery this module avoids. The
 * fallback keeps the answer right should a runtime drop the binding.
 */
export function isTerminal(fd: number): boolean {
  try {
    const binding = (
      process as unknown as { binding(name: string): { isTTY?(fd: number): boolean } }
    ).binding("tty_wrap");
    if (typeof binding.isTTY === "function") return binding.isTTY(fd);
  } catch {
    // No binding: ask node:tty.
  }
  return (require("node:tty") as typeof import("node:tty")).isatty(fd);
}

/** The descriptors whose reader went away (EPIPE, or EIO once the terminal hung up), or that failed. */
const gone = new Set<number>();
/** The first write that failed for another reason (a full disk under `> file`): said at exit. */
let failedWrite: { fd: number; message: string } | undefined;
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * All of `text` written to `fd`, synchronously: when this returns it is out, in the order written,
 * and a process.exit() after it loses nothing. A pipe a parent made non-blocking answers EAGAIN when
 * full: wait a millisecond for its reader and go on. A reader that went away is not an error of the
 * command's; what it would have read is dropped, as a closed stream drops it. Any other failure (a
 * full disk) drops the rest too, rather than stop a run between two steps of a host's change, and
 * is said once the command is done (lostOutput).
 */
export function writeFully(fd: number, text: string): void {
  if (gone.has(fd) || text === "") return;
  const bytes = new TextEncoder().encode(text);
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(fd, bytes, done, bytes.length - done);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EAGAIN") {
        Atomics.wait(pause, 0, 0, 1);
        continue;
      }
      gone.add(fd);
      // EIO from a terminal is its hang-up; from a file it is a failing disk, and said.
      const readerGone = code === "EPIPE" || (code === "EIO" && isTerminal(fd));
      if (!readerGone) failedWrite ??= { fd, message: (error as Error).message };
      return;
    }
  }
}

/** What could not be written, for the line main.ts ends with: `stdout: ENOSPC: no space left…`. */
export function lostOutput(): string | undefined {
  return failedWrite && `${failedWrite.fd === 1 ? "stdout" : "stderr"}: ${failedWrite.message}`;
}

/** Whether process.stdout or process.stderr was ever made: only then is there a stream to drain. */
let streamsMade = false;

/** The process's stderr stream, for what only a terminal needs (its width); made when first asked. */
function stderrStream(): NodeJS.WriteStream {
  streamsMade = true;
  return process.stderr;
}

/** What to wait for before exiting: the streams, if something made them. */
export function processStreamsMade(): boolean {
  return streamsMade;
}

/**
 * The values of FORCE_COLOR that ask for colours, as Node reads it (doc/api/cli.md, FORCE_COLOR:
 * "1, true, or the empty string" and 2 or 3 for more colours; "any other value will result in
 * colorized output being disabled"): FORCE_COLOR=false must not colour the lines.
 */
const FORCE_COLOR_ON = new Set(["", "1", "2", "3", "true"]);

/** NO_COLOR (https://no-color.org: set and not empty) wins, then FORCE_COLOR, then a terminal. */
function colorsOn(fd: number): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.FORCE_COLOR !== undefined) return FORCE_COLOR_ON.has(process.env.FORCE_COLOR);
  return process.env.TERM !== "dumb" && isTerminal(fd);
}

/**
 * Whether the terminal moves its cursor when told (\r\x1b[2K to redraw a line, a clear screen):
 * TERM=dumb (Emacs' shell, some consoles) says it does not, and would show the sequences as text.
 */
export function cursorMoves(): boolean {
  return process.env.TERM !== "dumb";
}

const processOutput: Output = {
  stdout: (text) => writeFully(1, text),
  stderr: (text) => writeFully(2, text),
  get interactive() {
    return isTerminal(2);
  },
  get columns() {
    return isTerminal(2) ? stderrStream().columns : undefined;
  },
  get stdoutTerminal() {
    return isTerminal(1);
  },
  get stdoutGone() {
    return gone.has(1);
  },
  colors: (side) => colorsOn(side === "stdout" ? 1 : 2),
};

const captured = new AsyncLocalStorage<Output>();

export function output(): Output {
  return captured.getStore() ?? processOutput;
}

/** Runs `fn` with everything the CLI prints going to `out`. */
export function withOutput<T>(out: Output, fn: () => Promise<T>): Promise<T> {
  return captured.run(out, fn);
}

/**
 * `text` with every control or format character but the line break and the tab escaped as a JSON
 * string would have it (ESC as \u001b). What a host or a cluster said ends up in messages, and
 * raw it could retitle the terminal, clear it, or make a line say something else.
 */
export function printable(text: string): string {
  return text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (c) =>
    c === "\n" || c === "\t" ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The most of one text (a message, a detail) shown on the terminal; the run's log keeps it whole. */
const SHOWN_CHARS = 10_000;

/**
 * `text` cut to SHOWN_CHARS, saying how much was left out. A host printing without end must not
 * flood the terminal with it, once per place a message is shown.
 */
export function shortened(text: string): string {
  if (text.length <= SHOWN_CHARS) return text;
  return `${text.slice(0, SHOWN_CHARS)}… (${text.length - SHOWN_CHARS} characters more: the whole text is in the run's log)`;
}

/**
 * `text` as it may go to `side`: colour sequences (SGR, as citty's usage text carries whatever the
 * output) taken out unless colours are on there, so that help piped to a file or a pager is plain.
 */
export function coloredFor(side: "stdout" | "stderr", text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the sequences start with ESC.
  return output().colors?.(side) ? text : text.replace(/\x1b\[[0-9;]*m/g, "");
}

/** The SGR sequences the lines use; `paint` leaves text alone when colours are off. */
const SGR = {
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  magenta: [35, 39],
  cyan: [36, 39],
  gray: [90, 39],
  bgRed: [41, 49],
  bgYellow: [43, 49],
  black: [30, 39],
  underline: [4, 24],
} as const;
type Color = keyof typeof SGR;

/** What each type of line starts with, and its colour: consola's fancy reporter's (consola 3.4). */
const TYPE_ICON: Record<string, string> = {
  error: "✖",
  fatal: "✖",
  fail: "✖",
  warn: "⚠",
  info: "ℹ",
  success: "✔",
  ready: "✔",
  debug: "⚙",
  trace: "→",
  start: "◐",
  log: "",
};
const TYPE_COLOR: Record<string, Color> = {
  info: "cyan",
  fail: "red",
  success: "green",
  ready: "green",
  start: "magenta",
};
const LEVEL_COLOR: Record<number, Color> = { 0: "red", 1: "yellow" };

/**
 * Lines for people, as consola's fancy reporter draws them: an icon in the type's colour, the
 * message with `code` in cyan (its backquotes dropped), errors and fatal messages as a badge between
 * blank lines unless the call says `badge: false`. Errors and warnings go to stderr, the rest to
 * stdout. consola's own fancy build is not used because its module makes process.stdout and
 * process.stderr at its top level (see the top of this file).
 */
export function lineReporter(out: () => Output): ConsolaReporter {
  return {
    log(logObj: LogObject) {
      const side = logObj.level < 2 ? "stderr" : "stdout";
      const target = out();
      const on = target.colors?.(side) ?? false;
      const paint = (color: Color, text: string) =>
        on && text ? `\x1b[${SGR[color][0]}m${text}\x1b[${SGR[color][1]}m` : text;
      const format = (text: string) =>
        text
          .replace(/`([^`]+)`/gm, (_, m: string) => paint("cyan", m))
          .replace(/\s+_([^_]+)_\s+/gm, (_, m: string) => ` ${paint("underline", m)} `);
      // What a line names (a path, a cluster file's name, a plugin dir) came from the user or a
      // host: escaped here, before the line's own colours are added, it can never drive the terminal.
      const text = printable(
        logObj.args
          .map((arg: unknown) =>
            typeof arg === "string"
              ? arg
              : arg instanceof Error
                ? (arg.stack ?? `${arg.name}: ${arg.message}`)
                : Bun.inspect(arg, { colors: false }),
          )
          .join(" "),
      );
      const [first = "", ...rest] = text.split("\n");
      const color = TYPE_COLOR[logObj.type] ?? LEVEL_COLOR[logObj.level] ?? "gray";
      const badge = logObj.badge ?? logObj.level < 2;
      const head = badge
        ? paint(
            color === "red" ? "bgRed" : color === "yellow" ? "bgYellow" : color,
            paint("black", ` ${logObj.type.toUpperCase()} `),
          )
        : paint(color, TYPE_ICON[logObj.type] ?? logObj.type);
      let line = [head, format(first)].filter(Boolean).join(" ");
      if (rest.length) line += format(`\n${rest.join("\n")}`);
      target[side](badge ? `\n${line}\n\n` : `${line}\n`);
    },
  };
}

/**
 * A consola for the current output: consola's levels, types, throttling of repeated lines and
 * prompt, with the lines of lineReporter. The same on a terminal, a pipe, under CI and under a test
 * runner, so that the captured lines are the binary's.
 */
export function logger(opts: { verbose?: boolean } = {}): ConsolaInstance {
  return createConsola({
    level: opts.verbose ? 4 : 3,
    reporters: [lineReporter(output)],
    // consola's question prompts read the terminal through process.stdin and process.stdout: they
    // are loaded, and make those streams, only when a question is asked.
    prompt: (async (message: string, promptOptions?: Parameters<ConsolaInstance["prompt"]>[1]) => {
      streamsMade = true;
      const { consola } = await import("consola");
      return consola.prompt(message, promptOptions);
    }) as ConsolaOptions["prompt"],
  });
}
