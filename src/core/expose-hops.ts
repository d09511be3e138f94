/**
 * The hops of the exposure walk that every lab has, whatever its stages: the name in the lab's DNS
 * (cluster.network.dns), the Service's endpoints and the pods behind them. The stages add their own
 * (expose.ts).
 */
import type { KubeClient, KubeObject } from "../kube/types.ts";
import { resolveA } from "../lib/dns.ts";
import type { ExposeTarget, Hop, HopResult } from "./expose.ts";
import type { NetworkSpec } from "./model.ts";

/** The dnsmasq lines that make `host` resolve to `address` (dnsmasq(8) --host-record, --address). */
export function dnsmasqLines(host: string, address: string): { record: string; domain: string } {
  return { record: `host-record=${host},${address}`, domain: `address=/${host}/${address}` };
}

/** Hop: the name resolves, through every server of network.dns, to the address the path enters at. */
export function dnsHop(network: NetworkSpec, port = 53): Hop {
  return {
    id: "expose.dns",
    place: "name",
    title: "the name resolves through the lab's DNS",
    needs: ["address"],
    async walk({ target, facts }): Promise<HopResult> {
      const address = facts.address!;
      if (!network.dns.length)
        return {
          status: "skipped",
          summary: "the cluster file names no DNS server of the lab (network.dns): no name to look up",
        };
      const wrong: string[] = [];
      for (const server of network.dns) {
        const answer = await resolveA(server, port, target.host);
        if (answer.addresses.includes(address)) continue;
        wrong.push(
          answer.addresses.length
            ? `${server} answers ${answer.addresses.join(", ")}`
            : `${server} ${answer.problem ?? "has no address for it"}`,
        );
      }
      if (!wrong.length)
        return {
          status: "ok",
          summary: `${target.host} resolves to ${address} through ${network.dns.join(", ")}`,
        };
      const lines = dnsmasqLines(target.host, address);
      return {
        status: "broken",
        summary: `${target.host} does not resolve to ${address}: ${wrong.join("; ")}`,
        hint: `add to the router's dnsmasq configuration and reload it: ${lines.record}   (or, for the name and every name under it: ${lines.domain})`,
      };
    },
  };
}

type Labels = Record<string, string>;

const matches = (selector: Labels, labels: Labels | undefined) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const showLabels = (labels: Labels | undefined) =>
  Object.entries(labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",") || "no labels";

interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
}

interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: string;
}

const portsOf = (pod: KubeObject): ContainerPort[] =>
  ((pod.spec?.containers ?? []) as { ports?: ContainerPort[] }[]).flatMap((c) => c.ports ?? []);
const showPorts = (ports: ContainerPort[]) =>
  ports.map((p) => `${p.name ? `${p.name} ` : ""}${p.containerPort}/${p.protocol ?? "TCP"}`).join(", ");

function isPodReady(pod: KubeObject): boolean {
  const conditions = (pod.status?.conditions ?? []) as { type: string; status: string }[];
  return pod.status?.phase === "Running" && conditions.some((c) => c.type === "Ready" && c.status === "True");
}

/** The Service, its port the Ingress names, and the pods its selector picks. */
async function backendOf(kube: KubeClient, target: ExposeTarget) {
  const { namespace, name, port } = target.service;
  const svc = await kube.get("v1", "Service", name, namespace);
  if (!svc) return { svc };
  const ports = (svc.spec?.ports ?? []) as ServicePort[];
  const servicePort = ports.find((p) => (typeof port === "number" ? p.port === port : p.name === port));
  const selector = svc.spec?.selector as Labels | undefined;
  const pods = selector
    ? (await kube.list("v1", "Pod", { namespace })).filter((p) => matches(selector, p.metadata.labels))
    : [];
  return { svc, ports, servicePort, selector, pods };
}

const k = (namespace: string) => `kubectl -n ${namespace}`;

/**
 * Hop: the Service has ready endpoints for the port the Ingress names (discovery.k8s.io/v1
 * EndpointSlices labelled kubernetes.io/service-name, as Traefik reads them); else which of the
 * selector and the ports does not match the pods.
 */
