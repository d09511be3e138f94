/**
 * One way to wait, as talos's `conditions.PollingCondition` does it (pkg/conditions/poll.go): a
 * named condition is probed at an interval until it holds, the last reason it did not hold is kept,
 * and a timeout says both what was waited for and why it is not there yet. Cancellation ends the
 * wait at once, also in the middle of a sleep.
 */
import { CancelledError, KubehyveError } from "./errors.ts";

/** Resolves after `ms`, or rejects with CancelledError as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(cancelled(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function cancelled(signal: AbortSignal): Error {
  return signal.reason instanceof CancelledError ? signal.reason : new CancelledError();
}

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

function duration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

/**
 * Probes until it returns something other than `pending(…)`, and returns that. A probe that throws
 * ends the wait with its error: a probe that meets a passing failure (a refused connection while a
 * VM boots) says so by returning `pending(String(error))`. The timeout is a KubehyveError:
 * "<description>: not done after 30 s: <the last reason>".
 */
export async function poll<T>(
  description: string,
  probe: () => Promise<T | Pending>,
  opts: PollOptions,
): Promise<T> {
  const interval = opts.intervalMs ?? 1000;
  const deadline = Date.now() + opts.timeoutMs;
  let reason = "not probed yet";
  for (;;) {
    if (opts.signal?.aborted) throw cancelled(opts.signal);
    const result = await probe();
    if (!isPending(result)) return result;
    reason = result[PENDING];
    const left = deadline - Date.now();
    if (left <= 0)
      throw new KubehyveError(`${description}: not done after ${duration(opts.timeoutMs)}: ${reason}`);
    await sleep(Math.min(interval, left), opts.signal);
  }
}
