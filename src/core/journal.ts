/**
 * The state dir's memory of runs: `journal.ndjson` gets one line per phase outcome, and `lock`
 * keeps two runs from changing one cluster at once.
 */
import { appendFileSync, closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { uptime } from "node:os";
import { join } from "node:path";
import { LockHeldError } from "./errors.ts";

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
    appendFileSync(this.file, `${JSON.stringify({ ts: new Date().toISOString(), ...entry })}\n`, {
      mode: 0o600,
    });
  }
  read(): (JournalEntry & { ts: string })[] {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return [];
    }
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
  let tookOverFrom: number | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, JSON.stringify({ pid: process.pid, command, since: new Date().toISOString() }));
      closeSync(fd);
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
    let holder: number | undefined;
    let since: number | undefined;
    try {
      const content = JSON.parse(readFileSync(file, "utf8"));
      if (Number.isInteger(content.pid) && content.pid > 0) holder = content.pid;
      since = Date.parse(content.since);
    } catch {
      // Unreadable or half-written by a run that died while writing it: stale.
    }
    // The state dir outlives a reboot, pids do not: a lock older than the boot belongs to no live
    // run, even if some other program now has its pid. The minute of slack absorbs clock steps.
    const beforeBoot = since !== undefined && since < Date.now() - uptime() * 1000 - 60_000;
    if (holder !== undefined && holder !== process.pid && !beforeBoot && alive(holder))
      throw new LockHeldError(file, holder);
    tookOverFrom = holder ?? -1;
    try {
      unlinkSync(file);
    } catch {}
  }
  throw new LockHeldError(file, tookOverFrom ?? -1);
}
