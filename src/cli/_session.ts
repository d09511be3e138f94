/**
 * What a run of the commands that act on a cluster shares beyond the cluster file: its reporter,
 * its questions to the person at the terminal, and Ctrl-C. Apart from _shared.ts, so that the
 * commands that run no stage (config validate, init, plugins) load none of the engine's code.
 */
import { join } from "node:path";
import type { Reporter } from "../core/reporter.ts";
import { CancelledError } from "../lib/errors.ts";
import { ensurePrivateDir } from "../lib/fsutil.ts";
import { killRunningCommands } from "../targets/local.ts";
import type { GlobalFlags } from "./_shared.ts";
import { exitNow } from "./exit-guard.ts";
import { isTerminal, logger, output, processStreamsMade } from "./output.ts";
import { humanReporter, jsonReporter } from "./reporters.ts";

/** The run's reporter; its log file goes to <state dir>/logs/. */
export async function makeReporter(
  flags: GlobalFlags,
  stateDir?: string,
  command = "run",
): Promise<Reporter> {
  let logFile: string | undefined;
  if (stateDir) {
    await ensurePrivateDir(join(stateDir, "logs"));
    logFile = join(stateDir, "logs", `${new Date().toISOString().replace(/[:.]/g, "-")}-${command}.ndjson`);
  }
  return flags.json ? jsonReporter(logFile) : humanReporter({ verbose: flags.verbose, logFile });
}

/** Questions go to a person at a terminal; with --json or without a terminal nobody can answer. */
export function askFor(flags: GlobalFlags): ((question: string) => Promise<boolean>) | undefined {
  if (flags.json || !output().interactive || !isTerminal(0)) return undefined;
  return async (question) =>
    (await logger().prompt(question, { type: "confirm", initial: false, cancel: "default" })) === true;
}

/**
 * Ctrl-C stops the run between steps: `signal` aborts, the running step finishes (only commands
 * declared safe to cancel are killed, see core/signal-target.ts), cleanups run with working
 * targets. A second Ctrl-C leaves at once: `abort` aborts and every running command is killed with
 * all it started (they sit in process groups of their own, so the terminal's SIGINT reaches
 * kubehyve alone). SIGTERM does the same, and a second SIGTERM leaves at once too; so does SIGHUP,
 * which a run gets when the terminal or the ssh session it was started from goes away: left to
 * its default it would die mid-step, its commands running on in their own process groups.
 */
export function interruptSignals(): { signal: AbortSignal; abort: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const hard = new AbortController();
  const seen = { SIGINT: 0, SIGTERM: 0, SIGHUP: 0 };
  const on = (name: keyof typeof seen, exitCode: number, message: string) => {
    const handler = () => {
      if (++seen[name] > 1) {
        hard.abort(new CancelledError("left at once"));
        killRunningCommands();
        exitNow(exitCode);
      }
      if (controller.signal.aborted) return;
      // With the terminal gone a write to it fails (EIO): that must not end the run mid-step.
      // (output()'s own writes drop what a gone terminal cannot take; process.stdout and
      // process.stderr, if a question made them, must be told to.)
      if (name === "SIGHUP" && processStreamsMade())
        for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {});
      output().stderr(message);
      // A CancelledError, so that a plugin rethrowing `signal.reason` ends the run as interrupted.
      controller.abort(
        new CancelledError(name === "SIGINT" ? "interrupted" : name === "SIGHUP" ? "hung up" : "terminated"),
      );
    };
    process.on(name, handler);
    return () => process.off(name, handler);
  };
  const offs = [
    on("SIGINT", 130, "\ninterrupted: stopping after the current step (Ctrl-C again to leave now)\n"),
    on("SIGTERM", 143, "terminated: stopping after the current step\n"),
    on("SIGHUP", 129, "hangup: stopping after the current step\n"),
  ];
  const dispose = () => {
    for (const off of offs) off();
  };
  return { signal: controller.signal, abort: hard.signal, dispose };
}
