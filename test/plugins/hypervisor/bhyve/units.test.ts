import { afterAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listFiles, readTextFiles, writeHostFile } from "../../../../plugins/hypervisor/bhyve/files.ts";
import { parseBhyveOptions } from "../../../../plugins/hypervisor/bhyve/options.ts";
import { mergeNodeBoot, vmChanges } from "../../../../plugins/hypervisor/bhyve/plan.ts";
import { GiB } from "../../../../src/core/units.ts";
import { LocalTarget } from "../../../../src/targets/local.ts";
import { exampleCluster } from "./lab.ts";

describe("options", () => {
  test("fill in the documented defaults and turn sizes into bytes", () => {
    expect(parseBhyveOptions({})).toEqual({
      vmDir: "zfs:zroot/vm",
      switch: "public",
      hostReserve: 2 * GiB,
      diskType: "virtio-blk",
      autostart: true,
      stopTimeoutSec: 120,
      startTimeoutSec: 30,
      firmware: "/usr/local/share/uefi-firmware/BHYVE_UEFI.fd",
    });
    expect(parseBhyveOptions({ hostReserve: "6GiB", vmDir: "/vm" })).toMatchObject({
      hostReserve: 6 * GiB,
      vmDir: "/vm",
    });
  });

  test("refuse a switch name vm-bhyve cannot turn into an interface name, and a relative vmDir", () => {
    expect(() => parseBhyveOptions({ switch: "a-very-long-switch" })).toThrow(/2 to 12 letters/);
    expect(() => parseBhyveOptions({ vmDir: "vms" })).toThrow(/zfs:pool\/dataset/);
    expect(() => parseBhyveOptions({ hostReserve: "lots" })).toThrow(/must be a size/);
  });
});

describe("the node-boot hook's results", () => {
  test("add up their bhyve options and keep the first boot image", () => {
    expect(
      mergeNodeBoot([
        { bhyveOptions: "-f name=opt/com.coreos/config,file=/vm/cp1/ignition.json" },
        undefined,
        { bhyveOptions: " -S ", bootImage: { kind: "file", path: "/img/a.raw" } },
        { bootImage: { kind: "zfs-snapshot", snapshot: "zroot/img@1" } },
      ]),
    ).toEqual({
      bhyveOptions: "-f name=opt/com.coreos/config,file=/vm/cp1/ignition.json -S",
      bootImage: { kind: "file", path: "/img/a.raw" },
    });
    expect(mergeNodeBoot([])).toEqual({});
  });
});

describe("VM changes", () => {
  test("leave alone a node whose name a VM in another datastore already has", () => {
    const cluster = exampleCluster();
    const { changes, diagnostics } = vmChanges(
      cluster,
      "6f1c2a4e-8d3b-4c5e-9f7a-1b2c3d4e5f60",
      parseBhyveOptions({}),
      [
        {
          node: cluster.nodes[0]!,
          dir: "/zroot/vm/cp1",
          listed: {
            name: "cp1",
            datastore: "fantom",
            loader: "uefi",
            cpu: "2",
            memory: "4G",
            state: { kind: "stopped" },
          },
          boot: {},
        },
      ],
    );
    expect(changes).toEqual([]);
    expect(diagnostics.map((d) => d.code)).toEqual(["bhyve.vm-in-other-datastore"]);
  });
});

describe("readTextFiles", () => {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-files-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("reads several files with one grep, keeping similar names, empty lines and empty files apart", async () => {
    const a = join(dir, "cp1.conf");
    const b = join(dir, "cp1.conf.old");
    const empty = join(dir, "empty.conf");
    writeFileSync(a, 'cpu="2"\n\nmemory="4G"\n');
    writeFileSync(b, "cp1.conf:not mine\n");
    writeFileSync(empty, "");
    const files = await readTextFiles(new LocalTarget(), [a, b, empty, join(dir, "missing.conf")]);
    expect(Object.fromEntries(files)).toEqual({
      [a]: 'cpu="2"\n\nmemory="4G"\n',
      [b]: "cp1.conf:not mine\n",
      [empty]: "",
      [join(dir, "missing.conf")]: undefined,
    });
  });
});

describe("readTextFiles, with a missing file whose name begins with a present one's", () => {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-files-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("still reads the present one", async () => {
    const conf = join(dir, "cp1.conf");
    writeFileSync(conf, 'kubehyve_cluster="x"\n');
    const files = await readTextFiles(new LocalTarget(), [conf, `${conf}.kubehyve-new`]);
    expect(Object.fromEntries(files)).toEqual({
      [conf]: 'kubehyve_cluster="x"\n',
      [`${conf}.kubehyve-new`]: undefined,
    });
  });
});

describe("listFiles", () => {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-ls-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("gives mode and size of what exists and tells a missing file from a failed ls", async () => {
    const disk = join(dir, "disk0.img");
    writeFileSync(disk, "12345");
    chmodSync(disk, 0o600);
    const { files, failed } = await listFiles(new LocalTarget(), [disk, `${disk}.kubehyve-new`]);
    expect(Object.fromEntries(files)).toEqual({
      [disk]: { mode: "-rw-------", size: 5 },
      [`${disk}.kubehyve-new`]: undefined,
    });
    expect(failed).toBeUndefined();
    // The stderr of FreeBSD's ls, which does not quote the path.
    const freebsd = {
      name: "hv1",
      run: async () => ({ code: 1, stdout: "", stderr: `ls: ${disk}: No such file or directory\n` }),
      close: async () => {},
    };
    expect((await listFiles(freebsd, [disk])).failed).toBeUndefined();
    const broken = { ...freebsd, run: async () => ({ code: 124, stdout: "", stderr: "timed out\n" }) };
    expect((await listFiles(broken, [disk])).failed).toBe("ls -lnd exited 124: timed out");
  });
});

describe("writeHostFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-write-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("replaces a link lying at its temporary name instead of writing where it leads", async () => {
    const conf = join(dir, "cp1.conf");
    const victim = join(dir, "rc.conf");
    writeFileSync(victim, 'hostname="hv1"\n');
    symlinkSync(victim, `${conf}.kubehyve-new`);
    await writeHostFile(new LocalTarget(), conf, 'cpu="2"\n');
    expect(readFileSync(victim, "utf8")).toBe('hostname="hv1"\n');
    expect(readFileSync(conf, "utf8")).toBe('cpu="2"\n');
    expect(existsSync(`${conf}.kubehyve-new`)).toBe(false);
  });
});
