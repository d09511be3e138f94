/**
 * The lock on the hypervisor host. The state dir's lock keeps two runs of one cluster apart; two
 * clusters (or two state dirs of one) on the same host would still change vm-bhyve's rc.conf, its
 * switches and datastore at once. `up` and `down` therefore also take a lock file on the host
 * itself, through the host target: created whole with link(2) (fails when it exists, on every
 * POSIX file system), judged stale by the same rules as the state dir's (holder.ts), and removed at
 * the end only if it is still this run's.
 *
 * On FreeBSD /var/run is emptied at every boot (rc.d/cleanvar), so the default place never holds a
 * lock from before the last boot.
 */

import { KubehyveError, LockHeldError } from "../lib/errors.ts";
import type { RunOptions, Target } from "../targets/target.ts";
import { type Holder, judgeHolder, machineId, me } from "./holder.ts";

export const DEFAULT_HOST_LOCK = "/var/run/kubehyve.lock";

export interface HostLockInfo {
  run: string;
  command: string;
  cluster: string;
  stateDir: string;
}

export interface HostLock {
  path: string;
  /** Set when a lock left by a run that is gone was taken over. */
  takenOver?: { holder: string; why: string };
  release(): Promise<void>;
}

/*
 * Constant scripts: the path and the contents travel as arguments, never inside the script.
 * take: write our record aside (set -C, noclobber: `>` then refuses any file or link already at the
 * name, so a link planted where KUBEHYVE_HOST_LOCK lies in a shared directory is never written
 * through), link it into place;
 * exit 0 when taken, 3 with the holder's record on stdout when one exists.
 */
const TAKE = `set -Cu
umask 077
tmp="$1.$$.new"
printf '%s\\n' "$2" > "$tmp" || exit 2
if ln "$tmp" "$1" 2>/dev/null; then rm -f "$tmp"; exit 0; fi
rm -f "$tmp"
cat "$1" 2>/dev/null && exit 3
exit 4`;
/** Moves a stale lock aside; if what was moved is not the one judged stale, puts it back (exit 4). */
const BREAK = `set -u
aside="$1.$$.stale"
mv -f "$1" "$aside" 2>/dev/null || exit 4
if [ "$(cat "$aside")" = "$2" ]; then rm -f "$aside"; exit 0; fi
ln "$aside" "$1" 2>/dev/null
rm -f "$aside"
exit 4`;
/** Removes the lock only while it is still ours. */
const RELEASE = `if [ "$(cat "$1" 2>/dev/null)" = "$2" ]; then rm -f "$1"; fi`;

const QUICK: RunOptions = { timeoutMs: 30_000 };

export async function acquireHostLock(host: Target, path: string, info: HostLockInfo): Promise<HostLock> {
  const mine = JSON.stringify({ ...me(), ...info, since: new Date().toISOString() });
  let takenOver: HostLock["takenOver"];
  for (let attempt = 0; attempt < 5; attempt++) {
    const take = await host.run(["sh", "-c", TAKE, "sh", path, mine], QUICK);
    if (take.code === 0) {
      return {
        path,
        takenOver,
        release: async () => {
          await host.run(["sh", "-c", RELEASE, "sh", path, mine], QUICK);
        },
      };
    }
    if (take.code === 4) continue; // released meanwhile
    if (take.code !== 3)
      throw new KubehyveError(
        `cannot take the host lock ${path} on ${host.name}: ${(take.stderr || take.stdout).trim().split("\n").slice(-2).join(" | ") || `exit ${take.code}`}`,
        undefined,
        "up and down run as root on the host; $KUBEHYVE_HOST_LOCK may name another place for the lock",
      );
    const text = take.stdout.replace(/\n$/, "");
    const seen = parseHolder(text);
    const verdict = seen
      ? judgeHolder(seen)
      : { kind: "gone" as const, why: "it is not a kubehyve lock record" };
    if (verdict.kind !== "gone") {
      const about = seen ? describeHolder(seen) : "";
      throw new LockHeldError(path, seen?.pid ?? -1, {
        verified: verdict.kind === "alive",
        what: `on ${host.name}${about ? `: ${about}` : ""}${verdict.kind === "unknown" ? `; ${verdict.why}` : ""}`,
        remove: host.name === "local" ? `rm ${path}` : `ssh ${host.name} rm ${path}`,
      });
    }
    const broke = await host.run(["sh", "-c", BREAK, "sh", path, text], QUICK);
    if (broke.code === 0)
      takenOver = { holder: seen ? describeHolder(seen) : text.slice(0, 200), why: verdict.why };
  }
  throw new LockHeldError(path, -1, { verified: false, what: `on ${host.name}: it keeps changing` });
}

interface HostHolder extends Holder {
  run?: string;
  command?: string;
  cluster?: string;
  stateDir?: string;
  since?: string;
}

function parseHolder(text: string): HostHolder | undefined {
  try {
    const j = JSON.parse(text);
    if (!Number.isInteger(j.pid) || j.pid <= 0) return undefined;
    const str = (x: unknown) => (typeof x === "string" ? x.slice(0, 500) : undefined);
    return {
      pid: j.pid,
      start: str(j.start),
      machine: str(j.machine),
      run: str(j.run),
      command: str(j.command),
      cluster: str(j.cluster),
      stateDir: str(j.stateDir),
      since: str(j.since),
    };
  } catch {
    return undefined;
  }
}

function describeHolder(h: HostHolder): string {
  const machine = h.machine?.split("/")[0];
  return [
    h.command ? `\`${h.command}\`` : undefined,
    h.cluster ? `of cluster ${h.cluster}` : undefined,
    h.stateDir ? `(state dir ${h.stateDir})` : undefined,
    machine && h.machine !== machineId() ? `from ${machine}` : undefined,
    h.since ? `since ${h.since}` : undefined,
  ]
    .filter(Boolean)
    .join(" ");
}
