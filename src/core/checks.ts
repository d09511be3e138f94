/**
 * Many independent checks of one stage (one per node, say), side by side, each with a limit of its
 * own: a check that hangs is one error naming it and the limit, and only the commands it started are
 * killed; a check whose machine cannot be reached is a `skip` naming why, because the run reports
 * the machine itself once (core/reach.ts). Every stage uses this one helper, through the plugin API.
 */
import { CancelledError, KubehyveError } from "../lib/errors.ts";
import type { PluginContext } from "./contract.ts";
import { type Diagnostic, diag } from "./diagnostics.ts";
import { UnreachableError } from "./reach.ts";
import { checkScope } from "./signal-target.ts";

export interface EachCheckOptions<T> {
  /**
   * The id of the finding this check gives when it cannot run or does not finish (the findings it
   * returns keep their own ids): `coreos.node`, `rook.node-checks`.
   */
  id: string;
  /** What one check looks at, for its messages: `the checks of node cp1`. */
  title: (item: T) => string;
  /** The node or host one check concerns (the findings' `target`). */
  target?: (item: T) => string | undefined;
  /** At most this many side by side; default 8. */
  concurrency?: number;
  /** The limit of one check; default 60 s. */
  timeoutMs?: number;
}

export const CHECK_TIMEOUT_MS = 60_000;

/** Why a check could not run, as one finding: a skip when its machine is unreachable, else an error. */
export function findingOfFailure(id: string, title: string, error: unknown, target?: string): Diagnostic {
  if (error instanceof UnreachableError) {
    return diag.skip(id, `${title}: skipped, ${error.machine} is unreachable`, {
      target: target ?? error.machine,
      detail: error.message,
      hint: `${error.machine} is reported once, as ${error.id}; fix that and run kubehyve doctor again`,
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return diag.error(id, `${title}: could not run: ${message.split("\n")[0]}`, {
    ...(target ? { target } : {}),
    detail: message.includes("\n") ? message : undefined,
    hint:
      (error instanceof KubehyveError && error.hint) ||
      "kubehyve doctor --verbose; the run's log in the state dir has every command and its output",
  });
}

/** Runs `check` for every item side by side, each under its own limit; the findings in item order. */
export async function checkEach<T>(
  ctx: Pick<PluginContext<unknown>, "signal">,
  items: readonly T[],
  check: (item: T) => Promise<Diagnostic[]>,
  opts: EachCheckOptions<T>,
): Promise<Diagnostic[]> {
  const limit = opts.timeoutMs ?? CHECK_TIMEOUT_MS;
  const results: Diagnostic[][] = new Array(items.length);
  let next = 0;
  const one = async (item: T): Promise<Diagnostic[]> => {
    const stop = new AbortController();
    const outer = checkScope.getStore();
    const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal;
    let timer: Timer | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), limit);
    });
    try {
      const running = checkScope.run(signal, () => check(item));
      // Once given up on, the check still ends (its commands are killed): nobody awaits that.
      running.catch(() => {});
      const outcome = await Promise.race([running, timedOut]);
      if (outcome !== "timeout") return outcome;
      // Kills the commands this check started, and only those (signal-target.ts reads checkScope).
      stop.abort(new KubehyveError(`${opts.title(item)} did not finish in time`));
      const seconds = limit < 1000 ? `${limit} ms` : `${Math.round(limit / 1000)} s`;
      return [
        diag.error(opts.id, `${opts.title(item)}: did not finish within ${seconds}`, {
          ...(opts.target?.(item) ? { target: opts.target(item) } : {}),
          hint: "what it ran was stopped; kubehyve doctor --verbose, and the run's log, show the command that hung",
        }),
      ];
    } catch (error) {
      if (error instanceof CancelledError || ctx.signal.aborted) throw error;
      return [findingOfFailure(opts.id, opts.title(item), error, opts.target?.(item))];
    } finally {
      clearTimeout(timer);
    }
  };
  const worker = async () => {
    while (next < items.length) {
      if (ctx.signal.aborted) throw ctx.signal.reason ?? new CancelledError();
      const i = next++;
      results[i] = await one(items[i] as T);
    }
  };
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 8, items.length)) }, worker),
  );
  return results.flat();
}
