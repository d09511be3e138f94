/**
 * The download cache against servers that misbehave, by malice or by breakage: every one of them a
 * real server on 127.0.0.1 (Bun.serve, or a raw socket where HTTP itself has to be broken).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DownloadCache } from "../../src/artifacts/cache.ts";
import { type FileServer, serveFiles } from "../lab/http.ts";
import { createPki } from "../lab/kube/pki.ts";
import { have } from "../lab/prereq.ts";
import { failure, freshCache } from "./lab.ts";

const sha256 = (data: string | Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

const FILE = new Uint8Array(1024 * 1024).map((_, i) => (i * 13 + (i >> 9)) % 251);
const FILE_SHA = sha256(FILE);
const CHUNK = new Uint8Array(64 * 1024).fill(7);

let tmp: string;
let server: FileServer;

/** A body that never ends; counts what the client pulled, and stops when the client lets go. */
function endless(counter: { sent: number }, pause = 0): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(controller) {
      if (pause) await Bun.sleep(pause);
      counter.sent += CHUNK.byteLength;
      controller.enqueue(CHUNK);
    },
  });
}

const endlessSent = { sent: 0 };

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kubehyve-hostile-"));
  server = serveFiles({
    "/file.bin": FILE,
    "/endless.bin": () => new Response(endless(endlessSent)),
    "/gzip.bin": () =>
      new Response(Bun.gzipSync(new Uint8Array(64 * 1024 * 1024)), {
        headers: { "content-encoding": "gzip", "content-type": "application/octet-stream" },
      }),
    "/busy.bin": () => new Response("slow down\n", { status: 429, headers: { "retry-after": "120" } }),
    "/portal.bin": () =>
      new Response("<html><body>Please log in to the guest Wi-Fi</body></html>", {
        headers: { "content-type": "text/html; charset=utf-8" },
      }),
    "/moved.bin": () => new Response(null, { status: 302, headers: { location: "/file.bin" } }),
    "/loop.bin": () => new Response(null, { status: 302, headers: { location: "/loop.bin" } }),
    // A file of this machine with just the bytes asked for: read as root, it would pass the checksum.
    "/to-file.bin": () =>
      new Response(null, { status: 302, headers: { location: `file://${join(tmp, "local.bin")}` } }),
    "/stall.bin": () =>
      new Response(
        new ReadableStream({
          start(controller) {
            controller.enqueue(CHUNK);
          },
          // Never pulls more: the server holds the connection open and sends nothing.
        }),
      ),
  });
});
afterAll(async () => {
  await server.stop();
  await rm(tmp, { recursive: true, force: true });
});

async function leftovers(cache: DownloadCache): Promise<string[]> {
  return existsSync(cache.dir) ? readdir(cache.dir) : [];
}

/** A raw HTTP server on loopback: `answer` writes whatever bytes it likes to the socket. */
function rawServer(answer: (socket: { write(data: string | Uint8Array): void; end(): void }) => void) {
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket) {
        answer(socket);
      },
    },
  });
  return { url: `http://127.0.0.1:${listener.port}`, stop: () => listener.stop(true) };
}

