/**
 * The state dir holds the cluster's key, kubeconfig, identity and journal, and kubehyve runs as
 * root: `--state-dir` naming a shared directory, a link, another user's directory, or one with
 * links planted in it must be refused, with nothing in it or about it changed. The command line
 * from source, `plan --offline` of the example cluster file (it inspects nothing).
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Journal } from "../../src/core/journal.ts";
import { appendPrivateFile, ensurePrivateDirSync, readPrivateFile } from "../../src/lib/fsutil.ts";
import { runCli } from "../lab/cli.ts";
import { syncsAndRenames } from "../lab/durability.ts";
import { canMount, onFullDisk } from "../lab/full-disk.ts";
import { have } from "../lab/prereq.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

// Each test starts the command line a few times: room for a 2-core machine under load.
setDefaultTimeout(30_000);
const NOBODY = 65534;
const mode = (path: string) => statSync(path).mode & 0o7777;

/** A fresh directory with the example cluster file (`kubehyve init`), and `plan --offline` there. */
function lab() {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-statedir-"));
  expect(runCli([process.execPath, MAIN, "init"], { cwd: dir }).code).toBe(0);
  const plan = (...args: string[]) =>
    runCli([process.execPath, MAIN, "plan", "--offline", ...args], {
      cwd: dir,
      env: { XDG_STATE_HOME: join(dir, "xdg") },
    });
  return { dir, plan };
}

