/**
 * The state dir's memory of runs: `journal.ndjson` gets one line per phase outcome, and `lock`
 * keeps two runs from changing one cluster at once.
 */
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { uptime } from "node:os";
import { join } from "node:path";
import { LockHeldError } from "./errors.ts";
import { appendPrivateFile, readPrivateFile } from "./fsutil.ts";

export interface JournalEntry {
  run: string;
  command: string;
  stage?: string;
  phase?: string;
  status: string;
  durationMs?: number;
  changes?: number;
  errors?: number;
  message?: string;
}

export class Journal {
  readonly file: string;
  constructor(stateDir: string) {
    this.file = join(stateDir, "journal.ndjson");
  }
  record(entry: JournalEntry): void {
    // Never through a link: root appending to wherever a planted journal.ndjson points.
    appendPrivateFile(this.file, `${JSON.stringify({ ts: new Date().toISOString(), ...entry })}\n`);
  }
  read(): (JournalEntry & { ts: string })[] {
    let text: string | undefined;
    try {
      text = readPrivateFile(this.file);
    } catch {
      return [];
    }
    if (text === undefined) return [];
    // A run killed mid-append leaves half a line: skip it, not the whole history.
    return text.split("\n").flatMap((line) => {
      if (!line) return [];
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface Lock {
  file: string;
  /** Set when a lock left by a dead run was taken over. */
  tookOverFrom?: number;
  release(): void;
}

/**
 * Takes the lock with an exclusive create. A lock whose holder is alive is refused (LockHeldError);
 * one whose holder died is taken over, and the caller warns about it.
 */
export function acquireLock(stateDir: string, command: string): Lock {
  const file = join(stateDir, "lock");
  const mine = JSON.stringify({ pid: process.pid, command, since: new Date().toISOString() });
  // The lock appears whole or not at all: written aside, then linked into place, which fails when
  // a lock exists. Another run can never read a lock that is still being written.
  const draft = `${file}.${process.pid}.new`;
  writeFileSync(draft, mine, { mode: 0o600 });
  let tookOverFrom: number | undefined;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(draft, file);
        return {
          file,
          tookOverFrom,
          release: () => {
            try {
              unlinkSync(file);
            } catch {}
          },
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const seen = readLock(file);
      if (seen === undefined) continue; // released meanwhile
      if (!isStale(seen)) throw new LockHeldError(file, seen.pid!);
      // Move the stale lock aside under a name of our own: of two runs taking it over at once,
      // only one moves it. If what was moved is not the lock judged stale, another run had
      // already replaced it: put that one back and look again.
      const aside = `${file}.${process.pid}.stale`;
      try {
        renameSync(file, aside);
      } catch {
        continue;
      }
      const moved = readLock(aside);
      if (moved?.text !== seen.text) {
        try {
          linkSync(aside, file);
        } catch {}
        unlinkSync(aside);
        continue;
      }
      unlinkSync(aside);
      tookOverFrom = seen.pid ?? -1;
    }
    throw new LockHeldError(file, readLock(file)?.pid ?? -1);
  } finally {
    try {
      unlinkSync(draft);
    } catch {}
  }
}

interface SeenLock {
  text: string;
  pid?: number;
  since?: number;
}

function readLock(file: string): SeenLock | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  try {
    const content = JSON.parse(text);
    const pid = Number.isInteger(content.pid) && content.pid > 0 ? content.pid : undefined;
    return { text, pid, since: Date.parse(content.since) };
  } catch {
    return { text }; // unreadable: stale
  }
}

function isStale(lock: SeenLock): boolean {
  if (lock.pid === undefined || lock.pid === process.pid) return true;
  // The state dir outlives a reboot, pids do not: a lock older than the boot belongs to no live
  // run, even if some other program now has its pid. The minute of slack absorbs clock steps.
  const beforeBoot = lock.since !== undefined && lock.since < Date.now() - uptime() * 1000 - 60_000;
  return beforeBoot || !alive(lock.pid);
}
