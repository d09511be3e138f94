/**
 * The control planes (the stacked etcd members) as Kubespray must keep seeing them. Kubespray names
 * an etcd member after its position in the etcd group unless `etcd_member_name` is set
 * (roles/kubespray_defaults/defaults/main/main.yml: `"etcd" + loop.index`), and its first
 * kube_control_plane host is special: it initialises the cluster and can neither be removed nor
 * moved (docs/operations/nodes.md, "Adding/Removal of first kube_control_plane and etcd-master").
 * So the order and the member names are recorded in the stage's state on the first run and never
 * taken from the order of the cluster file again.
 */
import type { NodeSpec } from "kubehyve";

/** Kept in the stage's state under STATE_KEY. */
export interface EtcdRecord {
  /** The control planes in Kubespray's order; the first one stays first. */
  order: string[];
  /** Node name to etcd member name. */
  names: Record<string, string>;
}

export const STATE_KEY = "etcd";

export interface Topology extends EtcdRecord {
  /** Declared control planes that the recorded cluster does not have. */
  added: string[];
  /** Recorded control planes that the cluster file no longer declares. */
  removed: string[];
}

/**
 * The order and names for this run. Without a record, the file's order and the nodes' names. A
 * record from before names were recorded (`legacyOrder`: the nodes of the last completed run) keeps
 * Kubespray's positional names, which its etcd members already carry.
 */
export function resolveTopology(
  declared: readonly NodeSpec[],
  record: EtcdRecord | undefined,
  legacyOrder?: readonly string[],
): Topology {
  const controlPlanes = declared.filter((n) => n.role === "control-plane").map((n) => n.name);
  let base = record;
  if (!base && legacyOrder) {
    const order = legacyOrder.filter((n) => controlPlanes.includes(n));
    base = { order, names: Object.fromEntries(order.map((n, i) => [n, `etcd${i + 1}`])) };
  }
  if (!base) {
    return {
      order: controlPlanes,
      names: Object.fromEntries(controlPlanes.map((n) => [n, n])),
      added: [],
      removed: [],
    };
  }
  const removed = base.order.filter((n) => !controlPlanes.includes(n));
  const added = controlPlanes.filter((n) => !base.order.includes(n));
  const order = [...base.order.filter((n) => controlPlanes.includes(n)), ...added];
  const names: Record<string, string> = {};
  for (const n of order) names[n] = base.names[n] ?? n;
  return { order, names, added, removed };
}

/** Kubespray's documented procedure for new control planes, for a refusal to spell out. */
export function addControlPlaneProcedure(input: {
  added: readonly string[];
  existing: number;
  kubesprayDir: string;
  inventory: string;
  ansiblePlaybook: string;
}): string {
  const { added, existing, kubesprayDir, inventory, ansiblePlaybook } = input;
  const limit = "--limit=etcd,kube_control_plane -e ignore_assert_errors=yes --skip-tags system-packages";
  return [
    `Adding control plane${added.length > 1 ? "s" : ""} ${added.join(", ")} adds etcd member${added.length > 1 ? "s" : ""} (${existing} -> ${existing + added.length}); plain cluster.yml cannot do that. Kubespray's procedure (docs/operations/nodes.md, "Adding an etcd node" and "Adding/replacing a control plane node"):`,
    "  1. keep the count odd: add two control planes at once (or remove one);",
    `  2. write the inventory with the new nodes appended last: kubehyve render -o DIR (DIR/k8s/inventory/hosts.yaml), or use ${inventory} after it;`,
    `  3. in ${kubesprayDir}: ${ansiblePlaybook} -i ${inventory} -b cluster.yml ${limit}`,
    `  4. then, to update every etcd configuration: ${ansiblePlaybook} -i ${inventory} -b upgrade-cluster.yml ${limit}`,
    "  5. on every control plane, check that /etc/kubernetes/manifests/kube-apiserver.yaml lists the new members in --etcd-servers;",
    "  6. on every node, restart the API server proxy: crictl ps | grep nginx-proxy | awk '{print $1}' | xargs crictl stop",
    "Once the new nodes are registered in the cluster, kubehyve up records them and goes on.",
  ].join("\n");
}

export function removeControlPlaneProcedure(input: {
  removed: readonly string[];
  first: boolean;
  kubesprayDir: string;
  inventory: string;
  ansiblePlaybook: string;
}): string {
  const { removed, first, kubesprayDir, inventory, ansiblePlaybook } = input;
  const lines = [
    `Control plane${removed.length > 1 ? "s" : ""} ${removed.join(", ")} left the cluster file but ${removed.length > 1 ? "are" : "is"} still an etcd member. Kubespray's procedure (docs/operations/nodes.md, "Removing an etcd node"), with the node${removed.length > 1 ? "s" : ""} still in the inventory (${inventory}), in ${kubesprayDir}:`,
  ];
  if (first) {
    lines.push(
      "  0. it is the first control plane: move it to the end of kube_control_plane and etcd in the inventory and run upgrade-cluster.yml first, then edit the server of the kube-public/cluster-info ConfigMap;",
    );
  }
  lines.push(
    ...removed.map(
      (n, i) =>
        `  ${i + 1}. ${ansiblePlaybook} -i ${inventory} -b remove-node.yml -e node=${n} --skip-tags system-packages (add -e reset_nodes=false -e allow_ungraceful_removal=true when it is offline)`,
    ),
    "  then, on every remaining control plane, check that /etc/kubernetes/manifests/kube-apiserver.yaml lists only live members in --etcd-servers.",
    "Once the node is gone from the cluster, kubehyve up runs cluster.yml to update every configuration.",
  );
  return lines.join("\n");
}
