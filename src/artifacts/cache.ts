/**
 * The download cache behind ctx.artifacts. Every artifact is pinned by sha256: the body is streamed
 * to `<name>.part` while hashing, checked, then renamed into place, and the verified hash is written
 * to a `<name>.sha256` sidecar (sha256sum format) so `has()` never rereads gigabytes of image.
 *
 * A source tree is pinned by its content instead (`fetchTree`, see tree.ts): the archive is unpacked
 * into a private temporary directory, digested, compared, and renamed to `<name>/`, with the digest
 * in a `<name>.tree-sha256-v1` sidecar.
 */

import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { lstat, mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { finished } from "node:stream/promises";
import { KubehyveError } from "../lib/errors.ts";
import { ensurePrivateDir, removeStaleTemps, tempPathFor, writeFileAtomic } from "../lib/fsutil.ts";
import { processAlive } from "../lib/process.ts";
import { redact } from "../lib/url.ts";
import { TREE_DIGEST_V1, treeSha256V1, unpackTarball } from "./tree.ts";
import type { ArtifactCache, ArtifactRequest, TreeRequest } from "./types.ts";

export interface DownloadCacheOptions {
  dir: string;
  /** Base URL that replaces the scheme and host of every URL (air-gapped labs, tests). */
  mirror?: string;
  /** Replaces the global fetch (tests); TLS verification stays with whatever it does. */
  fetchImpl?: typeof fetch;
  /** Most bytes a download without a pinned `size` may have (default 16 GiB): an endless body stops here. */
  maxBytes?: number;
  /** How long the server may take to answer a request with its headers (default 30 s). */
  headersTimeoutMs?: number;
  /**
   * A download that receives less than `minBytesPerWindow` (default 1 KiB) in this long (default
   * 60 s) is stalled and stopped: a server that trickles a byte now and then never times out
   * otherwise (curl's --speed-limit/--speed-time).
   */
  stallWindowMs?: number;
  minBytesPerWindow?: number;
}

type FetchOpts = Parameters<ArtifactCache["fetch"]>[1];

const SHA256 = /^[0-9a-f]{64}$/;
// A cache entry is a plain file name: nothing that climbs out of the cache or hides as a dotfile.
const SAFE_NAME = /^[A-Za-z0-9_+][A-Za-z0-9._+-]*$/;

let workCounter = 0;

/** Removes the unpacking directories of tree `name` left by processes that are gone; nothing else. */
async function removeStaleWorkDirs(dir: string, name: string): Promise<void> {
  const prefix = `.${name}.`;
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const entry of names) {
    const m = entry.startsWith(prefix) ? /^(\d+)\.\d+\.unpack$/.exec(entry.slice(prefix.length)) : null;
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const path = join(dir, entry);
    // Only a directory: a link there is someone's way elsewhere, and is left for the state dir check.
    if ((await lstat(path).catch(() => undefined))?.isDirectory())
      await rm(path, { recursive: true, force: true });
  }
}

export class DownloadCache implements ArtifactCache {
  readonly dir: string;
  private readonly mirror?: URL;
  private readonly fetcher: typeof fetch;
  private readonly limits: Required<
    Pick<DownloadCacheOptions, "maxBytes" | "headersTimeoutMs" | "stallWindowMs" | "minBytesPerWindow">
  >;
  /** Concurrent requests for the same file share one download. */
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(opts: DownloadCacheOptions) {
    this.dir = opts.dir;
    if (opts.mirror !== undefined) this.mirror = checkedMirror(opts.mirror);
    this.fetcher = opts.fetchImpl ?? fetch;
    this.limits = {
      maxBytes: opts.maxBytes ?? 16 * 1024 ** 3,
      headersTimeoutMs: opts.headersTimeoutMs ?? 30_000,
      stallWindowMs: opts.stallWindowMs ?? 60_000,
      minBytesPerWindow: opts.minBytesPerWindow ?? 1024,
    };
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
    const [file, sidecar] = await Promise.all(
      [lstat(path), lstat(`${path}.sha256`)].map((p) => p.catch(() => undefined)),
    );
    // Only a plain file of this process's user, unchanged since its sidecar was written, is vouched
    // for: a symlink, a file of someone else's, or one truncated or replaced since (which moves its
    // ctime, which no one can set back) is downloaded again.
    const uid = process.getuid?.();
    const plain = (s: typeof file) => s?.isFile() && (uid === undefined || s.uid === uid);
    if (!plain(file) || !plain(sidecar) || file!.ctimeMs > sidecar!.mtimeMs) return false;
    if (req.size !== undefined && file!.size !== req.size) return false;
    const recorded = await readFile(`${path}.sha256`, "utf8").catch(() => undefined);
    return recorded?.split(/\s+/)[0] === expected;
  }

