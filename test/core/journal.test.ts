/**
 * The journal is bounded: doctor from cron every few minutes adds lines to it without end, so past
 * a size it is rotated to journal.1.ndjson, and what is read is both files, oldest first. Several
 * processes append at once (doctor reads while up runs): a rotation may drop only the oldest lines.
 */
import { describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JOURNAL_ROTATE_BYTES, Journal } from "../../src/core/journal.ts";

function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-journal-"));
  return dir;
}

const entry = (i: number) => ({ run: `run-${i}`, command: "doctor", status: "ok", message: "x".repeat(100) });

describe("the journal", () => {
  test("is rotated past its size, keeps both halves readable in order, and stays bounded", () => {
    const dir = stateDir();
    const journal = new Journal(dir, { rotateBytes: 4096 });
    for (let i = 0; i < 200; i++) journal.record(entry(i));
    expect(existsSync(journal.previous)).toBe(true);
    expect(statSync(journal.file).size).toBeLessThanOrEqual(4096 + 300);
    expect(statSync(journal.previous).size).toBeLessThanOrEqual(4096 + 300);
    const runs = journal.read().map((e) => e.run);
    // The newest lines, in the order written, without a gap.
    expect(runs.at(-1)).toBe("run-199");
    const first = Number(runs[0]!.slice(4));
    expect(runs).toEqual(Array.from({ length: 200 - first }, (_, k) => `run-${first + k}`));
    expect(runs.length).toBeGreaterThan(4096 / 200);
    for (const file of [journal.file, journal.previous]) expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  test("is left alone while another process rotates it, and a rotation lock of a dead one expires", () => {
    const dir = stateDir();
    const journal = new Journal(dir, { rotateBytes: 1024 });
    const lock = `${journal.file}.rotating`;
    writeFileSync(lock, "12345", { mode: 0o600 });
    for (let i = 0; i < 30; i++) journal.record(entry(i));
    expect(existsSync(journal.previous)).toBe(false);
    expect(journal.read()).toHaveLength(30);
    // The lock of a process that died a while ago: the next line removes it, the one after rotates.
    const old = Date.now() / 1000 - 120;
    utimesSync(lock, old, old);
    journal.record(entry(30));
    journal.record(entry(31));
    expect(existsSync(lock)).toBe(false);
    expect(existsSync(journal.previous)).toBe(true);
    expect(journal.read().map((e) => e.run)).toEqual(Array.from({ length: 32 }, (_, k) => `run-${k}`));
  });

  test("keeps, of each of several processes appending and rotating at once, an unbroken run of its newest lines", async () => {
    const dir = stateDir();
    const module = join(import.meta.dir, "../../src/core/journal.ts");
    const go = join(dir, "go");
    // Three processes that start writing together, 300 lines of about 170 bytes each a millisecond
    // apart, rotated every 16 KiB: a rotation happens while the others append, again and again.
    const writer = (name: string) =>
      Bun.spawn(
        [
          process.execPath,
          "-e",
          `const { existsSync } = require("node:fs");
           const { Journal } = await import(${JSON.stringify(module)});
           const j = new Journal(${JSON.stringify(dir)}, { rotateBytes: 16 * 1024 });
           while (!existsSync(${JSON.stringify(go)})) Bun.sleepSync(1);
           for (let i = 0; i < 300; i++) {
             j.record({ run: "${name}-" + i, command: "doctor", status: "ok", message: "x".repeat(100) });
             Bun.sleepSync(1);
           }`,
        ],
        { stderr: "pipe" },
      );
    const procs = ["a", "b", "c"].map(writer);
    await Bun.sleep(300);
    writeFileSync(go, "");
    const codes = await Promise.all(procs.map((p) => p.exited));
    expect(codes).toEqual([0, 0, 0]);
    // What the two files hold is the newest lines: of each writer, an unbroken run of its last ones.
    const runs = new Journal(dir).read().map((e) => e.run);
    for (const name of ["a", "b", "c"]) {
      const mine = runs.filter((r) => r.startsWith(`${name}-`)).map((r) => Number(r.slice(2)));
      expect(mine.length).toBeGreaterThan(0);
      expect(mine.at(-1)).toBe(299);
      expect(mine).toEqual(Array.from({ length: mine.length }, (_, k) => 300 - mine.length + k));
    }
  });

  test("rotates at 1 MiB by default, and a journal.1.ndjson it cannot replace leaves the run alone", () => {
    expect(JOURNAL_ROTATE_BYTES).toBe(1024 * 1024);
    const dir = stateDir();
    const journal = new Journal(dir, { rotateBytes: 512 });
    mkdirSync(journal.previous);
    for (let i = 0; i < 10; i++) journal.record(entry(i));
    expect(readFileSync(journal.file, "utf8").trim().split("\n")).toHaveLength(10);
  });

  test("a line cut short by a run that died or a full disk costs only itself, not the next line written", () => {
    const dir = stateDir();
    const journal = new Journal(dir);
    journal.record(entry(0));
    // What a write that stopped half-way leaves: the start of a line, no newline.
    writeFileSync(journal.file, '{"ts":"2026-01-01T00:00:00.000Z","run":"run-1","comm', { flag: "a" });
    journal.record(entry(2));
    journal.record(entry(3));
    expect(journal.read().map((e) => e.run)).toEqual(["run-0", "run-2", "run-3"]);
  });
});
