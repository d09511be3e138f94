/**
 * The download cache behind ctx.artifacts. Every artifact is pinned by sha256: the body is streamed
 * to `<name>.part` while hashing, checked, then renamed into place, and the verified hash is written
 * to a `<name>.sha256` sidecar (sha256sum format) so `has()` never rereads gigabytes of image.
 */

import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { readFile, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { FetchError, ofetch } from "ofetch";
import { KubehyveError } from "../core/errors.ts";
import { ensurePrivateDir, writeFileAtomic } from "../core/fsutil.ts";
import type { ArtifactCache, ArtifactRequest } from "./types.ts";

export interface DownloadCacheOptions {
  dir: string;
  /** Base URL that replaces the scheme and host of every URL (air-gapped labs, tests). */
  mirror?: string;
  /** Replaces the global fetch (tests); TLS verification stays with whatever it does. */
  fetchImpl?: typeof fetch;
}

type FetchOpts = Parameters<ArtifactCache["fetch"]>[1];

const SHA256 = /^[0-9a-f]{64}$/;
// A cache entry is a plain file name: nothing that climbs out of the cache or hides as a dotfile.
const SAFE_NAME = /^[A-Za-z0-9_+][A-Za-z0-9._+-]*$/;

export class DownloadCache implements ArtifactCache {
  readonly dir: string;
  private readonly mirror?: URL;
  private readonly fetcher: typeof ofetch;
  /** Concurrent requests for the same file share one download. */
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(opts: DownloadCacheOptions) {
    this.dir = opts.dir;
    if (opts.mirror !== undefined) {
      try {
        this.mirror = new URL(opts.mirror);
      } catch {
        throw new KubehyveError(`artifact mirror ${JSON.stringify(opts.mirror)} is not a URL`, 2);
      }
    }
    this.fetcher = opts.fetchImpl ? ofetch.create({}, { fetch: opts.fetchImpl }) : ofetch;
  }

  /** The URL actually requested: the mirror's base with the original path and query. */
  resolveUrl(url: string): string {
    if (!this.mirror) return url;
    const original = parseUrl(url);
    const base = this.mirror.href.replace(/\/+$/, "");
    return `${base}${original.pathname}${original.search}`;
  }

  pathOf(req: ArtifactRequest): string {
    return join(this.dir, nameOf(req));
  }

  async has(req: ArtifactRequest): Promise<boolean> {
    const expected = checkedSha256(req);
    const path = this.pathOf(req);
    const recorded = await readFile(`${path}.sha256`, "utf8").catch(() => undefined);
    if (recorded?.split(/\s+/)[0] !== expected) return false;
    return stat(path).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  async fetch(req: ArtifactRequest, opts: FetchOpts = {}): Promise<string> {
    checkedSha256(req);
    const path = this.pathOf(req);
    if (await this.has(req)) return path;
    const running = this.inflight.get(path);
    if (running) return running;
    const download = this.download(req, path, opts).finally(() => this.inflight.delete(path));
    this.inflight.set(path, download);
    return download;
  }

  private async download(req: ArtifactRequest, path: string, opts: NonNullable<FetchOpts>): Promise<string> {
    await ensurePrivateDir(this.dir);
    const url = this.resolveUrl(req.url);
    const shown = url === req.url ? url : `${url} (mirror of ${req.url})`;
    const part = `${path}.part`;
    // A stale sidecar must never vouch for the bytes about to replace the file.
    await rm(`${path}.sha256`, { force: true });

    let body: ReadableStream<Uint8Array>;
    let total: number | undefined;
    try {
      const response = await this.fetcher.raw(url, {
        responseType: "stream",
        retry: 0,
        signal: opts.signal,
        ignoreResponseError: true,
      });
      if (!response.ok) {
        throw new KubehyveError(
          `download of ${shown} failed: HTTP ${response.status} ${response.statusText}`.trim(),
        );
      }
      if (!response._data) throw new KubehyveError(`download of ${shown} failed: the response has no body`);
      body = response._data;
      const length = Number(response.headers.get("content-length"));
      total = Number.isFinite(length) && length > 0 ? length : undefined;
    } catch (error) {
      throw wrapNetworkError(error, shown);
    }

    const hasher = new Bun.CryptoHasher("sha256");
    const out = createWriteStream(part, { mode: 0o600 });
    let done = 0;
    try {
      for await (const chunk of body) {
        hasher.update(chunk);
        done += chunk.byteLength;
        if (!out.write(chunk)) await once(out, "drain");
        opts.onProgress?.(done, total);
      }
      out.end();
      await once(out, "finish");
    } catch (error) {
      out.destroy();
      await rm(part, { force: true });
      throw wrapNetworkError(error, shown);
    }

    const actual = hasher.digest("hex");
    if (actual !== req.sha256) {
      await rm(part, { force: true });
      await rm(path, { force: true });
      throw new KubehyveError(
        `checksum mismatch for ${shown}: expected sha256 ${req.sha256}, got ${actual}; the file was deleted`,
        1,
        "the download was corrupted or the pinned checksum is wrong: retry, and if it fails again check the source",
      );
    }
    await rename(part, path);
    await writeFileAtomic(`${path}.sha256`, `${actual}  ${basename(path)}\n`, 0o600);
    return path;
  }
}

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new KubehyveError(`artifact URL ${JSON.stringify(url)} is not a URL`, 2);
  }
}

function nameOf(req: ArtifactRequest): string {
  const name = req.name ?? decodeURIComponent(basename(parseUrl(req.url).pathname));
  if (!SAFE_NAME.test(name) || name.endsWith(".part") || name.endsWith(".sha256")) {
    throw new KubehyveError(
      `artifact name ${JSON.stringify(name)} (from ${req.url}) is not a plain file name`,
      2,
    );
  }
  return name;
}

function checkedSha256(req: ArtifactRequest): string {
  if (!SHA256.test(req.sha256)) {
    throw new KubehyveError(
      `artifact ${req.url}: sha256 ${JSON.stringify(req.sha256)} is not 64 lower-case hex digits`,
      2,
    );
  }
  return req.sha256;
}

function wrapNetworkError(error: unknown, shown: string): Error {
  if (error instanceof KubehyveError) return error;
  if (error instanceof Error && error.name === "AbortError") return error;
  const cause = error instanceof FetchError ? (error.cause ?? error) : error;
  const message = cause instanceof Error ? cause.message : String(cause);
  const code = (cause as { code?: unknown } | undefined)?.code;
  return new KubehyveError(
    `download of ${shown} failed: ${message}${typeof code === "string" ? ` (${code})` : ""}`,
  );
}
