/**
 * What Kubespray's own checks would reject, found before anything runs: `config validate` (exit 2)
 * instead of a playbook that fails on "Assertion failed" after the VMs were made. The rules are those
 * of roles/validate_inventory/tasks/main.yml at v2.31.0 (each is named after its task there), for the
 * variables this stage writes and the user's extraVars.
 */
import { type Cluster, type Diagnostic, diag } from "kubehyve";
import { baseGroupVars, mergeGroupVars } from "./inventory.ts";
import { KNOWN_RELEASES, type KubesprayOptions } from "./options.ts";
import { directoryOwner, runnerDirProblem, unsafeAnsiblePlaybook } from "./runner.ts";

const SLOT = "k8s";

/** Kubespray's defaults for what its checks read (roles/kubespray_defaults/defaults/main/main.yml). */
const DEFAULTS: Record<string, unknown> = {
  ipv4_stack: true,
  kube_network_node_prefix: 24,
  kubelet_max_pods: 110,
  dns_mode: "coredns",
  cert_management: "script",
  resolvconf_mode: "host_resolvconf",
  etcd_deployment_type: "host",
  cloud_provider: "",
  download_run_once: false,
  download_localhost: false,
  kata_containers_enabled: false,
  gvisor_enabled: false,
  kube_external_ca_mode: false,
  auto_renew_certificates: false,
};

/** "Stop if known booleans are set as strings": the list that task asserts. */
const ASSERTED_BOOLEANS = [
  "download_run_once",
  "download_always_pull",
  "helm_enabled",
  "openstack_lbaas_enabled",
];
/**
 * Booleans the same file tests bare (`when: download_localhost`, `when: not ignore_assert_errors`):
 * the string "false" is true there, so a quoted value silently does the opposite.
 */
const BARE_BOOLEANS = [
  "ignore_assert_errors",
  "download_localhost",
  "kata_containers_enabled",
  "gvisor_enabled",
  "kube_external_ca_mode",
  "auto_renew_certificates",
];

/** "Stop if unsupported options selected". */
const CHOICES: Record<string, readonly string[]> = {
  kube_network_plugin: [
    "calico",
    "flannel",
    "cloud",
    "cilium",
    "cni",
    "kube-ovn",
    "kube-router",
    "macvlan",
    "custom_cni",
    "none",
  ],
  dns_mode: ["coredns", "coredns_dual", "manual", "none"],
  kube_proxy_mode: ["iptables", "ipvs", "nftables"],
  cert_management: ["script", "none"],
  resolvconf_mode: ["docker_dns", "host_resolvconf", "none"],
  etcd_deployment_type: ["host", "docker", "kubeadm"],
  container_manager: ["docker", "crio", "containerd"],
};

/** "Fail if removed variables are used" at v2.31.0. */
const REMOVED_VARS = ["kubelet_static_pod_path"];

/** Variables the stage sets from elsewhere in the cluster file, which extraVars must not set. */
const OWNED: Record<string, string> = {
  kube_version: "stages.k8s.kubernetesVersion",
  etcd_member_name: "the node's name (kubehyve sets it per etcd member)",
  // The admin kubeconfig kubehyve hands over is the one Kubespray writes to artifacts_dir when
  // kubeconfig_localhost is on (roles/kubernetes/client: defaults/main.yml, tasks/main.yml): without
  // either, a whole install ends with no kubeconfig.
  kubeconfig_localhost:
    "its handover of the admin kubeconfig (Kubespray copies it to the inventory's artifacts/ only then)",
  artifacts_dir: "its handover of the admin kubeconfig (taken from the inventory's artifacts/)",
};

const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

interface Cidr {
  address: number;
  prefix: number;
}

function parseCidr(text: unknown): Cidr | undefined {
  if (typeof text !== "string") return undefined;
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(text);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255) || prefix > 32) return undefined;
  return { address: octets.reduce((a, o) => a * 256 + o, 0), prefix };
}

function isNetwork(c: Cidr): boolean {
  return c.address % 2 ** (32 - c.prefix) === 0;
}

