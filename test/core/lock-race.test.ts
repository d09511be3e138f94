import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "kubehyve-lock-race-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each contender tries the lock once and says so in a file of its own; one that got it holds it
// until every contender has said, so that a contender started late on a busy machine cannot take a
// lock the winner has already let go.
const CONTENDER = `
import { existsSync, writeFileSync } from "node:fs";
import { acquireLock } from ${JSON.stringify(join(import.meta.dir, "../../src/core/journal.ts"))};
const [state, said, release] = process.argv.slice(2);
let lock;
try {
  lock = acquireLock(state, "up");
  writeFileSync(said, "held");
} catch (error) {
  writeFileSync(said, error.name);
}
if (lock) {
  while (!existsSync(release)) await Bun.sleep(20);
  lock.release();
}
`;

test("of many runs taking over a stale lock at the same moment, exactly one gets it", async () => {
  const script = join(dir, "contender.ts");
  writeFileSync(script, CONTENDER);
  for (let round = 0; round < 8; round++) {
    const state = mkdtempSync(join(dir, "state-"));
    const saidDir = mkdtempSync(join(dir, "said-"));
    const release = join(saidDir, "release");
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    writeFileSync(
      join(state, "lock"),
      JSON.stringify({ pid: dead.pid, command: "up", since: new Date().toISOString() }),
    );
    const runs = Array.from({ length: 24 }, (_, i) =>
      Bun.spawn([process.execPath, script, state, join(saidDir, `${i}.said`), release]),
    );
    const said = async () => {
      const found: string[] = [];
      for (let i = 0; i < runs.length; i++) {
        const file = Bun.file(join(saidDir, `${i}.said`));
        if (await file.exists()) found.push(await file.text());
      }
      return found;
    };
    // Every contender has tried while the winner still holds the lock.
    while ((await said()).length < runs.length && runs.some((p) => p.exitCode === null)) await Bun.sleep(50);
    const answers = await said();
    writeFileSync(release, "");
    await Promise.all(runs.map((p) => p.exited));
    expect(answers).toHaveLength(runs.length);
    expect(answers.filter((s) => s === "held")).toHaveLength(1);
    expect(answers.filter((s) => s !== "held").every((s) => s === "LockHeldError")).toBe(true);
  }
}, 120_000);
