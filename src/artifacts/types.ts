/** The download cache as plugins see it (ctx.artifacts). */
export interface ArtifactRequest {
  url: string;
  /** Lower-case hex sha256 the bytes must have. */
  sha256: string;
  /** Exact size in bytes, when known: a body that is longer is stopped there, one shorter refused. */
  size?: number;
  /**
   * Most bytes the file may have, when its exact size is not known (a release the user pinned by
   * sha256 only): a body that is longer is stopped there. At most the cache's own limit (16 GiB).
   */
  maxBytes?: number;
  /** File name in the cache; defaults to the URL's last path segment. */
  name?: string;
}

/**
 * A source tree pinned by its content: an archive (tar, gzip or zstd) holding one top directory, whose
 * unpacked content must have the `tree-sha256-v1` digest (see src/artifacts/tree.ts). For archives
 * their host builds on the fly, whose bytes change while their content does not.
 */
export interface TreeRequest {
  url: string;
  /** Lower-case hex tree-sha256-v1 digest of the content under the archive's top directory. */
  treeSha256V1: string;
  /** Optional stricter pin of the archive's bytes; the archive is then kept in the cache too. */
  sha256?: string;
  /** Most bytes of the archive (default 2 GiB: twice what its unpacked content may have). */
  maxBytes?: number;
  /** Directory name in the cache; defaults to the URL's last path segment without `.tar.gz`. */
  name?: string;
}

export interface ArtifactCache {
  /** The cache directory. */
  readonly dir: string;
  /** Path the artifact has (or will have) in the cache. */
  pathOf(req: ArtifactRequest): string;
  /** True when the artifact is in the cache and its hash was verified when it was stored. */
  has(req: ArtifactRequest): Promise<boolean>;
  /**
   * The URL a download of `url` really goes to (the mirror's base with the same path), for documents
   * a plugin reads itself because they cannot be pinned, such as release stream metadata.
   */
  resolveUrl(url: string): string;
  /**
   * GETs such a document through the mirror with the downloads' rules (timeouts, at most ten
   * redirects and none away from https, no decompression, at most `maxBytes`, default 1 MiB) and
   * returns its text; errors name the URL without credentials.
   */
  readDocument(url: string, opts?: { signal?: AbortSignal; maxBytes?: number }): Promise<string>;
  /**
   * Downloads into the cache while hashing (once; a cached file is not downloaded again) and returns
   * its path. A hash mismatch deletes the file and throws, naming both hashes.
   */
  fetch(
    req: ArtifactRequest,
    opts?: { signal?: AbortSignal; onProgress?: (done: number, total?: number) => void },
  ): Promise<string>;
  /** Directory the tree has (or will have) in the cache. */
  treePathOf(req: TreeRequest): string;
  /** True when the tree is in the cache and its digest was verified when it was stored. */
  hasTree(req: TreeRequest): Promise<boolean>;
  /**
   * Downloads and unpacks the archive into a private temporary directory (refusing absolute paths,
   * `..`, device files and links that leave the tree), digests the content, and renames it into the
   * cache when the digest matches; returns the tree's directory. A mismatch deletes the tree and
   * throws, naming both digests. A tree already in the cache is digested again and used when it
   * still matches, so a tree changed since is fetched anew.
   */
  fetchTree(
    req: TreeRequest,
    opts?: { signal?: AbortSignal; onProgress?: (done: number, total?: number) => void },
  ): Promise<string>;
}