  async fetch(req: ArtifactRequest, opts: FetchOpts = {}): Promise<string> {
    checkedSha256(req);
    checkedSize(req);
    const path = this.pathOf(req);
    if (await this.has(req)) return path;
    const running = this.inflight.get(path);
    if (running) return running;
    const download = (async () => {
      await ensurePrivateDir(this.dir);
      // A stale sidecar must never vouch for the bytes about to replace the file, and nothing
      // unverified stays under the final name.
      await rm(`${path}.sha256`, { force: true });
      await rm(path, { force: true });
      removeStaleTemps(path, "part");
      // A name of this download's own: another kubehyve fetching the same file at the same time
      // writes its own, and each rename puts a whole verified file in place.
      const part = tempPathFor(path, "part");
      try {
        const actual = await this.download(req.url, part, opts, req.sha256, req.size, req.maxBytes);
        await rename(part, path);
        await writeFileAtomic(`${path}.sha256`, `${actual}  ${basename(path)}\n`, 0o600);
      } finally {
        await rm(part, { force: true });
      }
      return path;
    })().finally(() => this.inflight.delete(path));
    this.inflight.set(path, download);
    return download;
  }

  treePathOf(req: TreeRequest): string {
    return join(this.dir, treeNameOf(req));
  }

  async hasTree(req: TreeRequest): Promise<boolean> {
    const expected = checkedTreeDigest(req);
    const path = this.treePathOf(req);
    const recorded = await readFile(`${path}.${TREE_DIGEST_V1}`, "utf8").catch(() => undefined);
    if (recorded?.split(/\s+/)[0] !== expected) return false;
    // lstat: a symlink put at the tree's name leads to a directory this cache does not own, which
    // could change between its digest and its use.
    const uid = process.getuid?.();
    return lstat(path).then(
      (s) => s.isDirectory() && (uid === undefined || s.uid === uid),
      () => false,
    );
  }

