/**
 * The binary starts with JavaScriptCore's JIT held back (compile.jitPolicy) and puts the normal
 * policy back once a command has run for a while (src/cli/jit-policy.ts). Whether holding it back
 * pays is measured by scripts/bench-startup.ts; these hold the mechanics to what it promises.
 */
import { describe, expect, test } from "bun:test";
import { buildConfig } from "../../build.ts";
import { RESTORE_AFTER_MS, restoreJitPolicyAfter, STARTUP_JIT_POLICY } from "../../src/cli/jit-policy.ts";

describe("the start-up JIT policy", () => {
  test("is baked into every binary build.ts makes, the cross-compiled ones too", () => {
    expect(STARTUP_JIT_POLICY).toBeGreaterThan(1);
    for (const target of ["freebsd-x64", "linux-x64", "linux-arm64"] as const)
      expect(buildConfig({ target, outfile: "/nonexistent/kubehyve", commit: "x" }).compile).toMatchObject({
        jitPolicy: STARTUP_JIT_POLICY,
      });
  });

  test("is put back to normal once, after the delay, by a timer that keeps no process alive", async () => {
    const calls: number[] = [];
    const timer = restoreJitPolicyAfter(40, (scale) => calls.push(scale));
    expect(timer?.hasRef()).toBe(false);
    await Bun.sleep(10);
    expect(calls).toEqual([]);
    await Bun.sleep(100);
    expect(calls).toEqual([1]);
  });

  test("by default after RESTORE_AFTER_MS, through Bun's own setter", async () => {
    expect(typeof Bun.unsafe.setJITPolicy).toBe("function");
    const timer = restoreJitPolicyAfter();
    expect(timer).toBeDefined();
    // A command that exits first is not held up by it: the same timer in a process that ends at once.
    const started = performance.now();
    const child = Bun.spawnSync([
      process.execPath,
      "-e",
      `const { restoreJitPolicyAfter } = await import(${JSON.stringify(`${import.meta.dir}/../../src/cli/jit-policy.ts`)}); restoreJitPolicyAfter(5000);`,
    ]);
    expect(child.success).toBe(true);
    expect(performance.now() - started).toBeLessThan(4000);
    await Bun.sleep(RESTORE_AFTER_MS + 50);
  });

  test("is left alone where the runtime has no setter", () => {
    expect(restoreJitPolicyAfter(10, null)).toBeUndefined();
  });
});
