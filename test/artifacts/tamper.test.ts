/**
 * The download cache's files changed on disk between runs, and two runs filling it at once: a
 * cached file is used only while it is the very file that was verified.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { chown, mkdir, mkdtemp, readdir, readFile, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadCache } from "../../src/artifacts/cache.ts";
import { treeSha256V1 } from "../../src/artifacts/tree.ts";
import { type FileServer, serveFiles } from "../lab/http.ts";
import { freshCache } from "./lab.ts";
import { buildTarball } from "./tarball.ts";

const sha256 = (data: string | Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

const FILE = new Uint8Array(1024 * 1024).map((_, i) => (i * 13 + (i >> 9)) % 251);
const FILE_SHA = sha256(FILE);

let tmp: string;
let server: FileServer;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kubehyve-tamper-"));
  server = serveFiles({
    "/file.bin": FILE,
    // Slow enough that two downloads of it overlap.
    "/slow/file.bin": () => {
      let at = 0;
      return new Response(
        new ReadableStream({
          async pull(controller) {
            await Bun.sleep(5);
            if (at >= FILE.byteLength) return controller.close();
            controller.enqueue(FILE.subarray(at, at + 32 * 1024));
            at += 32 * 1024;
          },
        }),
      );
    },
  });
});
afterAll(async () => {
  await server.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe("the cache on disk", () => {
  test("a symlink put where a cached file was is not trusted, even with a matching sidecar", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/file.bin`, sha256: FILE_SHA };
    const path = await cache.fetch(req);
    const elsewhere = join(tmp, "elsewhere.bin");
    await writeFile(elsewhere, FILE);
    await rm(path);
    await symlink(elsewhere, path);
    expect(await cache.has(req)).toBe(false);
    await cache.fetch(req);
    expect((await readdir(cache.dir)).sort()).toEqual(["file.bin", "file.bin.sha256"]);
    expect(existsSync(elsewhere)).toBe(true);
  });

  test("a cached file truncated since it was verified is downloaded again", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/file.bin`, sha256: FILE_SHA };
    const path = await cache.fetch(req);
    await Bun.sleep(20);
    await truncate(path, 1000);
    expect(await cache.has(req)).toBe(false);
    const before = server.hits("/file.bin");
    await cache.fetch(req);
    expect(server.hits("/file.bin") - before).toBe(1);
    expect(sha256(await readFile(path))).toBe(FILE_SHA);
  });

  test("two runs downloading the same file at once both end with the whole verified file", async () => {
    const first = await freshCache();
    // Another process's cache over the same directory: no shared in-flight map.
    const second = new DownloadCache({ dir: first.dir });
    const req = { url: `${server.url}/slow/file.bin`, sha256: FILE_SHA };
    const [a, b] = await Promise.all([first.fetch(req), second.fetch(req)]);
    expect(a).toBe(b);
    expect(sha256(await readFile(a))).toBe(FILE_SHA);
    expect(await first.has(req)).toBe(true);
    expect((await readdir(first.dir)).sort()).toEqual(["file.bin", "file.bin.sha256"]);
  });

  test("a download killed halfway leaves a .part that the next one removes, and no other's", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/file.bin`, sha256: FILE_SHA };
    await cache.fetch(req);
    // A pid that is no process now (above the kernel's pid_max), and a live one (this one's parent).
    const dead = join(cache.dir, "file.bin.99999999.1.part");
    const live = join(cache.dir, `file.bin.${process.ppid}.1.part`);
    await writeFile(dead, "half");
    await writeFile(live, "half");
    await rm(`${cache.pathOf(req)}.sha256`);
    await cache.fetch(req);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });

  test.skipIf(process.getuid?.() !== 0)("a cached file of another user's is not trusted", async () => {
    const cache = await freshCache();
    const req = { url: `${server.url}/file.bin`, sha256: FILE_SHA };
    const path = await cache.fetch(req);
    await chown(path, 65534, 65534);
    // chown moves the ctime too; put the sidecar after it, so only the owner tells.
    await Bun.sleep(20);
    await writeFile(`${path}.sha256`, `${FILE_SHA}  file.bin\n`);
    expect(await cache.has(req)).toBe(false);
  });
});

describe("a tree whose download was killed", () => {
  // Half an archive is sent, then nothing: the process that fetches it is killed while it waits.
  const TREE = buildTarball([
    { path: "proj-1.0/", type: "Directory" },
    { path: "proj-1.0/big.bin", content: FILE },
  ]);
  let stalling: ReturnType<typeof Bun.serve>;
  let sent: () => void;
  const halfSent = new Promise<void>((resolve) => {
    sent = resolve;
  });
  beforeAll(() => {
    stalling = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) =>
        new URL(req.url).pathname === "/whole.tar.gz"
          ? new Response(TREE)
          : new Response(
              new ReadableStream({
                start(controller) {
                  controller.enqueue(TREE.subarray(0, TREE.byteLength >> 1));
                  sent();
                },
              }),
            ),
    });
  });
  afterAll(() => stalling.stop(true));

  test("leaves a working directory that the next fetch removes once its process is gone, and no other's", async () => {
    const dir = join(await mkdtemp(join(tmp, "killed-")), "cache");
    const digest = await (async () => {
      const src = join(tmp, `src-${Date.now()}`);
      await mkdir(join(src, "proj-1.0"), { recursive: true });
      await writeFile(join(src, "proj-1.0", "big.bin"), FILE);
      return (await treeSha256V1(join(src, "proj-1.0"))).digest;
    })();
    const script = join(tmp, "fetch-tree.ts");
    await writeFile(
      script,
      `import { DownloadCache } from ${JSON.stringify(join(import.meta.dir, "../../src/artifacts/cache.ts"))};
await new DownloadCache({ dir: process.argv[2] }).fetchTree({ url: process.argv[3], treeSha256V1: process.argv[4], name: "proj" });`,
    );
    const child = Bun.spawn(
      [process.execPath, script, dir, `http://127.0.0.1:${stalling.port}/half.tar.gz`, digest],
      {
        stdout: "ignore",
        stderr: "ignore",
      },
    );
    await halfSent;
    // The child has its working directory once it has the first bytes.
    for (let i = 0; i < 200 && !(await readdir(dir).catch(() => [])).some((n) => n.includes("unpack")); i++)
      await Bun.sleep(50);
    child.kill("SIGKILL");
    await child.exited;
    const left = (await readdir(dir)).filter((n) => n.includes("unpack"));
    expect(left.length).toBe(1);
    // Another run's, still alive (this test's own parent stands for it).
    const live = `.proj.${process.ppid}.1.unpack`;
    await mkdir(join(dir, live), { mode: 0o700 });

    const cache = new DownloadCache({ dir });
    const tree = await cache.fetchTree({
      url: `http://127.0.0.1:${stalling.port}/whole.tar.gz`,
      treeSha256V1: digest,
      name: "proj",
    });
    expect(tree).toBe(join(dir, "proj"));
    expect((await readdir(dir)).sort()).toEqual([live, "proj", "proj.tree-sha256-v1"].sort());
  }, 60_000);
});
