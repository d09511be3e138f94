/**
 * A cluster's identity: a random id made at its first `up` and kept in the state dir. Everything a
 * stage creates on a host carries it, so that `up` and `down` act only on what this cluster made:
 * two clusters with the same node names, or a VM someone made by hand, are never mistaken for ours.
 */
import { dirname, join } from "node:path";
import { KubehyveError } from "../lib/errors.ts";
import { ensurePrivateDirSync, pathError, readPrivateFile, writeFileAtomicSync } from "../lib/fsutil.ts";

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
    // Aside, synced, renamed, the directory synced: a reader never sees half an id, and a power cut
    // after the first VMs were marked with it never leaves the file empty.
    try {
      writeFileAtomicSync(file, `${id}\n`);
    } catch (error) {
      throw (
        pathError(error, `cannot write the cluster's identity ${file}`) ??
        new KubehyveError(
          // The file is named once, before the system's words.
          `cannot write the cluster's identity ${file}: ${(error as Error).message.replace(/ '[^']*'$/, "")}`,
          1,
          `make room on the file system of ${dirname(file)}, then run the command again`,
        )
      );
    }
  }
  return id;
}
