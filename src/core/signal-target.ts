/**
 * What a plugin's targets do with every command: give it a timeout, and decide what may kill it.
 *
 * Ctrl-C means "stop after the current step". The run's signal (ctx.signal) therefore does not
 * kill a running command: a `vm create` or a `dd` killed half-way leaves a half-made VM or disk,
 * and the cleanups after it need the host to still answer. It kills only a command whose caller
 * declared it safe to stop (`cancellable`: polls, reads, downloads to a temporary name). The hard
 * abort (a second Ctrl-C, or doctor giving up on a stage) kills every command. Commands run in
 * process groups of their own, out of reach of the terminal's Ctrl-C, so these signals are the
 * only way they stop early.
 *
 * Every command gets a limit: its caller's, or the one for its kind (CommandTimeouts: a query, a
 * change inside ctx.wet, or a known-long step). Passing the default limit fails the phase, naming
 * the command and the limit; a caller that gave its own limit gets the timed-out result (code
 * 124) to judge itself, as from any target.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { busy } from "../lib/activity.ts";
import { KubehyveError } from "../lib/errors.ts";
import { formatDuration } from "../lib/values.ts";
import type { CommandKind, RunOptions, RunResult, Target } from "../targets/target.ts";
import { showCommand } from "../targets/target.ts";
import type { CommandTimeouts } from "./model.ts";

/** Set while a ctx.wet function runs: commands started from it are changes. */
export const changeScope = new AsyncLocalStorage<true>();

/**
 * Set while one check of many runs (core/checks.ts): passing that check's limit kills the commands it
 * started, and only those.
 */
export const checkScope = new AsyncLocalStorage<AbortSignal>();

export interface RunPolicy {
  /** The run's signal: stop between steps. */
  signal: AbortSignal;
  /** Kills every command. */
  abort?: AbortSignal;
  timeouts: CommandTimeouts;
  /** While cleanups run, the run's signal (already aborted, typically) stops nothing. */
  cleaningUp?: () => boolean;
}

const WHAT: Record<CommandKind, string> = {
  read: "a query",
  change: "a change",
  long: "a long step",
};

/** A command passed its kind's default limit: the phase fails, naming both. */
export class CommandTimeoutError extends KubehyveError {
  constructor(
    readonly target: string,
    readonly argv: readonly string[],
    readonly timeoutMs: number,
    readonly kind: CommandKind,
    /** The target's word on why a command may pass its limit (RunResult.timeoutNote). */
    note?: string,
  ) {
    super(
      `${target}: \`${showCommand(argv)}\` did not finish within ${formatDuration(timeoutMs)} (the limit for ${WHAT[kind]}) and was killed`,
      undefined,
      `if it needs longer, raise timeouts.${kind} in the cluster file; otherwise find out why it hangs on ${target}${note ? ` (${note})` : ""}`,
    );
    this.name = "CommandTimeoutError";
  }
}

/**
 * Returns a function that wraps a target with `policy`. The same target always gives the same
 * wrapper, and the wrapper forwards everything else to the target (a test's recording target
 * keeps its methods).
 */
export function policyBinder(policy: RunPolicy): (target: Target) => Target {
  const wrapped = new WeakMap<Target, Target>();
  return (target) => {
    let proxy = wrapped.get(target);
    if (!proxy) {
      const run = async (argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> => {
        const kind = opts.kind ?? (changeScope.getStore() ? "change" : "read");
        const timeoutMs = opts.timeoutMs ?? policy.timeouts[kind];
        const stops: AbortSignal[] = [];
        if (policy.abort) stops.push(policy.abort);
        const check = checkScope.getStore();
        if (check) stops.push(check);
        if (opts.signal && opts.signal !== policy.signal) stops.push(opts.signal);
        if (opts.cancellable && !policy.cleaningUp?.()) stops.push(policy.signal);
        // Bounded by its timeout: the phase it runs in is waiting, not stuck (activity.ts).
        const result = await busy(() =>
          target.run(argv, {
            ...opts,
            timeoutMs,
            signal: stops.length > 1 ? AbortSignal.any(stops) : stops[0],
          }),
        );
        if (result.timedOut && opts.timeoutMs === undefined)
          throw new CommandTimeoutError(
            target.name,
            opts.shownAs ?? argv,
            timeoutMs,
            kind,
            result.timeoutNote,
          );
        return result;
      };
      proxy = new Proxy(target, {
        get(t, key) {
          if (key === "run") return run;
          const value = Reflect.get(t, key, t);
          return typeof value === "function" ? value.bind(t) : value;
        },
      });
      wrapped.set(target, proxy);
    }
    return proxy;
  };
}
