/**
 * Stream metadata is read through the download cache: the same timeouts and limits as a download,
 * and the mirror's credentials in no message.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchStreamImage } from "../../../../plugins/os/coreos/image.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";

const STREAM = "https://builds.coreos.fedoraproject.org/streams/stable.json";
const tmp = await mkdtemp(join(tmpdir(), "kubehyve-stream-read-"));
afterAll(() => rm(tmp, { recursive: true, force: true }));

test("endless stream metadata is stopped, naming the URL", async () => {
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => new Response(new ReadableStream({ pull: (c) => c.enqueue(chunk) })),
  });
  try {
    const mirror = `http://127.0.0.1:${server.port}`;
    const artifacts = new DownloadCache({ dir: join(tmp, "a"), mirror: `${mirror}/` });
    await expect(fetchStreamImage(artifacts, STREAM)).rejects.toThrow(
      `cannot read stream metadata: download of ${mirror}/streams/stable.json (mirror of ${STREAM}) is refused: it sends more than 1048576 bytes`,
    );
  } finally {
    await server.stop(true);
  }
}, 10_000);

test("the mirror's password is in no message", async () => {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => new Response("no", { status: 403 }),
  });
  try {
    const artifacts = new DownloadCache({
      dir: join(tmp, "b"),
      mirror: `http://lab:s3cret@127.0.0.1:${server.port}/`,
    });
    const error = await fetchStreamImage(artifacts, STREAM).catch((e: Error) => e);
    expect((error as Error).message).toContain("HTTP 403");
    expect((error as Error).message).not.toContain("s3cret");
  } finally {
    await server.stop(true);
  }
});
