import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "kubehyve-lock-race-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each contender takes the lock, holds it for a while, and says whether it got it.
const CONTENDER = `
import { acquireLock } from ${JSON.stringify(join(import.meta.dir, "../../src/core/journal.ts"))};
try {
  const lock = acquireLock(process.argv[2], "up");
  await Bun.sleep(1500);
  lock.release();
  console.log("held");
} catch (error) {
  console.log(error.name);
}
`;

test("of many runs taking over a stale lock at the same moment, exactly one gets it", async () => {
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
    expect(said.filter((s) => s === "held")).toHaveLength(1);
    expect(said.filter((s) => s !== "held").every((s) => s === "LockHeldError")).toBe(true);
  }
}, 120_000);
