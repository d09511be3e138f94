/**
 * Source trees pinned by their content. A tarball that its host builds on the fly (GitHub's archive
 * of a tag) has no stable sha256: the bytes change with the compressor, the content does not. So the
 * tree is unpacked into a private directory, its `tree-sha256-v1` digest is computed and compared,
 * and only a tree that matches is used.
 *
 * tree-sha256-v1: for every regular file and symlink under the tree's top directory (directories are
 * not listed) a line `MODE SHA256 PATH\n`, where MODE is `120000` for a symlink (not followed),
 * `100755` for a file with any execute bit, `100644` otherwise; SHA256 is the lower-case hex sha256
 * of the file's bytes or of the symlink's target; PATH is relative, `/`-separated, raw bytes. The
 * lines are sorted bytewise and joined, and the digest is the sha256 of the result. Git's modes are
 * used on purpose: a tree read from git (`git ls-tree -r`) gives the same lines.
 */
import { createReadStream, createWriteStream, linkSync, mkdirSync, openSync, symlinkSync } from "node:fs";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import type { ReadEntry } from "tar";
import { KubehyveError } from "../lib/errors.ts";

export const TREE_DIGEST_V1 = "tree-sha256-v1";

export interface TreeDigest {
  /** Lower-case hex sha256 of the sorted lines. */
  digest: string;
  entries: number;
  files: number;
  executables: number;
  symlinks: number;
  /** Bytes of the files plus the lengths of the symlinks' targets. */
  bytes: number;
}

const SLASH = Buffer.from("/");

