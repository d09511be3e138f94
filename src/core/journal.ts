/**
 * The state dir's memory of runs: `journal.ndjson` gets one line per phase outcome, and `lock`
 * keeps two runs from changing one cluster at once.
 */
import { linkSync, lstatSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { uptime } from "node:os";
import { join } from "node:path";
import { LockHeldError } from "../lib/errors.ts";
import { appendPrivateFile, namingTarget, readPrivateFile } from "../lib/fsutil.ts";
import { type Holder, type HolderVerdict, judgeHolder, me } from "./holder.ts";

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

/** Past this size the journal is rotated, so that a doctor run from cron every few minutes (one
 * line per phase of every run) cannot fill the disk: about 2 MiB of history are kept. */
export const JOURNAL_ROTATE_BYTES = 1024 * 1024;

/** A rotation lock older than this was left by a process that died in the middle of one. */
const STALE_ROTATION_MS = 60_000;

export class Journal {
  readonly file: string;
  /** The journal before the last rotation. */
  readonly previous: string;
  private readonly rotateBytes: number;
  constructor(stateDir: string, opts: { rotateBytes?: number } = {}) {
    this.file = join(stateDir, "journal.ndjson");
    this.previous = join(stateDir, "journal.1.ndjson");
    this.rotateBytes = opts.rotateBytes ?? JOURNAL_ROTATE_BYTES;
  }
  record(entry: JournalEntry): void {
    // Never through a link: root appending to wherever a planted journal.ndjson points.
    appendPrivateFile(this.file, `${JSON.stringify({ ts: new Date().toISOString(), ...entry })}\n`, {
      ownLine: true,
    });
    this.rotateIfLarge();
  }
  /**
   * Once the journal passes rotateBytes it becomes journal.1.ndjson (replacing the one before) and
   * the next line starts a new one. Runs append without a lock (doctor reads while up runs), and
   * appends open the file anew each time: a line written while the rename happens lands in one of
   * the two files, never nowhere. Rotations are kept one at a time by an exclusive lock file, and
   * the size is looked at again once it is held, so a second rotation cannot move a journal just
   * begun over the history the first one kept.
   */
  private rotateIfLarge(): void {
    const size = () => {
      try {
        return lstatSync(this.file).size;
      } catch {
        return 0;
      }
    };
    if (size() <= this.rotateBytes) return;
    const lock = `${this.file}.rotating`;
    try {
      writeFileSync(lock, String(process.pid), { flag: "wx", mode: 0o600 });
    } catch {
      // Another run rotates now, or one died doing it: that lock goes once it is old.
      try {
        if (Date.now() - lstatSync(lock).mtimeMs > STALE_ROTATION_MS) unlinkSync(lock);
      } catch {}
      return;
    }
    try {
      if (size() > this.rotateBytes) renameSync(this.file, this.previous);
    } catch {
      // Not rotated (journal.1.ndjson a directory someone made): the journal goes on growing, and
      // the run it records goes on.
    } finally {
      unlinkSync(lock);
    }
  }
  /** Every entry kept, oldest first: the rotated journal's, then the current one's. */
  read(): (JournalEntry & { ts: string })[] {
    return [...readEntries(this.previous), ...readEntries(this.file)];
  }
}

function readEntries(file: string): (JournalEntry & { ts: string })[] {
  let text: string | undefined;
  try {
    text = readPrivateFile(file);
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

export interface Lock {
  file: string;
  /** Set when a lock left by a run that is gone was taken over: its pid, or -1 when it named none. */
  tookOverFrom?: number;
  /** What the stale lock said, and why it was judged stale. */
  takenOver?: StaleLock;
  release(): void;
}

export interface StaleLock {
  pid?: number;
  run?: string;
  command?: string;
  since?: string;
  why: string;
}

/**
 * Takes the lock with an exclusive create. It records this process as a Holder (pid, start time,
 * machine) and the run's id, so that a later run can tell the holder from a process that merely got
 * its pid, and can close the journal of a run that was killed. A lock whose holder runs is refused
 * (LockHeldError); one whose holder is gone is taken over, and the caller journals and warns.
 */
export function acquireLock(stateDir: string, command: string, run?: string): Lock {
  const file = join(stateDir, "lock");
  const mine = JSON.stringify({ ...me(), run, command, since: new Date().toISOString() });
  // The lock appears whole or not at all: written aside, then linked into place, which fails when
  // a lock exists. Another run can never read a lock that is still being written.
  const draft = `${file}.${process.pid}.new`;
  let takenOver: StaleLock | undefined;
  try {
    try {
      writeFileSync(draft, mine, { mode: 0o600 });
    } catch (error) {
      // A full disk: the error names the lock, not a draft the user never saw (removed below).
      throw namingTarget(error, file);
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(draft, file);
        return {
          file,
          tookOverFrom: takenOver ? (takenOver.pid ?? -1) : undefined,
          takenOver,
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
      const verdict = staleness(seen);
      if (verdict.kind !== "gone") {
        throw new LockHeldError(file, seen.pid ?? -1, {
          verified: verdict.kind === "alive",
          what: verdict.kind === "alive" ? describe(seen) : verdict.why,
        });
      }
      // Only the run holding the takeover lock may remove a stale lock, and only once it has read it
      // again under that lock. Moving it aside without one was not enough: a run that came late
      // moved the lock the first one had just taken, and while it put it back a third linked its
      // own in, so two runs held the lock at once.
      if (!removeStale(file, seen.text)) continue;
      takenOver = {
        pid: seen.pid,
        run: seen.run,
        command: seen.command,
        since: seen.sinceText,
        why: verdict.why,
      };
    }
    throw new LockHeldError(file, readLock(file)?.pid ?? -1);
  } finally {
    try {
      unlinkSync(draft);
    } catch {}
  }
}

/** A takeover lock older than this was left by a process that died holding it (a takeover takes microseconds). */
const STALE_TAKEOVER_MS = 10_000;

/**
 * Removes the lock at `file` if it still says `text`, holding `file.takeover` (an exclusive create)
 * meanwhile. False when another run holds the takeover lock or the lock changed: look again.
 */
function removeStale(file: string, text: string): boolean {
  const takeover = `${file}.takeover`;
  try {
    writeFileSync(takeover, String(process.pid), { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    try {
      if (Date.now() - lstatSync(takeover).mtimeMs > STALE_TAKEOVER_MS) unlinkSync(takeover);
    } catch {}
    return false;
  }
  try {
    if (readLock(file)?.text !== text) return false;
    unlinkSync(file);
    return true;
  } finally {
    unlinkSync(takeover);
  }
}

interface SeenLock extends Partial<Holder> {
  text: string;
  since?: number;
  sinceText?: string;
  run?: string;
  command?: string;
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
    const str = (x: unknown) => (typeof x === "string" ? x : undefined);
    return {
      text,
      pid,
      start: str(content.start),
      machine: str(content.machine),
      run: str(content.run),
      command: str(content.command),
      since: Date.parse(content.since),
      sinceText: str(content.since),
    };
  } catch {
    return { text }; // unreadable: stale
  }
}

function describe(lock: SeenLock): string {
  return [
    lock.command ? `\`${lock.command}\`` : undefined,
    lock.sinceText ? `since ${lock.sinceText}` : undefined,
  ]
    .filter(Boolean)
    .join(" ");
}

function staleness(lock: SeenLock): HolderVerdict {
  if (lock.pid === undefined) return { kind: "gone", why: "it names no process" };
  // The state dir outlives a reboot, pids do not: a lock older than the boot belongs to no live
  // run, even if some other program now has its pid. The minute of slack absorbs clock steps.
  if (lock.since !== undefined && lock.since < Date.now() - uptime() * 1000 - 60_000)
    return { kind: "gone", why: "it was taken before the machine last booted" };
  return judgeHolder({ pid: lock.pid, start: lock.start, machine: lock.machine });
}
