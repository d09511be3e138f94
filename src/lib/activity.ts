/**
 * What a phase has in flight: a command, a request, a download, a wait, a question to the operator.
 * Each of those is bounded (a timeout, a deadline, a person). A phase with none of them in flight is
 * running its own code, which takes milliseconds, or is stuck in it (an `await` of a promise nobody
 * settles), which no command's timeout would ever end: the engine fails such a phase once it has
 * had nothing in flight for long (core/phase.ts).
 *
 * The scope is an AsyncLocalStorage made when the first phase runs, so a command that runs no phase
 * (config validate) does not load node:async_hooks.
 */
import type { AsyncLocalStorage } from "node:async_hooks";

export class Activity {
  private inFlight = 0;
  private last = Date.now();

  /** Milliseconds since something was last in flight; 0 while something is. */
  idleMs(now = Date.now()): number {
    return this.inFlight > 0 ? 0 : now - this.last;
  }

  async during<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await fn();
    } finally {
      this.inFlight--;
      this.last = Date.now();
    }
  }
}

let scope: AsyncLocalStorage<Activity> | undefined;

/** Runs `fn` with what it (and everything it starts) has in flight counted in `activity`. */
export function withActivity<T>(activity: Activity, fn: () => T): T {
  scope ??= new (require("node:async_hooks") as typeof import("node:async_hooks")).AsyncLocalStorage();
  return scope.run(activity, fn);
}

/** Counts `fn` as in flight for the phase it runs in, if any. `fn` must be bounded. */
export function busy<T>(fn: () => Promise<T>): Promise<T> {
  const activity = scope?.getStore();
  return activity ? activity.during(fn) : fn();
}

/** An object whose every method that returns a promise counts as in flight until it settles. */
export function busyMethods<T extends object>(value: T): T {
  return new Proxy(value, {
    get(target, key) {
      const member = Reflect.get(target, key, target);
      if (typeof member !== "function") return member;
      return (...args: unknown[]) => {
        const result: unknown = member.apply(target, args);
        return result instanceof Promise ? busy(() => result) : result;
      };
    },
  });
}
