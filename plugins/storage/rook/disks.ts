/**
 * Is a data disk free for an OSD? Parsers of util-linux's output (pure, tested on its own samples)
 * and the verdict. ceph-volume takes only a disk without partitions, filesystem or LVM/Ceph label
 * (ceph-volume util/device.py `Device.available`), so each of those is a reason here too.
 */

/** The command check runs for the block devices: every one, with sizes in bytes. */
export const LSBLK = [
  "lsblk",
  "--json",
  "--bytes",
  "--output",
  "NAME,PATH,SIZE,TYPE,FSTYPE,PTTYPE,MOUNTPOINT",
];

/** wipefs(8) listing the signatures it would erase, as util-linux's own tests call it (tests/ts/wipefs). */
export function wipefsArgv(device: string): string[] {
  return ["sudo", "-n", "wipefs", "--no-act", "--parsable", device];
}

/** blkid(8) low-level probe in udev format (util-linux tests/ts/blkid/low-probe). */
export function blkidArgv(device: string): string[] {
  return ["sudo", "-n", "blkid", "--probe", "--output", "udev", device];
}

/** The one line that frees a disk: wipefs erasing every signature it finds (partition tables included). */
export function wipeCommand(node: string, device: string): string {
  return `ssh core@${node} sudo wipefs --all ${device}`;
}

export interface BlockDevice {
  name: string;
  path: string;
  size: number;
  type: string;
  fstype: string | null;
  pttype: string | null;
  mountpoint: string | null;
  children: BlockDevice[];
}

function str(v: unknown): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}

function toDevice(raw: Record<string, unknown>): BlockDevice {
  const name = str(raw.name) ?? "";
  return {
    name,
    path: str(raw.path) ?? `/dev/${name}`,
    // `--bytes` prints numbers since util-linux 2.33; older ones print strings.
    size: typeof raw.size === "number" ? raw.size : Number(raw.size ?? Number.NaN),
    type: str(raw.type) ?? "",
    fstype: str(raw.fstype),
    pttype: str(raw.pttype),
    mountpoint: str(raw.mountpoint),
    children: Array.isArray(raw.children)
      ? raw.children.map((c) => toDevice(c as Record<string, unknown>))
      : [],
  };
}

/** `lsblk --json` (libsmartcols' JSON: {"blockdevices": [...]} with nested "children"). */
export function parseLsblk(text: string): BlockDevice[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new Error(`lsblk --json printed no JSON: ${(error as Error).message}`);
  }
  const list = (doc as { blockdevices?: unknown }).blockdevices;
  if (!Array.isArray(list)) throw new Error("lsblk --json printed no blockdevices list");
  return list.map((d) => toDevice(d as Record<string, unknown>));
}

export interface Signature {
  offset: string;
  uuid: string;
  label: string;
  type: string;
}

/**
 * `wipefs --parsable`: `offset,uuid,label,type` per signature (wipefs.c, columns of --parsable).
 * The type is the last field and never has a comma; a label might, so the middle is split from both ends.
 */
export function parseWipefs(text: string): Signature[] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("#"))
    .map((line) => {
      const first = line.indexOf(",");
      const last = line.lastIndexOf(",");
      const second = line.indexOf(",", first + 1);
      if (first < 0 || second < 0 || last <= first) return { offset: line, uuid: "", label: "", type: "" };
      return {
        offset: line.slice(0, first),
        uuid: line.slice(first + 1, second),
        label: line.slice(second + 1, last),
        type: line.slice(last + 1),
      };
    });
}

/** `blkid --probe --output udev`: ID_FS_TYPE=…, ID_PART_TABLE_TYPE=… lines. */
export function parseBlkidUdev(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Signatures of a disk Ceph already used: BlueStore's label, or the LVM that ceph-volume lvm makes. */
export const CEPH_SIGNATURES = new Set(["ceph_bluestore", "LVM2_member"]);

export interface DiskFacts {
  device?: BlockDevice;
  signatures: Signature[];
  probe: Record<string, string>;
}

export interface DiskVerdict {
  free: boolean;
  /** This cluster's OSD already holds the disk. */
  ours: boolean;
  reasons: string[];
}

/**
 * The verdict on one data disk. `osdExpected`: this stage already made the CephCluster that puts an
 * OSD there, so a Ceph label on it is that OSD's and not an old one.
 */
export function assessDisk(facts: DiskFacts, minSize: number, osdExpected: boolean): DiskVerdict {
  const d = facts.device;
  if (!d) return { free: false, ours: false, reasons: ["no such block device"] };
  const reasons: string[] = [];
  if (d.type !== "disk") reasons.push(`is a ${d.type || "device of unknown type"}, not a whole disk`);
  const mounted = [d, ...d.children].find((x) => x.mountpoint);
  if (mounted)
    reasons.push(`is in use: ${mounted.path} is mounted at ${mounted.mountpoint} (the boot disk?)`);
  if (Number.isFinite(d.size) && d.size < minSize) reasons.push(`has only ${d.size} bytes`);
  const types = new Set<string>();
  for (const s of facts.signatures) if (s.type) types.add(s.type);
  if (d.fstype) types.add(d.fstype);
  if (facts.probe.ID_FS_TYPE) types.add(facts.probe.ID_FS_TYPE);
  const ptType = d.pttype ?? facts.probe.ID_PART_TABLE_TYPE;
  const cephOnly =
    types.size > 0 && [...types].every((t) => CEPH_SIGNATURES.has(t)) && !ptType && !d.children.length;
  if (cephOnly && osdExpected && !mounted) return { free: false, ours: true, reasons: [] };
  if (ptType || types.has("gpt") || types.has("dos") || types.has("PMBR")) {
    reasons.push(
      `has a ${ptType ?? [...types].filter((t) => ["gpt", "dos", "PMBR"].includes(t)).join("/")} partition table`,
    );
  }
  if (d.children.length) reasons.push(`has partitions ${d.children.map((c) => c.name).join(", ")}`);
  const fs = [...types].filter((t) => !["gpt", "dos", "PMBR"].includes(t));
  const ceph = fs.filter((t) => CEPH_SIGNATURES.has(t));
  const other = fs.filter((t) => !CEPH_SIGNATURES.has(t));
  if (other.length) reasons.push(`carries a signature: ${other.join(", ")}`);
  if (ceph.length) reasons.push(`carries an old Ceph label (${ceph.join(", ")})`);
  return { free: reasons.length === 0, ours: false, reasons };
}
