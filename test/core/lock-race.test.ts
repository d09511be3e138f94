import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { machineId, processStart } from "../../src/core/holder.ts";

const dir = mkdtempSync(join(tmpdir(), "kubehyve-lock-race-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each contender tries the lock once and says so in a file of its own; one that got it holds it
// until every contender has said, so that a contender started late on a busy machine cannot take a
// lock the winner has already let go.
const CONTENDER = `
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { acquireLock } from ${JSON.stringify(join(import.meta.dir, "../../src/core/journal.ts"))};
const [state, said, release] = process.argv.slice(2);
let lock;
// Aside, then renamed: the test, which waits for every answer to exist, never reads half of one.
const say = (answer) => {
  writeFileSync(\`\${said}.new\`, answer);
  renameSync(\`\${said}.new\`, said);
};
try {
  lock = acquireLock(state, "up");
  say("held");
} catch (error) {
  say(error.name);
}
if (lock) {
  while (!existsSync(release)) await Bun.sleep(20);
  lock.release();
}
`;

test("of many runs taking over a stale lock at the same moment, one gets it and no two ever hold it at once", async () => {
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
    expect(answers.filter((s) => s !== "held")).toEqual(Array(runs.length - 1).fill("LockHeldError"));
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
