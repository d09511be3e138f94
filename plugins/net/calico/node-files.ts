/**
 * Files every node needs before Calico runs on it, handed to the os stage through its
 * `os:node-files` hook (written by Ignition at first boot).
 *
 * - A NetworkManager drop-in that leaves Calico's interfaces alone: NetworkManager otherwise takes
 *   the cali* veths, the tunl0 IPIP device and the vxlan.calico device as its own and changes their
 *   routes and addresses under Calico (Calico's docs, "Configure NetworkManager" in the
 *   troubleshooting guide). The list is Calico's; `+=` appends to what other drop-ins set, as
 *   Kubespray's own drop-ins do (roles/kubernetes/preinstall/tasks/0062-networkmanager-unmanaged-
 *   devices.yml writes this file only when it installs Calico itself, which it does not here:
 *   kube_network_plugin is cni).
 * - The reverse-path filter Kubespray's docs/operating_systems/fcos.md asks for with Calico on
 *   Fedora CoreOS, in the file it names.
 */

export const NETWORK_MANAGER_DROP_IN = "/etc/NetworkManager/conf.d/calico.conf";
export const RP_FILTER_SYSCTL = "/etc/sysctl.d/reverse-path-filter.conf";

/** Interface names NetworkManager must not manage: Calico's workload, IPIP, VXLAN and WireGuard devices. */
export const UNMANAGED_DEVICES = [
  "cali*",
  "tunl*",
  "vxlan.calico",
  "vxlan-v6.calico",
  "wireguard.cali",
  "wg-v6.cali",
] as const;

export function networkManagerDropIn(): string {
  return `# Written by kubehyve (net/calico): Calico manages these interfaces, not NetworkManager.
[keyfile]
unmanaged-devices+=${UNMANAGED_DEVICES.map((d) => `interface-name:${d}`).join(";")}
`;
}

export function reversePathFilterSysctl(): string {
  return "net.ipv4.conf.all.rp_filter=1\n";
}

export function calicoNodeFiles(): { path: string; contents: string; mode: number }[] {
  return [
    { path: NETWORK_MANAGER_DROP_IN, contents: networkManagerDropIn(), mode: 0o644 },
    { path: RP_FILTER_SYSCTL, contents: reversePathFilterSysctl(), mode: 0o644 },
  ];
}
