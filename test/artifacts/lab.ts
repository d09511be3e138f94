/** What the download cache's tests share: a cache in a fresh directory, and a failure awaited. */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadCache, type DownloadCacheOptions } from "../../src/artifacts/cache.ts";

/** A cache of its own, in a directory it has not made yet (`<fresh dir>/cache`). */
export async function freshCache(opts: Omit<DownloadCacheOptions, "dir"> = {}): Promise<DownloadCache> {
  const dir = await mkdtemp(join(tmpdir(), "kubehyve-cache-"));
  return new DownloadCache({ dir: join(dir, "cache"), ...opts });
}

/** The error `p` fails with; a `p` that succeeds fails the test. */
export async function failure(p: Promise<unknown>): Promise<Error> {
  const error = await p.then(
    () => undefined,
    (e: Error) => e,
  );
  if (!error) throw new Error("expected the download to fail");
  return error;
}
