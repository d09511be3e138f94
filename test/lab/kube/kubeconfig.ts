/**
 * An admin kubeconfig in the layout Kubespray leaves at /etc/kubernetes/admin.conf (kubeadm's
 * kubeconfig phase): cluster cluster.local, user kubernetes-admin, everything inlined as base64.
 */

// PEM blocks only need their armour here: the parser checks the framing, TLS checks the content.
export const CA = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n";
export const CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n";
export const KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQ\n-----END EC PRIVATE KEY-----\n";
export const b64 = (s: string) => Buffer.from(s).toString("base64");

export function adminConf(server = "https://127.0.0.1:6443"): string {
  return `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ${b64(CA)}
    server: ${server}
  name: cluster.local
contexts:
- context:
    cluster: cluster.local
    user: kubernetes-admin
  name: kubernetes-admin@cluster.local
current-context: kubernetes-admin@cluster.local
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: ${b64(CERT)}
    client-key-data: ${b64(KEY)}
`;
}
