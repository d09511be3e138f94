/** Options of the hypervisor/bhyve stage in the cluster file (`stages.hypervisor.options`). */
import { parseSize, v } from "kubehyve";

const Size = v.pipe(
  v.string('must be a size such as "2GiB"'),
  v.check((s) => parseSize(s) !== undefined, 'must be a size such as "2GiB" or "512MiB"'),
  v.transform((s) => parseSize(s)!),
);

export const bhyveOptionsSchema = v.strictObject({
  /** vm-bhyve's vm_dir: `zfs:POOL/DATASET` (recommended) or a directory. */
  vmDir: v.optional(
    v.pipe(
      v.string(),
      v.check(
        (s) => /^zfs:[A-Za-z0-9][\w.:-]*(\/[\w.:-]+)+$/.test(s) || s.startsWith("/"),
        'must be "zfs:pool/dataset" or an absolute directory',
      ),
    ),
    "zfs:zroot/vm",
  ),
  /** The vm-bhyve virtual switch the nodes attach to (vm.8: at most 12 characters, letters, digits, dashes). */
  switch: v.optional(
    v.pipe(
      v.string(),
      v.regex(
        /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?$/,
        "must be a vm-bhyve switch name: up to 12 letters, digits and dashes",
      ),
    ),
    "public",
  ),
  /** The host NIC the switch is bridged to; unset: the switch is created without one (and check warns). */
  nic: v.optional(
    v.pipe(v.string(), v.regex(/^[a-z][a-z0-9_.]*[0-9]$/, "must be an interface name such as em0 or igb1")),
  ),
  /** Memory kept for the host itself; vfs.zfs.arc_max is added when it is set. */
  hostReserve: v.optional(Size, "2GiB"),
  diskType: v.optional(v.picklist(["virtio-blk", "nvme"]), "virtio-blk"),
  /** Disk device type (vm.8 diskN_dev); default sparse-zvol on a ZFS datastore, file otherwise. */
  diskDev: v.optional(v.picklist(["sparse-zvol", "zvol", "file"])),
  /** Start the nodes at boot (rc.conf vm_list). */
  autostart: v.optional(v.boolean(), true),
  /** How long a guest may take to shut down after `vm stop` before it is powered off. */
  stopTimeoutSec: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1)), 120),
  /** How long `vm start` may take to reach "starting bhyve" in the guest's log. */
  startTimeoutSec: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1)), 30),
  /**
   * Where check looks for the UEFI firmware. vm-bhyve's `uefi` loader always boots
   * /usr/local/share/uefi-firmware/BHYVE_UEFI.fd (lib/vm-run, vm::uefi): change this only for a host
   * whose root is elsewhere, such as the simulated host of the tests.
   */
  firmware: v.optional(
    v.pipe(v.string(), v.startsWith("/", "must be an absolute path")),
    "/usr/local/share/uefi-firmware/BHYVE_UEFI.fd",
  ),
});

export type BhyveOptions = v.InferOutput<typeof bhyveOptionsSchema>;

/** Options as a test or another caller writes them, before defaults (sizes as strings). */
export type BhyveOptionsInput = v.InferInput<typeof bhyveOptionsSchema>;

export function parseBhyveOptions(input: unknown): BhyveOptions {
  return v.parse(bhyveOptionsSchema, input ?? {});
}
