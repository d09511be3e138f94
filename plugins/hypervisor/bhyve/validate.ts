/**
 * The cluster-file rules only this stage knows, run by `config validate` (exit 2) and every command
 * that reads the file, before any host is touched: what vm-bhyve and OpenZFS would refuse later.
 */
import { type Cluster, type Diagnostic, diag, formatSize } from "kubehyve";
import { TEMP_SUFFIX } from "./marks.ts";
import { type BhyveOptions, MAX_DIR_LENGTH, VM_BHYVE_NAME, ZFS_MAX_NAME } from "./options.ts";
import { diskDevOf, disksOf } from "./vmconfig.ts";

/**
 * OpenZFS 2.2's default volblocksize (ZVOL_DEFAULT_BLOCKSIZE, include/sys/fs/zfs.h), the version
 * FreeBSD 14 ships. `zfs create -V` rounds a size up to the block size (cmd/zfs/zfs_main.c,
 * zfs_do_create) and `zfs set volsize` refuses one that is not a multiple (module/zfs/zvol.c,
 * zvol_check_volsize): either way the disk would not be what the cluster file says. Sizes are refused
 * instead of rounded, so that what is declared is what check finds on the host.
 */
export const ZVOL_BLOCK = 16 * 1024;

export function validateCluster({
  cluster,
  options,
}: {
  cluster: Cluster;
  options: BhyveOptions;
}): Diagnostic[] {
  const out: Diagnostic[] = [];
  const dev = diskDevOf(options);
  const dataset = options.vmDir.startsWith("zfs:") ? options.vmDir.slice(4) : undefined;
  cluster.nodes.forEach((node, i) => {
    const path = `nodes[${i}].name`;
    if (!VM_BHYVE_NAME.test(node.name)) {
      out.push(
        diag.error(
          "bhyve.node-name-invalid",
          `${JSON.stringify(node.name)} is not a name vm-bhyve accepts for a VM: at least 2 characters, letters and digits at both ends (vm-bhyve: "invalid virtual machine name")`,
          { path, target: node.name },
        ),
      );
      return;
    }
    const disks = disksOf(node, dev);
    if (dataset) {
      // The longest name kubehyve gives a dataset of this node: a disk copied under a temporary name.
      const longest = `${dataset}/${node.name}/disk${disks.length - 1}${TEMP_SUFFIX}`;
      if (longest.length >= ZFS_MAX_NAME)
        out.push(
          diag.error(
            "bhyve.dataset-name-too-long",
            `the ZFS names of node ${node.name}'s disks (${longest}) would be ${longest.length} characters, ZFS allows fewer than ${ZFS_MAX_NAME}`,
            { path, target: node.name, hint: "use a shorter node name or vmDir dataset" },
          ),
        );
    } else {
      const longest = `${options.vmDir}/${node.name}/disk${disks.length - 1}.img${TEMP_SUFFIX}`;
      if (longest.length >= MAX_DIR_LENGTH + 255)
        out.push(
          diag.error(
            "bhyve.path-too-long",
            `the paths of node ${node.name}'s disks would be ${longest.length} characters long`,
            { path, target: node.name, hint: "use a shorter node name or vmDir" },
          ),
        );
    }
    for (const disk of disks) {
      const at = disk.index === 0 ? `nodes[${i}].disk` : `nodes[${i}].disks[${disk.index - 1}]`;
      if (disk.size === 0) {
        out.push(diag.error("bhyve.disk-size-zero", `a disk of node ${node.name} has size 0`, { path: at }));
      } else if (dev !== "file" && disk.size % ZVOL_BLOCK !== 0) {
        const up = Math.ceil(disk.size / ZVOL_BLOCK) * ZVOL_BLOCK;
        out.push(
          diag.error(
            "bhyve.disk-size-not-block-multiple",
            `disk of ${disk.size} bytes of node ${node.name} is not a multiple of ${formatSize(ZVOL_BLOCK)}, the zvol block size: OpenZFS would round it up (zfs create) or refuse it (zfs set volsize)`,
            {
              path: at,
              target: node.name,
              hint: `use a size in whole MiB or GiB such as 20GiB, or ${up} (the next multiple, in bytes)`,
            },
          ),
        );
      }
    }
  });
  return out;
}
