/** Kubespray's release tarball: fetched through the artifact cache, unpacked once per version. */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ArtifactCache, Target } from "kubehyve";

const MARKER = ".kubehyve-unpacked";

export function kubesprayDirOf(stageDir: string, version: string): string {
  return join(stageDir, `kubespray-${version}`);
}

/** True when this version's tree is unpacked from a tarball with this sha256. */
export async function isUnpacked(dir: string, sha256: string): Promise<boolean> {
  const marker = await readFile(join(dir, MARKER), "utf8").catch(() => undefined);
  return marker?.trim() === sha256;
}

/**
 * Downloads (or finds in the cache) the tarball and unpacks it into `dir`. The top directory of
 * GitHub's archive (`kubespray-2.31.0/`) is stripped. Unpacking goes to a temporary directory that is
 * renamed at the end, so an interrupted run never leaves a tree that looks complete. `local` (the
 * machine kubehyve runs on, `ctx.local`) runs tar.
 */
export async function ensureKubespray(
  local: Target,
  artifacts: ArtifactCache,
  release: { url: string; sha256: string; version: string },
  dir: string,
  signal?: AbortSignal,
): Promise<string> {
  if (await isUnpacked(dir, release.sha256)) return dir;
  const tarball = await artifacts.fetch(
    { url: release.url, sha256: release.sha256, name: `kubespray-${release.version}.tar.gz` },
    { signal },
  );
  const tmp = `${dir}.partial`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true, mode: 0o700 });
  const r = await local.run(["tar", "-xzf", tarball, "-C", tmp, "--strip-components=1"], { signal });
  if (r.code !== 0) {
    await rm(tmp, { recursive: true, force: true });
    throw new Error(`unpacking ${tarball} into ${tmp} failed (tar exited ${r.code}): ${r.stderr.trim()}`);
  }
  const cluster = await readFile(join(tmp, "cluster.yml"), "utf8").catch(() => undefined);
  if (cluster === undefined) {
    await rm(tmp, { recursive: true, force: true });
    throw new Error(`${release.url} is not a Kubespray release: it has no cluster.yml at its top`);
  }
  await writeFile(join(tmp, MARKER), `${release.sha256}\n`, { mode: 0o600 });
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return dir;
}
