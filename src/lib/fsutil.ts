/**
 * Local file helpers for the state dir: secrets 0600 in 0700 directories, atomic replacement, and
 * never a step through a symbolic link or into a directory someone else could have prepared.
 *
 * kubehyve runs as root. A directory it did not create is never chmodded into shape (that would
 * make a shared /tmp-like directory, or the working directory, private to root, and trust whatever
 * was already in it): it is checked, and refused when someone else could write there.
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { ExitCode, KubehyveError } from "./errors.ts";
import { processAlive } from "./process.ts";

/** A path kubehyve will not use: a link, someone else's, writable by others. Nothing was changed. */
export class UnsafePathError extends KubehyveError {
  constructor(
    readonly path: string,
    message: string,
    hint?: string,
  ) {
    super(message, ExitCode.badInput, hint);
    this.name = "UnsafePathError";
  }
}

const me = () => process.getuid?.() ?? 0;

/** Group- or world-writable. */
export const writableByOthers = (st: Stats) => (st.mode & 0o022) !== 0;
const sticky = (st: Stats) => (st.mode & 0o1000) !== 0;

/** What a path is, for messages: "a directory", "a FIFO", "a character device". */
export function kindOf(st: Stats): string {
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isDirectory()) return "a directory";
  if (st.isFile()) return "a file";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "neither a file nor a directory";
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    // ENOTDIR: a file on the way; the walk up to the first existing parent names it.
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw error;
  }
}

/**
 * Why `path` (lstat'ed as `st`) is not this user's own: a link, another type than asked for, owned
 * by someone else, or writable by group or others. Undefined when it is fine.
 */
export function ownershipProblem(
  st: Stats,
  want: "directory" | "file",
): { why: string; fix: (path: string) => string } | undefined {
  if (st.isSymbolicLink())
    return { why: "is a symbolic link", fix: (p) => `remove the link if you did not make it: rm ${p}` };
  if (want === "directory" ? !st.isDirectory() : !st.isFile())
    return {
      why: `is ${kindOf(st)}, not ${want === "directory" ? "a directory" : "a file"}`,
      // A device or a pipe (--state-dir /dev/null) is the system's, not something to move.
      fix: (p) =>
        st.isFile() || st.isDirectory()
          ? `move ${p} away`
          : `choose another path: ${p} is not kubehyve's to move`,
    };
  // Root's (`doctor` run from a login shell against root's lab): a chown would hand root's cluster
  // key and kubeconfig to this user, and the user cannot do one anyway.
  if (st.uid === 0 && me() !== 0)
    return {
      why: `is root's, not of the user running kubehyve (uid ${me()})`,
      fix: () =>
        `run kubehyve as root (sudo kubehyve …), as whoever made it did, or use a ${want} of your own`,
    };
  if (st.uid !== me())
    return {
      why: `is owned by uid ${st.uid}, not by the user running kubehyve (uid ${me()})`,
      fix: (p) => `use a ${want} of your own, or if you trust it: chown ${me()} ${p}`,
    };
  if (writableByOthers(st)) return { why: "is writable by group or others", fix: (p) => `chmod go-w ${p}` };
  return undefined;
}

/**
 * Refuses an ancestor directory that others can write without the sticky bit: whoever can write
 * there can swap the directory below it for one of their own between two runs, or during one.
 * A sticky one (/tmp) is fine: nobody but its owner can rename or remove an entry in it. Who owns
 * an ancestor is not judged: `sudo kubehyve --state-dir ~/lab` keeps its state under a home that
 * belongs to the person running sudo.
 */
