/**
 * The image pipeline end to end on this machine: stream metadata in the upstream format and a small
 * qcow2.xz (made here with qemu-img and xz) served over HTTP on loopback through the cache's mirror,
 * real xz and qemu-img on the local host target.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSha256Output } from "../../../../plugins/os/coreos/image.ts";
import plugin, { type NodeBoot } from "../../../../plugins/os/coreos/index.ts";
import { FWCFG_NAME, fwcfgBhyveOptions } from "../../../../plugins/os/coreos/paths.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";
import { createPluginContext } from "../../../../src/core/context.ts";
import type { Cluster } from "../../../../src/core/model.ts";
import { OfflineTarget } from "../../../../src/core/pool.ts";
import { KubehyveError } from "../../../../src/lib/errors.ts";
import { LocalTarget } from "../../../../src/targets/local.ts";
import { SshTarget } from "../../../../src/targets/ssh.ts";
import type { RunOptions, RunResult, Target } from "../../../../src/targets/target.ts";
import { type FileServer, serveFiles } from "../../../lab/http.ts";
import { have } from "../../../lab/prereq.ts";
import { loginOf, type Sshd, startSshd } from "../../../lab/sshd.ts";
import { coreosOptions, labCluster, ORACLES } from "./lab.ts";

const sha256 = (data: Uint8Array | string) => new Bun.CryptoHasher("sha256").update(data).digest("hex");
const UPSTREAM_STABLE = readFileSync(
  join(ORACLES, "releases/fcos/fedora-coreos-streams/streams/stable.json"),
  "utf8",
);
const RELEASE = "44.20260707.3.1";
const IMAGE_PATH = new URL(
  JSON.parse(UPSTREAM_STABLE).architectures.x86_64.artifacts.qemu.formats["qcow2.xz"].disk.location,
).pathname;

/** The upstream document with the qemu qcow2.xz checksums replaced by those of the test image. */
function streamWith(sha: string, uncompressed: string, release = RELEASE): string {
  const doc = JSON.parse(UPSTREAM_STABLE);
  const qemu = doc.architectures.x86_64.artifacts.qemu;
  qemu.release = release;
  qemu.formats["qcow2.xz"].disk.sha256 = sha;
  qemu.formats["qcow2.xz"].disk["uncompressed-sha256"] = uncompressed;
  return JSON.stringify(doc, null, 2);
}