function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const size = 2 ** (32 - p);
  return Math.floor(a.address / size) === Math.floor(b.address / size);
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(".").map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The Kubespray variables as the playbooks will see them, checked. `extraVarKeys` are the names the
 * user set (their diagnostics point at `stages.k8s.extraVars.<name>`); `nodeCount` is the size of the
 * k8s_cluster group. Used by validate() with the stage's own variables and by check() once other
 * stages' hook answers are in too.
 */
export function checkKubesprayVars(
  vars: Record<string, unknown>,
  input: { extraVarKeys: ReadonlySet<string>; nodeCount: number; kubesprayVersion: string },
): Diagnostic[] {
  const found: Diagnostic[] = [];
  const get = (name: string): unknown => (name in vars ? vars[name] : DEFAULTS[name]);
  const pathOf = (name: string): string | undefined => {
    if (input.extraVarKeys.has(name)) return `stages.${SLOT}.extraVars.${name}`;
    if (name === "kube_pods_subnet") return "network.podCidr";
    if (name === "kube_service_addresses") return "network.serviceCidr";
    if (name === "kube_version") return `stages.${SLOT}.kubernetesVersion`;
    return undefined;
  };
  const error = (code: string, name: string, summary: string, task: string, hint?: string) =>
    found.push(
      diag.error(`kubespray.${code}`, summary, {
        detail: `Kubespray's roles/validate_inventory would stop here: "${task}"`,
        hint,
        path: pathOf(name),
      }),
    );

  for (const name of [...ASSERTED_BOOLEANS, ...BARE_BOOLEANS]) {
    if (!(name in vars)) continue;
    const value = vars[name];
    if (typeof value !== "boolean") {
      error(
        "var-not-boolean",
        name,
        `${name} must be true or false, not ${JSON.stringify(value)}`,
        ASSERTED_BOOLEANS.includes(name)
          ? "Stop if known booleans are set as strings"
          : `a bare "when: ${name}" reads the string ${JSON.stringify(value)} as true`,
        `write ${name}: ${String(value).toLowerCase() === "false" || value === 0 || value === "no" ? "false" : "true"} (no quotes)`,
      );
    }
  }
  for (const [name, allowed] of Object.entries(CHOICES)) {
    const value = get(name);
    if (value === undefined) continue;
    if (typeof value !== "string" || !allowed.includes(value)) {
      error(
        "var-unsupported",
        name,
        `${name} is ${JSON.stringify(value)}; Kubespray supports ${allowed.join(", ")}`,
        "Stop if unsupported options selected",
      );
    }
  }
  if (get("etcd_deployment_type") === "docker" && get("container_manager") !== "docker") {
    error(
      "var-unsupported",
      "etcd_deployment_type",
      'etcd_deployment_type "docker" needs container_manager "docker"',
      "Stop if unsupported options selected",
    );
  }
  for (const name of REMOVED_VARS) {
    if (name in vars)
      error("var-removed", name, `${name} was removed from Kubespray`, "Fail if removed variables are used");
  }

  const ipv4 = get("ipv4_stack") !== false && get("ipv4_stack") !== "false";
  const pods = parseCidr(get("kube_pods_subnet"));
  const services = parseCidr(get("kube_service_addresses"));
  if (ipv4) {
    for (const [name, cidr] of [
      ["kube_service_addresses", services],
      ["kube_pods_subnet", pods],
    ] as const) {
      if (!cidr || !isNetwork(cidr)) {
        error(
          "var-not-network",
          name,
          `${name} = ${JSON.stringify(get(name))} is not a network range (an address with its host bits zero, and a prefix)`,
          `Check that ${name} is a network range`,
        );
      }
    }
    if (pods && services && overlaps(pods, services)) {
      error(
        "var-overlap",
        "kube_pods_subnet",
        `kube_pods_subnet ${get("kube_pods_subnet")} overlaps kube_service_addresses ${get("kube_service_addresses")}`,
        "Check that kube_pods_subnet does not collide with kube_service_addresses",
      );
    }
  }

  const plugin = get("kube_network_plugin");
  const prefix = get("kube_network_node_prefix");
  if (!(typeof prefix === "number" && Number.isInteger(prefix) && prefix >= 0 && prefix <= 32)) {
    // The node-count assert computes `2 ** (kube_network_node_prefix - …)` without `| int`.
    error(
      "var-not-integer",
      "kube_network_node_prefix",
      `kube_network_node_prefix must be a prefix length from 0 to 32, not ${JSON.stringify(prefix)}`,
      "Check that ipv4 IP range is enough for the nodes",
    );
  } else if (ipv4 && plugin !== "calico") {
    if (pods && 2 ** (prefix - pods.prefix) < input.nodeCount) {
      const room = prefix < pods.prefix ? 0 : 2 ** (prefix - pods.prefix);
      error(
        "pod-cidr-too-small",
        input.extraVarKeys.has("kube_network_node_prefix") ? "kube_network_node_prefix" : "kube_pods_subnet",
        `the pod network ${get("kube_pods_subnet")} holds ${room} node range${room === 1 ? "" : "s"} of /${prefix}, fewer than the ${input.nodeCount} nodes`,
        "Check that ipv4 IP range is enough for the nodes",
        `widen network.podCidr to /${Math.max(0, prefix - Math.ceil(Math.log2(input.nodeCount)))} or set extraVars.kube_network_node_prefix higher`,
      );
    }
    const maxPods = Number(get("kubelet_max_pods"));
    if (plugin !== "none" && Number.isFinite(maxPods) && maxPods > 2 ** (32 - prefix) - 2) {
      error(
        "node-prefix-too-small",
        input.extraVarKeys.has("kubelet_max_pods") ? "kubelet_max_pods" : "kube_network_node_prefix",
        `a /${prefix} per node has ${Math.max(0, 2 ** (32 - prefix) - 2)} pod addresses, fewer than kubelet_max_pods ${maxPods}`,
        "Guarantee that enough network address space is available for all pods",
        "lower extraVars.kube_network_node_prefix (a larger range per node) or kubelet_max_pods",
      );
    }
  }

  const known = KNOWN_RELEASES[input.kubesprayVersion];
  const kubeVersion = vars.kube_version;
  if (known && typeof kubeVersion === "string" && !known.kubernetesVersions.includes(kubeVersion)) {
    const list = known.kubernetesVersions;
    found.push(
      diag.error(
        "kubespray.kubernetes-version-unsupported",
        `Kubespray ${input.kubesprayVersion} cannot install Kubernetes ${kubeVersion}: it has checksums for ${list[0]} to ${list.at(-1)} only`,
        {
          detail: `roles/kubespray_defaults/vars/main/checksums.yml lists: ${list.join(", ")}`,
          hint: `set stages.k8s.kubernetesVersion to one of them (default ${list.at(-1)}), or pick the Kubespray release that has ${kubeVersion}`,
          path: pathOf("kube_version"),
        },
      ),
    );
  }

  if (get("download_localhost") === true && get("download_run_once") !== true) {
    error(
      "var-conflict",
      "download_localhost",
      "download_localhost needs download_run_once: true",
      "Stop if download_localhost is enabled but download_run_once is not",
    );
  }
  if (get("kata_containers_enabled") === true && get("container_manager") === "docker") {
    error(
      "var-conflict",
      "kata_containers_enabled",
      "kata_containers_enabled does not work with container_manager docker",
      "Stop if kata_containers_enabled is enabled when container_manager is docker",
    );
  }
  if (get("gvisor_enabled") === true && get("container_manager") !== "containerd") {
    error(
      "var-conflict",
      "gvisor_enabled",
      "gvisor_enabled needs container_manager containerd",
      "Stop if gvisor_enabled is enabled when container_manager is not containerd",
    );
  }
  if (get("kube_external_ca_mode") === true && get("auto_renew_certificates") === true) {
    error(
      "var-conflict",
      "auto_renew_certificates",
      "auto_renew_certificates must be off when kube_external_ca_mode is on",
      "Stop if auto_renew_certificates is enabled when certificates are managed externally",
    );
  }
  const cloud = get("cloud_provider");
  if (cloud && cloud !== "external") {
    error(
      "var-unsupported",
      "cloud_provider",
      `cloud_provider must be "external" or empty, not ${JSON.stringify(cloud)}`,
      "Check cloud_provider value",
    );
  }
  const containerd = get("containerd_version");
  if (
    typeof containerd === "string" &&
    !["latest", "edge", "stable"].includes(containerd) &&
    get("container_manager") === "containerd" &&
    compareVersions(containerd, "1.3.7") < 0
  ) {
    error(
      "var-too-old",
      "containerd_version",
      `containerd_version ${containerd} is older than 1.3.7`,
      "Ensure minimum containerd version",
    );
  }
  return found;
}

