/**
 * What a node is known by below the operating system, derived from the cluster's and the node's
 * names so that a rebuilt node keeps it (DHCP reservations, ARP caches and the NetworkManager
 * keyfile that matches the NIC by MAC all survive `down`/`up`). Computed once, when the cluster file
 * is read: the hypervisor stage writes these into the VM and the os stage matches them, so the two
 * can never disagree. Hashed with Bun's own hasher: node:crypto alone costs a cold start some
 * milliseconds and megabytes, and every command that reads a cluster file computes these.
 */

/**
 * A locally administered, unicast MAC: `02` (the locally administered bit set, the multicast bit
 * clear) followed by the first five bytes of sha256("CLUSTER/NODE"). vm-bhyve's own OUI 58:9c:fc is
 * avoided because vm-bhyve hands out addresses from it at random.
 */
export function nodeMac(cluster: string, node: string): string {
  const hash = new Bun.CryptoHasher("sha256").update(`${cluster}/${node}`).digest();
  return ["02", ...[...hash.subarray(0, 5)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

/** A name-based UUID (RFC 9562 version 5 layout over sha256) for the guest's SMBIOS, stable like the MAC. */
export function nodeUuid(cluster: string, node: string): string {
  const hash = new Bun.CryptoHasher("sha256").update(`kubehyve-smbios/${cluster}/${node}`).digest();
  const b = [...hash.subarray(0, 16)];
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = b.map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