function run(argv: string[]) {
  const proc = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${proc.stderr.toString()}`);
}

/**
 * The host with a ZFS datastore: `zfs` is answered by a stand-in keeping datasets in memory, in the
 * formats of zfs-list(8), zfs-create(8) and zfs-snapshot(8) (../shared/oracles/freebsd/openzfs/
 * zfs-2.2.7); a zvol's device node /dev/zvol/NAME is a file in a temp dir. Everything else (xz,
 * qemu-img, mv, rm) runs for real on this machine.
 */
class ZfsHost implements Target {
  readonly name = "local";
  readonly calls: string[][] = [];
  readonly datasets = new Map<string, { type: "filesystem" | "volume" | "snapshot"; mountpoint: string }>([
    ["zroot", { type: "filesystem", mountpoint: "/zroot" }],
    ["zroot/vm", { type: "filesystem", mountpoint: "/zroot/vm" }],
  ]);
  private readonly local = new LocalTarget();
  constructor(private readonly zvolDir: string) {}

  zvolFile(name: string): string {
    return join(this.zvolDir, name.replaceAll("/", "_"));
  }

  async run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    if (argv[0] === "zfs") return this.zfs(argv.slice(1));
    return this.local.run(
      argv.map((a) => (a.startsWith("/dev/zvol/") ? this.zvolFile(a.slice("/dev/zvol/".length)) : a)),
      opts,
    );
  }

  async close(): Promise<void> {}

  private async zfs(args: string[]): Promise<RunResult> {
    const ok = (stdout = ""): RunResult => ({ code: 0, stdout, stderr: "" });
    const missing = (name: string): RunResult => ({
      code: 1,
      stdout: "",
      stderr: `cannot open '${name}': dataset does not exist\n`,
    });
    const [verb, ...rest] = args;
    const target = rest.at(-1)!;
    if (verb === "list") {
      const fields = (rest[rest.indexOf("-o") + 1] ?? "name").split(",");
      const type = rest.includes("-t") ? rest[rest.indexOf("-t") + 1] : undefined;
      // A path names the dataset mounted there (zfs-list(8): "by the absolute pathname").
      const name = target.startsWith("/")
        ? [...this.datasets].find(([, d]) => d.mountpoint === target)?.[0]
        : this.datasets.has(target)
          ? target
          : undefined;
      const found = name === undefined ? undefined : this.datasets.get(name);
      if (!found || (type && found.type !== type)) return missing(target);
      const value = (f: string) => (f === "name" ? name! : f === "mountpoint" ? found.mountpoint : "-");
      return ok(`${fields.map(value).join("\t")}\n`);
    }
    if (verb === "create" && rest[0] === "-V") {
      const parent = target.split("/").slice(0, -1).join("/");
      if (!this.datasets.has(parent)) return missing(parent);
      if (this.datasets.has(target))
        return { code: 1, stdout: "", stderr: `cannot create '${target}': dataset already exists\n` };
      this.datasets.set(target, { type: "volume", mountpoint: "-" });
      await writeFile(this.zvolFile(target), "");
      await truncate(this.zvolFile(target), Number(rest[1]));
      return ok();
    }
    if (verb === "snapshot") {
      const [dataset] = target.split("@");
      if (!this.datasets.has(dataset!)) return missing(dataset!);
      this.datasets.set(target, { type: "snapshot", mountpoint: "-" });
      return ok();
    }
    if (verb === "destroy") {
      if (!this.datasets.delete(target)) return missing(target);
      return ok();
    }
    return { code: 2, stdout: "", stderr: `zfs stand-in: unsupported ${args.join(" ")}\n` };
  }
}

describe.skipIf(!have("qemu-img", "qemu-utils") || !have("xz", "xz-utils"))(
  "os/coreos image pipeline",
  () => {
    let tmp: string;
    let server: FileServer;
    let raw: Uint8Array;
    let xz: Uint8Array;

    beforeAll(async () => {
      tmp = await mkdtemp(join(tmpdir(), "kubehyve-fcos-"));
      // A disk with content in it, so the raw golden image can be compared byte for byte.
      raw = new Uint8Array(4 * 1024 * 1024).map((_, i) => (i % 4096 < 16 ? (i >> 12) % 256 : 0));
      await writeFile(join(tmp, "src.raw"), raw);
      run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", join(tmp, "src.raw"), join(tmp, "disk.qcow2")]);
      const qcow2 = await readFile(join(tmp, "disk.qcow2"));
      run(["xz", "-k", join(tmp, "disk.qcow2")]);
      xz = await readFile(join(tmp, "disk.qcow2.xz"));
      server = serveFiles({
        "/streams/stable.json": streamWith(sha256(xz), sha256(qcow2)),
        [IMAGE_PATH]: xz,
      });
    });
    afterAll(async () => {
      await server?.stop();
      await rm(tmp, { recursive: true, force: true });
    });

    async function context(
      stateDir: string,
      extra: { dryRun?: boolean; cluster?: Cluster; cacheDir?: string } = {},
    ) {
      const cluster = extra.cluster ?? labCluster();
      const artifacts = new DownloadCache({
        dir: extra.cacheDir ?? join(stateDir, "cache"),
        mirror: server.url,
      });
      return createPluginContext({
        cluster,
        plugin,
        options: coreosOptions(),
        stateDir,
        dryRun: extra.dryRun,
        // The VMs do not exist yet: every node is unreachable (its target refuses to run anything).
        targets: { host: new LocalTarget(), node: (node) => new OfflineTarget(node.name) },
        artifacts,
      });
    }

    test("check plans the image and every Ignition config, apply builds a raw golden image once", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const ctx = await context(stateDir);
      const first = await plugin.check(ctx as never);
      expect(first.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
      expect(withoutSshWait(first.changes).map((c) => c.kind)).toEqual([
        "image.golden",
        "ignition.write",
        "ignition.write",
        "ignition.write",
      ]);
      expect(first.changes[0]!.summary).toContain(`Fedora CoreOS stable ${RELEASE}`);

      const before = server.hits(IMAGE_PATH);
      await plugin.apply!(ctx as never, withoutSshWait(first.changes));
      expect(server.hits(IMAGE_PATH) - before).toBe(1);

      const golden = join(stateDir, "os", "images", `fedora-coreos-${RELEASE}-qemu.x86_64.raw`);
      expect(sha256(await readFile(golden))).toBe(sha256(raw));
      // The decompressed qcow2 was a step, not a result: only the verified download stays cached.
      expect(existsSync(join(stateDir, "cache", `fedora-coreos-${RELEASE}-qemu.x86_64.qcow2.xz`))).toBe(true);
      expect(existsSync(join(stateDir, "cache", `fedora-coreos-${RELEASE}-qemu.x86_64.qcow2`))).toBe(false);
      for (const name of ["cp1", "w1", "w2"]) {
        const ign = join(stateDir, "os", "ignition", `${name}.ign`);
        expect((await stat(ign)).mode & 0o777).toBe(0o600);
        expect(JSON.parse(await readFile(ign, "utf8")).ignition.version).toBe("3.3.0");
      }
      const state = JSON.parse(await readFile(join(stateDir, "state", "os.json"), "utf8"));
      expect(state.image.release).toBe(RELEASE);
      expect(state.image.sha256).toBe(sha256(xz));

      // A second run over the same state: nothing to do and nothing downloaded.
      const requests = server.requests.length;
      const again = await context(stateDir);
      const second = await plugin.check(again as never);
      expect(withoutSshWait(second.changes)).toEqual([]);
      const boot = (await plugin.hooks!["hypervisor:node-boot"]!(again as never, {
        node: labCluster().nodes[0]!,
        vmDir: "/vm/cp1",
      })) as NodeBoot;
      expect(boot).toEqual({
        bhyveOptions: `-o lpc.fwcfg=qemu -f name=${FWCFG_NAME},file=${join(stateDir, "os", "ignition", "cp1.ign")}`,
        bootImage: { kind: "file", path: golden },
      });
      expect(again.wetLog).toEqual([]);
      expect(server.hits(IMAGE_PATH) - before).toBe(1);
      // Only stream metadata was read again (to tell about newer releases), never the image.
      expect(server.requests.slice(requests).every((r) => r.path === "/streams/stable.json")).toBe(true);
    });

    test("the hypervisor hook alone prepares the image and the node's Ignition config", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const ctx = await context(stateDir);
      const boot = (await plugin.hooks!["hypervisor:node-boot"]!(ctx as never, {
        node: labCluster().nodes[1]!,
        vmDir: "/vm/w1",
      })) as NodeBoot;
      expect(boot.bootImage).toEqual({
        kind: "file",
        path: join(stateDir, "os", "images", `fedora-coreos-${RELEASE}-qemu.x86_64.raw`),
      });
      expect(existsSync(join(stateDir, "os", "ignition", "w1.ign"))).toBe(true);
      expect(existsSync(join(stateDir, "os", "ignition", "cp1.ign"))).toBe(false);
      await expect(
        plugin.hooks!["hypervisor:node-boot"]!(ctx as never, {
          node: { name: "w9" } as never,
          vmDir: "/vm/w9",
        }),
      ).rejects.toThrow('hypervisor:node-boot was called for "w9", which is not a node of this cluster');
    });

    test("on a ZFS datastore the golden image is a zvol snapshot, built once for all nodes", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const host = new ZfsHost(await mkdtemp(join(tmp, "zvol-")));
      const ctx = createPluginContext({
        cluster: labCluster(),
        plugin,
        options: coreosOptions(),
        stateDir,
        targets: { host, node: (node) => new OfflineTarget(node.name) },
        artifacts: new DownloadCache({ dir: join(stateDir, "cache"), mirror: server.url }),
      });
      const hook = plugin.hooks!["hypervisor:node-boot"]!;
      const before = server.hits(IMAGE_PATH);
      const zvol = `zroot/vm/kubehyve-fcos-${RELEASE}`;
      const boot = (await hook(ctx as never, {
        node: labCluster().nodes[0]!,
        vmDir: "/zroot/vm/cp1",
      })) as NodeBoot;
      expect(boot.bootImage).toEqual({ kind: "zfs-snapshot", snapshot: `${zvol}@golden` });
      expect(sha256(await readFile(host.zvolFile(zvol)))).toBe(sha256(raw));
      expect(host.calls.filter((c) => c[0] === "zfs" && c[1] !== "list")).toEqual([
        ["zfs", "create", "-V", String(raw.byteLength), "-o", "volmode=dev", zvol],
        ["zfs", "snapshot", `${zvol}@golden`],
      ]);

      const again = (await hook(ctx as never, {
        node: labCluster().nodes[1]!,
        vmDir: "/zroot/vm/w1",
      })) as NodeBoot;
      expect(again.bootImage).toEqual(boot.bootImage);
      expect(server.hits(IMAGE_PATH) - before).toBe(1);
      expect(host.calls.filter((c) => c[1] === "create")).toHaveLength(1);

      // The os stage's own check then finds the zvol image in place.
      const { changes } = await plugin.check(ctx as never);
      expect(changes.filter((c) => c.kind?.startsWith("image."))).toEqual([]);
    });

    test("a dry run plans the download and the build and touches nothing", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const ctx = await context(stateDir, { dryRun: true });
      const before = server.hits(IMAGE_PATH);
      const { changes } = await plugin.check(ctx as never);
      await plugin.apply!(ctx as never, withoutSshWait(changes));
      expect(ctx.wetLog[0]).toStartWith(`download Fedora CoreOS ${RELEASE}`);
      expect(ctx.wetLog[1]).toStartWith("build the golden image");
      expect(ctx.wetLog.filter((w) => w.startsWith("write the Ignition config of"))).toHaveLength(3);
      expect(server.hits(IMAGE_PATH)).toBe(before);
      expect(existsSync(join(stateDir, "os", "images"))).toBe(false);
      expect(existsSync(join(stateDir, "state", "os.json"))).toBe(false);
    });

    test("a checksum mismatch is rejected, the download removed and no golden image built", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const wrong = sha256("something else");
      server.set("/streams/stable.json", streamWith(wrong, wrong));
      try {
        const ctx = await context(stateDir);
        const { changes } = await plugin.check(ctx as never);
        const error = await plugin.apply!(ctx as never, withoutSshWait(changes)).catch((e: Error) => e);
        expect(error).toBeInstanceOf(Error);
        expect((error as Error).message).toContain(wrong);
        expect((error as Error).message).toContain(sha256(xz));
        expect((error as Error).message).toContain(IMAGE_PATH);
        expect(existsSync(join(stateDir, "cache", `fedora-coreos-${RELEASE}-qemu.x86_64.qcow2.xz`))).toBe(
          false,
        );
        expect(existsSync(join(stateDir, "os", "images", `fedora-coreos-${RELEASE}-qemu.x86_64.raw`))).toBe(
          false,
        );
        expect(existsSync(join(stateDir, "state", "os.json"))).toBe(false);
      } finally {
        server.set(
          "/streams/stable.json",
          streamWith(sha256(xz), sha256(await readFile(join(tmp, "disk.qcow2")))),
        );
      }
    });

    // qemu-img follows a qcow2's backing file and external data file, paths on the host that the
    // image names (the image-format attacks of OpenStack's OSSA-2024-001): a mirror's image, pinned
    // only by the mirror's own stream metadata, would copy a host file into every node's disk.
    for (const [what, make] of [
      [
        "a backing file",
        (secret: string, image: string) =>
          run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", image, "4M"]),
      ],
      [
        "an external data file",
        (secret: string, image: string) => {
          const data = `${secret}.data`;
          run([
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            `data_file=${data},data_file_raw=on`,
            image,
            "4M",
          ]);
          run(["cp", secret, data]);
        },
      ],
    ] as const) {
      for (const zfs of [false, true]) {
        test(`an image with ${what} on the host is refused before it is converted${zfs ? " into a zvol" : ""}, naming it`, async () => {
          const stateDir = await mkdtemp(join(tmp, "state-"));
          const work = await mkdtemp(join(tmp, "hostile-"));
          const secret = join(work, "host-secret");
          await writeFile(secret, "HOST SECRET ".repeat(1000));
          const image = join(work, "disk.qcow2");
          make(secret, image);
          run(["xz", "-k", image]);
          const hostile = await readFile(`${image}.xz`);
          const path = "/hostile/disk.qcow2.xz";
          server.set(path, hostile);
          const doc = JSON.parse(streamWith(sha256(hostile), sha256(await readFile(image)), "44.1.hostile"));
          doc.architectures.x86_64.artifacts.qemu.formats["qcow2.xz"].disk.location =
            `https://builds.example${path}`;
          server.set("/streams/stable.json", JSON.stringify(doc));
          try {
            const zvols = await mkdtemp(join(tmp, "zvol-"));
            const host = zfs ? new ZfsHost(zvols) : new LocalTarget();
            const ctx = createPluginContext({
              cluster: labCluster(),
              plugin,
              options: coreosOptions(),
              stateDir,
              targets: { host, node: (node) => new OfflineTarget(node.name) },
              artifacts: new DownloadCache({ dir: join(stateDir, "cache"), mirror: server.url }),
            });
            const hook = plugin.hooks!["hypervisor:node-boot"]!;
            const error = await Promise.resolve(
              hook(ctx as never, { node: labCluster().nodes[0]!, vmDir: zfs ? "/zroot/vm/cp1" : "/vm/cp1" }),
            ).catch((e: Error) => e);
            expect(error).toBeInstanceOf(KubehyveError);
            expect((error as Error).message).toContain(what);
            expect((error as Error).message).toContain(secret);
            const images = join(stateDir, "os", "images");
            expect(existsSync(images) ? await readdir(images) : []).toEqual([]);
            expect(await readdir(zvols)).toEqual([]);
          } finally {
            server.set(
              "/streams/stable.json",
              streamWith(sha256(xz), sha256(await readFile(join(tmp, "disk.qcow2")))),
            );
          }
        });
      }
    }

    test("a newer release is only reported, and becomes a change on request", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const ctx = await context(stateDir);
      await plugin.apply!(ctx as never, withoutSshWait((await plugin.check(ctx as never)).changes));
      const qcow2 = await readFile(join(tmp, "disk.qcow2"));
      server.set("/streams/stable.json", streamWith(sha256(xz), sha256(qcow2), "44.20260801.3.0"));
      try {
        const later = await context(stateDir);
        const result = await plugin.check(later as never);
        expect(withoutSshWait(result.changes)).toEqual([]);
        expect(result.diagnostics.find((d) => d.code === "coreos.newer-release")?.summary).toBe(
          `Fedora CoreOS 44.20260801.3.0 is out; new nodes get ${RELEASE}`,
        );
        const upgrading = Object.assign(await context(stateDir), { upgrade: true });
        const upgrade = await plugin.check(upgrading as never);
        expect(upgrade.changes[0]?.summary).toBe(
          `download Fedora CoreOS stable 44.20260801.3.0 and build the golden image (was ${RELEASE}; running nodes keep theirs, Zincati updates them)`,
        );
      } finally {
        server.set("/streams/stable.json", streamWith(sha256(xz), sha256(qcow2)));
      }
    });

    test("an unreachable stream is an error diagnostic naming the URL", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const cluster = labCluster({ stages: { os: { plugin: "os/coreos", options: {} } } });
      const ctx = createPluginContext({
        cluster,
        plugin,
        options: coreosOptions({ stream: "next" }),
        stateDir,
        targets: { host: new LocalTarget(), node: (node) => new OfflineTarget(node.name) },
        artifacts: new DownloadCache({ dir: join(stateDir, "cache"), mirror: server.url }),
      });
      const { diagnostics, changes } = await plugin.check(ctx as never);
      expect(changes.filter((c) => c.kind?.startsWith("image."))).toEqual([]);
      expect(diagnostics.find((d) => d.code === "coreos.stream")?.summary).toBe(
        `cannot read stream metadata: download of ${server.url}/streams/next.json (mirror of https://builds.coreos.fedoraproject.org/streams/next.json) failed: HTTP 404 Not Found`,
      );
    });

    test("destroy removes the golden images and Ignition configs and forgets the release", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const ctx = await context(stateDir);
      await plugin.apply!(ctx as never, withoutSshWait((await plugin.check(ctx as never)).changes));
      expect(existsSync(join(stateDir, "os", "images"))).toBe(true);
      await plugin.destroy!(ctx as never);
      expect(existsSync(join(stateDir, "os", "images"))).toBe(false);
      expect(existsSync(join(stateDir, "os", "ignition"))).toBe(false);
      expect(JSON.parse(await readFile(join(stateDir, "state", "os.json"), "utf8"))).toEqual({});
      // The verified download stays cached: bringing the lab back needs no new download.
      expect(existsSync(join(stateDir, "cache", `fedora-coreos-${RELEASE}-qemu.x86_64.qcow2.xz`))).toBe(true);
    });

    test("render gives every node's Ignition config", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const files = await plugin.render!((await context(stateDir)) as never);
      expect(files.map((f) => [f.path, f.mode])).toEqual([
        ["cp1.ign", 0o600],
        ["w1.ign", 0o600],
        ["w2.ign", 0o600],
      ]);
    });

    /**
     * The host over ssh: a real sshd on loopback stands for root@hv1, and everything it runs (sh, cat,
     * sha256sum, xz, qemu-img, mv) runs for real behind it. kubehyve's own machine is a local target.
     */
    describe.skipIf(!have("sshd", "openssh-server"))("with the hypervisor host over ssh", () => {
      let sshd: Sshd;
      let host: SshTarget;
      const remote = labCluster({ host: { kind: "ssh", user: "root", hostname: "hv1", port: 22 } });
      const xzName = `fedora-coreos-${RELEASE}-qemu.x86_64.qcow2.xz`;
      const rawName = `fedora-coreos-${RELEASE}-qemu.x86_64.raw`;

      beforeAll(async () => {
        sshd = await startSshd();
        host = new SshTarget({
          ...loginOf(sshd),
          stateDir: await mkdtemp(join(tmp, "ssh-")),
          name: "root@hv1",
        });
      });
      afterAll(async () => {
        await host?.close();
        await sshd?.stop();
      });

      async function remoteContext(stateDir: string, hostDir: string, extra: { cacheDir?: string } = {}) {
        return createPluginContext({
          cluster: remote,
          plugin,
          options: coreosOptions({ hostDir }),
          stateDir,
          targets: { host, local: new LocalTarget(), node: (node) => new OfflineTarget(node.name) },
          artifacts: new DownloadCache({
            dir: extra.cacheDir ?? join(stateDir, "cache"),
            mirror: server.url,
          }),
        });
      }
      const count = (log: string[], prefix: string) => log.filter((w) => w.startsWith(prefix)).length;

      test("the verified download is copied to the host once and converted there, and the Ignition configs are written there 0600", async () => {
        const stateDir = await mkdtemp(join(tmp, "state-"));
        const hostDir = join(await mkdtemp(join(tmp, "hv1-")), "os");
        const ctx = await remoteContext(stateDir, hostDir);
        const first = await plugin.check(ctx as never);
        expect(first.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
        expect(withoutSshWait(first.changes).map((c) => [c.kind, c.target])).toEqual([
          ["image.golden", "root@hv1"],
          ["ignition.write", "cp1"],
          ["ignition.write", "w1"],
          ["ignition.write", "w2"],
        ]);
        const before = server.hits(IMAGE_PATH);
        await plugin.apply!(ctx as never, withoutSshWait(first.changes));
        expect(server.hits(IMAGE_PATH) - before).toBe(1);
        expect(count(ctx.wetLog, "download Fedora CoreOS")).toBe(1);
        expect(count(ctx.wetLog, `copy ${xzName} to root@hv1:${join(hostDir, "cache", xzName)}`)).toBe(1);
        expect(count(ctx.wetLog, "build the golden image")).toBe(1);

        // The golden image is on the host, built from the host's copy, which stays and is all that stays.
        const golden = join(hostDir, "images", rawName);
        expect(sha256(await readFile(golden))).toBe(sha256(raw));
        expect(sha256(await readFile(join(hostDir, "cache", xzName)))).toBe(sha256(xz));
        expect((await readdir(join(hostDir, "cache"))).sort()).toEqual([xzName]);
        expect(await readdir(join(hostDir, "images"))).toEqual([rawName]);
        expect((await stat(join(hostDir, "ignition"))).mode & 0o777).toBe(0o700);
        const rendered = await plugin.render!(ctx as never);
        for (const name of ["cp1", "w1", "w2"]) {
          const ign = join(hostDir, "ignition", `${name}.ign`);
          expect((await stat(ign)).mode & 0o777).toBe(0o600);
          expect(await readFile(ign, "utf8")).toBe(
            rendered.find((f) => f.path === `${name}.ign`)!.content as string,
          );
        }
        // Nothing bhyve reads stays where kubehyve runs.
        expect(existsSync(join(stateDir, "os", "images"))).toBe(false);
        expect(existsSync(join(stateDir, "os", "ignition"))).toBe(false);

        // A second run: nothing to do, nothing copied, and the hypervisor is given paths on the host.
        const again = await remoteContext(stateDir, hostDir);
        expect(withoutSshWait((await plugin.check(again as never)).changes)).toEqual([]);
        const boot = (await plugin.hooks!["hypervisor:node-boot"]!(again as never, {
          node: remote.nodes[0]!,
          vmDir: "/vm/cp1",
        })) as NodeBoot;
        expect(boot).toEqual({
          bhyveOptions: `-o lpc.fwcfg=qemu -f name=${FWCFG_NAME},file=${join(hostDir, "ignition", "cp1.ign")}`,
          bootImage: { kind: "file", path: golden },
        });
        expect(again.wetLog).toEqual([]);

        // A changed Ignition config on the host is found by check and written again.
        await writeFile(join(hostDir, "ignition", "w1.ign"), "{}");
        const drifted = await remoteContext(stateDir, hostDir);
        const changes = withoutSshWait((await plugin.check(drifted as never)).changes);
        expect(changes.map((c) => [c.kind, c.target])).toEqual([["ignition.write", "w1"]]);
        await plugin.apply!(drifted as never, changes);
        expect(await readFile(join(hostDir, "ignition", "w1.ign"), "utf8")).toBe(
          rendered.find((f) => f.path === "w1.ign")!.content as string,
        );

        // The host's copy damaged between runs (and the golden image gone): the hash on the host
        // finds it, and it is replaced from the local cache without a new download.
        const copy = join(hostDir, "cache", xzName);
        const damaged = new Uint8Array(await readFile(copy));
        damaged[damaged.length >> 1]! ^= 0xff;
        await writeFile(copy, damaged);
        await rm(golden);
        const repair = await remoteContext(stateDir, hostDir);
        const plan = withoutSshWait((await plugin.check(repair as never)).changes);
        expect(plan.map((c) => c.kind)).toEqual(["image.golden"]);
        await plugin.apply!(repair as never, plan);
        expect(count(repair.wetLog, `copy ${xzName}`)).toBe(1);
        expect(sha256(await readFile(copy))).toBe(sha256(xz));
        expect(sha256(await readFile(golden))).toBe(sha256(raw));
        expect(server.hits(IMAGE_PATH) - before).toBe(1);

        // With the golden image gone but the copy sound, the image is rebuilt without copying.
        await rm(golden);
        const rebuild = await remoteContext(stateDir, hostDir);
        await plugin.apply!(rebuild as never, withoutSshWait((await plugin.check(rebuild as never)).changes));
        expect(count(rebuild.wetLog, "copy")).toBe(0);
        expect(count(rebuild.wetLog, "build the golden image")).toBe(1);
        expect(sha256(await readFile(golden))).toBe(sha256(raw));
      });

      test("a copy that arrives damaged is refused on the host and nothing is built from it", async () => {
        const stateDir = await mkdtemp(join(tmp, "state-"));
        const hostDir = join(await mkdtemp(join(tmp, "hv1-")), "os");
        const ctx = await remoteContext(stateDir, hostDir);
        const { changes } = await plugin.check(ctx as never);
        const image = (changes[0]!.data as { image: { location: string; sha256: string } }).image;
        // The local cache vouches for a file that was verified when stored and changed since in a
        // way its cheap check cannot see (bits rotting on the disk move no ctime): here, the file
        // rewritten and its sidecar touched after it, so that the cache still trusts it.
        const cached = await ctx.artifacts.fetch({ url: image.location, sha256: image.sha256, name: xzName });
        await writeFile(cached, "not the image");
        await Bun.sleep(20);
        await writeFile(`${cached}.sha256`, await readFile(`${cached}.sha256`));
        expect(await ctx.artifacts.fetch({ url: image.location, sha256: image.sha256, name: xzName })).toBe(
          cached,
        );
        expect(await readFile(cached, "utf8")).toBe("not the image");
        const error = await plugin.apply!(ctx as never, withoutSshWait(changes)).catch((e: Error) => e);
        expect(error).toBeInstanceOf(Error);
        expect((error as Error).message).toContain(`root@hv1: the copy of ${cached}`);
        expect((error as Error).message).toContain(sha256("not the image"));
        expect((error as Error).message).toContain(sha256(xz));
        expect(await readdir(join(hostDir, "cache"))).toEqual([]);
        expect(existsSync(join(hostDir, "images", rawName))).toBe(false);
        expect(existsSync(join(stateDir, "state", "os.json"))).toBe(false);
      });

      test("the hypervisor asking for every node at once gets one copy and one build, and destroy keeps the copy", async () => {
        const stateDir = await mkdtemp(join(tmp, "state-"));
        const hostDir = join(await mkdtemp(join(tmp, "hv1-")), "os");
        const ctx = await remoteContext(stateDir, hostDir);
        const hook = plugin.hooks!["hypervisor:node-boot"]!;
        const boots = (await Promise.all(
          remote.nodes.map((node) => hook(ctx as never, { node, vmDir: `/vm/${node.name}` })),
        )) as NodeBoot[];
        expect(boots.map((b) => b.bootImage)).toEqual(
          Array(3).fill({ kind: "file", path: join(hostDir, "images", rawName) }),
        );
        expect(count(ctx.wetLog, "copy")).toBe(1);
        expect(count(ctx.wetLog, "build the golden image")).toBe(1);
        expect(count(ctx.wetLog, "write the Ignition config of")).toBe(3);
        expect(sha256(await readFile(join(hostDir, "images", rawName)))).toBe(sha256(raw));

        // destroy clears the host's images and configs; the verified copy stays for the next lab.
        await plugin.destroy!(ctx as never);
        expect(existsSync(join(hostDir, "images"))).toBe(false);
        expect(existsSync(join(hostDir, "ignition"))).toBe(false);
        expect(await readdir(join(hostDir, "cache"))).toEqual([xzName]);
      });

      test("a plan names the Ignition file on the host and touches neither machine", async () => {
        const stateDir = await mkdtemp(join(tmp, "state-"));
        const requests = server.requests.length;
        for (const flags of [{ dryRun: true }, { dryRun: true, upstreamPending: true }]) {
          const ctx = createPluginContext({
            cluster: remote,
            plugin,
            options: coreosOptions(),
            stateDir,
            ...flags,
            // Both machines refuse every command: a plan that ran one would fail.
            targets: {
              host: new OfflineTarget("root@hv1"),
              local: new OfflineTarget("local"),
              node: (node) => new OfflineTarget(node.name),
            },
            artifacts: new DownloadCache({ dir: join(stateDir, "cache"), mirror: server.url }),
          });
          const boot = (await plugin.hooks!["hypervisor:node-boot"]!(ctx as never, {
            node: remote.nodes[0]!,
            vmDir: "/vm/cp1",
          })) as NodeBoot;
          expect(boot).toEqual({
            bhyveOptions: `-o lpc.fwcfg=qemu -f name=${FWCFG_NAME},file=/var/db/kubehyve/lab/os/ignition/cp1.ign`,
          });
          if (flags.upstreamPending) {
            const { changes, diagnostics } = await plugin.check(ctx as never);
            expect(diagnostics).toEqual([]);
            expect(changes.map((c) => c.kind)[0]).toBe("image.golden");
          }
          expect(ctx.wetLog).toEqual([]);
        }
        expect(server.requests.length).toBe(requests);
      });

      test("check names a host without sha256 or sha256sum", async () => {
        const stateDir = await mkdtemp(join(tmp, "state-"));
        // The lookup runs in sh, whose `command -v` is built in: an empty PATH finds no sha256 program.
        const bare = await mkdtemp(join(tmp, "bin-"));
        const restricted: Target = {
          name: "root@hv1",
          run: (argv, opts) =>
            argv[0] === "sh" ? host.run(["env", `PATH=${bare}`, ...argv], opts) : host.run(argv, opts),
          close: async () => {},
        };
        const ctx = createPluginContext({
          cluster: remote,
          plugin,
          options: coreosOptions({ hostDir: join(tmp, "never") }),
          stateDir,
          targets: {
            host: restricted,
            local: new LocalTarget(),
            node: (node) => new OfflineTarget(node.name),
          },
          artifacts: new DownloadCache({ dir: join(stateDir, "cache"), mirror: server.url }),
        });
        const { diagnostics } = await plugin.check(ctx as never);
        expect(diagnostics.filter((d) => d.severity === "error").map((d) => d.summary)).toEqual([
          "neither sha256 nor sha256sum is available on root@hv1",
        ]);
      });
    });
  },
);

