/**
 * The MAC address of a node's first NIC. The hypervisor stage derives the same one when it creates
 * the VM, so the NetworkManager keyfile can match the NIC by MAC: unlike an interface name, a MAC
 * does not change with the PCI slot bhyve puts the NIC in. `02:` marks a locally administered
 * unicast address; the other five bytes are the start of sha256(`<cluster>/<node>`).
 */
export function nodeMac(clusterName: string, nodeName: string): string {
  const digest = new Bun.CryptoHasher("sha256").update(`${clusterName}/${nodeName}`).digest();
  return ["02", ...Array.from(digest.subarray(0, 5), (b) => b.toString(16).padStart(2, "0"))].join(":");
}
