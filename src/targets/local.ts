/**
 * The machine kubehyve runs on. Commands go to the kernel as argv (posix_spawn through Bun.spawn):
 * no shell sees them, so no word needs quoting.
 */

import { stat } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { CancelledError } from "../lib/errors.ts";
import {
  FALLBACK_TIMEOUT_MS,
  MAX_OUTPUT_BYTES,
  type RunOptions,
  type RunResult,
  type Target,
  TIMEOUT_EXIT,
} from "./target.ts";

/** `text` with `line` added as a line of its own: what kubehyve says after what the command said. */
function withLine(text: string, line: string): string {
  return `${text}${text && !text.endsWith("\n") ? "\n" : ""}${line}\n`;
}

/** How long a killed command gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2000;
/**
 * How long output is still read after the process exited. Something the command left running in the
 * background (or, for ssh, a multiplexing master that owns the remote end of the pipes) may hold the
 * pipes open; the result must not wait for it forever.
 */
const DRAIN_AFTER_EXIT_MS = 2000;
/** After a kill the result is wanted now: whatever the killed command left behind is not waited for. */
const DRAIN_AFTER_KILL_MS = 250;

export class LocalTarget implements Target {
  readonly name = "local";

  run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return spawnCommand(this.name, argv, opts);
  }

  async close(): Promise<void> {}
}

/**
 * Runs argv as a child process and collects its output. Shared by the local and ssh targets (for
 * ssh, argv is the `ssh` client's own command line).
 *
 * - a missing or non-executable program gives code 127 or 126 with a clear stderr, as a shell would;
 * - the timeout (FALLBACK_TIMEOUT_MS when none is given: nothing runs forever) kills the command's
 *   whole process group and gives code 124;
 * - an abort kills it the same way and then throws CancelledError: the run is over, there is no
 *   result to inspect;
 * - death by a signal gives 128 + the signal number, as in a shell.
 */
/** Process groups of the commands running now, so that leaving in a hurry can end them too. */
const running = new Set<number>();

/**
 * Kills every command still running, with all it started. For leaving at once (a second Ctrl-C):
 * the commands sit in process groups of their own, so nothing else would stop them.
 */
export function killRunningCommands(): void {
  for (const pid of running) signalGroup(pid, "SIGKILL");
}