  async fetchTree(req: TreeRequest, opts: FetchOpts = {}): Promise<string> {
    const expected = checkedTreeDigest(req);
    if (req.sha256 !== undefined) checkedSha256({ url: req.url, sha256: req.sha256 });
    checkedSize(req);
    const path = this.treePathOf(req);
    const running = this.inflight.get(path);
    if (running) return running;
    const work = (async () => {
      // The sidecar says what was verified; the tree is digested again before each use all the
      // same, because whatever runs from it (Ansible, as root on the nodes) may have changed it.
      if (await this.hasTree(req)) {
        const now = await treeSha256V1(path);
        if (now.digest === expected) return path;
      }
      await ensurePrivateDir(this.dir);
      await rm(`${path}.${TREE_DIGEST_V1}`, { force: true });
      const url = this.resolveUrl(req.url);
      const shown = showUrl(url, req.url);
      // Its content may have 1 GiB (unpackTarball's limit): an archive of twice that holds no such tree.
      const archiveMax = req.maxBytes ?? 2 * 1024 ** 3;
      // A run killed here (SIGKILL, the OOM killer) leaves its working directory, with up to
      // 2 GiB of archive: the next run removes those whose process is gone.
      await removeStaleWorkDirs(this.dir, basename(path));
      // A 0700 directory of its own name, which mkdir makes new or fails: no one else prepared it.
      const work = join(this.dir, `.${basename(path)}.${process.pid}.${++workCounter}.unpack`);
      await mkdir(work, { mode: 0o700 });
      try {
        let archive: string;
        if (req.sha256 !== undefined) {
          // The stricter pin: the archive's own bytes, kept in the cache like any download.
          archive = await this.fetch(
            { url: req.url, sha256: req.sha256, maxBytes: archiveMax, name: `${basename(path)}.archive` },
            opts,
          );
        } else {
          archive = join(work, "archive");
          await this.download(req.url, archive, opts, undefined, undefined, archiveMax);
        }
        const tree = join(work, "tree");
        await unpackTarball(archive, tree, { signal: opts.signal, shown });
        const got = await treeSha256V1(tree);
        if (got.digest !== expected) {
          throw new KubehyveError(
            `content mismatch for ${shown}: expected ${TREE_DIGEST_V1} ${expected}, got ${got.digest} (${got.entries} entries); the unpacked tree was deleted`,
            1,
            "the archive does not hold the pinned content: check the URL and the pinned digest",
          );
        }
        // The cache is this tool's own directory: what lies at the tree's name is a tree it made.
        await rm(path, { recursive: true, force: true });
        await rename(tree, path);
        await writeFileAtomic(`${path}.${TREE_DIGEST_V1}`, `${got.digest}  ${basename(path)}\n`, 0o600);
        return path;
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    })().finally(() => this.inflight.delete(path));
    this.inflight.set(path, work);
    return work;
  }

  /**
   * Reads a small document that cannot be pinned (release stream metadata) through the mirror, with
   * the downloads' rules: timeouts, redirects, no decompression, and at most `maxBytes` (1 MiB).
   */
  async readDocument(url: string, opts: { signal?: AbortSignal; maxBytes?: number } = {}): Promise<string> {
    const chunks: Uint8Array[] = [];
    await this.transfer(url, opts, undefined, opts.maxBytes ?? 1024 * 1024, {
      write: (chunk) => {
        chunks.push(chunk);
      },
      close: async () => {},
    });
    return new TextDecoder().decode(Buffer.concat(chunks));
  }

  /** Streams `url` to `part` while hashing; returns the sha256, after checking it when `expected`. */
  private async download(
    originalUrl: string,
    part: string,
    opts: NonNullable<FetchOpts>,
    expected: string | undefined,
    size: number | undefined,
    maxBytes?: number,
  ): Promise<string> {
    const out = createWriteStream(part, { mode: 0o600, flags: "wx" });
    // A write error (a full disk) is kept for the end rather than thrown from the stream's event.
    let writeError: Error | undefined;
    out.on("error", (error) => {
      writeError ??= error;
    });
    try {
      const limit = size ?? Math.min(maxBytes ?? this.limits.maxBytes, this.limits.maxBytes);
      const got = await this.transfer(originalUrl, opts, size, limit, {
        write: async (chunk) => {
          if (writeError) throw writeError;
          if (!out.write(chunk)) await once(out, "drain");
        },
        close: async () => {
          out.end();
          await finished(out);
        },
      });
      if (expected !== undefined && got.sha256 !== expected) {
        const html = /html/i.test(got.type)
          ? ` (the server sent ${got.type.split(";")[0]}: an error page or a captive portal rather than the file?)`
          : "";
        throw new KubehyveError(
          `checksum mismatch for ${got.shown}: expected sha256 ${expected}, got ${got.sha256}${html}; the file was deleted`,
          1,
          "the download was corrupted or the pinned checksum is wrong: retry, and if it fails again check the source",
        );
      }
      return got.sha256;
    } catch (error) {
      out.destroy();
      await rm(part, { force: true });
      throw error;
    }
  }

  /**
   * One GET of `originalUrl` (through the mirror) into `sink`, hashing on the way, within `limit`
   * bytes (exactly `size` when given) and the timeouts; errors name the URL.
   */
  private async transfer(
    originalUrl: string,
    opts: NonNullable<FetchOpts>,
    size: number | undefined,
    limit: number,
    sink: { write(chunk: Uint8Array): void | Promise<void>; close(): Promise<void> },
  ): Promise<{ sha256: string; type: string; shown: string }> {
    const first = this.resolveUrl(originalUrl);
    let shown = showUrl(first, originalUrl);

    // One controller stops the request and the body alike: the caller's signal, the headers'
    // deadline, a stall. Its reason says which, with the URL.
    const stop = new AbortController();
    let stopped: KubehyveError | undefined;
    const halt = (why: KubehyveError) => {
      stopped ??= why;
      stop.abort(why);
    };
    const onAbort = () => stop.abort(opts.signal?.reason);
    if (opts.signal?.aborted) throw opts.signal.reason;
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const headersTimer = setTimeout(
      () =>
        halt(
          new KubehyveError(
            `download of ${shown} failed: no answer within ${this.limits.headersTimeoutMs / 1000} s`,
            1,
            "check that the server (or $KUBEHYVE_MIRROR) is up and reachable, then retry",
          ),
        ),
      this.limits.headersTimeoutMs,
    );
    let stallTimer: ReturnType<typeof setInterval> | undefined;
    try {
      const response = await this.follow(first, originalUrl, stop.signal, (url) => {
        shown = showUrl(url, originalUrl);
      });
      clearTimeout(headersTimer);
      if (!response.ok) {
        const retry = response.headers.get("retry-after");
        throw new KubehyveError(
          `download of ${shown} failed: HTTP ${response.status} ${response.statusText}`.trim() +
            (retry ? `; the server asks to retry after ${retry}${/^\d+$/.test(retry) ? " s" : ""}` : ""),
          1,
          response.status === 429 || response.status >= 500 || retry
            ? "the server is busy or failing: retry later"
            : "check the URL (and $KUBEHYVE_MIRROR when it is set: the mirror must have the same paths)",
        );
      }
      if (!response.body) throw new KubehyveError(`download of ${shown} failed: the response has no body`);
      const length = Number(response.headers.get("content-length") ?? Number.NaN);
      const total = Number.isFinite(length) && length > 0 ? length : undefined;
      if (total !== undefined && total > limit)
        throw tooLarge(shown, limit, size, `announces ${total} bytes, more`);
      const type = response.headers.get("content-type") ?? "";

      const hasher = new Bun.CryptoHasher("sha256");
      let done = 0;
      let windowStart = 0;
      stallTimer = setInterval(() => {
        if (done - windowStart < this.limits.minBytesPerWindow)
          halt(
            new KubehyveError(
              `download of ${shown} stalled: less than ${this.limits.minBytesPerWindow} bytes in ${this.limits.stallWindowMs / 1000} s, after ${done} bytes`,
              1,
              "the server (or the network to it) is too slow or stuck: retry",
            ),
          );
        windowStart = done;
      }, this.limits.stallWindowMs);
      for await (const chunk of response.body) {
        done += chunk.byteLength;
        // Checked before the chunk is written: an endless body never gets further than the limit.
        if (done > limit) throw tooLarge(shown, limit, size, "sends more");
        hasher.update(chunk);
        await sink.write(chunk);
        opts.onProgress?.(done, total);
      }
      if (size !== undefined && done !== size)
        throw new KubehyveError(
          `download of ${shown} failed: it ended after ${done} bytes, the pinned size is ${size}`,
          1,
          "the download was cut short: retry",
        );
      await sink.close();
      return { sha256: hasher.digest("hex"), type, shown };
    } catch (error) {
      if (opts.signal?.aborted && !stopped) throw opts.signal.reason;
      throw stopped ?? wrapNetworkError(error, shown);
    } finally {
      clearTimeout(headersTimer);
      clearInterval(stallTimer);
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * GET with redirects followed here rather than by fetch, so that each hop is checked: at most
   * MAX_REDIRECTS of them, never from https to anything else (a redirect must not drop the TLS the
   * first URL had), and only to http(s). The body is taken as sent: `Accept-Encoding: identity`
   * and no decompression, so the size limit counts the bytes stored and the sha256 is of the file
   * as pinned, whatever Content-Encoding a misconfigured server claims.
   */
  private async follow(
    first: string,
    originalUrl: string,
    signal: AbortSignal,
    onHop: (url: string) => void,
  ): Promise<Response> {
    let url = first;
    for (let hop = 0; ; hop++) {
      const response = await this.fetcher(url, {
        redirect: "manual",
        decompress: false,
        headers: { "accept-encoding": "identity" },
        signal,
      } as RequestInit);
      if (![301, 302, 303, 307, 308].includes(response.status)) return response;
      await response.body?.cancel().catch(() => {});
      const location = response.headers.get("location");
      const shown = showUrl(url, originalUrl);
      if (!location) throw new KubehyveError(`download of ${shown} failed: a redirect without a Location`);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new KubehyveError(
          `download of ${shown} failed: it redirects to ${JSON.stringify(location)}, which is not a URL`,
        );
      }
      const from = new URL(url);
      if (next.protocol !== "https:" && next.protocol !== "http:")
        throw new KubehyveError(`download of ${shown} is refused: it redirects to a ${next.protocol} URL`);
      if (from.protocol === "https:" && next.protocol !== "https:")
        throw new KubehyveError(
          `download of ${shown} is refused: it redirects to ${redact(next.href)}, which drops TLS`,
          1,
          "a download that starts over https stays on https: fix the server's redirect",
        );
      if (hop + 1 > MAX_REDIRECTS)
        throw new KubehyveError(
          `download of ${showUrl(first, originalUrl)} is refused: more than ${MAX_REDIRECTS} redirects (the last to ${redact(next.href)})`,
          1,
          "the server redirects in a loop: fix its redirects",
        );
      // Credentials in the mirror's URL are for the mirror only.
      if (next.origin !== from.origin || next.protocol !== from.protocol) {
        next.username = "";
        next.password = "";
      }
      url = next.href;
      onHop(url);
    }
  }
}

const MAX_REDIRECTS = 10;

function tooLarge(shown: string, limit: number, size: number | undefined, what: string): KubehyveError {
  return new KubehyveError(
    `download of ${shown} is refused: it ${what} than ${size !== undefined ? `the pinned size of ${size} bytes` : `${limit} bytes, the most a download may have`}`,
    1,
    "the server sends something else than the pinned file: check the URL and the source",
  );
}

function showUrl(url: string, originalUrl: string): string {
  return url === originalUrl ? redact(url) : `${redact(url)} (mirror of ${redact(originalUrl)})`;
}

function checkedMirror(mirror: string): URL {
  let url: URL;
  try {
    url = new URL(mirror);
  } catch {
    throw new KubehyveError(`artifact mirror ${JSON.stringify(redact(mirror))} is not a URL`, 2);
  }
  const shown = redact(url.href);
  // file: would read the machine's own files, and anything else is no mirror fetch can talk to.
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new KubehyveError(
      `artifact mirror ${shown} is refused: only an https: (or http:) URL can be a mirror`,
      2,
      "set KUBEHYVE_MIRROR to the mirror's base URL, such as https://mirror.lab/",
    );
  // The artifact's path is appended to the mirror's: a query or fragment would swallow it.
  if (url.search || url.hash)
    throw new KubehyveError(
      `artifact mirror ${shown} is refused: it has a query or fragment, which the artifacts' paths would be appended to`,
      2,
      "set KUBEHYVE_MIRROR to the mirror's base URL, such as https://mirror.lab/",
    );
  return url;
}

function checkedSize(req: Pick<ArtifactRequest, "url" | "size" | "maxBytes">): void {
  for (const [field, value] of [
    ["size", req.size],
    ["maxBytes", req.maxBytes],
  ] as const)
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0))
      throw new KubehyveError(`artifact ${redact(req.url)}: ${field} ${value} is not a number of bytes`, 2);
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

function treeNameOf(req: TreeRequest): string {
  const name =
    req.name ??
    decodeURIComponent(basename(parseUrl(req.url).pathname)).replace(/\.(tar(\.[a-z0-9]+)?|tgz)$/, "");
  if (!SAFE_NAME.test(name) || /\.(part|sha256|archive|tree-sha256-v1)$/.test(name)) {
    throw new KubehyveError(
      `tree name ${JSON.stringify(name)} (from ${req.url}) is not a plain directory name`,
      2,
    );
  }
  return name;
}

function checkedTreeDigest(req: TreeRequest): string {
  if (!SHA256.test(req.treeSha256V1)) {
    throw new KubehyveError(
      `artifact ${req.url}: ${TREE_DIGEST_V1} ${JSON.stringify(req.treeSha256V1)} is not 64 lower-case hex digits`,
      2,
    );
  }
  return req.treeSha256V1;
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
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | undefined)?.code;
  return new KubehyveError(
    `download of ${shown} failed: ${message}${typeof code === "string" && !message.includes(code) ? ` (${code})` : ""}`,
  );
}