function sha256Hex(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

/** The tree-sha256-v1 digest of the directory `dir` (which is the tree's top directory). */
export async function treeSha256V1(dir: string): Promise<TreeDigest> {
  const lines: Buffer[] = [];
  const count = { files: 0, executables: 0, symlinks: 0, bytes: 0 };
  // Names are read as bytes: the digest is over raw paths, whatever their encoding.
  const walk = async (abs: Buffer, rel: Buffer | undefined): Promise<void> => {
    const names = (await readdir(abs, { encoding: "buffer" })) as Buffer[];
    for (const name of names) {
      const childAbs = Buffer.concat([abs, SLASH, name]);
      const childRel = rel ? Buffer.concat([rel, SLASH, name]) : name;
      const info = await lstat(childAbs);
      let mode: string;
      let hash: string;
      if (info.isDirectory()) {
        await walk(childAbs, childRel);
        continue;
      } else if (info.isSymbolicLink()) {
        const target = (await readlink(childAbs, { encoding: "buffer" })) as Buffer;
        mode = "120000";
        hash = sha256Hex(target);
        count.symlinks++;
        count.bytes += target.length;
      } else if (info.isFile()) {
        const bytes = await readFile(childAbs);
        mode = info.mode & 0o111 ? "100755" : "100644";
        hash = sha256Hex(bytes);
        if (mode === "100755") count.executables++;
        else count.files++;
        count.bytes += bytes.length;
      } else {
        throw new KubehyveError(
          `${childAbs.toString()} is neither a regular file, a symlink nor a directory: a source tree holds no such thing`,
        );
      }
      lines.push(Buffer.concat([Buffer.from(`${mode} ${hash} `), childRel, Buffer.from("\n")]));
    }
  };
  await walk(Buffer.from(dir), undefined);
  lines.sort(Buffer.compare);
  return {
    digest: sha256Hex(Buffer.concat(lines)),
    entries: lines.length,
    ...count,
  };
}

export interface UnpackLimits {
  /** Most bytes the files may add up to (default 1 GiB). */
  maxBytes?: number;
  /** Most entries (default 100 000). */
  maxEntries?: number;
}

/** Why an archive is refused: names the archive, the entry and the rule. */
class RefusedArchive extends KubehyveError {}

/**
 * Unpacks a tarball (plain, gzip or zstd) that holds one top directory into `dest`, which must not
 * exist yet: `dest` becomes that top directory. Every entry is checked before anything is written,
 * and the archive is refused (and `dest` left for the caller to remove) when an entry
 *
 * - has an absolute path or a `..` component, or lies outside the top directory;
 * - has a name longer than 255 bytes, or a path deeper than the file system takes;
 * - is a device file, a FIFO or anything else but a file, a directory, a symlink or a hard link;
 * - is a symlink whose target is absolute or resolves (through the tree's other symlinks) outside
 *   the tree, or lies under a symlink;
 * - is a hard link to anything but a regular file unpacked before it;
 * - appears twice (a directory may be repeated, nothing else), or lies under a file or link;
 * - makes the archive exceed the limits.
 *
 * Files are written 0644, or 0755 when the archive gives them any execute bit; directories 0755.
 * Owners and times are not restored. The archive is read by node-tar's parser (the reader npm itself
 * uses), not by the host's tar: FreeBSD's bsdtar and GNU tar differ in what they refuse, and here
 * the same rules hold on every host.
 */
export async function unpackTarball(
  archive: string,
  dest: string,
  opts: UnpackLimits & { signal?: AbortSignal; shown?: string } = {},
): Promise<void> {
  // Loaded here, not with the module: most commands unpack nothing.
  const { Parser } = await import("tar");
  const maxBytes = opts.maxBytes ?? 1024 ** 3;
  const maxEntries = opts.maxEntries ?? 100_000;
  const shown = opts.shown ?? archive;
  mkdirSync(dest, { mode: 0o755 });

  let top: string | undefined;
  let entries = 0;
  let bytes = 0;
  const seen = new Map<string, "directory" | "file or link">();
  const files = new Set<string>();
  const symlinks = new Map<string, string>();
  const writes: Promise<void>[] = [];
  let failure: Error | undefined;

  const refuse = (entryPath: string, why: string): never => {
    // A path of thousands of bytes is named by its start.
    const name = entryPath.length > 160 ? `${entryPath.slice(0, 160)}…` : entryPath;
    throw new RefusedArchive(
      `${shown} is refused: its entry ${JSON.stringify(name)} ${why}`,
      1,
      "the archive is not the one expected; nothing of it is used",
    );
  };

  /** The entry's path inside the top directory ("" for the top directory itself). */
  const inside = (raw: string): string => {
    if (raw.includes("\0")) refuse(raw, "has a NUL byte in its name");
    if (raw.includes("\uFFFD")) refuse(raw, "has a name that is not UTF-8");
    if (raw.startsWith("/")) refuse(raw, "has an absolute path");
    const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
    if (parts.includes("..")) refuse(raw, "climbs out with ..");
    if (parts.length === 0) refuse(raw, "has an empty path");
    // NAME_MAX on Linux and FreeBSD alike; the kernel's ENAMETOOLONG would say less.
    const long = parts.find((p) => Buffer.byteLength(p) > 255);
    if (long)
      refuse(raw, `has a name of ${Buffer.byteLength(long)} bytes, more than a file system takes (255)`);
    const first = parts[0]!;
    top ??= first;
    if (first !== top) refuse(raw, `lies outside the archive's top directory ${top}/`);
    return parts.slice(1).join("/");
  };

  const underSymlink = (rel: string): string | undefined => {
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (symlinks.has(prefix)) return prefix;
    }
    return undefined;
  };

  const handle = (entry: ReadEntry): void => {
    const raw = entry.path;
    if (++entries > maxEntries) refuse(raw, `makes more than ${maxEntries} entries`);
    const rel = inside(raw);
    const type = entry.type;
    if (rel === "") {
      if (type !== "Directory") refuse(raw, "is the archive's top level but not a directory");
      entry.resume();
      return;
    }
    const link = underSymlink(rel);
    if (link) refuse(raw, `lies under the symlink ${link}`);
    // Each name is one thing: a directory may be given again (as tar does for a directory's parents
    // made implicitly), nothing else may, so no entry lands on, or under, what an earlier one made.
    const kind = type === "Directory" ? "directory" : "file or link";
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const was = seen.get(parent);
      if (was !== undefined && was !== "directory")
        refuse(raw, `lies under ${parent}, an earlier file or link`);
      seen.set(parent, "directory");
    }
    const was = seen.get(rel);
    if (was !== undefined && (was !== "directory" || kind !== "directory"))
      refuse(raw, was === kind ? "appears twice" : `appears twice, as a ${was} and as a ${kind}`);
    seen.set(rel, kind);
    const target = join(dest, rel);
    switch (type) {
      case "Directory":
        mkdirSync(target, { recursive: true, mode: 0o755 });
        entry.resume();
        return;
      case "File":
      case "OldFile":
      case "ContiguousFile": {
        bytes += entry.size;
        if (bytes > maxBytes) refuse(raw, `makes the content larger than ${maxBytes} bytes`);
        mkdirSync(join(target, ".."), { recursive: true, mode: 0o755 });
        // O_EXCL: never write through anything already at that name.
        const fd = openSync(target, "wx", (entry.mode ?? 0) & 0o111 ? 0o755 : 0o644);
        files.add(rel);
        const out = createWriteStream("", { fd });
        writes.push(
          new Promise<void>((resolve, reject) => {
            out.on("close", resolve);
            out.on("error", reject);
            entry.on("error", reject);
          }),
        );
        entry.pipe(out);
        return;
      }
      case "SymbolicLink": {
        const to = entry.linkpath ?? "";
        if (to.includes("\0")) refuse(raw, "is a symlink whose target has a NUL byte");
        if (to.startsWith("/")) refuse(raw, `is a symlink to the absolute path ${to}`);
        if (to === "") refuse(raw, "is a symlink without a target");
        mkdirSync(join(target, ".."), { recursive: true, mode: 0o755 });
        symlinkSync(to, target);
        symlinks.set(rel, to);
        entry.resume();
        return;
      }
      case "Link": {
        const to = entry.linkpath ?? "";
        if (to.startsWith("/")) refuse(raw, `is a hard link to the absolute path ${to}`);
        const parts = to.split("/").filter((p) => p !== "" && p !== ".");
        if (parts.includes("..") || parts[0] !== top)
          refuse(raw, `is a hard link to ${to}, outside the tree`);
        const source = parts.slice(1).join("/");
        if (!files.has(source)) refuse(raw, `is a hard link to ${to}, which is no file unpacked before it`);
        mkdirSync(join(target, ".."), { recursive: true, mode: 0o755 });
        linkSync(join(dest, source), target);
        entry.resume();
        return;
      }
      default:
        refuse(raw, `is a ${type} entry: only files, directories and links belong in a source tree`);
    }
  };

  await new Promise<void>((resolve, reject) => {
    const input = createReadStream(archive);
    const fail = (error: unknown) => {
      failure ??= error instanceof Error ? error : new Error(String(error));
      input.destroy();
      reject(failure);
    };
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry) => {
        if (failure) {
          entry.resume();
          return;
        }
        try {
          handle(entry);
        } catch (error) {
          entry.resume();
          if (error instanceof KubehyveError || (error as NodeJS.ErrnoException).code !== "ENAMETOOLONG")
            fail(
              error instanceof KubehyveError
                ? error
                : new KubehyveError(
                    `${shown}: an entry could not be unpacked into ${dest}: ${(error as Error).message}`,
                  ),
            );
          else {
            // A path deeper than the file system takes is the archive's doing, not a bug.
            try {
              refuse(entry.path, "has a path longer than the file system takes (ENAMETOOLONG)");
            } catch (refused) {
              fail(refused);
            }
          }
        }
      },
    });
    parser.on("error", (error: Error) =>
      fail(
        error instanceof KubehyveError
          ? error
          : new KubehyveError(`${shown} is not a readable tarball: ${error.message}`),
      ),
    );
    // A tarball ends with zero blocks; without them it was cut short, maybe right between entries.
    let ended = false;
    parser.on("eof", () => {
      ended = true;
    });
    parser.on("close", () => {
      if (failure) return;
      if (!ended)
        fail(new RefusedArchive(`${shown} is cut short: it ends before the tar end-of-archive blocks`));
      else resolve();
    });
    opts.signal?.addEventListener("abort", () => fail(opts.signal!.reason), { once: true });
    input.on("error", fail);
    input.on("data", (chunk) => {
      if (!parser.write(chunk as Buffer)) {
        input.pause();
        parser.once("drain", () => input.resume());
      }
    });
    input.on("end", () => parser.end());
  });
  await Promise.all(writes);
  if (top === undefined) {
    throw new RefusedArchive(`${shown} holds no entries`, 1, "the archive is not the one expected");
  }
  for (const [rel, to] of symlinks) {
    if (!resolvesInside(rel, symlinks))
      refuse(`${top}/${rel}`, `is a symlink to ${to}, which leaves the tree`);
  }
}

/**
 * True when the symlink at `rel` resolves inside the tree, following the tree's other symlinks as
 * the kernel would (a `..` after a symlink applies to where the link points, not to the link's
 * name). A dangling link that stays inside is allowed; a loop is not.
 */
export function resolvesInside(rel: string, symlinks: ReadonlyMap<string, string>): boolean {
  const stack = rel.split("/").slice(0, -1);
  const queue = (symlinks.get(rel) ?? "").split("/");
  let hops = 0;
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (stack.length === 0) return false;
      stack.pop();
      continue;
    }
    stack.push(part);
    const link = symlinks.get(stack.join("/"));
    if (link === undefined) continue;
    if (++hops > 40 || link.startsWith("/")) return false;
    stack.pop();
    queue.unshift(...link.split("/"));
  }
  return true;
}
