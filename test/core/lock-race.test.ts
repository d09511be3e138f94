import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { machineId, processStart } from "../../src/core/holder.ts";

const dir = mkdtempSync(join(tmpdir(), "kubehyve-lock-race-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each contender takes the lock, holds it for a while, and says whether it got it, and from when
// to when it held it (the clock is the machine's, the same in every process).
const CONTENDER = `
import { acquireLock } from ${JSON.stringify(join(import.meta.dir, "../../src/core/journal.ts"))};
try {
  const lock = acquireLock(process.argv[2], "up");
  const from = Date.now();
  await Bun.sleep(1500);
  const to = Date.now();
  lock.release();
  console.log("held", from, to);
} catch (error) {
  console.log(error.name);
}
`;

test("of many runs taking over a stale lock at the same moment, one gets it and no two ever hold it at once", async () => {
  const script = join(dir, "contender.ts");
  writeFileSync(script, CONTENDER);
  for (let round = 0; round < 8; round++) {
    const state = mkdtempSync(join(dir, "state-"));
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    writeFileSync(
      join(state, "lock"),
      JSON.stringify({ pid: dead.pid, command: "up", since: new Date().toISOString() }),
    );
    const runs = Array.from({ length: 24 }, () =>
      Bun.spawn([process.execPath, script, state], { stdout: "pipe" }),
    );
    const said = await Promise.all(runs.map(async (p) => (await new Response(p.stdout).text()).trim()));
    // On a loaded machine a contender may start only after the first one let go, and take the lock
    // anew: what must never happen is two holding it at the same time.
    const held = said
      .filter((s) => s.startsWith("held "))
      .map((s) => s.split(" ").slice(1).map(Number) as [number, number])
      .sort((a, b) => a[0] - b[0]);
    expect(held.length).toBeGreaterThanOrEqual(1);
    for (let i = 1; i < held.length; i++) expect(held[i]![0]).toBeGreaterThanOrEqual(held[i - 1]![1]);
    expect(said.filter((s) => !s.startsWith("held ")).every((s) => s === "LockHeldError")).toBe(true);
  }
}, 120_000);

test("a stale lock that another run replaced while this one waited for the takeover lock is not removed", async () => {
  const state = mkdtempSync(join(dir, "state-"));
  const script = join(dir, "once.ts");
  writeFileSync(
    script,
    `import { acquireLock } from ${JSON.stringify(join(import.meta.dir, "../../src/core/journal.ts"))};
try {
  acquireLock(process.argv[2], "up").release();
  console.log("held");
} catch (error) {
  console.log(error.name);
}
`,
  );
  // The lock is a FIFO, so that each read of it gets what the test says at that moment: first a
  // stale lock (its pid gone), then, from the read under the takeover lock on, a live run's lock:
  // the one another run linked in between this run's two reads.
  const lock = join(state, "lock");
  expect(Bun.spawnSync(["mkfifo", "-m", "0600", lock]).exitCode).toBe(0);
  const stale = JSON.stringify({ pid: 2 ** 22 + 1, command: "up", since: new Date().toISOString() });
  const live = JSON.stringify({
    pid: process.pid,
    start: processStart(process.pid),
    machine: machineId(),
    command: "up",
    since: new Date().toISOString(),
  });
  // One write per read; the pause lets each read end before the next write opens the FIFO.
  const feeder = Bun.spawn([
    "sh",
    "-c",
    'printf %s "$1" > "$3"; while [ -p "$3" ]; do sleep 1; [ -p "$3" ] && printf %s "$2" > "$3"; done',
    "sh",
    stale,
    live,
    lock,
  ]);
  try {
    const run = Bun.spawn([process.execPath, script, state], { stdout: "pipe", timeout: 30_000 });
    expect((await new Response(run.stdout).text()).trim()).toBe("LockHeldError");
    expect(Bun.spawnSync(["test", "-p", lock]).exitCode).toBe(0);
  } finally {
    feeder.kill();
  }
}, 60_000);
