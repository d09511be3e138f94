import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import {
  chmod,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadCache } from "../../src/artifacts/cache.ts";
import { resolvesInside, treeSha256V1, unpackTarball } from "../../src/artifacts/tree.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import { runOk } from "../../src/targets/target.ts";
import { type FileServer, serveFiles } from "../lab/http.ts";
import { have } from "../lab/prereq.ts";
import { buildTarball, type TarEntry } from "./tarball.ts";

const sha256 = (data: string | Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kubehyve-tree-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** The fixture: a plain file, an executable, a nested file, a symlink, an empty directory. */
const FIXTURE = {
  "README.md": "# tree\n",
  "bin/run.sh": "#!/bin/sh\necho run\n",
  "roles/a/tasks/main.yml": "---\n- name: a\n",
};

async function fixtureTree(): Promise<string> {
  const dir = await mkdtemp(join(tmp, "fixture-"));
  for (const [path, content] of Object.entries(FIXTURE)) {
    await mkdir(join(dir, path, ".."), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  await chmod(join(dir, "bin/run.sh"), 0o744);
  await symlink("roles/a", join(dir, "link-to-a"));
  await mkdir(join(dir, "empty"));
  return dir;
}

/** The same digest, spelled out from the definition. */
function expectedFixtureDigest(): string {
  const lines = [
    `100644 ${sha256(FIXTURE["README.md"])} README.md\n`,
    `100755 ${sha256(FIXTURE["bin/run.sh"])} bin/run.sh\n`,
    `100644 ${sha256(FIXTURE["roles/a/tasks/main.yml"])} roles/a/tasks/main.yml\n`,
    `120000 ${sha256("roles/a")} link-to-a\n`,
  ].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return sha256(lines.join(""));
}

describe("tree-sha256-v1", () => {
  test("lists files and symlinks with git's modes, not directories, sorted bytewise", async () => {
    const dir = await fixtureTree();
    const got = await treeSha256V1(dir);
    expect(got).toEqual({
      digest: expectedFixtureDigest(),
      entries: 4,
      files: 2,
      executables: 1,
      symlinks: 1,
      bytes: Object.values(FIXTURE).join("").length + "roles/a".length,
    });
  });

  test("a changed execute bit, symlink target or byte changes the digest", async () => {
    const dir = await fixtureTree();
    const before = (await treeSha256V1(dir)).digest;
    await chmod(join(dir, "README.md"), 0o754);
    expect((await treeSha256V1(dir)).digest).not.toBe(before);
    await chmod(join(dir, "README.md"), 0o644);
    expect((await treeSha256V1(dir)).digest).toBe(before);
    await rm(join(dir, "link-to-a"));
    await symlink("roles/a/", join(dir, "link-to-a"));
    expect((await treeSha256V1(dir)).digest).not.toBe(before);
  });

  test.skipIf(!have("python3", "python3"))("agrees with an independent computation in Python", async () => {
    const dir = await fixtureTree();
    const script = [
      "import os,sys,hashlib,stat",
      "L=[]",
      "os.chdir(sys.argv[1])",
      "for d,ds,fs in os.walk(b'.'):",
      "  for n in ds+fs:",
      "    p=os.path.join(d,n); s=os.lstat(p)",
      "    if stat.S_ISLNK(s.st_mode): m,h=b'120000',hashlib.sha256(os.readlink(p)).hexdigest()",
      "    elif stat.S_ISREG(s.st_mode): m=b'100755' if s.st_mode&0o111 else b'100644'; h=hashlib.sha256(open(p,'rb').read()).hexdigest()",
      "    else: continue",
      "    L.append(m+b' '+h.encode()+b' '+p[2:]+b'\\n')",
      "L.sort(); print(hashlib.sha256(b''.join(L)).hexdigest())",
    ].join("\n");
    const r = await runOk(new LocalTarget(), ["python3", "-c", script, dir]);
    expect(r.stdout.trim()).toBe((await treeSha256V1(dir)).digest);
  });
});

describe("unpacking a tarball", () => {
  const GOOD: TarEntry[] = [
    { path: "proj-1.0/", type: "Directory" },
    { path: "proj-1.0/README.md", content: FIXTURE["README.md"] },
    { path: "proj-1.0/bin/", type: "Directory" },
    { path: "proj-1.0/bin/run.sh", content: FIXTURE["bin/run.sh"], mode: 0o775 },
    { path: "proj-1.0/roles/a/tasks/main.yml", content: FIXTURE["roles/a/tasks/main.yml"] },
    { path: "proj-1.0/link-to-a", type: "SymbolicLink", linkpath: "roles/a" },
    { path: "proj-1.0/empty/", type: "Directory" },
  ];

  async function unpack(entries: TarEntry[]): Promise<{ dest: string; error?: Error; root: string }> {
    const root = await mkdtemp(join(tmp, "unpack-"));
    const archive = join(root, "a.tar.gz");
    await writeFile(archive, buildTarball(entries));
    const dest = join(root, "work", "tree");
    await mkdir(join(root, "work"));
    const error = await unpackTarball(archive, dest).then(
      () => undefined,
      (e: Error) => e,
    );
    return { dest, error, root };
  }

  test("gives the archive's top directory, with its modes and symlinks, and the fixture's digest", async () => {
    const { dest, error } = await unpack(GOOD);
    expect(error).toBeUndefined();
    expect((await readdir(dest)).sort()).toEqual(["README.md", "bin", "empty", "link-to-a", "roles"]);
    expect((await stat(join(dest, "bin/run.sh"))).mode & 0o777).toBe(0o755);
    expect((await stat(join(dest, "README.md"))).mode & 0o777).toBe(0o644);
    expect((await treeSha256V1(dest)).digest).toBe(expectedFixtureDigest());
  });

  test("a hard link to a file of the tree becomes a second name of that file", async () => {
    const { dest, error } = await unpack([
      ...GOOD,
      { path: "proj-1.0/README.copy", type: "Link", linkpath: "proj-1.0/README.md" },
    ]);
    expect(error).toBeUndefined();
    expect(await readFile(join(dest, "README.copy"), "utf8")).toBe(FIXTURE["README.md"]);
  });

  const hostile: [string, TarEntry[], string][] = [
    ["an absolute path", [{ path: "/etc/kubehyve-planted", content: "x" }], "has an absolute path"],
    ["a .. component", [...GOOD, { path: "proj-1.0/../../planted", content: "x" }], "climbs out with .."],
    ["a device file", [...GOOD, { path: "proj-1.0/dev-null", type: "CharacterDevice" }], "CharacterDevice"],
    ["a block device", [...GOOD, { path: "proj-1.0/disk", type: "BlockDevice" }], "BlockDevice"],
    ["a FIFO", [...GOOD, { path: "proj-1.0/pipe", type: "FIFO" }], "FIFO"],
    [
      "a symlink climbing out",
      [...GOOD, { path: "proj-1.0/roles/out", type: "SymbolicLink", linkpath: "../../.." }],
      "leaves the tree",
    ],
    [
      "an absolute symlink",
      [...GOOD, { path: "proj-1.0/etc", type: "SymbolicLink", linkpath: "/etc" }],
      "symlink to the absolute path /etc",
    ],
    [
      // Each link alone looks contained; followed as the kernel does, the second leaves the tree.
      "a symlink that leaves only through another symlink",
      [
        ...GOOD,
        { path: "proj-1.0/roles/a/up", type: "SymbolicLink", linkpath: "../.." },
        { path: "proj-1.0/sneak", type: "SymbolicLink", linkpath: "roles/a/up/.." },
      ],
      "leaves the tree",
    ],
    [
      "a file written through a symlink",
      [
        ...GOOD,
        { path: "proj-1.0/roles/b", type: "SymbolicLink", linkpath: "a" },
        { path: "proj-1.0/roles/b/planted", content: "x" },
      ],
      "lies under the symlink roles/b",
    ],
    [
      "a hard link outside the tree",
      [...GOOD, { path: "proj-1.0/shadow", type: "Link", linkpath: "/etc/shadow" }],
      "hard link to the absolute path /etc/shadow",
    ],
    [
      "a hard link climbing out",
      [...GOOD, { path: "proj-1.0/shadow", type: "Link", linkpath: "proj-1.0/../../etc/shadow" }],
      "outside the tree",
    ],
    [
      "a hard link to nothing unpacked before",
      [...GOOD, { path: "proj-1.0/later", type: "Link", linkpath: "proj-1.0/not-yet" }],
      "no file unpacked before it",
    ],
    [
      "a second top directory",
      [...GOOD, { path: "other/planted", content: "x" }],
      "outside the archive's top directory proj-1.0/",
    ],
    ["a file at the top level", [{ path: "loose-file", content: "x" }], "top level but not a directory"],
    ["a file given twice", [...GOOD, { path: "proj-1.0/README.md", content: "again" }], "appears twice"],
    [
      "a directory where a symlink is",
      [
        ...GOOD,
        { path: "proj-1.0/roles/b", type: "SymbolicLink", linkpath: "a" },
        { path: "proj-1.0/roles/b/", type: "Directory" },
      ],
      "appears twice, as a file or link and as a directory",
    ],
    [
      "a file where an earlier entry's parent directory is",
      [...GOOD, { path: "proj-1.0/new/deep.txt", content: "x" }, { path: "proj-1.0/new", content: "x" }],
      "appears twice, as a directory and as a file or link",
    ],
    [
      "a symlink where an earlier entry's parent directory is",
      [
        ...GOOD,
        { path: "proj-1.0/new/deep.txt", content: "x" },
        { path: "proj-1.0/new", type: "SymbolicLink", linkpath: "roles" },
      ],
      "appears twice, as a directory and as a file or link",
    ],
    [
      "a name longer than a file system takes",
      [...GOOD, { path: `proj-1.0/roles/${"n".repeat(256)}`, content: "x" }],
      "has a name of 256 bytes",
    ],
    [
      "a path deeper than a file system takes",
      [...GOOD, { path: `proj-1.0/${"d/".repeat(2100)}f`, content: "x" }],
      "has a path longer than the file system takes (ENAMETOOLONG)",
    ],
    [
      "a file under an earlier file",
      [...GOOD, { path: "proj-1.0/README.md/inside", content: "x" }],
      "lies under README.md, an earlier file or link",
    ],
  ];

  for (const [what, entries, why] of hostile) {
    test(`refuses ${what}, naming the entry`, async () => {
      const { error, root } = await unpack(entries);
      expect(error).toBeInstanceOf(Error);
      expect(error!.message).toContain("is refused: its entry");
      expect(error!.message).toContain(why);
      // Nothing was written beside the private directory.
      expect((await readdir(root)).sort()).toEqual(["a.tar.gz", "work"]);
      expect((await readdir(join(root, "work"))).sort()).toEqual(["tree"]);
      expect(existsSync("/etc/kubehyve-planted")).toBe(false);
    });
  }

  test("refuses an archive over the size limit before writing past it", async () => {
    const root = await mkdtemp(join(tmp, "limit-"));
    const archive = join(root, "a.tar.gz");
    await writeFile(archive, buildTarball(GOOD));
    await expect(unpackTarball(archive, join(root, "tree"), { maxBytes: 10 })).rejects.toThrow(
      "larger than 10 bytes",
    );
  });

  test("refuses an archive cut short between two entries", async () => {
    const root = await mkdtemp(join(tmp, "cut-"));
    const archive = join(root, "a.tar");
    const whole = buildTarball(GOOD, false);
    // Without its end-of-archive blocks, and without the last entry: every header is still whole.
    await writeFile(archive, whole.subarray(0, whole.byteLength - 1024 - 512));
    await expect(unpackTarball(archive, join(root, "tree"))).rejects.toThrow(
      "is cut short: it ends before the tar end-of-archive blocks",
    );
  });

  test("says a file that is not a tarball is not one", async () => {
    const root = await mkdtemp(join(tmp, "junk-"));
    const archive = join(root, "a.tar.gz");
    await writeFile(archive, Bun.gzipSync(new Uint8Array(4096).fill(7)));
    await expect(unpackTarball(archive, join(root, "tree"))).rejects.toThrow("not a readable tarball");
  });

  test("follows symlinks the way the kernel does when deciding what stays inside", () => {
    const links = new Map([
      ["a/up", "../.."],
      ["ok", "a/up/x"],
      ["loop1", "loop2"],
      ["loop2", "loop1"],
      ["deep/x", "../a"],
    ]);
    expect(resolvesInside("deep/x", links)).toBe(true);
    expect(resolvesInside("a/up", links)).toBe(false);
    expect(resolvesInside("loop1", links)).toBe(false);
  });
});

describe("DownloadCache.fetchTree", () => {
  const good = buildTarball([
    { path: "proj-1.0/", type: "Directory" },
    { path: "proj-1.0/README.md", content: FIXTURE["README.md"] },
    { path: "proj-1.0/bin/run.sh", content: FIXTURE["bin/run.sh"], mode: 0o755 },
    { path: "proj-1.0/roles/a/tasks/main.yml", content: FIXTURE["roles/a/tasks/main.yml"] },
    { path: "proj-1.0/link-to-a", type: "SymbolicLink", linkpath: "roles/a" },
  ]);
  // The same content, compressed differently: another sha256, the same tree.
  const recompressed = Bun.gzipSync(Bun.gunzipSync(good), { level: 1 });
  const hostile = buildTarball([
    { path: "proj-1.0/", type: "Directory" },
    { path: "proj-1.0/dev", type: "CharacterDevice" },
  ]);
  let server: FileServer;
  beforeAll(() => {
    server = serveFiles({
      "/proj/archive/v1.0.tar.gz": good,
      "/proj/archive/again.tar.gz": recompressed,
      "/proj/archive/hostile.tar.gz": hostile,
    });
  });
  afterAll(() => server.stop());

  const cacheIn = async () => new DownloadCache({ dir: join(await mkdtemp(join(tmp, "cache-")), "cache") });

  test("unpacks, verifies the content and keeps the tree under its name; a second call downloads nothing", async () => {
    const cache = await cacheIn();
    const req = {
      url: `${server.url}/proj/archive/v1.0.tar.gz`,
      treeSha256V1: expectedFixtureDigest(),
      name: "proj-v1.0",
    };
    const before = server.hits("/proj/archive/v1.0.tar.gz");
    const dir = await cache.fetchTree(req);
    expect(dir).toBe(join(cache.dir, "proj-v1.0"));
    expect(await readFile(join(dir, "README.md"), "utf8")).toBe(FIXTURE["README.md"]);
    expect(await readFile(`${dir}.tree-sha256-v1`, "utf8")).toBe(`${expectedFixtureDigest()}  proj-v1.0\n`);
    expect(await cache.hasTree(req)).toBe(true);
    // Without a sha256 pin the archive itself is not kept, and no temporary directory is left.
    expect((await readdir(cache.dir)).sort()).toEqual(["proj-v1.0", "proj-v1.0.tree-sha256-v1"]);
    expect(await cache.fetchTree(req)).toBe(dir);
    expect(server.hits("/proj/archive/v1.0.tar.gz") - before).toBe(1);
  });

  test("another compression of the same content passes the same pin", async () => {
    const cache = await cacheIn();
    expect(sha256(recompressed)).not.toBe(sha256(good));
    const dir = await cache.fetchTree({
      url: `${server.url}/proj/archive/again.tar.gz`,
      treeSha256V1: expectedFixtureDigest(),
    });
    expect(dir).toBe(join(cache.dir, "again"));
  });

  test("a content mismatch deletes the tree and names both digests", async () => {
    const cache = await cacheIn();
    const wrong = "e".repeat(64);
    const req = { url: `${server.url}/proj/archive/v1.0.tar.gz`, treeSha256V1: wrong, name: "proj-v1.0" };
    const error = await cache.fetchTree(req).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(
      `expected tree-sha256-v1 ${wrong}, got ${expectedFixtureDigest()}`,
    );
    expect((error as Error).message).toContain(req.url);
    expect(await readdir(cache.dir)).toEqual([]);
  });

  test("the optional sha256 pins the archive's bytes too", async () => {
    const cache = await cacheIn();
    const url = `${server.url}/proj/archive/v1.0.tar.gz`;
    const tree = { url, treeSha256V1: expectedFixtureDigest(), name: "proj-v1.0" };
    await expect(cache.fetchTree({ ...tree, sha256: "0".repeat(64) })).rejects.toThrow(
      `expected sha256 ${"0".repeat(64)}, got ${sha256(good)}`,
    );
    expect(existsSync(cache.treePathOf(tree))).toBe(false);
    const dir = await cache.fetchTree({ ...tree, sha256: sha256(good) });
    expect((await readdir(cache.dir)).sort()).toEqual([
      "proj-v1.0",
      "proj-v1.0.archive",
      "proj-v1.0.archive.sha256",
      "proj-v1.0.tree-sha256-v1",
    ]);
    expect(existsSync(join(dir, "README.md"))).toBe(true);
  });

  test("a tree changed since it was verified is fetched anew", async () => {
    const cache = await cacheIn();
    const req = {
      url: `${server.url}/proj/archive/v1.0.tar.gz`,
      treeSha256V1: expectedFixtureDigest(),
      name: "p",
    };
    const dir = await cache.fetchTree(req);
    await writeFile(join(dir, "README.md"), "changed\n");
    await link(join(dir, "README.md"), join(dir, "planted"));
    const before = server.hits("/proj/archive/v1.0.tar.gz");
    expect(await cache.fetchTree(req)).toBe(dir);
    expect(server.hits("/proj/archive/v1.0.tar.gz") - before).toBe(1);
    expect(await readFile(join(dir, "README.md"), "utf8")).toBe(FIXTURE["README.md"]);
    expect(existsSync(join(dir, "planted"))).toBe(false);
  });

  test("a symlink put at a cached tree's name is not trusted, and what it leads to is left alone", async () => {
    const cache = await cacheIn();
    const req = {
      url: `${server.url}/proj/archive/v1.0.tar.gz`,
      treeSha256V1: expectedFixtureDigest(),
      name: "p",
    };
    const dir = await cache.fetchTree(req);
    const elsewhere = await mkdtemp(join(tmp, "elsewhere-"));
    await rename(dir, join(elsewhere, "p"));
    await symlink(join(elsewhere, "p"), dir);
    expect(await cache.hasTree(req)).toBe(false);
    expect(await cache.fetchTree(req)).toBe(dir);
    expect((await lstat(dir)).isDirectory()).toBe(true);
    expect(existsSync(join(elsewhere, "p", "README.md"))).toBe(true);
  });

  test("a hostile archive is refused and leaves nothing in the cache", async () => {
    const cache = await cacheIn();
    const req = { url: `${server.url}/proj/archive/hostile.tar.gz`, treeSha256V1: expectedFixtureDigest() };
    await expect(cache.fetchTree(req)).rejects.toThrow('its entry "proj-1.0/dev" is a CharacterDevice entry');
    expect(await readdir(cache.dir)).toEqual([]);
  });

  test("refuses a malformed digest and a name that would leave the cache", async () => {
    const cache = await cacheIn();
    const url = `${server.url}/proj/archive/v1.0.tar.gz`;
    await expect(cache.fetchTree({ url, treeSha256V1: "abc" })).rejects.toThrow(
      "not 64 lower-case hex digits",
    );
    expect(() => cache.treePathOf({ url, treeSha256V1: expectedFixtureDigest(), name: "../x" })).toThrow(
      "not a plain directory name",
    );
  });
});