/** Every string in `value` (map keys too), with where it is. */
function* stringsIn(value: unknown, path: string): Generator<{ path: string; text: string }> {
  if (typeof value === "string") yield { path, text: value };
  else if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) yield* stringsIn(item, `${path}[${i}]`);
  } else if (typeof value === "object" && value !== null) {
    for (const [k, item] of Object.entries(value)) {
      yield { path, text: k };
      yield* stringsIn(item, `${path}.${k}`);
    }
  }
}

/** The first string in `value` that Jinja2 would read as a template, with where it is. */
function templateIn(value: unknown, path: string): { path: string; text: string } | undefined {
  for (const found of stringsIn(value, path)) if (/\{[{%#]/.test(found.text)) return found;
  return undefined;
}

/**
 * Other stages' answers to k8s:kubespray-vars held to the rules of extraVars: no connection setting
 * (`ansible_connection: local` would run every task on this machine, as root), none of kubehyve's
 * own variables, only variable names. What breaks them is left out of the group vars and reported;
 * answers that are not maps are mergeGroupVars' to report.
 */
export function screenHookAnswers(answers: readonly unknown[]): {
  answers: unknown[];
  diagnostics: Diagnostic[];
} {
  const diagnostics: Diagnostic[] = [];
  const said = (what: string) =>
    diagnostics.push(
      diag.error("kubespray.hook-vars-invalid", `a stage answered k8s:kubespray-vars with ${what}`),
    );
  const screened = answers.map((answer) => {
    if (!answer || typeof answer !== "object" || Array.isArray(answer)) return answer;
    const kept: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(answer)) {
      if (!VAR_NAME.test(key)) said(`${JSON.stringify(key)}, which is not an Ansible variable name`);
      else if (key.startsWith("ansible_"))
        said(`${key}, a connection setting, which other stages may not change`);
      else if (key in OWNED) said(`${key}, which kubehyve sets from ${OWNED[key]}`);
      else kept[key] = value;
    }
    return kept;
  });
  return { answers: screened, diagnostics };
}

/**
 * Node names (DNS labels) that would name something else in Kubespray's host patterns at v2.31.0:
 * its groups and Ansible's own, and the host Ansible means by localhost.
 */
const TAKEN_NAMES: Readonly<Record<string, string>> = {
  all: "Kubespray's plays for `hosts: all` would run on this node alone",
  etcd: "the plays for the etcd group would run on this node instead of the control planes",
  bastion:
    "playbooks/boilerplate.yml's `hosts: bastion[0]` would take it for an SSH bastion, whose setup then fails for want of a bastion group",
  localhost:
    "the plays and tasks Kubespray runs on this machine (`hosts: localhost`, `delegate_to: localhost`) would run on the node over ssh",
  ungrouped: "it is the name of Ansible's group of hosts in no other group",
};

/** The stage's rules for the whole cluster file (Plugin.validate). Pure, except for reading runner.dir. */
export function validateStage(input: { cluster: Cluster; options: KubesprayOptions }): Diagnostic[] {
  const { cluster, options } = input;
  const found: Diagnostic[] = [];
  const controlPlanes = cluster.nodes.filter((n) => n.role === "control-plane").length;
  if (controlPlanes > 0 && controlPlanes % 2 === 0) {
    found.push(
      diag.error(
        "kubespray.etcd-even-members",
        `${controlPlanes} control-plane nodes make an even number of etcd members, which Kubespray refuses`,
        {
          detail:
            'roles/validate_inventory asserts "Stop if even number of etcd hosts" (etcd runs stacked on the control planes): etcd needs a majority, and an even count tolerates no more failures than one member fewer',
          hint: `use ${controlPlanes - 1} or ${controlPlanes + 1} control-plane nodes`,
          path: "nodes",
        },
      ),
    );
  }

  for (const [i, node] of cluster.nodes.entries()) {
    const why = TAKEN_NAMES[node.name];
    if (!why) continue;
    found.push(
      diag.error(
        "kubespray.node-name-taken",
        `the node name ${node.name} is one Ansible reads as something else in Kubespray's playbooks: ${why}`,
        {
          detail:
            "a host of the inventory wins over a group of its name in every host pattern (ansible-core stable-2.18, lib/ansible/inventory/manager.py _evaluate_patterns), and the node's name is its inventory name",
          hint: "give the node another name",
          path: `nodes[${i}].name`,
        },
      ),
    );
  }

  const known = KNOWN_RELEASES[options.version];
  if (!known) {
    found.push(
      diag.warn(
        "kubespray.release-unknown",
        `kubehyve was tested with Kubespray ${Object.keys(KNOWN_RELEASES).join(", ")}, not ${options.version}`,
        {
          detail: "the Kubernetes versions and variables of that release cannot be checked before it runs",
          path: `stages.${SLOT}.version`,
        },
      ),
    );
    if (!options.release["tree-sha256-v1"]) {
      found.push(
        diag.error(
          "kubespray.release-pin-missing",
          `no tree-sha256-v1 digest is known for Kubespray ${options.version}`,
          {
            detail:
              "kubehyve runs nothing it downloaded unverified; GitHub's archives have no stable sha256, so their content is pinned",
            hint: `set stages.${SLOT}.release.tree-sha256-v1 (README.md of the k8s/kubespray stage shows how to compute it from the tag with git)`,
            path: `stages.${SLOT}.release.tree-sha256-v1`,
          },
        ),
      );
    }
  }

  for (const key of Object.keys(options.extraVars)) {
    const path = `stages.${SLOT}.extraVars.${key}`;
    if (!VAR_NAME.test(key)) {
      found.push(
        diag.error("kubespray.var-name", `${JSON.stringify(key)} is not an Ansible variable name`, { path }),
      );
    } else if (key.startsWith("ansible_")) {
      found.push(
        diag.error(
          "kubespray.var-connection",
          `${key} is a connection setting, which extraVars may not change`,
          {
            hint: `set stages.${SLOT}.ssh instead`,
            path,
          },
        ),
      );
    } else if (key in OWNED) {
      found.push(diag.error("kubespray.var-owned", `${key} is set by kubehyve from ${OWNED[key]}`, { path }));
    }
    // A lone UTF-16 surrogate (a "\ud800" escape in the cluster file) is no Unicode text: PyYAML
    // refuses it even escaped, so Ansible could not read the group vars at all.
    const broken = [...stringsIn(options.extraVars[key], path)].find((s) => /\p{Surrogate}/u.test(s.text));
    if (broken) {
      found.push(
        diag.error(
          "kubespray.var-not-text",
          `${broken.path} holds a lone UTF-16 surrogate, which is no Unicode text`,
          {
            detail:
              "Ansible's YAML reader refuses it even escaped, so every playbook would stop reading the group vars",
            path: broken.path,
          },
        ),
      );
    }
    const template = templateIn(options.extraVars[key], path);
    if (template) {
      found.push(
        diag.warn(
          "kubespray.var-template",
          `${template.path} holds a Jinja2 template, which Kubespray gets as plain text`,
          {
            detail: `${JSON.stringify(template.text.slice(0, 80))}: kubehyve writes extraVars as values tagged !unsafe, because a template in the inventory runs with kubehyve's rights on this machine ({{ lookup('pipe', …) }})`,
            hint: "write the value itself, not a template",
            path: template.path,
          },
        ),
      );
    }
  }

  const merged = mergeGroupVars(baseGroupVars(cluster, options), [], options.extraVars).vars;
  found.push(
    ...checkKubesprayVars(merged, {
      extraVarKeys: new Set(Object.keys(options.extraVars)),
      nodeCount: cluster.nodes.length,
      kubesprayVersion: options.version,
    }),
  );

  if (options.runner.kind === "venv" && options.runner.dir) {
    // Only a directory without any marker can be judged here; whose marker it is, check() knows.
    const owner = directoryOwner(options.runner.dir, undefined);
    if (owner.kind === "foreign") found.push(runnerDirProblem(owner, options.runner.dir)!);
  }
  if (options.runner.kind === "system") {
    const unsafe = unsafeAnsiblePlaybook(options.runner.ansiblePlaybook);
    if (unsafe) found.push(unsafe);
  }
  return found;
}
