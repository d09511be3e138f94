/**
 * One way to wait, as talos's `conditions.PollingCondition` does it (pkg/conditions/poll.go): a
 * named condition is probed at an interval until it holds, the last reason it did not hold is kept,
 * and a timeout says both what was waited for and why it is not there yet. Cancellation ends the
 * wait at once, also in the middle of a sleep (concurrency.ts's sleep).
 */
import { sleep } from "./concurrency.ts";
import { CancelledError, KubehyveError } from "./errors.ts";
import { describeValue } from "./values.ts";

export { sleep } from "./concurrency.ts";

const PENDING = Symbol("pending");

/** A probe's "not yet", with the reason that the timeout message repeats. */
export interface Pending {
  readonly [PENDING]: string;
}

/** What a probe returns while the condition does not hold: `pending("2 of 3 pods ready")`. */
export function pending(reason: string): Pending {
  return { [PENDING]: reason };
}

function isPending(value: unknown): value is Pending {
  return typeof value === "object" && value !== null && PENDING in value;
}

export interface PollOptions {
  /** How long to wait in all. */
  timeoutMs: number;
  /** Between probes; default 1 s. */
  intervalMs?: number;
  signal?: AbortSignal;
}

/** `0.6s`, `30s`: as the targets word their timeouts. */
export function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`;
}

/**
 * Probes until it returns something other than `pending(…)`, and returns that. A probe that throws
 * ends the wait with its error: a probe that meets a passing failure (a refused connection while a
 * VM boots) says so by returning `pending(String(error))`. `description` names what is awaited
 * ("Deployment kube-system/coredns to be ready"); the timeout is a KubehyveError "timed out after
 * 30s waiting for <description>: <the last reason>", and an abort a CancelledError
 * "interrupted while waiting for <description>: <the last reason>".
 */
export async function poll<T>(
  description: string,
  probe: () => Promise<T | Pending>,
  opts: PollOptions,
): Promise<T> {
  // Plugins call this with values nobody type-checked: a timeout that is no number would make
  // the deadline NaN, and the wait endless.
  const wrong = (what: string, value: unknown, expected: string) =>
    new KubehyveError(`poll was called with ${what} that is not ${expected} (${describeValue(value)})`);
  if (typeof description !== "string") throw wrong("a description", description, "a string");
  if (typeof probe !== "function") throw wrong("a probe", probe, "a function");
  if (typeof opts !== "object" || opts === null) throw wrong("options", opts, "an object with timeoutMs");
  if (!isMilliseconds(opts.timeoutMs))
    throw wrong(`timeoutMs for ${description}`, opts.timeoutMs, "a number of milliseconds");
  if (opts.intervalMs !== undefined && !isMilliseconds(opts.intervalMs))
    throw wrong(`intervalMs for ${description}`, opts.intervalMs, "a number of milliseconds");
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal))
    throw wrong(`a signal for ${description}`, opts.signal, "an AbortSignal");
  const interval = opts.intervalMs ?? 1000;
  const deadline = Date.now() + opts.timeoutMs;
  let reason = "not probed yet";
  const interrupted = () => new CancelledError(`interrupted while waiting for ${description}: ${reason}`);
  for (;;) {
    if (opts.signal?.aborted) throw interrupted();
    const result = await probe();
    if (!isPending(result)) return result;
    reason = result[PENDING];
    const left = deadline - Date.now();
    if (left <= 0)
      throw new KubehyveError(
        `timed out after ${formatSeconds(opts.timeoutMs)} waiting for ${description}: ${reason}`,
      );
    await sleep(Math.min(interval, left), opts.signal).catch(() => {
      throw interrupted();
    });
  }
}

const isMilliseconds = (ms: unknown): ms is number =>
  typeof ms === "number" && Number.isFinite(ms) && ms >= 0;
