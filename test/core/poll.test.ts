import { describe, expect, test } from "bun:test";
import { CancelledError, KubehyveError } from "../../src/lib/errors.ts";
import { pending, poll, sleep } from "../../src/lib/poll.ts";

describe("poll", () => {
  test("probes until the condition holds and returns what the probe found", async () => {
    let calls = 0;
    const value = await poll(
      "the counter to reach 3",
      async () => (++calls >= 3 ? calls : pending(`at ${calls}`)),
      { timeoutMs: 5000, intervalMs: 1 },
    );
    expect(value).toBe(3);
    expect(calls).toBe(3);
  });

  test("a timeout names what was waited for and the last reason it was not there", async () => {
    let calls = 0;
    const error = await poll("VM cp1 to stop", async () => pending(`still running (probe ${++calls})`), {
      timeoutMs: 100,
      intervalMs: 10,
    }).catch((e) => e);
    expect(error).toBeInstanceOf(KubehyveError);
    expect(error.message).toBe(
      `timed out after 0.1s waiting for VM cp1 to stop: still running (probe ${calls})`,
    );
    expect(calls).toBeGreaterThan(1);
  });

  test("a probe that throws ends the wait with its error", async () => {
    const boom = new KubehyveError("403 Forbidden");
    let calls = 0;
    await expect(
      poll(
        "x",
        async () => {
          calls++;
          throw boom;
        },
        { timeoutMs: 5000, intervalMs: 1 },
      ),
    ).rejects.toBe(boom);
    expect(calls).toBe(1);
  });

  test("an abort ends the wait in the middle of a sleep", async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 20);
    const error = await poll("forever", async () => pending("no"), {
      timeoutMs: 60_000,
      intervalMs: 30_000,
      signal: controller.signal,
    }).catch((e) => e);
    expect(error).toBeInstanceOf(CancelledError);
    expect(error.message).toBe("interrupted while waiting for forever: no");
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test("a value that is falsy still ends the wait", async () => {
    expect(await poll("zero", async () => 0, { timeoutMs: 10 })).toBe(0);
    expect(await poll("nothing", async () => undefined, { timeoutMs: 10 })).toBeUndefined();
  });
});

describe("sleep", () => {
  test("waits, or rejects at once when already aborted or aborted during the wait", async () => {
    const t0 = Date.now();
    await sleep(20);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(15);
    const aborted = AbortSignal.abort();
    await expect(sleep(10_000, aborted)).rejects.toBeInstanceOf(CancelledError);
    const controller = new AbortController();
    const during = sleep(10_000, controller.signal);
    controller.abort();
    await expect(during).rejects.toBeInstanceOf(CancelledError);
  });
});