function checkAncestors(existing: string, what: string, target: string): void {
  let dir = realpathSync(existing);
  for (;;) {
    const st = lstatSync(dir);
    if (writableByOthers(st) && !sticky(st))
      throw new UnsafePathError(
        dir,
        `${what} ${target}: ${dir}, on the way to it, is writable by group or others (and not sticky)`,
        `chmod go-w ${dir}, or use a directory elsewhere`,
      );
    const parent = dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

/** The checks of an existing directory that kubehyve keeps private things in. */
function checkPrivateDir(dir: string, st: Stats, what: string): void {
  const problem = ownershipProblem(st, "directory");
  if (problem) throw new UnsafePathError(dir, `${what} ${dir} ${problem.why}`, problem.fix(dir));
}

/**
 * Makes sure `dir` is a private directory of this user: created 0700 (with its missing parents,
 * each 0700) when it does not exist; when it does, it must be a real directory (not a link), owned
 * by this user and not writable by group or others, and it is left exactly as it is. Directories
 * above it must not be writable by others unless sticky. Throws UnsafePathError otherwise.
 */
export function ensurePrivateDirSync(dir: string, what = "directory"): void {
  const path = resolve(dir);
  try {
    makePrivateDir(path, what);
  } catch (error) {
    throw pathError(error, `${what} ${path} cannot be made`) ?? error;
  }
}

const permissions = (p: string) =>
  `this user may not create it there: check the permissions on the way to ${p}, or choose another path`;

/** Errors of the path itself: nothing was made, and a better path is the fix (exit 2). */
const PATH_ERRORS: Record<string, (path: string) => string> = {
  ENAMETOOLONG: () => "choose a shorter path",
  EACCES: permissions,
  EPERM: permissions,
  EROFS: () => "the file system is read-only: choose a path on a writable one",
  ELOOP: (p) => `symbolic links on the way to ${p} lead in a circle`,
  ENOENT: () => "that file system takes nothing new there: choose another path",
  ENOTDIR: (p) => `a file stands where a directory is expected on the way to ${p}`,
  EISDIR: (p) => `${p} is a directory`,
};

/**
 * An operating system error on a path the user named, as a message that says which path and what
 * it was for (`state dir X cannot be made: ENAMETOOLONG: name too long`), with exit code 2;
 * undefined for any other error (a full disk), which is left as it is. The hint names the path
 * the call failed on (the level of a mkdir -p that could not be made), or `shown` instead where
 * that path is one the user never named (a temporary file).
 */
export function pathError(error: unknown, what: string, shown?: string): KubehyveError | undefined {
  if (error instanceof KubehyveError) return undefined;
  const e = error as NodeJS.ErrnoException | null;
  const hint = typeof e?.code === "string" ? PATH_ERRORS[e.code] : undefined;
  if (!hint) return undefined;
  // Node's message ends with the call and its path (", open '/x.123.1.tmp'"): `what` says which.
  const reason = e!.message.replace(/, \w+ '[^']*'( -> '[^']*')?$/, "");
  return new KubehyveError(`${what}: ${reason}`, ExitCode.badInput, hint(shown ?? e!.path ?? what));
}

function makePrivateDir(path: string, what: string): void {
  const st = lstatOrUndefined(path);
  if (st) {
    checkPrivateDir(path, st, what);
    checkAncestors(dirname(path), what, path);
    return;
  }
  // Walk up to the first thing that exists, then make each missing level in turn, never with
  // `recursive` (which follows a link that appears on the way).
  const missing: string[] = [];
  let at = path;
  for (;;) {
    missing.unshift(at);
    const parent = dirname(at);
    if (parent === at) break;
    const pst = lstatOrUndefined(parent);
    if (pst) {
      // An existing parent may be a link (FreeBSD's /home is one to /usr/home): judged where it leads.
      if (!(pst.isSymbolicLink() ? statSync(parent) : pst).isDirectory())
        throw new KubehyveError(
          `${what} ${path} cannot be made: ${parent} is ${kindOf(pst)}`,
          ExitCode.badInput,
          `a file stands where a directory is expected on the way to ${path}`,
        );
      checkAncestors(parent, what, path);
      break;
    }
    at = parent;
  }
  for (const level of missing) {
    try {
      mkdirSync(level, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    // Whatever is there now, made by us or by someone quicker, must pass the same checks.
    checkPrivateDir(level, lstatSync(level), what);
  }
}

export async function ensurePrivateDir(dir: string, what?: string): Promise<void> {
  ensurePrivateDirSync(dir, what);
}

// O_NONBLOCK: a FIFO planted where a file of ours belongs must not keep the open waiting for a
// writer (or reader) forever; on a regular file it changes nothing.
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const APPEND_FLAGS =
  constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** One of kubehyve's own files is something else than a file: what, and what to do. */
function notAFile(path: string, what: string): UnsafePathError {
  return new UnsafePathError(
    path,
    `${path} is ${what}, not a file; kubehyve keeps only its own files there`,
    `remove it if you did not make it: rm -r ${path}`,
  );
}

function openChecked(path: string, flags: number, mode?: number): number {
  let fd: number;
  try {
    fd = openSync(path, flags, mode);
  } catch (error) {
    // O_NOFOLLOW on a link: ELOOP on Linux, EMLINK on FreeBSD.
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP" || code === "EMLINK")
      throw new UnsafePathError(
        path,
        `${path} is a symbolic link; kubehyve does not follow links in its state dir`,
        `remove the link if you did not make it: rm ${path}`,
      );
    if (code === "EISDIR") throw notAFile(path, "a directory");
    // A FIFO without a reader, opened to write without blocking.
    if (code === "ENXIO") throw notAFile(path, "a FIFO or a socket");
    throw error;
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw notAFile(path, kindOf(stats));
    const problem = ownershipProblem(stats, "file");
    if (problem) throw new UnsafePathError(path, `${path} ${problem.why}`, problem.fix(path));
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  return fd;
}

/**
 * Reads one of kubehyve's own files (state, journal, identity): never through a link, and only a
 * regular file of this user that nobody else can write. Undefined when it does not exist.
 */
export function readPrivateFile(path: string, opts: { maxBytes?: number } = {}): string | undefined {
  let fd: number;
  try {
    fd = openChecked(path, READ_FLAGS);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    // A file of a few bytes by design that holds gigabytes is not ours: refused before it is read.
    const size = opts.maxBytes === undefined ? 0 : fstatSync(fd).size;
    if (opts.maxBytes !== undefined && size > opts.maxBytes)
      throw new UnsafePathError(
        path,
        `${path} holds ${size} bytes, more than the ${opts.maxBytes} that kubehyve ever writes there`,
        `look at it and remove it if you did not make it: rm ${path}`,
      );
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/**
 * Appends to one of kubehyve's own files (journal, run log), made 0600; never through a link.
 * `ownLine`: the text starts a line of its own even after a last line cut short (a writer killed
 * half-way, a disk that filled during its write), which it would otherwise run into and spoil.
 */
export function appendPrivateFile(path: string, text: string, opts: { ownLine?: boolean } = {}): void {
  // Read and write, to look at the last byte; O_APPEND still puts every write at the end.
  const flags = opts.ownLine ? (APPEND_FLAGS & ~constants.O_WRONLY) | constants.O_RDWR : APPEND_FLAGS;
  const fd = openChecked(path, flags, 0o600);
  try {
    let bytes = Buffer.from(text);
    if (opts.ownLine) {
      const size = fstatSync(fd).size;
      const last = Buffer.alloc(1);
      if (size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a)
        bytes = Buffer.concat([Buffer.from("\n"), bytes]);
    }
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done);
  } catch (error) {
    throw namingTarget(error, path);
  } finally {
    closeSync(fd);
  }
}

let tmpCounter = 0;

/** A temporary name for `path`, beside it: `<name, cut at 48>.<pid>.<n>.<ext>`. */
const tempName = (path: string, pid: number, n: number, ext = "tmp") =>
  `${basename(path).slice(0, 48)}.${pid}.${n}.${ext}`;

/**
 * A temporary name beside `path` of this process's own, new at each call (writeFileAtomic's
 * `.tmp`, a download's `.part`): two writers of one file never share one, and removeStaleTemps can
 * tell whose it is.
 */
export function tempPathFor(path: string, ext = "tmp"): string {
  return join(dirname(path), tempName(path, process.pid, ++tmpCounter, ext));
}

/**
 * Removes what a writer left beside `path` when it was killed between the write and the rename
 * (SIGKILL, the OOM killer): only temporary names of that file (tempPathFor's, with `ext`), and
 * only of a process that is gone. Nothing else in the directory is touched.
 */
export function removeStaleTemps(path: string, ext = "tmp"): void {
  const prefix = `${basename(path).slice(0, 48)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    const m = name.startsWith(prefix) ? /^(\d+)\.(\d+)\.([a-z]+)$/.exec(name.slice(prefix.length)) : null;
    if (!m || m[3] !== ext) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const tmp = join(dirname(path), tempName(path, pid, Number(m[2]), ext));
    try {
      if (lstatSync(tmp).isFile()) rmSync(tmp, { force: true });
    } catch {}
  }
}

/**
 * Writes through a temporary file and a rename, so a crash never leaves half a file. The rename
 * replaces a link at `path` rather than writing where it leads. `owner` keeps a file that belongs
 * to someone else theirs when root rewrites it (a person's ~/.kube/config under sudo).
 *
 * Durable too: the file's data is synced before the rename and the directory after it, so that a
 * power cut never leaves the cluster's key, its kubeconfig or a stage's state empty (a rename can
 * reach the disk before the data it names, as ext4 without auto_da_alloc and UFS allow).
 */
export async function writeFileAtomic(
  path: string,
  content: string | Uint8Array,
  mode = 0o600,
  owner?: { uid: number; gid: number },
): Promise<void> {
  const dir = dirname(path);
  if (!lstatOrUndefined(dir)) ensurePrivateDirSync(dir);
  // Unique per call: two writes of one file in flight at once must not share (and steal) a temp file.
  // Named after the file, but short: a name near the 255-byte limit must not fail on its temp's.
  const tmp = tempPathFor(path);
  try {
    // "wx": never write through something already lying at the temporary name (a symlink).
    const file = await open(tmp, "wx", mode);
    try {
      await file.writeFile(content);
      await file.chmod(mode);
      if (owner && me() === 0) await file.chown(owner.uid, owner.gid);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw namingTarget(error, path);
  }
  await syncDirectory(dir);
}

/** writeFileAtomic for the few callers that cannot wait (the cluster's identity, read by a getter). */
export function writeFileAtomicSync(path: string, content: string | Uint8Array, mode = 0o600): void {
  const dir = dirname(path);
  if (!lstatOrUndefined(dir)) ensurePrivateDirSync(dir);
  const tmp = tempPathFor(path);
  try {
    const fd = openSync(tmp, "wx", mode);
    try {
      writeFileSync(fd, content);
      fchmodSync(fd, mode);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (error) {
    rmSync(tmp, { force: true });
    throw namingTarget(error, path);
  }
  try {
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // As syncDirectory: where directories cannot be synced, the rename stands, only less durably.
  }
}

/**
 * A write, fsync or rename error of writeFileAtomic with the file it was for. Node names no path
 * for a call on a descriptor (`ENOSPC: no space left on device, write`), and the one it names for
 * an open is the temporary file's, which the user never saw: the target is what they asked for.
 */
export function namingTarget(error: unknown, path: string): unknown {
  const e = error as NodeJS.ErrnoException;
  if (!(e instanceof Error) || typeof e.code !== "string") return error;
  const bare = e.message.replace(/ '[^']*'( -> '[^']*')?$/, "");
  e.message = `${bare} '${path}'`;
  e.path = path;
  return e;
}

/** fsync(2) of a directory, for a rename in it to last; a filesystem that cannot is left as it is. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await handle.sync();
  } catch {
    // EINVAL or EBADF where directories cannot be synced: the rename stands, only less durably.
  } finally {
    await handle?.close();
  }
}
