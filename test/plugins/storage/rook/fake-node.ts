/**
 * A node as check sees it over SSH, answering as Fedora CoreOS's util-linux, kmod and coreutils
 * would, from util-linux's own samples (samples.ts) and real wipefs output.
 */
import { RecordingTarget } from "../../../../src/targets/recording.ts";
import { BLKID_BLUESTORE, LSBLK_SIMPLE_NVME } from "./samples.ts";

/** The upstream lsblk sample as a virtio guest names its disks: sda is the boot disk vda, sdb is vdb. */
export function virtioLsblk(vdbPartitioned: boolean): string {
  const doc = JSON.parse(LSBLK_SIMPLE_NVME.replaceAll("sda", "vda").replaceAll("sdb", "vdb"));
  const vdb = doc.blockdevices.find((d: { name: string }) => d.name === "vdb");
  // As after `wipefs --all`: the disk without its partition.
  if (!vdbPartitioned) delete vdb.children;
  return JSON.stringify(doc);
}

export interface FakeNode {
  target: RecordingTarget;
  disk: { partitioned: boolean; bluestore: boolean };
  kubeletConfig?: string;
}

/** A node answering check's commands as Fedora CoreOS's util-linux, kmod and coreutils would. */
export function fakeNode(name: string): FakeNode {
  const node: FakeNode = {
    target: new RecordingTarget([], `core@${name}`),
    disk: { partitioned: false, bluestore: false },
  };
  node.target
    .on(["lsblk"], () => ({ stdout: virtioLsblk(node.disk.partitioned) }))
    // Real wipefs output of a GPT disk (Debian's util-linux 2.38.1 on an sfdisk-made image, see disks.test.ts).
    .on(["sudo", "-n", "wipefs"], () => ({
      stdout: node.disk.partitioned ? "0x200,,,gpt\n0x31fffffe00,,,gpt\n0x1fe,,,PMBR\n" : "",
    }))
    .on(["sudo", "-n", "blkid"], () =>
      node.disk.bluestore
        ? { stdout: BLKID_BLUESTORE }
        : node.disk.partitioned
          ? { stdout: "ID_PART_TABLE_TYPE=gpt\n" }
          : { code: 2 },
    )
    .on(["sudo", "-n", "modprobe", "--dry-run", "rbd"], { code: 0 })
    .on(["date", "+%s.%N"], () => ({ stdout: `${(Date.now() / 1000).toFixed(9)}\n` }))
    .on(["cat", "--", "/etc/kubernetes/kubelet-config.yaml"], () =>
      node.kubeletConfig
        ? { stdout: node.kubeletConfig }
        : { code: 1, stderr: "cat: /etc/kubernetes/kubelet-config.yaml: No such file or directory\n" },
    )
    .on(["cat", "--"], { code: 1, stderr: "cat: No such file or directory\n" });
  return node;
}
