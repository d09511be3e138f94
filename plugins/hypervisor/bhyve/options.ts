/**
 * Options of the hypervisor/bhyve stage in the cluster file (`stages.hypervisor.options`).
 *
 * Every free-form option ends up in a file some shell or vm-bhyve's own parser reads (rc.conf through
 * `sysrc vm_dir=…`, which FreeBSD's sysrc writes unescaped between double quotes; vm-bhyve's
 * .config/system.conf; the guests' configs), in a bhyve device string, or in a path: each one is held
 * to an allowlist here, never escaped after the fact.
 */
import { ownDirProblem, parseSize, plainPathProblem, v } from "kubehyve";

const Size = v.pipe(
  v.string('must be a size such as "2GiB"'),
  v.check((s) => parseSize(s) !== undefined, 'must be a size such as "2GiB" or "512MiB"'),
  v.transform((s) => parseSize(s)!),
);

/** FreeBSD's PATH_MAX (sys/syslimits.h) is 1024 and NAME_MAX 255; room is left for `NODE/diskN.img`. */
export const MAX_DIR_LENGTH = 768;

/** OpenZFS's ZFS_MAX_DATASET_NAME_LEN (include/sys/fs/zfs.h): names are shorter than 256. */
export const ZFS_MAX_NAME = 256;

/**
 * Why `dataset` is not a ZFS dataset name kubehyve accepts, or undefined. OpenZFS's
 * module/zcommon/zfs_namecheck.c (entity_namecheck, pool_namecheck): components of
 * `[A-Za-z0-9-_.: ]`, none empty, `.` or `..`, no leading or trailing `/`, shorter than 256, nested
 * fewer than 50 deep (zfs_max_dataset_nesting), the pool starting with a letter and not `mirror`,
 * `raidz` or `draid`. Stricter on purpose: no blank (vm-bhyve's zfs::init finds the mountpoint with
 * `grep "^DATASET "` and word-splits it), no `%` (ZFS's own temporary clones), and at least
 * POOL/DATASET, since guests directly in a pool's root dataset would mix with everything else there.
 */
export function datasetNameProblem(dataset: string): string | undefined {
  if (dataset.length >= ZFS_MAX_NAME)
    return `the dataset name must be shorter than ${ZFS_MAX_NAME} characters`;
  const parts = dataset.split("/");
  if (parts.length < 2) return "must name a dataset inside a pool: zfs:POOL/DATASET";
  if (parts.length - 1 >= 50) return "the dataset must be nested fewer than 50 levels deep";
  for (const part of parts) {
    if (part === "") return "the dataset name must not have empty components (// or a leading or trailing /)";
    if (part === "." || part === "..") return "the dataset name must not have . or .. components";
    if (!/^[A-Za-z0-9_.:-]+$/.test(part))
      return "a ZFS dataset name may contain only letters, digits and - _ . : (no blanks, no %)";
  }
  const pool = parts[0]!;
  if (!/^[A-Za-z]/.test(pool)) return "the pool name must start with a letter";
  if (["mirror", "raidz", "draid"].includes(pool)) return `${pool} is a reserved pool name`;
  return undefined;
}

/** Why vmDir is not a datastore kubehyve accepts, or undefined. */
export function vmDirProblem(vmDir: string): string | undefined {
  if (vmDir.startsWith("zfs:")) return datasetNameProblem(vmDir.slice(4));
  // vm-bhyve's `vm destroy` removes `$vm_dir/NAME` recursively: never among the system's files.
  const problem = ownDirProblem(vmDir, { maxLength: MAX_DIR_LENGTH });
  return problem && `vmDir ${problem}`;
}

/**
 * vm-bhyve's name rule for guests, switches and datastores, util::check_name in lib/vm-util (v1.7.5,
 * lines 376-389): `^[a-z0-9][.a-z0-9_-]{0,229}[a-z0-9]$`, case-insensitive, on FreeBSD 13 and later
 * (30 instead of 229 before). Two characters at least: a one-letter name is "invalid".
 */
export const VM_BHYVE_NAME = /^[a-z0-9][.a-z0-9_-]{0,229}[a-z0-9]$/i;

export const bhyveOptionsSchema = v.strictObject({
  /** vm-bhyve's vm_dir: `zfs:POOL/DATASET` (recommended) or a directory. */
  vmDir: v.optional(
    v.pipe(
      v.string(),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return;
        const problem = vmDirProblem(dataset.value);
        if (problem) addIssue({ message: `must be "zfs:pool/dataset" or an absolute directory: ${problem}` });
      }),
    ),
    "zfs:zroot/vm",
  ),
  /**
   * The vm-bhyve virtual switch the nodes attach to: vm-bhyve's name rule (util::check_name, at least
   * two characters), narrowed to at most 12 letters, digits and dashes so that its bridge gets the
   * stable name `vm-NAME` (switch::standard::init, lib/vm-switch-standard lines 16-25) and the switch
   * name works as part of the `ports_NAME` variables vm-bhyve keeps in .config/system.conf.
   */
  switch: v.optional(
    v.pipe(
      v.string(),
      v.regex(
        /^[A-Za-z0-9][A-Za-z0-9-]{0,10}[A-Za-z0-9]$/,
        "must be a vm-bhyve switch name: 2 to 12 letters, digits and dashes, not starting or ending with a dash",
      ),
    ),
    "public",
  ),
  /**
   * The host NIC the switch is bridged to; unset: the switch is created without one (and check
   * warns). FreeBSD interface names are shorter than IFNAMSIZ (16, net/if.h).
   */
  nic: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^[a-z][a-z0-9_.]*[0-9]$/, "must be an interface name such as em0 or igb1"),
      v.maxLength(15, "must be at most 15 characters (IFNAMSIZ)"),
    ),
  ),
  /** Memory kept for the host itself; vfs.zfs.arc_max is added when it is set. */
  hostReserve: v.optional(Size, "2GiB"),
  diskType: v.optional(v.picklist(["virtio-blk", "nvme"]), "virtio-blk"),
  /** Disk device type (vm.8 diskN_dev); default sparse-zvol on a ZFS datastore, file otherwise. */
  diskDev: v.optional(v.picklist(["sparse-zvol", "zvol", "file"])),
  /** Start the nodes at boot (rc.conf vm_list). */
  autostart: v.optional(v.boolean(), true),
  /** How long a guest may take to shut down after `vm stop` before it is powered off. */
  stopTimeoutSec: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(86_400)), 120),
  /** How long `vm start` may take to reach "starting bhyve" in the guest's log. */
  startTimeoutSec: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(86_400)), 30),
  /**
   * Where check looks for the UEFI firmware. vm-bhyve's `uefi` loader always boots
   * /usr/local/share/uefi-firmware/BHYVE_UEFI.fd (lib/vm-run, vm::uefi): change this only for a host
   * whose root is elsewhere, such as the simulated host of the tests.
   */
  firmware: v.optional(
    v.pipe(
      v.string(),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return;
        const problem = plainPathProblem(dataset.value, 1000);
        if (problem) addIssue({ message: `firmware ${problem}` });
      }),
    ),
    "/usr/local/share/uefi-firmware/BHYVE_UEFI.fd",
  ),
});

export type BhyveOptions = v.InferOutput<typeof bhyveOptionsSchema>;

/** Options as a test or another caller writes them, before defaults (sizes as strings). */
export type BhyveOptionsInput = v.InferInput<typeof bhyveOptionsSchema>;

export function parseBhyveOptions(input: unknown): BhyveOptions {
  return v.parse(bhyveOptionsSchema, input ?? {});
}
