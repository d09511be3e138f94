/**
 * kube-proxy in IPVS mode puts every Service address on its kube-ipvs0 interface, so with strictARP
 * off every node answers ARP for every LoadBalancer address and the LAN learns the wrong MAC: the
 * MetalLB docs' "Preparation" section (website/content/installation/_index.md) asks for
 * `strictARP: true`, which Kubespray sets from `kube_proxy_strict_arp` (this stage asks for it
 * through k8s:kubespray-vars). Kubespray writes kube-proxy's KubeProxyConfiguration into the
 * ConfigMap kube-system/kube-proxy, key config.conf (roles/kubernetes/control-plane, kubeadm's
 * kube-proxy addon).
 */
import { type Diagnostic, diag, type KubeObject, parseYaml } from "kubehyve";

interface KubeProxyConfiguration {
  mode?: string;
  ipvs?: { strictARP?: boolean };
}

/** The finding for kube-proxy's ConfigMap, or none when it is not there or not in IPVS mode. */
export function strictArpFinding(configMap: KubeObject | undefined, kubeconfigPath: string): Diagnostic[] {
  const text = (configMap as { data?: Record<string, string> } | undefined)?.data?.["config.conf"];
  if (text === undefined) return [];
  let config: KubeProxyConfiguration;
  try {
    config = (parseYaml(text) ?? {}) as KubeProxyConfiguration;
  } catch (error) {
    return [
      diag.warn("metallb.kube-proxy-unreadable", "kube-proxy's configuration cannot be read", {
        detail: (error as Error).message,
        hint: `kubectl --kubeconfig ${kubeconfigPath} -n kube-system get configmap kube-proxy -o yaml`,
      }),
    ];
  }
  if (config.mode !== "ipvs" || config.ipvs?.strictARP === true) return [];
  return [
    diag.error(
      "metallb.strict-arp-off",
      "kube-proxy runs in IPVS mode with strictARP off: every node answers ARP for every LoadBalancer address",
      {
        detail:
          "MetalLB announces each address from one node; with strictARP off the others answer too, and clients on the LAN reach a node that drops the traffic.",
        hint: "kubehyve up --only k8s (the k8s stage sets kube_proxy_strict_arp: true for this stage), or set ipvs.strictARP: true in the ConfigMap kube-system/kube-proxy and restart kube-proxy",
      },
    ),
  ];
}