export function endpointsHop(kube: () => Promise<KubeClient>): Hop {
  return {
    id: "expose.endpoints",
    place: "service",
    title: "the Service has ready endpoints",
    async walk({ target }): Promise<HopResult> {
      const client = await kube();
      const { namespace, name, port } = target.service;
      const ref = `Service ${namespace}/${name}`;
      const { svc, ports = [], servicePort, selector, pods = [] } = await backendOf(client, target);
      if (!svc)
        return {
          status: "broken",
          summary: `${ref} does not exist`,
          hint: `${k(namespace)} get services`,
        };
      if (!servicePort)
        return {
          status: "broken",
          summary: `${ref} has no port ${port} (it has: ${ports.map((p) => `${p.name ?? "-"} ${p.port}`).join(", ") || "none"})`,
          hint: `name one of its ports in Ingress ${target.ingress.namespace}/${target.ingress.name}`,
        };
      if (!selector)
        return {
          status: "broken",
          summary: `${ref} has no selector: its endpoints are kept by hand, and it has none ready`,
          hint: `${k(namespace)} edit service ${name}   # add spec.selector with the pods' labels`,
        };
      if (!pods.length) {
        const others = (await client.list("v1", "Pod", { namespace })).slice(0, 8);
        return {
          status: "broken",
          summary: `the selector ${showLabels(selector)} of ${ref} matches no pod in namespace ${namespace}`,
          detail: others.length
            ? `pods in ${namespace}:\n${others.map((p) => `${p.metadata.name}: ${showLabels(p.metadata.labels)}`).join("\n")}`
            : `namespace ${namespace} has no pods`,
          hint: `make the selector the pods' labels: ${k(namespace)} get pods --show-labels; ${k(namespace)} edit service ${name}`,
        };
      }
      const targetPort = servicePort.targetPort ?? servicePort.port;
      const declared = pods.flatMap(portsOf);
      const serving =
        typeof targetPort === "string"
          ? pods.filter((p) => portsOf(p).some((c) => c.name === targetPort))
          : pods.filter((p) => portsOf(p).some((c) => c.containerPort === targetPort));
      // A numeric targetPort need not be declared; only pods that declare ports can say it is wrong.
      if (!serving.length && (typeof targetPort === "string" || declared.length)) {
        return {
          status: "broken",
          summary:
            typeof targetPort === "string"
              ? `port ${servicePort.name ?? servicePort.port} of ${ref} has targetPort ${targetPort}, which names no port of its pods (they have: ${showPorts(declared) || "none"})`
              : `port ${servicePort.name ?? servicePort.port} of ${ref} sends to port ${targetPort}, which its pods do not serve (they declare: ${showPorts(declared)})`,
          hint: `set the targetPort to the pods' port: ${k(namespace)} edit service ${name}`,
        };
      }
      const slices = await client.list("discovery.k8s.io/v1", "EndpointSlice", {
        namespace,
        labelSelector: `kubernetes.io/service-name=${name}`,
      });
      const ready: string[] = [];
      for (const slice of slices) {
        const slicePort = ((slice.ports ?? []) as { name?: string; port?: number }[]).find(
          (p) => (p.name ?? "") === (servicePort.name ?? ""),
        );
        if (!slicePort?.port) continue;
        for (const e of (slice.endpoints ?? []) as {
          addresses: string[];
          conditions?: { ready?: boolean };
        }[])
          if (e.conditions?.ready !== false)
            for (const a of e.addresses) ready.push(`${a}:${slicePort.port}`);
      }
      if (ready.length)
        return {
          status: "ok",
          summary: `${ref} has ${ready.length} ready endpoint${ready.length === 1 ? "" : "s"}: ${ready.slice(0, 4).join(", ")}`,
        };
      if (!pods.some(isPodReady))
        return {
          status: "blocked",
          summary: `${ref} has no ready endpoint: the ${pods.length === 1 ? "pod" : `${pods.length} pods`} it selects ${pods.length === 1 ? "is" : "are"} not ready`,
        };
      return {
        status: "broken",
        summary: `${ref} selects ready pods, but no EndpointSlice lists them`,
        hint: `${k(namespace)} get endpointslices -l kubernetes.io/service-name=${name} -o yaml; the EndpointSlice controller runs in kube-controller-manager: kubectl -n kube-system logs -l component=kube-controller-manager`,
      };
    },
  };
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** Why a pod is not ready, in its own words: the failing condition and a waiting container's reason. */
export function podProblem(pod: KubeObject): string {
  const conditions = (pod.status?.conditions ?? []) as Condition[];
  const failing =
    conditions.find((c) => c.type === "PodScheduled" && c.status !== "True") ??
    conditions.find((c) => c.type === "Initialized" && c.status !== "True") ??
    conditions.find((c) => c.type === "Ready" && c.status !== "True");
  const containers = [
    ...((pod.status?.initContainerStatuses ?? []) as KubeObject[]),
    ...((pod.status?.containerStatuses ?? []) as KubeObject[]),
  ];
  const waiting = containers
    .map((c) => {
      const state = (c.state ?? {}) as {
        waiting?: { reason?: string; message?: string };
        terminated?: { reason?: string; exitCode?: number };
      };
      if (state.waiting?.reason)
        return `container ${c.name} waiting: ${state.waiting.reason}${state.waiting.message ? ` (${state.waiting.message})` : ""}`;
      if (state.terminated)
        return `container ${c.name} terminated: ${state.terminated.reason ?? ""} exit ${state.terminated.exitCode ?? "?"}`;
      return undefined;
    })
    .filter((w): w is string => w !== undefined);
  const condition = failing
    ? `${failing.type}=${failing.status}${failing.reason ? ` ${failing.reason}` : ""}${failing.message ? `: ${failing.message}` : ""}`
    : `phase ${pod.status?.phase ?? "unknown"}`;
  return [condition, ...waiting.slice(0, 2)].join("; ");
}

/** Hop: a pod the Service selects is ready; else the condition that says why not. */
export function podsHop(kube: () => Promise<KubeClient>): Hop {
  return {
    id: "expose.pods",
    place: "pod",
    title: "the Service's pods are ready",
    async walk({ target }): Promise<HopResult> {
      const { namespace } = target.service;
      const { svc, pods = [] } = await backendOf(await kube(), target);
      if (!svc || !pods.length)
        return { status: "skipped", summary: "no pod to look at: the Service selects none" };
      const ready = pods.filter(isPodReady);
      if (ready.length)
        return {
          status: "ok",
          summary: `${ready.length} of ${pods.length} pod${pods.length === 1 ? "" : "s"} ready: ${ready
            .slice(0, 3)
            .map((p) => p.metadata.name)
            .join(", ")}`,
        };
      const pod = pods[0]!;
      return {
        status: "broken",
        summary: `pod ${namespace}/${pod.metadata.name} is not ready: ${podProblem(pod)}`,
        ...(pods.length > 1
          ? {
              detail: pods
                .slice(1, 6)
                .map((p) => `${p.metadata.name}: ${podProblem(p)}`)
                .join("\n"),
            }
          : {}),
        hint: `${k(namespace)} describe pod ${pod.metadata.name}`,
      };
    },
  };
}
