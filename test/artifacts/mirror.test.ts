/**
 * KUBEHYVE_MIRROR as given by a user: what it may be, how an artifact's path is put under it, and
 * that credentials in it reach the mirror and no message.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadCache } from "../../src/artifacts/cache.ts";
import { failure, freshCache } from "./lab.ts";

const FILE_SHA = "ab".repeat(32);
const tmp = await mkdtemp(join(tmpdir(), "kubehyve-mirror-"));
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe("the mirror's URL", () => {
  test("credentials in the mirror's URL are sent but never shown", async () => {
    const seen: string[] = [];
    const guarded = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => {
        seen.push(req.headers.get("authorization") ?? "");
        return new Response("nope", { status: 403 });
      },
    });
    try {
      const cache = await freshCache({ mirror: `http://lab:s3cret@127.0.0.1:${guarded.port}/base/` });
      const error = await failure(cache.fetch({ url: "https://example.org/a/file.bin", sha256: FILE_SHA }));
      expect(seen).toEqual([`Basic ${btoa("lab:s3cret")}`]);
      expect(error.message).toBe(
        `download of http://127.0.0.1:${guarded.port}/base/a/file.bin (mirror of https://example.org/a/file.bin) failed: HTTP 403 Forbidden`,
      );
      expect(`${error.message} ${(error as { hint?: string }).hint ?? ""}`).not.toContain("s3cret");
    } finally {
      await guarded.stop(true);
    }
  });

  test("a mirror that is not http(s), or has a query, is refused as a usage error", () => {
    for (const mirror of ["file:///etc/", "ftp://mirror.lab/", "https://mirror.lab/?token=x"]) {
      expect(() => new DownloadCache({ dir: tmp, mirror })).toThrow("artifact mirror");
    }
    expect(() => new DownloadCache({ dir: tmp, mirror: "file://u:pw@host/" })).not.toThrow("pw");
  });

  test("a path that climbs, plainly or percent-encoded, stays under the mirror's base", () => {
    const cache = new DownloadCache({ dir: tmp, mirror: "https://mirror.lab/base/" });
    for (const url of [
      "https://example.org/a/../../../etc/passwd",
      "https://example.org/a/%2e%2e/%2E%2E/etc/passwd",
      "https://example.org/a/.%2e/etc/passwd",
    ]) {
      expect(cache.resolveUrl(url)).toBe("https://mirror.lab/base/etc/passwd");
    }
  });
});