/** The nodes do not exist in these tests: leave out the changes that wait for them to boot. */
function withoutSshWait<T extends { kind?: string }>(changes: T[]): T[] {
  return changes.filter((c) => c.kind !== "ssh.wait");
}

describe("fwcfgBhyveOptions", () => {
  test("refuses a path that vm-bhyve would split at a blank", () => {
    expect(() => fwcfgBhyveOptions("/var/db/my lab/os/ignition/cp1.ign")).toThrow('has the part "my lab"');
    expect(() => fwcfgBhyveOptions("/var/db/lab[1]/os/ignition/cp1.ign")).toThrow('has the part "lab[1]"');
    // bhyve's -f name=…,file=… would end the file name at the comma.
    expect(() => fwcfgBhyveOptions("/var/db/a,b/os/ignition/cp1.ign")).toThrow('has the part "a,b"');
    expect(() => fwcfgBhyveOptions("/var/db/$(reboot)/cp1.ign")).toThrow(KubehyveError);
    expect(fwcfgBhyveOptions("/var/db/kubehyve/lab/os/ignition/cp1.ign")).toBe(
      "-o lpc.fwcfg=qemu -f name=opt/com.coreos/config,file=/var/db/kubehyve/lab/os/ignition/cp1.ign",
    );
  });
});

describe("parseSha256Output", () => {
  const empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  test("reads FreeBSD's `sha256 -q FILE`, which prints the digest alone (md5(1), -q)", () => {
    expect(parseSha256Output(`${empty}\n`)).toBe(empty);
  });
  test("reads GNU `sha256sum FILE`, digest, two blanks and the name, escaped or not", () => {
    expect(parseSha256Output(`${empty}  /var/db/kubehyve/lab/os/cache/x.qcow2.xz\n`)).toBe(empty);
    // coreutils escapes a name holding a newline or backslash and marks the line with a backslash.
    expect(parseSha256Output(`\\${empty}  /tmp/a\\nb\n`)).toBe(empty);
  });
  test("gives nothing for output without a digest", () => {
    expect(parseSha256Output("sha256: /nope: No such file or directory\n")).toBeUndefined();
    expect(parseSha256Output("")).toBeUndefined();
    expect(parseSha256Output(empty.slice(1))).toBeUndefined();
  });
});
