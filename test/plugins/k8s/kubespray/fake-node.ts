/**
 * A node for verify's SSH probes: a real sshd on loopback whose session PATH starts with two shims.
 * `sudo` is the real sudo, with every absolute path that exists under the node's root directory
 * moved there (so `sudo -n test -w /var/lib/kubelet/volumeplugins` asks the real test(1), as root,
 * about the node's directory); `python3` answers `--version` as the node's Python would.
 */
import { chmod, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { NodeSpec } from "../../../../src/core/model.ts";
import { SshTarget } from "../../../../src/targets/ssh.ts";
import type { Target } from "../../../../src/targets/target.ts";
import { findTool } from "../../../lab/prereq.ts";
import { type Sshd, startSshd } from "../../../lab/sshd.ts";

export interface FakeNode {
  sshd: Sshd;
  root: string;
  write(path: string, content: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  target(node: NodeSpec, stateDir: string): Target;
}

export async function startFakeNode(base: string, python = "Python 3.13.5"): Promise<FakeNode> {
  const dir = await mkdtemp(join(base, "node-"));
  await chmod(dir, 0o755);
  const bin = join(dir, "bin");
  const root = join(dir, "root");
  await mkdir(bin, { recursive: true });
  await mkdir(root, { recursive: true });
  const sudo = findTool("sudo");
  if (!sudo) throw new Error("sudo is needed: install the Debian package sudo");
  await writeFile(
    join(bin, "sudo"),
    `#!/bin/sh\nroot='${root}'\nfor a; do shift; if [ -e "$root$a" ]; then set -- "$@" "$root$a"; else set -- "$@" "$a"; fi; done\nexec '${sudo}' "$@"\n`,
    { mode: 0o755 },
  );
  await writeFile(join(bin, "python3"), `#!/bin/sh\necho '${python}'\n`, { mode: 0o755 });
  const sshd = await startSshd({ env: { PATH: `${bin}:/usr/local/bin:/usr/bin:/bin` } });
  return {
    sshd,
    root,
    async write(path, content) {
      await mkdir(join(root, path, ".."), { recursive: true });
      await writeFile(join(root, path), content);
    },
    async mkdir(path) {
      await mkdir(join(root, path), { recursive: true });
    },
    target: (node, stateDir) =>
      new SshTarget({
        user: sshd.user,
        host: sshd.host,
        port: sshd.port,
        identityFile: sshd.identityFile,
        stateDir,
        name: `core@${node.name}`,
      }),
  };
}

/** kubelet.env as Kubespray v2.31.0's template renders it on Fedora CoreOS (read-only /usr). */
export const KUBELET_ENV_FCOS = [
  'KUBE_LOG_LEVEL="--v=2"',
  'KUBELET_ADDRESS="--node-ip=192.168.1.21"',
  "",
  'KUBELET_ARGS="--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \\',
  "--config=/etc/kubernetes/kubelet-config.yaml \\",
  "--kubeconfig=/etc/kubernetes/kubelet.conf \\",
  '--runtime-cgroups=/system.slice/containerd.service \\\n "',
  'KUBELET_VOLUME_PLUGIN="--volume-plugin-dir=/var/lib/kubelet/volumeplugins"',
  'KUBELET_CLOUDPROVIDER=""',
  "",
  "PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  "",
].join("\n");
