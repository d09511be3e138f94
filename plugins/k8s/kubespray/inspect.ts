/** What the running cluster says about itself, through the Kubernetes API. */
import { type Diagnostic, diag, type KubeClient, type KubeObject, type NodeSpec } from "kubehyve";

export type Assessment =
  | { kind: "up-to-date" }
  /** Only workers are missing: Kubespray's scale.yml adds them (a control plane needs cluster.yml). */
  | { kind: "scale"; nodes: string[] }
  | { kind: "converge"; reason: string }
  | { kind: "upgrade"; from: string[]; to: string };

function condition(node: KubeObject, type: string): string | undefined {
  const conditions: unknown = node.status?.conditions;
  if (!Array.isArray(conditions)) return undefined;
  const found = conditions.find((c) => c?.type === type);
  return typeof found?.status === "string" ? found.status : undefined;
}

export function isNodeReady(node: KubeObject): boolean {
  return condition(node, "Ready") === "True";
}

export function kubeletVersionOf(node: KubeObject): string | undefined {
  const v: unknown = node.status?.nodeInfo?.kubeletVersion;
  return typeof v === "string" ? v : undefined;
}

/** `1.35.4` as Kubernetes reports it: `v1.35.4`. */
export function asGitVersion(version: string): string {
  return version.startsWith("v") ? version : `v${version}`;
}

/** Compares the declared nodes with the registered ones. Pure, so every branch is tested. */
export function assessCluster(
  declared: readonly NodeSpec[],
  registered: readonly KubeObject[],
  kubernetesVersion: string,
): Assessment {
  const want = asGitVersion(kubernetesVersion);
  const byName = new Map(registered.map((n) => [n.metadata.name, n]));
  const present = declared.filter((n) => byName.has(n.name));
  const otherVersions = [
    ...new Set(
      present.map((n) => kubeletVersionOf(byName.get(n.name)!) ?? "unknown").filter((v) => v !== want),
    ),
  ];
  if (otherVersions.length > 0) return { kind: "upgrade", from: otherVersions, to: want };
  const missing = declared.filter((n) => !byName.has(n.name));
  if (missing.some((n) => n.role === "control-plane")) {
    return {
      kind: "converge",
      reason: `control plane ${missing
        .filter((n) => n.role === "control-plane")
        .map((n) => n.name)
        .join(", ")} not registered`,
    };
  }
  if (missing.length > 0) return { kind: "scale", nodes: missing.map((n) => n.name) };
  const notReady = present.filter((n) => !isNodeReady(byName.get(n.name)!));
  if (notReady.length > 0)
    return { kind: "converge", reason: `${notReady.map((n) => n.name).join(", ")} not Ready` };
  return { kind: "up-to-date" };
}

function num(value: unknown): number {
  return typeof value === "number" ? value : 0;
}

/** Deployment readiness by kstatus rules: the controller saw this generation and every replica is available. */
export function deploymentProblem(d: KubeObject): string | undefined {
  const want = typeof d.spec?.replicas === "number" ? d.spec.replicas : 1;
  const s = d.status ?? {};
  if (num(s.observedGeneration) < num(d.metadata.generation))
    return "the controller has not seen its latest spec yet";
  if (num(s.updatedReplicas) < want) return `${num(s.updatedReplicas)} of ${want} replicas updated`;
  if (num(s.availableReplicas) < want) return `${num(s.availableReplicas)} of ${want} replicas available`;
  return undefined;
}

export function daemonSetProblem(ds: KubeObject): string | undefined {
  const s = ds.status ?? {};
  const want = num(s.desiredNumberScheduled);
  if (num(s.observedGeneration) < num(ds.metadata.generation))
    return "the controller has not seen its latest spec yet";
  if (num(s.updatedNumberScheduled) < want) return `${num(s.updatedNumberScheduled)} of ${want} pods updated`;
  if (num(s.numberAvailable) < want) return `${num(s.numberAvailable)} of ${want} pods available`;
  return undefined;
}

