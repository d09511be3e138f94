/**
 * Verbatim output of util-linux, as check reads it from a node. Each sample names its source; none
 * is edited here (tests that need another disk layout derive it in the open, from these).
 */

/**
 * `lsblk --json --bytes --output NAME,PATH,SIZE,TYPE,FSTYPE,PTTYPE,MOUNTPOINT` of Debian 12's
 * util-linux 2.38.1, run with `--sysroot` on util-linux's own test dump
 * tests/ts/lsblk/dumps/simple-nvme.tar.xz (util-linux/util-linux commit 39465c780eed), the machine
 * whose table output is tests/expected/lsblk/lsblk-simple-nvme-basic. FSTYPE and PTTYPE are null:
 * the dump has no udev database.
 */
export const LSBLK_SIMPLE_NVME = `{
   "blockdevices": [
      {
         "name": "sda",
         "path": "/dev/sda",
         "size": 240057409536,
         "type": "disk",
         "fstype": null,
         "pttype": null,
         "mountpoint": null,
         "children": [
            {
               "name": "sda1",
               "path": "/dev/sda1",
               "size": 209715200,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": "/boot/efi"
            },{
               "name": "sda2",
               "path": "/dev/sda2",
               "size": 209715200,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": "/boot"
            },{
               "name": "sda3",
               "path": "/dev/sda3",
               "size": 139912544256,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": null
            },{
               "name": "sda4",
               "path": "/dev/sda4",
               "size": 53687091200,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": "/"
            },{
               "name": "sda5",
               "path": "/dev/sda5",
               "size": 37648072704,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": null
            },{
               "name": "sda6",
               "path": "/dev/sda6",
               "size": 8388608000,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": null
            }
         ]
      },{
         "name": "sdb",
         "path": "/dev/sdb",
         "size": 80026361856,
         "type": "disk",
         "fstype": null,
         "pttype": null,
         "mountpoint": null,
         "children": [
            {
               "name": "sdb1",
               "path": "/dev/sdb1",
               "size": 80025313280,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": "/home/archive"
            }
         ]
      },{
         "name": "nvme0n1",
         "path": "/dev/nvme0n1",
         "size": 240057409536,
         "type": "disk",
         "fstype": null,
         "pttype": null,
         "mountpoint": null,
         "children": [
            {
               "name": "nvme0n1p1",
               "path": "/dev/nvme0n1p1",
               "size": 8355053568,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": null
            },{
               "name": "nvme0n1p2",
               "path": "/dev/nvme0n1p2",
               "size": 214748364800,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": "/home"
            },{
               "name": "nvme0n1p3",
               "path": "/dev/nvme0n1p3",
               "size": 16952925696,
               "type": "part",
               "fstype": null,
               "pttype": null,
               "mountpoint": "/home/test"
            }
         ]
      }
   ]
}
`;

/**
 * `wipefs --parsable --no-act IMAGE` on a bcachefs image: util-linux tests/expected/wipefs/
 * signatures-bcachefs (commit 39465c780eed), the output of tests/ts/wipefs/signatures.
 */
export const WIPEFS_BCACHEFS = `0x1018,e1cf0710-c3cb-498b-9453-d5f3e7dbf9cc,,bcachefs
0x200018,e1cf0710-c3cb-498b-9453-d5f3e7dbf9cc,,bcachefs
0x1300018,e1cf0710-c3cb-498b-9453-d5f3e7dbf9cc,,bcachefs
`;

/**
 * `blkid -p -o udev` of a BlueStore OSD's device: util-linux tests/expected/blkid/low-probe-bluestore
 * (commit 39465c780eed), what an old Ceph OSD leaves on a disk.
 */
export const BLKID_BLUESTORE = `ID_FS_TYPE=ceph_bluestore
ID_FS_USAGE=other
`;

/** The same for an ext4 filesystem: tests/expected/blkid/low-probe-ext4 (commit 39465c780eed). */
export const BLKID_EXT4 = `ID_FS_BLOCK_SIZE=1024
ID_FS_FSBLOCKSIZE=1024
ID_FS_FSLASTBLOCK=65536
ID_FS_FSSIZE=67108864
ID_FS_LABEL=test-ext4
ID_FS_LABEL_ENC=test-ext4
ID_FS_TYPE=ext4
ID_FS_USAGE=filesystem
ID_FS_UUID=ada110f6-bd6d-49db-955d-342c27627b61
ID_FS_UUID_ENC=ada110f6-bd6d-49db-955d-342c27627b61
ID_FS_VERSION=1.0
`;
