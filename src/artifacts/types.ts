/** The download cache as plugins see it (ctx.artifacts). */
export interface ArtifactRequest {
  url: string;
  /** Lower-case hex sha256 the bytes must have. */
  sha256: string;
  /** File name in the cache; defaults to the URL's last path segment. */
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
   * Downloads into the cache while hashing (once; a cached file is not downloaded again) and returns
   * its path. A hash mismatch deletes the file and throws, naming both hashes.
   */
  fetch(
    req: ArtifactRequest,
    opts?: { signal?: AbortSignal; onProgress?: (done: number, total?: number) => void },
  ): Promise<string>;
}
