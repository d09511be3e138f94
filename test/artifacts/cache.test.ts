import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadCache } from "../../src/artifacts/cache.ts";
import { type FileServer, serveFiles } from "../lab/http.ts";
import { createPki } from "../lab/kube/pki.ts";
import { have } from "../lab/prereq.ts";
import { freshCache } from "./lab.ts";

const sha256 = (data: string | Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

// Large enough to arrive in several chunks, so the hash is really computed while streaming.
const IMAGE = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7 + (i >> 11)) % 251);
const IMAGE_SHA = sha256(IMAGE);
const UPSTREAM = "https://builds.example.org/prod/streams/stable/builds/1.0/x86_64/image.qcow2.xz";

let server: FileServer;
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kubehyve-cache-"));
  server = serveFiles({
    "/files/image.qcow2.xz": IMAGE,
    "/prod/streams/stable/builds/1.0/x86_64/image.qcow2.xz": IMAGE,
    "/files/broken": () => new Response("internal trouble", { status: 500 }),
  });
});
afterAll(async () => {
  await server.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe("DownloadCache", () => {
  test("downloads a file once, verifies it and records the verified hash", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/files/image.qcow2.xz`, sha256: IMAGE_SHA };
    const before = server.hits("/files/image.qcow2.xz");
    expect(await cache.has(req)).toBe(false);

    const progress: number[] = [];
    const path = await cache.fetch(req, { onProgress: (done) => progress.push(done) });
    expect(path).toBe(join(cache.dir, "image.qcow2.xz"));
    expect(sha256(await readFile(path))).toBe(IMAGE_SHA);
    expect(progress.at(-1)).toBe(IMAGE.byteLength);
    expect(await readFile(`${path}.sha256`, "utf8")).toBe(`${IMAGE_SHA}  image.qcow2.xz\n`);
    expect((await stat(cache.dir)).mode & 0o777).toBe(0o700);
    expect(existsSync(`${path}.part`)).toBe(false);
    expect(await cache.has(req)).toBe(true);

    expect(await cache.fetch(req)).toBe(path);
    expect(server.hits("/files/image.qcow2.xz") - before).toBe(1);
  });

  test("a second cache over the same directory trusts the sidecar and downloads nothing", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/files/image.qcow2.xz`, sha256: IMAGE_SHA };
    await cache.fetch(req);
    const before = server.requests.length;
    const again = new DownloadCache({ dir: cache.dir });
    expect(await again.has(req)).toBe(true);
    await again.fetch(req);
    expect(server.requests.length).toBe(before);
  });

  test("concurrent requests for one file share a single download", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/files/image.qcow2.xz`, sha256: IMAGE_SHA };
    const before = server.hits("/files/image.qcow2.xz");
    const [a, b] = await Promise.all([cache.fetch(req), cache.fetch(req)]);
    expect(a).toBe(b);
    expect(server.hits("/files/image.qcow2.xz") - before).toBe(1);
  });

  test("rejects a checksum mismatch, deletes the file and names the URL and both hashes", async () => {
    const cache = await freshCache();
    const wrong = "0".repeat(64);
    const req = { url: `${server.url}/files/image.qcow2.xz`, sha256: wrong };
    const error = await cache.fetch(req).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain(req.url);
    expect(message).toContain(wrong);
    expect(message).toContain(IMAGE_SHA);
    expect(existsSync(cache.pathOf(req))).toBe(false);
    expect(existsSync(`${cache.pathOf(req)}.part`)).toBe(false);
    expect(await cache.has(req)).toBe(false);
  });

  test("a file whose sidecar records another hash is not trusted and is downloaded again", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/files/image.qcow2.xz`, sha256: IMAGE_SHA };
    const path = await cache.fetch(req);
    await writeFile(path, "tampered");
    await writeFile(`${path}.sha256`, `${"1".repeat(64)}  image.qcow2.xz\n`);
    expect(await cache.has(req)).toBe(false);
    const before = server.hits("/files/image.qcow2.xz");
    await cache.fetch(req);
    expect(server.hits("/files/image.qcow2.xz") - before).toBe(1);
    expect(sha256(await readFile(path))).toBe(IMAGE_SHA);
  });

  test("an HTTP error names the URL and the status", async () => {
    const cache = await freshCache();
    const url = `${server.url}/files/broken`;
    await expect(cache.fetch({ url, sha256: IMAGE_SHA })).rejects.toThrow(
      `download of ${url} failed: HTTP 500`,
    );
    const missing = `${server.url}/files/nothing-here`;
    await expect(cache.fetch({ url: missing, sha256: IMAGE_SHA })).rejects.toThrow(
      `${missing} failed: HTTP 404`,
    );
  });

  test("a refused connection names the URL", async () => {
    const cache = await freshCache();
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const url = `http://127.0.0.1:${probe.port}/gone.img`;
    await probe.stop(true);
    await expect(cache.fetch({ url, sha256: IMAGE_SHA })).rejects.toThrow(`download of ${url} failed`);
  });

  test("a mirror replaces the scheme and host and keeps the path", async () => {
    const cache = await freshCache({ mirror: `${server.url}/` });
    const req = { url: UPSTREAM, sha256: IMAGE_SHA };
    expect(cache.resolveUrl(UPSTREAM)).toBe(
      `${server.url}/prod/streams/stable/builds/1.0/x86_64/image.qcow2.xz`,
    );
    const before = server.hits("/prod/streams/stable/builds/1.0/x86_64/image.qcow2.xz");
    const path = await cache.fetch(req);
    expect(path).toBe(join(cache.dir, "image.qcow2.xz"));
    expect(server.hits("/prod/streams/stable/builds/1.0/x86_64/image.qcow2.xz") - before).toBe(1);
  });

  test("refuses names that would leave the cache directory and malformed hashes", async () => {
    const cache = await freshCache();
    expect(() => cache.pathOf({ url: UPSTREAM, sha256: IMAGE_SHA, name: "../escape" })).toThrow(
      "not a plain file name",
    );
    expect(() => cache.pathOf({ url: UPSTREAM, sha256: IMAGE_SHA, name: ".hidden" })).toThrow(
      "not a plain file name",
    );
    await expect(cache.fetch({ url: UPSTREAM, sha256: IMAGE_SHA.toUpperCase() })).rejects.toThrow(
      "64 lower-case hex",
    );
  });
});

describe.skipIf(!have("openssl", "openssl"))("DownloadCache over TLS", () => {
  test("refuses a server whose certificate is not trusted", async () => {
    const dir = await mkdtemp(join(tmp, "tls-"));
    // A certificate for 127.0.0.1 from a CA of this run only: nothing the client trusts vouches for it.
    const pki = createPki({ cn: "untrusted" });
    const tls = serveFiles(
      { "/image.qcow2.xz": IMAGE },
      { tls: { cert: pki.serverCert, key: pki.serverKey } },
    );
    try {
      const cache = new DownloadCache({ dir: join(dir, "cache") });
      const url = `${tls.url}/image.qcow2.xz`;
      const error = await cache.fetch({ url, sha256: IMAGE_SHA }).catch((e: Error) => e);
      expect((error as Error).message).toStartWith(`download of ${url} failed: `);
      expect((error as Error).message).toContain("certificate");
      expect(tls.hits("/image.qcow2.xz")).toBe(0);
      expect(existsSync(join(dir, "cache", "image.qcow2.xz"))).toBe(false);
    } finally {
      await tls.stop();
      pki.remove();
    }
  });
});
