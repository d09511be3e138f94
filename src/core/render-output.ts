/**
 * Where `render -o DIR` puts the stages' files. DIR is the user's: render writes into a directory
 * that is new, empty, or that it made itself (it keeps a manifest there, `.kubehyve-render.json`,
 * listing each file it wrote with its sha256), and never deletes or overwrites a file it did not
 * write. A file it wrote and the user has since edited is kept unless `--force`. Everything is
 * checked before the first write, and the files are moved into place from a staging folder with a
 * way back: a failure leaves DIR as it was.
 */
import {
  accessSync,
  constants,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  type Stats,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, normalize, sep } from "node:path";
import { InputError, KubehyveError } from "../lib/errors.ts";
import { processAlive } from "../lib/process.ts";
import type { RenderedFile } from "./contract.ts";

export const MANIFEST = ".kubehyve-render.json";

interface Manifest {
  /** Relative path → sha256 of what render wrote there. */
  files: Record<string, string>;
  /** Directories render made inside DIR, so that it can remove them once they are empty. */
  dirs: string[];
}

export interface RenderedSlot {
  slot: string;
  files: RenderedFile[];
}

const sha256 = (content: string | Uint8Array) => new Bun.CryptoHasher("sha256").update(content).digest("hex");

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

function readManifest(dir: string): Manifest | undefined {
  const path = join(dir, MANIFEST);
  const st = lstatOrUndefined(path);
  if (!st) return undefined;
  const broken = (why: string) =>
    new InputError(
      `${path} ${why}, so render cannot tell its own files from yours; nothing was written`,
      "render into a new directory, or restore the manifest",
    );
  if (!st.isFile()) throw broken("is not a regular file");
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw broken("is not valid JSON");
  }
  const m = parsed as Partial<Manifest> & { generator?: unknown };
  const clean = (p: unknown) =>
    typeof p === "string" && p !== "" && normalize(p) === p && !p.startsWith("..") && !p.startsWith("/");
  if (
    m?.generator !== "kubehyve render" ||
    !m.files ||
    typeof m.files !== "object" ||
    !Object.entries(m.files).every(([p, h]) => clean(p) && typeof h === "string") ||
    !Array.isArray(m.dirs) ||
    !m.dirs.every(clean)
  )
    throw broken("is not a render manifest");
  return { files: m.files, dirs: m.dirs };
}

/** An operating system error on DIR or a directory above it, as the user's to fix (exit 2). */
function unusable(dir: string, error: unknown): InputError {
  return new InputError(
    `render output ${dir} cannot be used: ${(error as Error).message}; nothing was written`,
    "kubehyve render -o NEW-DIR",
  );
}