describe("a body larger than it may be", () => {
  test("an endless body is stopped at the pinned size and nothing of it is kept", async () => {
    const cache = await freshCache();
    const url = `${server.url}/endless.bin`;
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA, size: 1024 * 1024 }));
    expect(error.message).toBe(
      `download of ${url} is refused: it sends more than the pinned size of 1048576 bytes`,
    );
    expect(endlessSent.sent).toBeLessThan(16 * 1024 * 1024);
    expect(await leftovers(cache)).toEqual([]);
  }, 10_000);

  test("an endless body with no pinned size is stopped at the cache's limit", async () => {
    const cache = await freshCache({ maxBytes: 2 * 1024 * 1024 });
    const url = `${server.url}/endless.bin`;
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA }));
    expect(error.message).toBe(
      `download of ${url} is refused: it sends more than 2097152 bytes, the most a download may have`,
    );
    expect(await leftovers(cache)).toEqual([]);
  }, 10_000);

  test("an endless body of a file with a bound but no exact size is stopped at the bound", async () => {
    const cache = await freshCache({ maxBytes: 8 * 1024 * 1024 });
    const url = `${server.url}/endless.bin`;
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA, maxBytes: 1024 * 1024 }));
    expect(error.message).toBe(
      `download of ${url} is refused: it sends more than 1048576 bytes, the most a download may have`,
    );
    expect(await leftovers(cache)).toEqual([]);
    // A bound above the cache's own is the cache's.
    const wide = await failure(cache.fetch({ url, sha256: FILE_SHA, maxBytes: 64 * 1024 * 1024 }));
    expect(wide.message).toContain("it sends more than 8388608 bytes");
    const bad = await failure(cache.fetch({ url, sha256: FILE_SHA, maxBytes: -1 }));
    expect(bad.message).toBe(`artifact ${url}: maxBytes -1 is not a number of bytes`);
  }, 10_000);

  test("an endless archive of a pinned tree is stopped at the tree's bound, with or without its sha256", async () => {
    const cache = await freshCache({ maxBytes: 64 * 1024 * 1024 });
    const url = `${server.url}/endless.bin`;
    const tree = { url, treeSha256V1: "c".repeat(64), maxBytes: 1024 * 1024, name: "endless-tree" };
    for (const req of [tree, { ...tree, sha256: FILE_SHA }]) {
      const error = await failure(cache.fetchTree(req));
      expect(error.message).toBe(
        `download of ${url} is refused: it sends more than 1048576 bytes, the most a download may have`,
      );
    }
    expect(await leftovers(cache)).toEqual([]);
  }, 20_000);

  test("a Content-Length above the pinned size is refused before the body is read", async () => {
    const cache = await freshCache();
    const url = `${server.url}/file.bin`;
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA, size: 1000 }));
    expect(error.message).toBe(
      `download of ${url} is refused: it announces 1048576 bytes, more than the pinned size of 1000 bytes`,
    );
  });

  test("Content-Encoding is not undone: the bytes stored and hashed are the bytes sent", async () => {
    const cache = await freshCache({ maxBytes: 4 * 1024 * 1024 });
    const wire = Bun.gzipSync(new Uint8Array(64 * 1024 * 1024));
    const url = `${server.url}/gzip.bin`;
    const path = await cache.fetch({ url, sha256: sha256(wire) });
    expect(sha256(await readFile(path))).toBe(sha256(wire));
  });
});

describe("a body cut short or stalled", () => {
  test("a connection closed halfway through the body names the URL and keeps nothing", async () => {
    const raw = rawServer((socket) => {
      socket.write("HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n");
      socket.write(FILE.subarray(0, 100_000));
      socket.end();
    });
    try {
      const cache = await freshCache();
      const url = `${raw.url}/file.bin`;
      const error = await failure(cache.fetch({ url, sha256: FILE_SHA }));
      expect(error.message).toStartWith(`download of ${url} failed: `);
      expect(await leftovers(cache)).toEqual([]);
    } finally {
      raw.stop();
    }
  });

  test("a body shorter than the pinned size is refused even when the server says it is complete", async () => {
    const raw = rawServer((socket) => {
      socket.write("HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n");
      socket.write(FILE.subarray(0, 1000));
      socket.end();
    });
    try {
      const cache = await freshCache();
      const url = `${raw.url}/file.bin`;
      const error = await failure(cache.fetch({ url, sha256: FILE_SHA, size: FILE.byteLength }));
      expect(error.message).toBe(
        `download of ${url} failed: it ended after 1000 bytes, the pinned size is 1048576`,
      );
    } finally {
      raw.stop();
    }
  });

  test("a server that stops sending mid-body is given up on, naming the URL", async () => {
    const cache = await freshCache({ stallWindowMs: 300 });
    const url = `${server.url}/stall.bin`;
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA }));
    expect(error.message).toBe(
      `download of ${url} stalled: less than 1024 bytes in 0.3 s, after ${CHUNK.byteLength} bytes`,
    );
    expect(await leftovers(cache)).toEqual([]);
  }, 10_000);

  test("a server that accepts the connection and never answers is given up on, naming the URL", async () => {
    const raw = rawServer(() => {});
    try {
      const cache = await freshCache({ headersTimeoutMs: 300 });
      const url = `${raw.url}/file.bin`;
      const error = await failure(cache.fetch({ url, sha256: FILE_SHA }));
      expect(error.message).toBe(`download of ${url} failed: no answer within 0.3 s`);
    } finally {
      raw.stop();
    }
  }, 10_000);
});