describe("--state-dir", () => {
  test("refuses a world-writable shared directory and leaves its mode alone", () => {
    const { dir, plan } = lab();
    const shared = join(dir, "shared");
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const r = plan("--state-dir", shared);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`✖ state dir ${shared} is writable by group or others\n  → chmod go-w ${shared}\n`);
    expect(mode(shared)).toBe(0o1777);
    expect(readdirSync(shared)).toEqual([]);
  });

  test('refuses "" instead of taking the working directory, whose mode stays as it was', () => {
    const { dir, plan } = lab();
    chmodSync(dir, 0o755);
    const r = plan("--state-dir", "");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--state-dir was given an empty value");
    expect(mode(dir)).toBe(0o755);
    // (bun itself keeps a .bun folder in $HOME, which the test points here.)
    expect(readdirSync(dir).filter((f) => f !== ".bun")).toEqual(["kubehyve.yaml"]);
  });

  test("refuses a symbolic link, and writes nothing where it leads", () => {
    const { dir, plan } = lab();
    const real = join(dir, "real");
    mkdirSync(real, { mode: 0o700 });
    symlinkSync(real, join(dir, "link"));
    const r = plan("--state-dir", join(dir, "link"));
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith(`✖ state dir ${join(dir, "link")} is a symbolic link\n`);
    expect(readdirSync(real)).toEqual([]);
  });

  test("refuses a directory owned by another user, and writes nothing into it", () => {
    const { dir, plan } = lab();
    const theirs = join(dir, "theirs");
    mkdirSync(theirs, { mode: 0o700 });
    chownSync(theirs, NOBODY, NOBODY);
    const r = plan("--state-dir", theirs);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `✖ state dir ${theirs} is owned by uid ${NOBODY}, not by the user running kubehyve (uid ${process.getuid!()})`,
    );
    expect(readdirSync(theirs)).toEqual([]);
  });

  test("refuses a journal.ndjson planted as a link: the file it points at gets nothing appended", () => {
    const { dir, plan } = lab();
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    symlinkSync(victim, join(state, "journal.ndjson"));
    const r = plan("--state-dir", state);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${join(state, "journal.ndjson")} is a symbolic link (to ${victim}); kubehyve does not use a state dir that someone else could have changed`,
    );
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
  });

  test("refuses a planted cluster key: another user's file, or a link, in ssh/", () => {
    const { dir, plan } = lab();
    const state = join(dir, "state");
    mkdirSync(join(state, "ssh"), { recursive: true, mode: 0o700 });
    const key = join(state, "ssh", "id_ed25519");
    writeFileSync(key, "-----BEGIN OPENSSH PRIVATE KEY-----\n", { mode: 0o600 });
    chownSync(key, NOBODY, NOBODY);
    const owned = plan("--state-dir", state);
    expect(owned.code).toBe(2);
    expect(owned.stderr).toContain(`${key} is owned by uid ${NOBODY}`);

    writeFileSync(join(dir, "their-key"), "-----BEGIN OPENSSH PRIVATE KEY-----\n");
    rmSync(key);
    symlinkSync(join(dir, "their-key"), key);
    const linked = plan("--state-dir", state);
    expect(linked.code).toBe(2);
    expect(linked.stderr).toContain(`${key} is a symbolic link`);
  });

  test("refuses a folder of its own that others can write, without chmodding it", () => {
    const { dir, plan } = lab();
    const state = join(dir, "state");
    mkdirSync(join(state, "cache"), { recursive: true, mode: 0o700 });
    chmodSync(join(state, "cache"), 0o777);
    const r = plan("--state-dir", state);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${join(state, "cache")} is writable by group or others`);
    expect(mode(join(state, "cache"))).toBe(0o777);
    // Group-writable is as open: anyone of the group could swap what is in it.
    chmodSync(join(state, "cache"), 0o770);
    const group = plan("--state-dir", state);
    expect(group.code).toBe(2);
    expect(group.stderr).toContain(`${join(state, "cache")} is writable by group or others`);
    expect(mode(join(state, "cache"))).toBe(0o770);
  });

  test("refuses a file given as the state dir, naming what it is, and leaves it as it was", () => {
    const { dir, plan } = lab();
    const file = join(dir, "notes.txt");
    writeFileSync(file, "mine\n", { mode: 0o600 });
    const r = plan("--state-dir", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`state dir ${file} is a file, not a directory`);
    expect(readFileSync(file, "utf8")).toBe("mine\n");
  });

  test("refuses to make one below a directory that others can write (and that is not sticky)", () => {
    const { dir, plan } = lab();
    const open = join(dir, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    const r = plan("--state-dir", join(open, "state"));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ state dir ${join(open, "state")}: ${open}, on the way to it, is writable by group or others (and not sticky)\n  → chmod go-w ${open}, or use a directory elsewhere\n`,
    );
    expect(readdirSync(open)).toEqual([]);
  });

  test("makes a missing one 0700, its missing parents too; leaves an existing 0755 one 0755", () => {
    const { dir, plan } = lab();
    const deep = join(dir, "a", "b", "state");
    expect(plan("--state-dir", deep).code).toBe(0);
    for (const p of [join(dir, "a"), join(dir, "a", "b"), deep]) expect(mode(p)).toBe(0o700);
    const mine = join(dir, "mine");
    mkdirSync(mine);
    chmodSync(mine, 0o755);
    expect(plan("--state-dir", mine).code).toBe(0);
    expect(mode(mine)).toBe(0o755);
    expect(existsSync(join(mine, "journal.ndjson"))).toBe(true);
  });
});

describe("files in the state dir", () => {
  test("are appended to and read only when they are this user's regular files, never through a link", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-statefile-"));
    const victim = join(dir, "victim");
    writeFileSync(victim, "x\n");
    symlinkSync(victim, join(dir, "journal.ndjson"));
    expect(() => new Journal(dir).record({ run: "r", command: "up", status: "started" })).toThrow(
      `${join(dir, "journal.ndjson")} is a symbolic link; kubehyve does not follow links in its state dir`,
    );
    expect(() => readPrivateFile(join(dir, "journal.ndjson"))).toThrow("is a symbolic link");
    expect(readFileSync(victim, "utf8")).toBe("x\n");

    const theirs = join(dir, "theirs");
    writeFileSync(theirs, "{}");
    chownSync(theirs, NOBODY, NOBODY);
    expect(() => readPrivateFile(theirs)).toThrow(`${theirs} is owned by uid ${NOBODY}`);
    expect(() => appendPrivateFile(theirs, "more")).toThrow(`${theirs} is owned by uid ${NOBODY}`);
    expect(readFileSync(theirs, "utf8")).toBe("{}");

    appendPrivateFile(join(dir, "log"), "one\n");
    appendPrivateFile(join(dir, "log"), "two\n");
    expect(readPrivateFile(join(dir, "log"))).toBe("one\ntwo\n");
    expect(mode(join(dir, "log"))).toBe(0o600);
    expect(readPrivateFile(join(dir, "absent"))).toBeUndefined();
  });

  test("a directory or a FIFO where a file of its own belongs is refused by name, at once, exit 2", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-statefile-"));
    mkdirSync(join(dir, "journal.ndjson"));
    const record = () => new Journal(dir).record({ run: "r", command: "up", status: "started" });
    expect(record).toThrow(`${join(dir, "journal.ndjson")} is a directory, not a file`);
    expect(() => readPrivateFile(join(dir, "journal.ndjson"))).toThrow("is a directory, not a file");
    try {
      record();
    } catch (error) {
      expect((error as { exitCode?: number }).exitCode).toBe(2);
    }
    // A FIFO with nobody at its other end: reading or appending would wait for one forever.
    const fifo = join(dir, "state.json");
    expect(Bun.spawnSync(["mkfifo", "-m", "0600", fifo]).success).toBe(true);
    const started = Date.now();
    expect(() => readPrivateFile(fifo)).toThrow(`${fifo} is a FIFO, not a file`);
    expect(() => appendPrivateFile(fifo, "x")).toThrow(`${fifo} is a FIFO or a socket, not a file`);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test("a parent that is a link (FreeBSD's /home to /usr/home) is followed to make a new one below it", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-statefile-"));
    mkdirSync(join(dir, "usr-home"));
    symlinkSync(join(dir, "usr-home"), join(dir, "home"));
    ensurePrivateDirSync(join(dir, "home", "lab"));
    expect(mode(join(dir, "usr-home", "lab"))).toBe(0o700);
    // The state dir itself as a link is another matter: refused.
    expect(() => ensurePrivateDirSync(join(dir, "home"))).toThrow(
      `directory ${join(dir, "home")} is a symbolic link`,
    );
  });
});

describe("a file written atomically", () => {
  test.skipIf(!have("strace", "strace"))(
    "is synced before its rename, and its directory after, so a power cut leaves it whole",
    () => {
      const dir = mkdtempSync(join(tmpdir(), "kubehyve-durable-"));
      const target = join(dir, "state.json");
      const module = join(import.meta.dir, "../../src/lib/fsutil.ts");
      const { exitCode, calls } = syncsAndRenames(
        `const { writeFileAtomic } = await import(${JSON.stringify(module)}); await writeFileAtomic(${JSON.stringify(target)}, '{"a":1}');`,
        dir,
      );
      expect(exitCode).toBe(0);
      expect(readFileSync(target, "utf8")).toBe('{"a":1}');
      const renameAt = calls.findIndex(
        (line) => /rename\w*\(/.test(line) && line.includes("state.json.") && line.includes(".tmp"),
      );
      expect(renameAt).toBeGreaterThan(0);
      const before = calls.slice(0, renameAt);
      const after = calls.slice(renameAt + 1);
      // -y shows each descriptor's path: the temporary file before, the directory after.
      expect(before.some((line) => /f(data)?sync\(\d+<[^>]*state\.json\.\d+\.\d+\.tmp>\)/.test(line))).toBe(
        true,
      );
      expect(after.some((line) => new RegExp(`f(data)?sync\\(\\d+<${dir}>\\)`).test(line))).toBe(true);
    },
  );
});

describe("a file written atomically on a full disk", () => {
  test.skipIf(!canMount)(
    "keeps the old file whole, leaves no temporary file, and names the file in its error",
    () => {
      const module = join(import.meta.dir, "../../src/lib/fsutil.ts");
      const result = onFullDisk(
        "printf 'old report\\n' > kubehyve.prom",
        `const fs = await import("node:fs");
         const { writeFileAtomic } = await import(${JSON.stringify(module)});
         let error;
         try { await writeFileAtomic("kubehyve.prom", "x".repeat(64 * 1024), 0o644); }
         catch (e) { error = { code: e.code, message: e.message, path: e.path }; }
         console.log(JSON.stringify({ error, left: fs.readdirSync(".").sort(),
           content: fs.readFileSync("kubehyve.prom", "utf8") }));`,
      );
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({
        error: {
          code: "ENOSPC",
          message: "ENOSPC: no space left on device, write 'kubehyve.prom'",
          path: "kubehyve.prom",
        },
        left: ["fill", "kubehyve.prom"],
        content: "old report\n",
      });
    },
  );
});

describe("the lock and the journal on a full disk", () => {
  test.skipIf(!canMount)(
    "name the file they could not write, leave no draft of the lock, and the journal's next line is whole",
    () => {
      const module = join(import.meta.dir, "../../src/core/journal.ts");
      const result = onFullDisk(
        `mkdir -m 700 state && printf '{"ts":"2026-01-01T00:00:00.000Z","run":"r0","command":"up","status":"ok"}\\n' > state/journal.ndjson`,
        `const fs = await import("node:fs");
         const { acquireLock, Journal } = await import(${JSON.stringify(module)});
         const failure = (f) => { try { f(); } catch (e) { return { code: e.code, message: e.message }; } };
         const lock = failure(() => acquireLock("state", "up"));
         const journal = new Journal("state");
         // Longer than what is left of the journal's last page: written in part, then ENOSPC.
         const line = failure(() => journal.record({ run: "r1", command: "up", status: "ok", message: "x".repeat(8000) }));
         fs.rmSync("fill");
         journal.record({ run: "r2", command: "up", status: "ok" });
         console.log(JSON.stringify({ lock, line, left: fs.readdirSync("state").sort(),
           runs: journal.read().map((e) => e.run) }));`,
      );
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({
        lock: { code: "ENOSPC", message: "ENOSPC: no space left on device, write 'state/lock'" },
        line: { code: "ENOSPC", message: "ENOSPC: no space left on device, write 'state/journal.ndjson'" },
        left: ["journal.ndjson"],
        runs: ["r0", "r2"],
      });
    },
  );
});