/** Every node Ready at the version, kube-system workloads ready, CoreDNS with ready endpoints. */
export async function verifyCluster(
  kube: KubeClient,
  declared: readonly NodeSpec[],
  kubernetesVersion: string,
): Promise<Diagnostic[]> {
  const found: Diagnostic[] = [];
  const want = asGitVersion(kubernetesVersion);
  const nodes = await kube.list("v1", "Node");
  const byName = new Map(nodes.map((n) => [n.metadata.name, n]));
  for (const spec of declared) {
    const node = byName.get(spec.name);
    if (!node) {
      found.push(
        diag.error("kubespray.node-missing", `node ${spec.name} is not registered in the cluster`, {
          target: spec.name,
          hint: "kubehyve up adds it (scale.yml)",
        }),
      );
      continue;
    }
    const version = kubeletVersionOf(node);
    if (!isNodeReady(node)) {
      found.push(
        diag.error("kubespray.node-not-ready", `node ${spec.name} is not Ready`, {
          target: spec.name,
          detail: `Ready condition: ${condition(node, "Ready") ?? "absent"}`,
          hint: `ssh core@${spec.address} journalctl -u kubelet -n 50`,
        }),
      );
    } else if (version !== want) {
      found.push(
        diag.error(
          "kubespray.node-version",
          `node ${spec.name} runs kubelet ${version ?? "of unknown version"}, not ${want}`,
          { target: spec.name, hint: "kubehyve up upgrades it (upgrade-cluster.yml)" },
        ),
      );
    } else {
      found.push(diag.ok("kubespray.node", `node ${spec.name} Ready, ${version}`, { target: spec.name }));
    }
  }
  const problems: string[] = [];
  for (const d of await kube.list("apps/v1", "Deployment", { namespace: "kube-system" })) {
    const p = deploymentProblem(d);
    if (p) problems.push(`Deployment ${d.metadata.name}: ${p}`);
  }
  for (const ds of await kube.list("apps/v1", "DaemonSet", { namespace: "kube-system" })) {
    const p = daemonSetProblem(ds);
    if (p) problems.push(`DaemonSet ${ds.metadata.name}: ${p}`);
  }
  found.push(
    problems.length > 0
      ? diag.error(
          "kubespray.kube-system-not-ready",
          `${problems.length} kube-system workload(s) not ready`,
          { detail: problems.join("\n"), hint: "kubectl -n kube-system get pods" },
        )
      : diag.ok("kubespray.kube-system", "kube-system workloads ready"),
  );
  found.push(await verifyCoreDns(kube));
  return found;
}

/**
 * CoreDNS answers when its pods pass their readiness probe: Kubespray's CoreDNS Deployment probes
 * `/ready` on port 8181, which CoreDNS's `ready` plugin serves only once every server block (the
 * kubernetes plugin included) is serving. Kubespray names the Deployment and the Service `coredns`
 * (roles/kubernetes-apps/ansible/templates/coredns-*.yml.j2). A DNS query of its own cannot be sent
 * from the host: the service network is not routed outside the cluster.
 */
export async function verifyCoreDns(kube: KubeClient): Promise<Diagnostic> {
  const deployment = await kube.get("apps/v1", "Deployment", "coredns", "kube-system");
  if (!deployment) {
    return diag.error(
      "kubespray.coredns-missing",
      "CoreDNS is not deployed (no Deployment kube-system/coredns)",
      { hint: "kubehyve up runs cluster.yml again" },
    );
  }
  const service = await kube.get("v1", "Service", "coredns", "kube-system");
  const clusterIP: unknown = service?.spec?.clusterIP;
  if (typeof clusterIP !== "string" || !clusterIP) {
    return diag.error(
      "kubespray.coredns-no-service",
      "CoreDNS has no Service kube-system/coredns with a cluster IP, so pods cannot reach it",
      { hint: "kubehyve up runs cluster.yml again" },
    );
  }
  const available = num(deployment.status?.availableReplicas);
  if (available === 0) {
    return diag.error(
      "kubespray.coredns-not-answering",
      "no CoreDNS pod passes its readiness probe, so cluster DNS does not answer",
      {
        detail: deploymentProblem(deployment),
        hint: "kubectl -n kube-system logs deploy/coredns",
      },
    );
  }
  return diag.ok(
    "kubespray.coredns",
    `CoreDNS answering on ${clusterIP} (${available} ready pod${available === 1 ? "" : "s"})`,
  );
}
