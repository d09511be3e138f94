/**
 * Does Calico work? The operator's word for it (TigeraStatus), calico-node on every node, and a
 * canary: a pod on one node connects to a pod on another.
 */
import {
  type Diagnostic,
  diag,
  isReady,
  type KubeClient,
  type KubeObject,
  ownerLabels,
  type PluginContext,
  pending,
  poll,
  stageOwner,
} from "kubehyve";
import type { CalicoOptions } from "./options.ts";

type Ctx = PluginContext<CalicoOptions>;

export const CALICO_NAMESPACE = "calico-system";

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

function conditionsOf(obj: KubeObject | undefined): Condition[] {
  return Array.isArray(obj?.status?.conditions) ? obj.status.conditions : [];
}

/**
 * A TigeraStatus's verdict (tigera/operator api/v1/tigerastatus_types.go: Available, Progressing,
 * Degraded): available and not degraded, else why, in the operator's own words.
 */
export function componentVerdict(status: KubeObject | undefined): { ok: boolean; why: string } {
  if (!status) return { ok: false, why: "the operator has not reported on it yet" };
  const c = (type: string) => conditionsOf(status).find((x) => x.type === type);
  const available = c("Available");
  const degraded = c("Degraded");
  const progressing = c("Progressing");
  const said = (x: Condition | undefined) =>
    x ? `${x.type} ${x.status}${x.reason ? ` (${x.reason})` : ""}${x.message ? `: ${x.message}` : ""}` : "";
  if (degraded?.status === "True") return { ok: false, why: said(degraded) };
  if (available?.status === "True") return { ok: true, why: available.message || "Available" };
  const reasons = [progressing?.status === "True" ? said(progressing) : "", said(available)].filter(Boolean);
  return { ok: false, why: reasons.join("; ") || "no Available condition yet" };
}

export const COMPONENTS = (options: CalicoOptions) => ["calico", ...(options.apiServer ? ["apiserver"] : [])];

export async function componentDiagnostics(ctx: Ctx, kube: KubeClient): Promise<Diagnostic[]> {
  const out: Diagnostic[] = [];
  for (const name of COMPONENTS(ctx.options)) {
    let status: KubeObject | undefined;
    try {
      status = await kube.get("operator.tigera.io/v1", "TigeraStatus", name);
    } catch (error) {
      out.push(
        diag.error("calico.operator-missing", "the cluster has no tigera operator to report on Calico", {
          detail: (error as Error).message,
          hint: "kubehyve up --only net",
        }),
      );
      return out;
    }
    const verdict = componentVerdict(status);
    out.push(
      verdict.ok
        ? diag.ok("calico.component", `Calico component ${name} is available`, { detail: verdict.why })
        : diag.error("calico.component", `Calico component ${name} is not available: ${verdict.why}`, {
            hint: `kubectl --kubeconfig ${ctx.kubeconfigPath} get tigerastatus ${name} -o yaml; kubectl --kubeconfig ${ctx.kubeconfigPath} -n tigera-operator logs deploy/tigera-operator`,
          }),
    );
  }
  return out;
}

/** Why a calico-node pod is not ready, from its container states. */
function podProblem(pod: KubeObject): string {
  const statuses: { name?: string; state?: Record<string, { reason?: string; message?: string }> }[] = [
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.containerStatuses ?? []),
  ];
  for (const s of statuses) {
    const waiting = s.state?.waiting;
    if (waiting)
      return `${s.name} waiting: ${waiting.reason ?? "?"}${waiting.message ? ` (${waiting.message})` : ""}`;
    const terminated = s.state?.terminated;
    if (terminated && s.name && pod.status?.phase !== "Running")
      return `${s.name} terminated: ${terminated.reason ?? "?"}${terminated.message ? ` (${terminated.message.trim()})` : ""}`;
  }
  return isReady(pod).reason;
}

export async function nodeAgentDiagnostics(ctx: Ctx, kube: KubeClient): Promise<Diagnostic[]> {
  const pods = await kube.list("v1", "Pod", {
    namespace: CALICO_NAMESPACE,
    labelSelector: "k8s-app=calico-node",
  });
  const problems: string[] = [];
  for (const node of ctx.cluster.nodes) {
    const pod = pods.find((p) => p.spec?.nodeName === node.name);
    if (!pod) problems.push(`${node.name}: no calico-node pod`);
    else if (!isReady(pod).ready) problems.push(`${node.name}: ${pod.metadata.name} ${podProblem(pod)}`);
  }
  const names = ctx.cluster.nodes.map((n) => n.name).join(", ");
  if (!problems.length) return [diag.ok("calico.node-agents", `calico-node is ready on ${names}`)];
  return [
    diag.error(
      "calico.node-agents",
      `calico-node is not ready on ${problems.length} of ${ctx.cluster.nodes.length} nodes`,
      {
        detail: problems.join("\n"),
        hint: `kubectl --kubeconfig ${ctx.kubeconfigPath} -n ${CALICO_NAMESPACE} describe pods -l k8s-app=calico-node`,
      },
    ),
  ];
}

const CANARY_PORT = 8080;