/** Refuses a DIR this user could not write into (made below `at`, or `at` itself). */
function checkWritable(dir: string, at: string, made: boolean): void {
  try {
    accessSync(at, constants.W_OK | constants.X_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    throw new InputError(
      `render output ${dir} ${made ? "cannot be made" : "cannot be written"}: ${at} is not writable by this user (${code}); nothing was written`,
      "kubehyve render -o NEW-DIR, somewhere of your own",
    );
  }
}

/**
 * For a DIR that does not exist yet: the first thing that exists above it must be a directory
 * this user can write into. Found now, not after every stage rendered and a cluster key was made.
 */
function checkMakeable(dir: string): void {
  for (let at = dirname(dir); ; at = dirname(at)) {
    let st: Stats;
    try {
      st = statSync(at);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Missing, or a file further up: the walk goes on to what does exist.
      if ((code === "ENOENT" || code === "ENOTDIR") && dirname(at) !== at) continue;
      throw unusable(dir, error);
    }
    if (!st.isDirectory())
      throw new InputError(
        `render output ${dir} cannot be made: ${at} is not a directory; nothing was written`,
        "kubehyve render -o NEW-DIR",
      );
    checkWritable(dir, at, true);
    return;
  }
}

/** What DIR holds, as far as render is concerned; refuses a directory that render did not make. */
function survey(dir: string, force: boolean): { exists: boolean; manifest?: Manifest } {
  let st: Stats | undefined;
  try {
    st = lstatOrUndefined(dir);
  } catch (error) {
    // ENOTDIR: a file stands on the way; checkMakeable names it.
    if ((error as NodeJS.ErrnoException).code !== "ENOTDIR") throw unusable(dir, error);
  }
  if (!st) {
    checkMakeable(dir);
    return { exists: false };
  }
  // `-o "$OUT/"` with OUT unset: render would scatter its folders over the root of the system.
  if (realpathSync(dir) === "/")
    throw new InputError(
      `render output ${dir} is the root directory; nothing was written`,
      "kubehyve render -o NEW-DIR (even --force does not write into /)",
    );
  // The user named DIR: a link to a directory is followed there, but never inside it.
  const target = st.isSymbolicLink() ? statSync(dir) : st;
  if (!target.isDirectory())
    throw new InputError(
      `render output ${dir} is not a directory; nothing was written`,
      "kubehyve render -o NEW-DIR",
    );
  checkWritable(dir, dir, false);
  refuseOtherRenders(dir);
  const manifest = readManifest(dir);
  if (!manifest && !force && readdirSync(dir).length > 0)
    throw new InputError(
      `render output ${dir} holds files that kubehyve render did not write; nothing was written`,
      "render into a new or empty directory, or add --force to write next to them (render never deletes or overwrites a file it did not write)",
    );
  return { exists: true, manifest };
}

/** The folders and files a render works with inside DIR while it writes: `.kubehyve-render.PID.*`. */
const WORK = /^\.kubehyve-render\.(\d+)\.(new|old|manifest)$/;

/**
 * Another render writing into DIR right now, or the work folders of one that was killed midway:
 * either is named as what it is, not taken for files of the user's.
 */
function refuseOtherRenders(dir: string): void {
  const work = readdirSync(dir)
    .map((name) => ({ name, pid: Number(WORK.exec(name)?.[1]) }))
    .filter((w) => w.pid > 0 && w.pid !== process.pid);
  const running = work.find((w) => processAlive(w.pid));
  if (running)
    throw new InputError(
      `render output ${dir} is being written by another kubehyve render (pid ${running.pid}); nothing was written`,
      "run it again once that render is done",
    );
  if (work.length)
    throw new InputError(
      `render output ${dir} holds ${join(dir, work[0]!.name)}, left by a render that was killed midway (pid ${work[0]!.pid}), so it may be half-written; nothing was written`,
      `render into a new directory; to reuse this one, check it and remove what that render left: rm -r ${work.map((w) => join(dir, w.name)).join(" ")}`,
    );
}

/** Refuses early, before anything is rendered, an output directory that would be refused anyway. */
export function checkRenderDir(dir: string, force = false): void {
  survey(dir, force);
}

/** The first part of `rel` (inside `dir`) that is a link or not a directory, as a message. */
function inTheWay(dir: string, rel: string): string | undefined {
  const parts = rel.split(sep);
  for (let i = 1; i < parts.length; i++) {
    const at = join(dir, ...parts.slice(0, i));
    const st = lstatOrUndefined(at);
    if (!st) return undefined;
    if (st.isSymbolicLink()) return `${at} is a symbolic link (render does not write through links)`;
    if (!st.isDirectory()) return `${at} is not a directory`;
  }
  return undefined;
}

/** Makes `path` and its missing parents (0755: the output is the user's to read), returning them. */
function makeDirs(path: string): string[] {
  const missing: string[] = [];
  for (let at = path; !lstatOrUndefined(at); at = dirname(at)) missing.unshift(at);
  for (const at of missing) mkdirSync(at, { mode: 0o755 });
  return missing;
}

/**
 * Writes the rendered files into `dir`/<slot>/ as described above, returning the paths written
 * (relative to `dir`, in order). `force` lets render write into a directory it did not make and
 * replace its own files that were edited since; it still never touches a file it did not write.
 */
export function writeRenderOutput(
  dir: string,
  rendered: readonly RenderedSlot[],
  opts: {
    force?: boolean;
    /** Every move into or out of place; tests pass one that fails to see the way back work. */
    rename?: (from: string, to: string) => void;
  } = {},
): string[] {
  const force = opts.force ?? false;
  const rename = opts.rename ?? renameSync;
  const { exists, manifest } = survey(dir, force);
  const old = manifest ?? { files: {}, dirs: [] };
  const root = exists ? realpathSync(dir) : dir;

  const next = new Map<string, RenderedFile>();
  for (const { slot, files } of rendered)
    for (const file of files) next.set(join(slot, normalize(file.path)), file);

  // Everything is judged before the first write.
  const problems: string[] = [];
  const edited: string[] = [];
  const isOurs = (rel: string, st: Stats) => {
    const recorded = old.files[rel];
    if (recorded === undefined) return false;
    if (!st.isFile()) return false;
    if (sha256(readFileSync(join(root, rel))) !== recorded) edited.push(join(root, rel));
    return true;
  };
  for (const rel of next.keys()) {
    const blocked = exists ? inTheWay(root, rel) : undefined;
    if (blocked) {
      problems.push(blocked);
      continue;
    }
    const st = exists ? lstatOrUndefined(join(root, rel)) : undefined;
    if (st && !isOurs(rel, st)) problems.push(`${join(root, rel)} was not written by render`);
  }
  const stale = Object.keys(old.files).filter((rel) => !next.has(rel));
  const staleToRemove: string[] = [];
  for (const rel of stale) {
    if (inTheWay(root, rel)) continue; // Not ours any more: someone replaced a folder on its way.
    const st = lstatOrUndefined(join(root, rel));
    if (st && isOurs(rel, st)) staleToRemove.push(rel);
  }
  if (problems.length)
    throw new InputError(
      `render output ${root}: ${problems.length === 1 ? problems[0] : `${problems.length} paths are in the way`}; nothing was written`,
      "move them away, or render into a new directory (render never overwrites a file it did not write)",
      problems.length > 1 ? problems.map((message) => ({ path: "", message })) : [],
    );
  if (edited.length && !force)
    throw new InputError(
      `render output ${root}: ${edited.length === 1 ? `${edited[0]} was changed` : `${edited.length} files were changed`} since render wrote it; nothing was written`,
      "keep your changes elsewhere and re-run, or add --force to replace them",
      edited.length > 1 ? edited.map((message) => ({ path: "", message })) : [],
    );

  // Staging and backup folders sit inside DIR: on its file system, so every move is a rename.
  const tag = `.kubehyve-render.${process.pid}`;
  const staging = join(root, `${tag}.new`);
  const backup = join(root, `${tag}.old`);
  const createdDirs: string[] = [];
  const placed: string[] = [];
  const backedUp: string[] = [];
  let madeRoot: string[] = [];
  const mkdirIn = (base: string, relDir: string, record?: string[]) => {
    const parts = relDir === "." ? [] : relDir.split(sep);
    for (let i = 1; i <= parts.length; i++) {
      const rel = join(...parts.slice(0, i));
      if (lstatOrUndefined(join(base, rel))) continue;
      mkdirSync(join(base, rel), { mode: 0o755 });
      record?.push(rel);
    }
  };
  try {
    if (!exists) madeRoot = makeDirs(root);
    mkdirSync(staging, { mode: 0o700 });
    mkdirSync(backup, { mode: 0o700 });
    for (const [rel, file] of next) {
      mkdirIn(staging, dirname(rel));
      writeFileSync(join(staging, rel), file.content, { mode: file.mode ?? 0o644, flag: "wx" });
    }
    const replaced = [...next.keys()].filter((rel) => lstatOrUndefined(join(root, rel)));
    for (const rel of [...replaced, ...staleToRemove]) {
      mkdirIn(backup, dirname(rel));
      rename(join(root, rel), join(backup, rel));
      backedUp.push(rel);
    }
    for (const rel of next.keys()) {
      mkdirIn(root, dirname(rel), createdDirs);
      rename(join(staging, rel), join(root, rel));
      placed.push(rel);
    }
    const dirs = new Set([...old.dirs, ...createdDirs]);
    // Folders render made that now hold nothing are removed, deepest first; others stay.
    for (const rel of [...dirs].sort((a, b) => b.length - a.length)) {
      if ([...next.keys()].some((f) => f.startsWith(`${rel}${sep}`))) continue;
      try {
        rmdirSync(join(root, rel));
        dirs.delete(rel);
      } catch {
        // Not empty (the user's files), or gone already.
        if (!lstatOrUndefined(join(root, rel))) dirs.delete(rel);
      }
    }
    const files = Object.fromEntries([...next].map(([rel, f]) => [rel, sha256(f.content)]));
    const text = `${JSON.stringify({ generator: "kubehyve render", files, dirs: [...dirs].sort() }, null, 2)}\n`;
    writeFileSync(join(root, `${tag}.manifest`), text, { mode: 0o644, flag: "wx" });
    renameSync(join(root, `${tag}.manifest`), join(root, MANIFEST));
  } catch (error) {
    // Back to how it was: the new files out, the old ones back, the new folders gone.
    for (const rel of placed) rmSync(join(root, rel), { force: true });
    for (const rel of backedUp) {
      try {
        renameSync(join(backup, rel), join(root, rel));
      } catch {}
    }
    for (const rel of createdDirs.reverse()) {
      try {
        rmdirSync(join(root, rel));
      } catch {}
    }
    rmSync(join(root, `${tag}.manifest`), { force: true });
    rmSync(staging, { recursive: true, force: true });
    rmSync(backup, { recursive: true, force: true });
    for (const made of madeRoot.reverse()) {
      try {
        rmdirSync(made);
      } catch {}
    }
    throw error instanceof KubehyveError
      ? error
      : new KubehyveError(
          `render could not write into ${root}: ${(error as Error).message}; it is left as it was`,
        );
  }
  // The replaced and stale files of the last render go with the backup.
  rmSync(staging, { recursive: true, force: true });
  rmSync(backup, { recursive: true, force: true });
  return [...next.keys()];
}
