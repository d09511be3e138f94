/** Local file helpers for the state dir: secrets 0600 in 0700 directories, atomic replacement. */
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // mkdir leaves an existing directory's mode alone; the state dir must not be readable by others.
  await chmod(dir, 0o700);
}

let tmpCounter = 0;

/** Writes through a temporary file and a rename, so a crash never leaves half a file. */
export async function writeFileAtomic(
  path: string,
  content: string | Uint8Array,
  mode = 0o600,
): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // Unique per call: two writes of one file in flight at once must not share (and steal) a temp file.
  const tmp = `${path}.${process.pid}.${++tmpCounter}.tmp`;
  try {
    // "wx": never write through something already lying at the temporary name (a symlink).
    await writeFile(tmp, content, { mode, flag: "wx" });
    await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}
