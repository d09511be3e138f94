import { expect, test } from "bun:test";
import { processAlive } from "../../src/lib/process.ts";

test("a running process is alive, this one and one of another user alike", () => {
  expect(processAlive(process.pid)).toBe(true);
  // pid 1 is init's: as root kill(1, 0) succeeds, as anyone else it fails with EPERM, and either
  // way the process is there.
  expect(processAlive(1)).toBe(true);
});

test("a process that ended and was reaped is gone", async () => {
  const child = Bun.spawn(["true"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  await child.exited;
  expect(processAlive(child.pid)).toBe(false);
});
