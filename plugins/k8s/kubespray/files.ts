/**
 * Writing the stage's own files (the inventory and group vars) into its directory of the state dir.
 * The core checks that directory but does not walk it, so what is found on the way is checked here:
 * a link (to a directory or a file someone keeps elsewhere) is never written through, a directory
 * where a file goes is refused, and every file ends private whatever was there before.
 */
import { randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { KubehyveError, type RenderedFile } from "kubehyve";

async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * Each directory from `root` (exclusive) down to `dir`: made 0700, or checked (a link or a file is
 * refused, naming it) and made 0700. A `dir` outside `root` is only made.
 */
export async function ensureStageDirs(root: string, dir: string): Promise<void> {
  const rel = relative(root, dir);
  if (rel.startsWith("..") || isAbsolute(rel)) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return;
  }
  let path = root;
  for (const part of rel.split(sep).filter(Boolean)) {
    path = join(path, part);
    const st = await lstatOrUndefined(path);
    if (!st) {
      await mkdir(path, { mode: 0o700 });
      continue;
    }
    if (st.isSymbolicLink() || !st.isDirectory()) {
      throw new KubehyveError(
        `${path} is ${st.isSymbolicLink() ? "a symlink" : "not a directory"}, where kubehyve keeps the stage's own files; nothing was written`,
        1,
        `move it away: kubehyve writes only into directories it made, never through a link`,
      );
    }
    // Kubespray puts the admin kubeconfig under the inventory directory (artifacts/).
    if ((st.mode & 0o077) !== 0) await chmod(path, 0o700);
  }
}

/**
 * Writes each file under `root` (the stage's directory): through a private temporary file renamed
 * over the old one, so that a link there is replaced, not followed, and no reader sees half a file.
 */
export async function writeStageFiles(root: string, files: readonly RenderedFile[]): Promise<void> {
  for (const f of files) {
    const path = join(root, f.path);
    await ensureStageDirs(root, dirname(path));
    if ((await lstatOrUndefined(path))?.isDirectory()) {
      throw new KubehyveError(
        `${path} is a directory, where kubehyve writes a file; nothing was written there`,
        1,
        "move it away: kubehyve does not remove what it did not make",
      );
    }
    const temp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      // wx: a name that exists already is never opened, whatever it is.
      await writeFile(temp, f.content, { mode: f.mode ?? 0o600, flag: "wx" });
      await chmod(temp, f.mode ?? 0o600);
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }
}
