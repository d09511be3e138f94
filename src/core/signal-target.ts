/**
 * Ties the targets a plugin gets to the run's abort signal. A command runs in a process group of its
 * own, so Ctrl-C at the terminal never reaches it: only the run's signal can stop it. A plugin that
 * forgets `{ signal: ctx.signal }` (and readTargetFile, writeTargetFile and runOk pass none) would
 * otherwise keep a long command running after Ctrl-C, and the run would wait for it.
 */
import type { RunOptions, Target } from "../targets/target.ts";

/**
 * Returns a function that wraps a target so that every `run` also stops when `signal` aborts; a
 * signal the caller passes still works too. The same target always gives the same wrapper, and the
 * wrapper forwards everything else to the target (a test's recording target keeps its methods).
 */
export function signalBinder(signal: AbortSignal): (target: Target) => Target {
  const wrapped = new WeakMap<Target, Target>();
  return (target) => {
    let proxy = wrapped.get(target);
    if (!proxy) {
      const run = (argv: readonly string[], opts: RunOptions = {}) =>
        target.run(argv, {
          ...opts,
          signal: opts.signal && opts.signal !== signal ? AbortSignal.any([opts.signal, signal]) : signal,
        });
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
