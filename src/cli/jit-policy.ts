/**
 * The JIT policy of a process that starts, does one thing and exits. Most of what kubehyve runs
 * runs once: loading its modules, reading the cluster file (the yaml library's lexer, parser and
 * composer go through every character of it once), checking the schemas. JavaScriptCore's JIT
 * would compile that code on its background threads for nothing, and on a host with few cores
 * those threads take the time from the command itself: `config validate --example` took 40%
 * longer and 8 MiB more with the normal policy (BENCHMARKS.md).
 *
 * So the binary starts with JSC's tier-up thresholds scaled by STARTUP_JIT_POLICY (build.ts bakes
 * it in), and a command still running after RESTORE_AFTER_MS is not one of the short ones: from
 * then on the JIT works as usual, for the long runs (up, doctor --watch) and for what they parse
 * in bulk (add-on manifests, Kubespray's output).
 */

/** How many times more reluctant to compile JSC is during start-up (compile.jitPolicy). */
export const STARTUP_JIT_POLICY = 100;

/** When a command is evidently not a short one. */
export const RESTORE_AFTER_MS = 200;

type SetPolicy = (scale: number) => void;

/** Bun's setter, where the runtime has one (Bun 1.4); without it the policy was never changed. */
function bunSetter(): SetPolicy | null {
  const unsafe = (Bun as { unsafe?: { setJITPolicy?: SetPolicy } }).unsafe;
  return typeof unsafe?.setJITPolicy === "function" ? unsafe.setJITPolicy.bind(unsafe) : null;
}

/**
 * Puts the normal JIT policy back after `ms`, unless the process has exited by then: the timer
 * keeps nothing alive. Returns the timer, or nothing when there is no policy to restore.
 */
export function restoreJitPolicyAfter(
  ms: number = RESTORE_AFTER_MS,
  set: SetPolicy | null = bunSetter(),
): ReturnType<typeof setTimeout> | undefined {
  if (!set) return undefined;
  const timer = setTimeout(() => set(1), ms);
  timer.unref();
  return timer;
}
