/**
 * Where the CLI writes: the process's stdout and stderr, or, for a command run in process (tests, as
 * nuxt/cli's tests call citty's runCommand), buffers of the caller's. Everything the CLI prints goes
 * through `output()` and `logger()`, so a captured run prints exactly what the binary would.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { type ConsolaInstance, createConsola } from "consola";

export interface Output {
  stdout(text: string): void;
  stderr(text: string): void;
  /** stderr is a terminal: progress is redrawn in place, and questions can be asked. */
  readonly interactive: boolean;
  /** Width of the terminal, for lines redrawn in place. */
  readonly columns?: number;
  /** stdout is a terminal: a report can be cleared and drawn anew (doctor --watch). */
  readonly stdoutTerminal?: boolean;
}

const processOutput: Output = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  get interactive() {
    return Boolean(process.stderr.isTTY);
  },
  get columns() {
    return process.stderr.columns;
  },
  get stdoutTerminal() {
    return Boolean(process.stdout.isTTY);
  },
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

/** A stream consola can write to, forwarding to one side of the current output. */
function sink(side: "stdout" | "stderr"): NodeJS.WriteStream {
  return {
    write: (chunk: string | Uint8Array) => {
      output()[side](typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk));
      return true;
    },
  } as NodeJS.WriteStream;
}

/**
 * A consola for the current output. Its reporter is chosen as consola chooses it, but never by
 * NODE_ENV: under a test runner consola would otherwise fall quiet and change its format, and the
 * captured lines would not be the binary's (built with NODE_ENV=production).
 */
export function logger(opts: { verbose?: boolean } = {}): ConsolaInstance {
  const options: Parameters<typeof createConsola>[0] & { fancy: boolean } = {
    level: opts.verbose ? 4 : 3,
    fancy: !process.env.CI,
    stdout: sink("stdout"),
    stderr: sink("stderr"),
    formatOptions: { date: false },
  };
  return createConsola(options);
}
