/**
 * The disk verdict of check, on util-linux's own output: verbatim upstream samples (samples.ts), and
 * the real wipefs and blkid of this machine reading disk images that sfdisk and mkfs.ext4 wrote.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  assessDisk,
  blkidArgv,
  parseBlkidUdev,
  parseLsblk,
  parseWipefs,
  wipeCommand,
  wipefsArgv,
} from "../../../../plugins/storage/rook/disks.ts";
import { MIN_OSD_DISK } from "../../../../plugins/storage/rook/sizing.ts";
import { LocalTarget } from "../../../../src/targets/local.ts";
import { findTool, have } from "../../../lab/prereq.ts";
import { BLKID_BLUESTORE, BLKID_EXT4, LSBLK_SIMPLE_NVME, WIPEFS_BCACHEFS } from "./samples.ts";

const GiB = 1024 ** 3;

describe("parsers of util-linux's output", () => {
  test("lsblk --json: disks with their partitions, sizes in bytes, nulls where udev knows nothing", () => {
    const devices = parseLsblk(LSBLK_SIMPLE_NVME);
    expect(devices.map((d) => `${d.path} ${d.type} ${d.children.length}`)).toEqual([
      "/dev/sda disk 6",
      "/dev/sdb disk 1",
      "/dev/nvme0n1 disk 3",
    ]);
    const sdb = devices[1]!;
    expect(sdb.size).toBe(80026361856);
    expect(sdb.fstype).toBeNull();
    expect(sdb.children[0]).toMatchObject({ path: "/dev/sdb1", type: "part", mountpoint: "/home/archive" });
  });

  test("lsblk output that is not its JSON is an error, not an empty disk list", () => {
    expect(() => parseLsblk("lsblk: unknown column: PTTYPE\n")).toThrow(/printed no JSON/);
    expect(() => parseLsblk("{}")).toThrow(/no blockdevices/);
  });

  test("wipefs --parsable: offset, uuid, label and type of each signature", () => {
    expect(parseWipefs(WIPEFS_BCACHEFS)).toEqual([
      { offset: "0x1018", uuid: "e1cf0710-c3cb-498b-9453-d5f3e7dbf9cc", label: "", type: "bcachefs" },
      { offset: "0x200018", uuid: "e1cf0710-c3cb-498b-9453-d5f3e7dbf9cc", label: "", type: "bcachefs" },
      { offset: "0x1300018", uuid: "e1cf0710-c3cb-498b-9453-d5f3e7dbf9cc", label: "", type: "bcachefs" },
    ]);
    expect(parseWipefs("0x438,uuid-1,my,odd,label,ext4\n")[0]).toMatchObject({
      label: "my,odd,label",
      type: "ext4",
    });
    expect(parseWipefs("")).toEqual([]);
  });

  test("blkid -p -o udev: the ID_ variables", () => {
    expect(parseBlkidUdev(BLKID_BLUESTORE)).toEqual({ ID_FS_TYPE: "ceph_bluestore", ID_FS_USAGE: "other" });
    expect(parseBlkidUdev(BLKID_EXT4).ID_FS_TYPE).toBe("ext4");
  });
});

describe("the verdict on a data disk", () => {
  const devices = parseLsblk(LSBLK_SIMPLE_NVME);
  const sdb = devices.find((d) => d.path === "/dev/sdb")!;
  const empty = { ...sdb, children: [] };

  test("a disk with a mounted partition is in use, and never taken (the boot disk looks like this)", () => {
    const v = assessDisk({ device: sdb, signatures: [], probe: {} }, MIN_OSD_DISK, false);
    expect(v.free).toBe(false);
    expect(v.reasons).toEqual([
      "is in use: /dev/sdb1 is mounted at /home/archive (the boot disk?)",
      "has partitions sdb1",
    ]);
  });

  test("an empty whole disk of 5 GiB or more is free", () => {
    expect(assessDisk({ device: empty, signatures: [], probe: {} }, MIN_OSD_DISK, false)).toEqual({
      free: true,
      ours: false,
      reasons: [],
    });
    const small = { ...empty, size: 4 * GiB };
    expect(assessDisk({ device: small, signatures: [], probe: {} }, MIN_OSD_DISK, false).reasons).toEqual([
      `has only ${4 * GiB} bytes`,
    ]);
  });

  test("a filesystem signature found by wipefs makes a disk unusable", () => {
    const v = assessDisk(
      { device: empty, signatures: parseWipefs(WIPEFS_BCACHEFS), probe: {} },
      MIN_OSD_DISK,
      false,
    );
    expect(v.reasons).toEqual(["carries a signature: bcachefs"]);
  });

  test("an old BlueStore label is reported as such, unless this cluster's OSD is expected there", () => {
    const facts = { device: empty, signatures: [], probe: parseBlkidUdev(BLKID_BLUESTORE) };
    expect(assessDisk(facts, MIN_OSD_DISK, false).reasons).toEqual([
      "carries an old Ceph label (ceph_bluestore)",
    ]);
    expect(assessDisk(facts, MIN_OSD_DISK, true)).toEqual({ free: false, ours: true, reasons: [] });
  });

  test("the commands are argv arrays and the way out is one wipefs line", () => {
    expect(wipefsArgv("/dev/vdb")).toEqual(["sudo", "-n", "wipefs", "--no-act", "--parsable", "/dev/vdb"]);
    expect(blkidArgv("/dev/vdb")).toEqual(["sudo", "-n", "blkid", "--probe", "--output", "udev", "/dev/vdb"]);
    expect(wipeCommand("w1", "/dev/vdb")).toBe("ssh core@w1 sudo wipefs --all /dev/vdb");
  });
});

describe("the real wipefs and blkid on disk images", () => {
  let dir: string;
  const local = new LocalTarget();
  const ok =
    have("sfdisk", "fdisk") &&
    have("wipefs", "util-linux") &&
    have("blkid", "util-linux") &&
    have("mkfs.ext4", "e2fsprogs");

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kubehyve-disks-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function image(name: string): Promise<string> {
    const path = join(dir, name);
    await truncate(path, 64 * 1024 * 1024).catch(async () => {
      await Bun.write(path, "");
      await truncate(path, 64 * 1024 * 1024);
    });
    return path;
  }

  const facts = async (path: string) => {
    const wipefs = await local.run([findTool("wipefs")!, ...wipefsArgv(path).slice(3)]);
    const blkid = await local.run([findTool("blkid")!, ...blkidArgv(path).slice(3)]);
    return {
      wipefs,
      blkid,
      signatures: parseWipefs(wipefs.stdout),
      probe: blkid.code === 0 ? parseBlkidUdev(blkid.stdout) : {},
    };
  };
  const disk = {
    name: "vdb",
    path: "/dev/vdb",
    size: 50 * GiB,
    type: "disk",
    fstype: null,
    pttype: null,
    mountpoint: null,
    children: [],
  };

  test.if(ok)("a GPT partition table is found by both, and the disk is not free", async () => {
    const path = await image("gpt.img");
    const r = await local.run([findTool("sfdisk")!, "--quiet", path], { stdin: "label: gpt\n,,L\n" });
    expect(r.code).toBe(0);
    const f = await facts(path);
    expect(f.signatures.map((s) => s.type)).toEqual(["gpt", "gpt", "PMBR"]);
    expect(f.probe.ID_PART_TABLE_TYPE).toBe("gpt");
    const v = assessDisk({ device: disk, signatures: f.signatures, probe: f.probe }, MIN_OSD_DISK, false);
    expect(v.reasons).toEqual(["has a gpt partition table"]);
  });

  test.if(ok)("an ext4 filesystem is found by both", async () => {
    const path = await image("ext4.img");
    expect((await local.run([findTool("mkfs.ext4")!, "-q", "-F", path])).code).toBe(0);
    const f = await facts(path);
    expect(f.signatures.map((s) => s.type)).toEqual(["ext4"]);
    expect(f.probe.ID_FS_TYPE).toBe("ext4");
    expect(
      assessDisk({ device: disk, signatures: f.signatures, probe: f.probe }, MIN_OSD_DISK, false).reasons,
    ).toEqual(["carries a signature: ext4"]);
  });

  test.if(ok)("a blank disk has nothing: wipefs prints nothing and blkid exits 2", async () => {
    const path = await image("blank.img");
    const f = await facts(path);
    expect(f.wipefs).toMatchObject({ code: 0, stdout: "" });
    expect(f.blkid.code).toBe(2);
    expect(
      assessDisk({ device: disk, signatures: f.signatures, probe: f.probe }, MIN_OSD_DISK, false).free,
    ).toBe(true);
  });
});
