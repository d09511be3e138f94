/**
 * What verify (and so doctor) asks each node over SSH, read-only: the Python Ansible will use, and
 * whether the kubelet can write its volume plugin directory.
 */
import { checkEach, type Diagnostic, diag, type NodeSpec, type Target } from "kubehyve";

/**
 * ansible-core 2.18, which Kubespray v2.31.0 requires (playbooks/ansible_version.yml), supports
 * Python 3.8 to 3.13 on managed nodes (ansible-core's support matrix for 2.18). Fedora 43 and
 * later ship a newer python3, which Kubespray layers on Fedora CoreOS.
 */
export const NEWEST_NODE_PYTHON: readonly [number, number] = [3, 13];

/** Kubespray writes the kubelet's flags here (roles/kubernetes/node/tasks/kubelet.yml, mode 0600). */
export const KUBELET_ENV = "/etc/kubernetes/kubelet.env";
/** The kubelet's own default when no --volume-plugin-dir is given (kubelet's --help). */
export const KUBELET_DEFAULT_VOLUME_PLUGIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/";

const PROBE_TIMEOUT_MS = 20_000;

/** "Python 3.14.0" → [3, 14, 0]. */
export function parsePythonVersion(output: string): number[] | undefined {
  const m = /Python (\d+)\.(\d+)(?:\.(\d+))?/.exec(output);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

/**
 * The volume plugin directory from kubelet.env: Kubespray's template writes
 * `KUBELET_VOLUME_PLUGIN="--volume-plugin-dir=…"` when kubelet_flexvolumes_plugins_dir is defined
 * (roles/kubernetes/node/templates/kubelet.env.v1beta1.j2); without it the kubelet's default applies.
 */
export function volumePluginDirOf(kubeletEnv: string): string {
  const m = /--volume-plugin-dir=([^\s"']+)/.exec(kubeletEnv);
  return m ? m[1]! : KUBELET_DEFAULT_VOLUME_PLUGIN_DIR;
}

async function pythonOf(node: NodeSpec, target: Target): Promise<Diagnostic> {
  const r = await target.run(["python3", "--version"], { timeoutMs: PROBE_TIMEOUT_MS });
  if (r.code === 255) {
    return diag.error("kubespray.node-unreachable", `node ${node.name} does not answer over SSH`, {
      target: node.name,
      detail: r.stderr.trim(),
      hint: "kubehyve doctor shows the os stage's view of the node",
    });
  }
  const version = parsePythonVersion(`${r.stdout} ${r.stderr}`);
  if (r.code !== 0 || !version) {
    return diag.info(
      "kubespray.node-python",
      `node ${node.name} has no python3 yet: Kubespray's bootstrap layers it`,
      {
        target: node.name,
        hint: "nothing to do: kubehyve up runs Kubespray, whose bootstrap installs it",
      },
    );
  }
  const [major, minor] = version as [number, number];
  const [maxMajor, maxMinor] = NEWEST_NODE_PYTHON;
  const shown = version.join(".");
  if (major > maxMajor || (major === maxMajor && minor > maxMinor)) {
    return diag.warn(
      "kubespray.node-python-unsupported",
      `node ${node.name} has Python ${shown}, newer than ansible-core 2.18 supports (${maxMajor}.${maxMinor})`,
      {
        target: node.name,
        detail:
          "Kubespray v2.31.0 requires ansible-core 2.18, whose modules are supported on node Python 3.8 to 3.13; a newer one may work but is not supported",
        hint: "use a Fedora CoreOS stream based on a Fedora release with Python 3.13 or older, or a Kubespray release that requires a newer ansible-core",
      },
    );
  }
  return diag.ok("kubespray.node-python", `node ${node.name}: Python ${shown}`, { target: node.name });
}

async function volumePluginDir(node: NodeSpec, target: Target): Promise<Diagnostic> {
  // kubelet.env is 0600 root; the kubelet runs as root, so writability is asked as root too (test(1)
  // asks access(2), which says no on a read-only mount such as Fedora CoreOS's /usr).
  const env = await target.run(["sudo", "-n", "cat", KUBELET_ENV], { timeoutMs: PROBE_TIMEOUT_MS });
  if (env.code !== 0) {
    return diag.error("kubespray.kubelet-env-missing", `node ${node.name} has no readable ${KUBELET_ENV}`, {
      target: node.name,
      detail: env.stderr.trim(),
      hint: "kubehyve up runs cluster.yml again",
    });
  }
  const dir = volumePluginDirOf(env.stdout);
  const isDir = await target.run(["sudo", "-n", "test", "-d", dir], { timeoutMs: PROBE_TIMEOUT_MS });
  const writable =
    isDir.code === 0
      ? await target.run(["sudo", "-n", "test", "-w", dir], { timeoutMs: PROBE_TIMEOUT_MS })
      : isDir;
  if (isDir.code !== 0 || writable.code !== 0) {
    return diag.error(
      "kubespray.volume-plugin-dir",
      `node ${node.name}: the kubelet's volume plugin directory ${dir} ${isDir.code !== 0 ? "does not exist" : "is not writable"}`,
      {
        target: node.name,
        detail:
          "Kubespray puts it at /var/lib/kubelet/volumeplugins when /usr is read-only (roles/kubernetes/preinstall/tasks/0020-set_facts.yml); a FlexVolume driver or a CSI driver installing one cannot be written elsewhere",
        hint: "leave kubelet_flexvolumes_plugins_dir to Kubespray (remove it from stages.k8s.extraVars) and run kubehyve up",
      },
    );
  }
  return diag.ok(
    "kubespray.volume-plugin-dir",
    `node ${node.name}: volume plugin directory ${dir} writable`,
    {
      target: node.name,
    },
  );
}

/** The node checks of verify, four nodes at a time, each node under its own limit. */
export async function verifyNodes(
  nodes: readonly NodeSpec[],
  targetOf: (name: string) => Target,
  signal: AbortSignal = new AbortController().signal,
): Promise<Diagnostic[]> {
  return checkEach(
    { signal },
    nodes,
    async (node) => {
      const target = targetOf(node.name);
      const python = await pythonOf(node, target);
      if (python.code === "kubespray.node-unreachable") return [python];
      return [python, await volumePluginDir(node, target)];
    },
    {
      id: "kubespray.node-checks",
      title: (node) => `the Kubespray checks of node ${node.name}`,
      target: (node) => node.name,
      concurrency: 4,
    },
  );
}