function canaryPod(ctx: Ctx, name: string, node: string, spec: Record<string, unknown>): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: "default",
      labels: { ...ownerLabels(stageOwner(ctx)), "kubehyve.io/canary": name },
    },
    spec: {
      nodeName: node,
      // A control plane of a lab with workers carries this taint; the canary may run there too.
      tolerations: [
        { key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" },
      ],
      terminationGracePeriodSeconds: 0,
      ...spec,
    },
  };
}

/** Two Ready nodes of the cluster file, workers first; one when that is all there is. */
function canaryNodes(ctx: Ctx, live: readonly KubeObject[]): string[] {
  const ready = new Set(live.filter((n) => isReady(n).ready).map((n) => n.metadata.name));
  const nodes = [...ctx.cluster.nodes]
    .sort((a, b) => (a.role === b.role ? 0 : a.role === "worker" ? -1 : 1))
    .map((n) => n.name)
    .filter((n) => ready.has(n));
  return nodes.slice(0, 2);
}

/** What the canary found, and whether its pods are gone again. */
export interface CanaryResult {
  found: Diagnostic;
  cleanedUp: boolean;
}

/**
 * A pod running agnhost netexec on one node, and a pod on another running `agnhost connect` to
 * its address (kubernetes test/images/agnhost: exit 0 when it connects, else TIMEOUT or REFUSED).
 * Both are removed afterwards, whatever happened.
 */
export async function podNetworkCanary(ctx: Ctx, kube: KubeClient): Promise<CanaryResult> {
  const nodes = canaryNodes(ctx, await kube.list("v1", "Node"));
  if (nodes.length === 0)
    return {
      found: diag.error("calico.pod-network", "no node is Ready to run the pod network canary on", {
        hint: "kubehyve doctor (the k8s stage's nodes)",
      }),
      cleanedUp: true,
    };
  const [from, to] = [nodes[0]!, nodes[1] ?? nodes[0]!];
  const suffix = crypto.randomUUID().slice(0, 8);
  const server = canaryPod(ctx, `kubehyve-canary-net-${suffix}-server`, to, {
    containers: [
      {
        name: "netexec",
        image: ctx.options.canary.image,
        args: ["netexec", `--http-port=${CANARY_PORT}`],
        ports: [{ containerPort: CANARY_PORT }],
      },
    ],
  });
  const clientName = `kubehyve-canary-net-${suffix}-client`;
  const timeoutMs = ctx.options.canary.timeoutSec * 1000;
  const made: string[] = [];
  let leftover = false;
  const cleanup = async () => {
    for (const name of made.splice(0))
      await kube.delete("v1", "Pod", name, "default").catch(() => {
        leftover = true;
        return false;
      });
  };
  ctx.onCleanup(cleanup);
  const found = await runCanary();
  await cleanup();
  return { found, cleanedUp: !leftover };

  async function runCanary(): Promise<Diagnostic> {
    try {
      made.push(server.metadata.name);
      await kube.apply(server);
      const running = await poll(
        `canary pod default/${server.metadata.name} on ${to} to get an address`,
        async () => {
          const pod = await kube.get("v1", "Pod", server.metadata.name, "default");
          return pod?.status?.podIP && isReady(pod).ready
            ? pod
            : pending(pod ? podProblem(pod) : "not found");
        },
        { timeoutMs, intervalMs: 1000, signal: ctx.signal },
      );
      const address = String(running.status.podIP);
      const client = canaryPod(ctx, clientName, from, {
        restartPolicy: "Never",
        containers: [
          {
            name: "connect",
            image: ctx.options.canary.image,
            args: ["connect", `${address}:${CANARY_PORT}`, "--timeout=10s"],
            terminationMessagePolicy: "FallbackToLogsOnError",
          },
        ],
      });
      made.push(clientName);
      await kube.apply(client);
      const done = await poll(
        `canary pod default/${clientName} on ${from} to finish connecting`,
        async () => {
          const pod = await kube.get("v1", "Pod", clientName, "default");
          const phase = pod?.status?.phase;
          return phase === "Succeeded" || phase === "Failed"
            ? pod!
            : pending(pod ? podProblem(pod) : "not found");
        },
        { timeoutMs, intervalMs: 1000, signal: ctx.signal },
      );
      const across = from === to ? `within ${from} (the only Ready node)` : `from ${from} to ${to}`;
      if (done.status.phase === "Succeeded")
        return diag.ok("calico.pod-network", `a pod reaches another ${across} at ${address}:${CANARY_PORT}`);
      const said = String(done.status.containerStatuses?.[0]?.state?.terminated?.message ?? "").trim();
      return diag.error(
        "calico.pod-network",
        `a pod cannot reach another ${across}: ${said || "connect failed"}`,
        {
          detail: `agnhost connect ${address}:${CANARY_PORT} in ${clientName} exited ${done.status.containerStatuses?.[0]?.state?.terminated?.exitCode ?? "?"}`,
          hint: `kubectl --kubeconfig ${ctx.kubeconfigPath} -n ${CALICO_NAMESPACE} logs -l k8s-app=calico-node --tail=50 (VXLAN needs UDP 4789 between the nodes)`,
        },
      );
    } catch (error) {
      return diag.error(
        "calico.pod-network",
        `the pod network canary did not complete: ${(error as Error).message}`,
        {
          hint: `kubectl --kubeconfig ${ctx.kubeconfigPath} get pods -n default -l kubehyve.io/canary -o wide`,
        },
      );
    }
  }
}