describe("answers that are not the file", () => {
  test("429 says when the server asks to be retried", async () => {
    const cache = await freshCache();
    const url = `${server.url}/busy.bin`;
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA }));
    expect(error.message).toBe(
      `download of ${url} failed: HTTP 429 Too Many Requests; the server asks to retry after 120 s`,
    );
  });

  test("a captive portal's HTML page is a checksum mismatch that says it was HTML", async () => {
    const cache = await freshCache();
    const url = `${server.url}/portal.bin`;
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA }));
    expect(error.message).toContain(`checksum mismatch for ${url}: expected sha256 ${FILE_SHA}, got `);
    expect(error.message).toContain("the server sent text/html");
    expect(await leftovers(cache)).toEqual([]);
  });

  test("a redirect to another path of the same server is followed", async () => {
    const cache = await freshCache();
    const path = await cache.fetch({ url: `${server.url}/moved.bin`, sha256: FILE_SHA, name: "f.bin" });
    expect(sha256(await readFile(path))).toBe(FILE_SHA);
  });

  test("a file at the download's name that nothing vouches for is gone after a failed download", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/portal.bin`, sha256: FILE_SHA, name: "f.bin" };
    // Left by hand, or by a kubehyve killed before it wrote the checksum beside it.
    await mkdir(cache.dir, { recursive: true, mode: 0o700 });
    await writeFile(cache.pathOf(req), "not the file");
    await failure(cache.fetch(req));
    expect(await leftovers(cache)).toEqual([]);
  });

  test("a redirect to a file: URL is refused, and the local file it names is not read", async () => {
    await writeFile(join(tmp, "local.bin"), FILE);
    const cache = await freshCache();
    const url = `${server.url}/to-file.bin`;
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA, name: "f.bin" }));
    expect(error.message).toBe(`download of ${url} is refused: it redirects to a file: URL`);
    expect(await leftovers(cache)).toEqual([]);
  });

  test("a redirect loop is refused after ten hops", async () => {
    const cache = await freshCache();
    const url = `${server.url}/loop.bin`;
    const before = server.hits("/loop.bin");
    const error = await failure(cache.fetch({ url, sha256: FILE_SHA }));
    expect(error.message).toBe(
      `download of ${url} is refused: more than 10 redirects (the last to ${server.url}/loop.bin)`,
    );
    expect(server.hits("/loop.bin") - before).toBe(11);
  });
});

describe.skipIf(!have("openssl", "openssl"))("redirects from https", () => {
  test("a redirect from https to plain http is refused and the http server is never asked", async () => {
    const pki = createPki({ cn: "mirror" });
    const plain = serveFiles({ "/file.bin": FILE });
    const tls = serveFiles(
      {
        "/file.bin": () =>
          new Response(null, { status: 302, headers: { location: `${plain.url}/file.bin` } }),
      },
      { tls: { cert: pki.serverCert, key: pki.serverKey } },
    );
    try {
      // The test's CA is trusted the way a lab's own CA would be; verification stays on.
      const fetchImpl = ((url: string, init: RequestInit) =>
        fetch(url, { ...init, tls: { ca: pki.caCert } } as RequestInit)) as typeof fetch;
      const cache = await freshCache({ fetchImpl });
      const url = `${tls.url}/file.bin`;
      const error = await failure(cache.fetch({ url, sha256: FILE_SHA }));
      expect(error.message).toBe(
        `download of ${url} is refused: it redirects to ${plain.url}/file.bin, which drops TLS`,
      );
      expect(plain.hits("/file.bin")).toBe(0);
    } finally {
      await tls.stop();
      await plain.stop();
      pki.remove();
    }
  });
});

describe("documents read without a pin", () => {
  test("an endless document is stopped at 1 MiB, naming the URL", async () => {
    const cache = await freshCache();
    const url = `${server.url}/endless.bin`;
    const error = await failure(cache.readDocument(url));
    expect(error.message).toBe(
      `download of ${url} is refused: it sends more than 1048576 bytes, the most a download may have`,
    );
  }, 10_000);

  test("a document is read through the mirror and its redirects, with the same timeouts", async () => {
    const cache = await freshCache({ mirror: `${server.url}/`, headersTimeoutMs: 300 });
    expect(await cache.readDocument("https://example.org/portal.bin")).toContain("guest Wi-Fi");
    const moved = await cache.readDocument("https://example.org/moved.bin", { maxBytes: FILE.byteLength });
    expect(moved.length).toBeGreaterThan(0);
    const raw = rawServer(() => {});
    try {
      const silent = await freshCache({ mirror: `${raw.url}/`, headersTimeoutMs: 300 });
      const error = await failure(silent.readDocument("https://example.org/streams/stable.json"));
      expect(error.message).toBe(
        `download of ${raw.url}/streams/stable.json (mirror of https://example.org/streams/stable.json) failed: no answer within 0.3 s`,
      );
    } finally {
      raw.stop();
    }
  }, 10_000);
});
