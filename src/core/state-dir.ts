/**
 * The state dir of a cluster holds its SSH key, kubeconfig, identity, journal and lock: whoever can
 * change what is in it controls the cluster, and kubehyve runs as root. So before a command uses
 * it, the directory and everything kubehyve keeps in it is checked, and nothing is repaired: a
 * directory that is a link, belongs to another user or that others can write is refused, and so is
 * a link, a foreign file or a writable file inside it. After that check only this user (or root)
 * can add anything to it, so what kubehyve reads later is what it, or its user, put there.
 */
import { lstatSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { InputError } from "../lib/errors.ts";
import { ensurePrivateDirSync, ownershipProblem, UnsafePathError } from "../lib/fsutil.ts";

/** Folders of the state dir whose entries kubehyve itself reads and writes (not the stages' own). */
const KEPT_FOLDERS = new Set(["ssh", "state", "logs", "cache"]);

function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** `fn` of a path, or undefined once the path is gone: another run's temporary file renamed, a log pruned. */
function unlessGone<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * What kubehyve keeps at the top of a state dir: a directory with none of it is no state dir.
 * Every run makes logs/ first (a run refused at once leaves only that), then the journal.
 */
const OWN_ENTRIES = new Set([
  ...KEPT_FOLDERS,
  "journal.ndjson",
  "kubeconfig",
  "cluster-id",
  "lock",
  "format.json",
]);

/** What a file system puts at the top of its root (ext4, UFS): a state dir of its own mount has them. */
const FILE_SYSTEM_OWN = new Set(["lost+found", ".snap"]);

function checkEntry(stateDir: string, path: string): boolean {
  // Listed, then gone before it was looked at: a doctor --watch beside this run writes its log
  // through a temporary file, and what is gone can no longer be anyone's way in.
  const st = unlessGone(() => lstatSync(path));
  if (!st) return false;
  // ssh keeps its ControlMaster sockets next to known_hosts; a socket cannot redirect a write.
  if (st.isSocket()) return false;
  const problem = ownershipProblem(st, st.isDirectory() ? "directory" : "file");
  if (problem) {
    const link = st.isSymbolicLink() ? ` (to ${readlinkSync(path)})` : "";
    // A directory every user may write into by design (sticky and world-writable, as /var/tmp
    // is): the state dir is a shared place, not the cluster's own, and chmod would break it.
    const shared = st.isDirectory() && (st.mode & 0o1002) === 0o1002;
    throw new UnsafePathError(
      path,
      `state dir ${stateDir}: ${path} ${problem.why}${link}; kubehyve does not use a state dir that someone else could have changed`,
      shared
        ? `${path} is a shared directory (sticky, writable by everyone), so ${stateDir} is no cluster's own: pass --state-dir DIR, a directory of the cluster's own`
        : problem.fix(path),
    );
  }
  return st.isDirectory();
}

/**
 * Makes or checks the state dir (see ensurePrivateDirSync) and the entries kubehyve reads in it:
 * the top level (journal, lock, cluster-id, kubeconfig, the stages' folders) and the contents of
 * ssh/, state/, logs/ and cache/. A stage's own folder is checked itself but not walked: what a
 * stage keeps there (a Python venv, with its links) is its business.
 */
export function prepareStateDir(dir: string): void {
  // `--state-dir "$DIR/"` with DIR unset: the journal, logs and the cluster's key would go into
  // the root of the system. Refused as such, not for one of its folders (/tmp is writable by
  // others), which would end in a hint to chmod it.
  if (resolve(dir) === "/" || realOrSelf(dir) === "/")
    throw new InputError(
      `state dir ${dir} is the root directory; nothing was done`,
      "--state-dir DIR, a directory of the cluster's own",
    );
  ensurePrivateDirSync(dir, "state dir");
  const names = readdirSync(dir);
  for (const name of names) {
    const path = join(dir, name);
    if (checkEntry(dir, path) && KEPT_FOLDERS.has(name))
      for (const inner of unlessGone(() => readdirSync(path)) ?? []) checkEntry(dir, join(path, inner));
  }
  const foreign = !names.some((name) => OWN_ENTRIES.has(name));
  // --state-dir /usr, or ~: a directory of other things, owned by this user and private enough
  // to pass every check above, would get the journal, the logs and the cluster's key among them.
  // A state dir is new, empty (a file system's own folders aside), or one kubehyve has used.
  const others = names.filter((name) => !FILE_SYSTEM_OWN.has(name)).sort();
  if (foreign && others.length)
    throw new InputError(
      `state dir ${dir} holds ${
        others.length === 1
          ? JSON.stringify(others[0])
          : `${others.length} entries (${others
              .slice(0, 3)
              .map((n) => JSON.stringify(n))
              .join(", ")}${others.length > 3 ? ", …" : ""})`
      } but nothing of kubehyve's (no journal or logs), so it is not a state dir; nothing was done`,
      "pass --state-dir DIR: a new or empty directory, or one kubehyve has used before",
    );
}

/**
 * A state dir for one run of the built-in example, removed when the process ends: the example
 * must leave nothing in the state dir of a real cluster that happens to share its name (`lab`),
 * nor a key nobody will use.
 */
export function throwawayStateDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-example-"));
  const remove = () => {
    process.off("exit", remove);
    rmSync(dir, { recursive: true, force: true });
  };
  // Also when a second Ctrl-C leaves at once.
  process.on("exit", remove);
  return { dir, remove };
}
