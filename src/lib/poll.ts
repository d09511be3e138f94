/**
 * One way to wait, as talos's `conditions.PollingCondition` does it (pkg/conditions/poll.go): a
 * named condition is probed at an interval until it holds, the last reason it did not hold is kept,
 * and a timeout says both what was waited for and why it is not there yet. Cancellation ends the
 * wait at once, also in the middle of a sleep (concurrency.ts's sleep).
 */
import { sleep } from "./concurrency.ts";
import { CancelledError, KubehyveError } from "./errors.ts";

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