export async function spawnCommand(
  targetName: string,
  argv: readonly string[],
  opts: RunOptions = {},
  /** The command as the caller knows it, for messages (the ssh target passes the remote argv). */
  shown: readonly string[] = argv,
): Promise<RunResult> {
  const [program] = argv;
  if (program === undefined || program === "") throw new Error(`${targetName}: cannot run an empty command`);
  const interrupted = () =>
    Object.assign(new CancelledError(`${targetName}: interrupted \`${shown.join(" ")}\``), {
      cause: opts.signal?.reason,
    });
  if (opts.signal?.aborted) throw interrupted();

  let proc: Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe">;
  try {
    proc = Bun.spawn([...argv], {
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : undefined,
      stdin: opts.stdin === undefined ? "ignore" : stdinOf(opts.stdin),
      stdout: "pipe",
      stderr: "pipe",
      // Its own process group, so that a timeout or abort also ends what the command started. A
      // Ctrl-C at the terminal therefore reaches kubehyve alone, which turns it into an abort.
      detached: true,
    }) as Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe">;
  } catch (error) {
    return await spawnFailure(targetName, program, opts.cwd, error);
  }

  running.add(proc.pid);
  void proc.exited.finally(() => running.delete(proc.pid));

  let reason: "timeout" | "abort" | "stdout" | "stderr" | undefined;
  const kill = (why: NonNullable<typeof reason>) => {
    if (reason || proc.exitCode !== null || proc.signalCode !== null) return;
    reason = why;
    signalGroup(proc.pid, "SIGTERM");
    // The whole group gets SIGKILL after the grace, unless it is gone by then: the command itself
    // may have ended on SIGTERM while what it started (a shell waiting on its child, which defers
    // its trap) has not.
    const hard = setTimeout(() => signalGroup(proc.pid, "SIGKILL"), KILL_GRACE_MS);
    void proc.exited.finally(() => {
      if (!groupAlive(proc.pid)) clearTimeout(hard);
    });
  };
  const timeoutMs = opts.timeoutMs ?? FALLBACK_TIMEOUT_MS;
  const timer = setTimeout(() => kill("timeout"), timeoutMs);
  const onAbort = () => kill("abort");
  opts.signal?.addEventListener("abort", onAbort, { once: true });

  const exited = proc.exited;
  const drainMs = () => (reason ? DRAIN_AFTER_KILL_MS : DRAIN_AFTER_EXIT_MS);
  const stdout = collect(proc.stdout, opts.onStdout, exited, drainMs, () => kill("stdout"));
  const stderr = collect(proc.stderr, opts.onStderr, exited, drainMs, () => kill("stderr"));
  try {
    await exited;
    const result: RunResult = { code: exitCodeOf(proc), stdout: await stdout, stderr: await stderr };
    if (reason === "abort") throw interrupted();
    if (reason === "timeout") {
      const seconds = timeoutMs / 1000;
      result.code = TIMEOUT_EXIT;
      result.timedOut = true;
      result.stderr = withLine(
        result.stderr,
        `${targetName}: \`${shown.join(" ")}\` timed out after ${seconds}s`,
      );
    }
    if (reason === "stdout" || reason === "stderr") {
      if (result.code === 0) result.code = 128 + osConstants.signals.SIGTERM;
      result.stderr = withLine(
        result.stderr,
        `${targetName}: \`${shown.join(" ")}\` wrote more than ${MAX_OUTPUT_BYTES / 1024 / 1024} MiB to ${reason} and was killed`,
      );
    }
    return result;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

/** A file is streamed from disk, so a large one (a disk image) never sits in memory whole. */
function stdinOf(input: NonNullable<RunOptions["stdin"]>): Uint8Array | Bun.BunFile {
  if (typeof input === "string") return new TextEncoder().encode(input);
  if (input instanceof Uint8Array) return input;
  return Bun.file(input.file);
}

function exitCodeOf(proc: Bun.Subprocess): number {
  if (proc.exitCode !== null) return proc.exitCode;
  const signal = proc.signalCode;
  const number = signal ? osConstants.signals[signal as keyof typeof osConstants.signals] : undefined;
  return 128 + (number ?? 0);
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

/**
 * Reads a stream to its end (or until shortly after the process exited), streaming chunks to
 * `onChunk`, and keeps at most MAX_OUTPUT_BYTES of it: past that, `overflow` is called once when
 * nobody streams the output (the command is killed); a streamed command runs on.
 */
async function collect(
  stream: ReadableStream<Uint8Array>,
  onChunk: ((chunk: string) => void) | undefined,
  exited: Promise<number>,
  drainMs: () => number,
  overflow: () => void,
): Promise<string> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let kept = 0;
  let seen = 0;
  // ignoreBOM keeps a leading byte-order mark: a file read with cat and written back keeps it.
  const streaming = onChunk ? new TextDecoder("utf-8", { ignoreBOM: true }) : undefined;
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  void exited.then(() => {
    drainTimer = setTimeout(() => void reader.cancel().catch(() => {}), drainMs());
  });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (kept < MAX_OUTPUT_BYTES) {
        const room = MAX_OUTPUT_BYTES - kept;
        const part = value.length > room ? value.subarray(0, room) : value;
        chunks.push(part);
        kept += part.length;
      }
      const before = seen;
      seen += value.length;
      if (!onChunk && seen > MAX_OUTPUT_BYTES && before <= MAX_OUTPUT_BYTES) overflow();
      if (onChunk && streaming) {
        const text = streaming.decode(value, { stream: true });
        if (text) onChunk(text);
      }
    }
  } catch {
    // Cancelled after the drain period: keep what arrived.
  } finally {
    if (drainTimer) clearTimeout(drainTimer);
  }
  if (onChunk && streaming) {
    const rest = streaming.decode();
    if (rest) onChunk(rest);
  }
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(Buffer.concat(chunks));
}

async function spawnFailure(
  targetName: string,
  program: string,
  cwd: string | undefined,
  error: unknown,
): Promise<RunResult> {
  const code = (error as { code?: string }).code;
  if (cwd !== undefined && code === "ENOENT") {
    const dir = await stat(cwd).catch(() => undefined);
    if (!dir?.isDirectory())
      throw new Error(`${targetName}: cannot run ${program}: working directory ${cwd} does not exist`);
  }
  if (code === "ENOENT") {
    const why = program.includes("/") ? "no such file" : "command not found in PATH";
    return { code: 127, stdout: "", stderr: `${targetName}: ${program}: ${why}\n` };
  }
  if (code === "EACCES") {
    return {
      code: 126,
      stdout: "",
      stderr: `${targetName}: ${program}: permission denied (not an executable file)\n`,
    };
  }
  if (code === "ENOEXEC") {
    return {
      code: 126,
      stdout: "",
      stderr: `${targetName}: ${program}: cannot execute (not a program or script this system runs)\n`,
    };
  }
  throw new Error(
    `${targetName}: cannot run ${program}: ${error instanceof Error ? error.message : String(error)}`,
  );
}
