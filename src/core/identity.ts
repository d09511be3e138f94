/**
 * A cluster's identity: a random id made at its first `up` and kept in the state dir. Everything a
 * stage creates on a host carries it, so that `up` and `down` act only on what this cluster made:
 * two clusters with the same node names, or a VM someone made by hand, are never mistaken for ours.
 */
import { closeSync, constants, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { KubehyveError } from "../lib/errors.ts";
import { ensurePrivateDirSync, pathError, readPrivateFile, tempPathFor } from "../lib/fsutil.ts";

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function identityFileOf(stateDir: string): string {
  return join(stateDir, "cluster-id");
}

/** The id kept in the state dir, or undefined before the cluster's first `up`. */
export function readClusterId(stateDir: string): string | undefined {
  const file = identityFileOf(stateDir);
  const id = readPrivateFile(file)?.trim();
  if (id === undefined) return undefined;
  if (!ID.test(id))
    throw new KubehyveError(
      `${file} does not hold a cluster id (a UUID)`,
      1,
      "it names which VMs, switches and datasets on the host belong to this cluster: restore it from a backup of the state dir",
    );
  return id;
}

/**
 * The cluster's id: the kept one, else a new one, written when `keep` (a real `up`). A plan before
 * the first `up` gets a fresh id that nothing on any host carries yet, which is the truth.
 */
export function clusterIdentity(stateDir: string, keep: boolean): string {
  const kept = readClusterId(stateDir);
  if (kept) return kept;
  const id = crypto.randomUUID();
  if (keep) {
    const file = identityFileOf(stateDir);
    ensurePrivateDirSync(stateDir, "state dir");
    writeDurably(file, `${id}\n`);
  }
  return id;
}

/**
 * Aside, synced, renamed, and the directory synced: a reader never sees half an id, and a power cut
 * after the first VMs were marked with it never leaves the file empty (a rename can reach the disk
 * before the data it names). A write that fails (a full disk) leaves nothing beside the file.
 */
function writeDurably(file: string, text: string): void {
  const draft = tempPathFor(file);
  try {
    // "wx": never through something already lying at the temporary name.
    const fd = openSync(draft, "wx", 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(draft, file);
  } catch (error) {
    rmSync(draft, { force: true });
    throw (
      pathError(error, `cannot write the cluster's identity ${file}`) ??
      new KubehyveError(
        `cannot write the cluster's identity ${file}: ${(error as Error).message}`,
        1,
        `make room on the file system of ${dirname(file)}, then run the command again`,
      )
    );
  }
  try {
    const dir = openSync(dirname(file), constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    // A file system that cannot sync a directory: the rename stands, only less durably.
  }
}
