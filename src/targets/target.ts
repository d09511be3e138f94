/**
 * Where a command runs. Commands are argv arrays, never shell strings: the local target hands them
 * to the kernel as they are, the ssh target quotes each word once (see quote.ts).
 */
/** What a command is, for its default timeout (the cluster file's `timeouts`). */
export type CommandKind = "read" | "change" | "long";

export interface RunOptions {
  /**
   * Kill the command after this long; the result then has code 124, `timedOut`, and says so in
   * stderr. Without it a plugin's command gets its kind's limit, and passing that limit fails the
   * phase (CommandTimeoutError); a target used directly falls back to the longest default.
   */
  timeoutMs?: number;
  /**
   * For the default timeout: a query (the default outside ctx.wet), a change (the default inside
   * it), or a step its caller knows to be long (a disk image copy, a playbook run).
   */
  kind?: CommandKind;
  /**
   * A target used directly kills the command when this aborts. A plugin's targets treat the run's
   * own signal (ctx.signal: the first Ctrl-C) as "stop between steps": it kills only a command
   * declared `cancellable`; any other signal the caller passes kills as usual.
   */
  signal?: AbortSignal;
  /**
   * Safe to stop half-way (a poll, a read, a download to a temporary name that is cleaned up): the
   * first Ctrl-C kills it. Without it the first Ctrl-C lets the command finish.
   */
  cancellable?: boolean;
  /**
   * How messages name the command when its argv would not say what it does: a constant script run
   * with `sh -c` names the command it is about (`dd if=… of=…`).
   */
  shownAs?: readonly string[];
  /** What the command reads: text, bytes, or a local file streamed from disk (`{ file }`). */
  stdin?: string | Uint8Array | { file: string };
  /** Added to the environment the command inherits; a name set to undefined is removed from it. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Called with each chunk of stdout as it arrives (progress of long commands). */
  onStdout?: (chunk: string) => void;
  onStderr?: (chunk: string) => void;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Set when the command was killed by its timeout (code 124). */
  timedOut?: boolean;
  /**
   * With `timedOut`: what the target knows makes a command pass its limit without hanging itself
   * (over ssh, a background process holding its output), for the message that reports it.
   */
  timeoutNote?: string;
}

export interface Target {
  /** Human name used in log lines: `local`, `root@hv1`, `core@cp1`. */
  readonly name: string;
  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Releases connections (the ssh master). Safe to call twice. */
  close(): Promise<void>;
  /** Where this machine's host key is pinned, for another ssh client of the run (Ansible). */
  readonly knownHostsFile?: string;
  /**
   * The machine at this address is a new one (its VM was made anew, or destroyed): forget its
   * pinned host key, so that the next connection pins the new machine's instead of refusing it.
   */
  forgetHostKey?(): Promise<void>;
}

/** Exit code used when a command was killed by its timeout (as timeout(1) does). */
export const TIMEOUT_EXIT = 124;

/**
 * The most of one output stream a command's result holds. Nothing kubehyve runs prints near this
 * much; a host that prints without end (a broken program, a hostile one) would otherwise fill
 * memory long before the command's limit. Past it a command is killed, unless its output is
 * streamed to a callback, which gets all of it while the result keeps the first part.
 */
export const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * The limit for a command nobody gave one: the longest of the default limits (core/model.ts
 * DEFAULT_TIMEOUTS.long), so that no command the binary starts can run forever.
 */
export const FALLBACK_TIMEOUT_MS = 3 * 3600_000;

/** The command as a message shows it: long words (an inline script) and long lines cut short. */
export function showCommand(argv: readonly string[]): string {
  const words = argv.map((w) => (w.length > 60 ? `${w.slice(0, 57)}…` : w)).join(" ");
  return words.length > 200 ? `${words.slice(0, 199)}…` : words;
}

export class CommandError extends Error {
  constructor(
    readonly target: string,
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    const err = result.stderr.trim() || result.stdout.trim();
    super(
      `${target}: \`${argv.join(" ")}\` exited ${result.code}${err ? `: ${err.split("\n").slice(-3).join(" | ")}` : ""}`,
    );
    this.name = "CommandError";
  }
}

/** Runs a command and throws CommandError unless it exits 0. */
export async function runOk(target: Target, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
  const result = await target.run(argv, opts);
  if (result.code !== 0) throw new CommandError(target.name, argv, result);
  return result;
}

/** Reads a file on a target; undefined when it does not exist. */
export async function readTargetFile(target: Target, path: string): Promise<string | undefined> {
  const result = await target.run(["cat", "--", path]);
  return result.code === 0 ? result.stdout : undefined;
}

/**
 * Writes a file on a target through stdin, replacing it atomically (write to a temporary file in the
 * same directory, then rename). `mode` is an octal string such as "0600".
 */
export async function writeTargetFile(
  target: Target,
  path: string,
  content: string | Uint8Array,
  mode = "0644",
): Promise<void> {
  // The script is constant; the path travels as a positional argument, never inside the script.
  const script =
    'set -e; umask 077; tmp="$1.kubehyve.$$"; cat > "$tmp"; chmod "$2" "$tmp"; mv -f "$tmp" "$1"';
  await runOk(target, ["sh", "-c", script, "sh", path, mode], { stdin: content });
}
