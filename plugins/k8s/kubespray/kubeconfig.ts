/**
 * The admin kubeconfig Kubespray writes to `<inventory>/artifacts/admin.conf` when
 * kubeconfig_localhost is set (roles/kubernetes/client/tasks/main.yml, written with to_nice_yaml),
 * handed over to the state dir with the server on the first control plane's address.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { KubehyveError, writeFileAtomic } from "kubehyve";

export function adminConfPathOf(inventoryDir: string): string {
  return join(inventoryDir, "artifacts", "admin.conf");
}

const SERVER_LINE = /^(\s*)server:\s*(\S+)\s*$/gm;

/**
 * Points every cluster entry at `address`, keeping the scheme and port Kubespray chose. Line-based on
 * purpose: the file is Kubespray's to_nice_yaml output, and everything else in it (certificate data)
 * must stay byte for byte.
 */
export function pointServerAt(kubeconfig: string, address: string): string {
  let found = 0;
  const out = kubeconfig.replace(SERVER_LINE, (_line, indent: string, value: string) => {
    found++;
    const unquoted = value.replace(/^["']|["']$/g, "");
    let url: URL;
    try {
      url = new URL(unquoted);
    } catch {
      throw new KubehyveError(`the kubeconfig's server ${value} is not a URL`);
    }
    const host = address.includes(":") ? `[${address}]` : address;
    return `${indent}server: ${url.protocol}//${host}:${url.port || "443"}`;
  });
  if (found === 0) throw new KubehyveError("the kubeconfig names no cluster server (no `server:` line)");
  return out;
}

/** Copies admin.conf to `dest` (0600, replaced atomically) with its server rewritten. */
export async function handOverKubeconfig(adminConf: string, dest: string, address: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(adminConf, "utf8");
  } catch {
    throw new KubehyveError(
      `Kubespray did not write the admin kubeconfig ${adminConf} (is kubeconfig_localhost set?)`,
    );
  }
  // The cluster's admin credentials: never written through a link planted at a temporary name.
  await writeFileAtomic(dest, pointServerAt(text, address), 0o600);
}
