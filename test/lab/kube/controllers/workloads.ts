/**
 * What kube-controller-manager makes from a Deployment and a Service, as far as the exposure walk
 * reads it: the Deployment's pods and the Service's EndpointSlices. The kubelet's part (a pod's
 * status) stays with podControllers.
 *
 * - Pods of a Deployment: `spec.replicas` pods (default 1) named `<deployment>-<hash>-<suffix>`, with
 *   the template's labels plus `pod-template-hash` (pkg/controller/deployment/sync.go
 *   getNewReplicaSet, pkg/controller/replicaset/replica_set.go manageReplicas, which names pods by
 *   the ReplicaSet's generateName). The ReplicaSet in between is not stored: the pods name the
 *   Deployment as their owner, and go with it (the garbage collector follows ownerReferences).
 * - EndpointSlices (pkg/controller/endpointslice/reconciler.go, staging/src/k8s.io/endpointslice):
 *   per Service with a selector, one slice per distinct set of resolved ports, labelled
 *   `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
 *   endpointslice-controller.k8s.io`; each selected pod with an IP is an endpoint whose `ready` and
 *   `serving` follow its Ready condition; a port's number is the pod's container port its
 *   targetPort names (podutil.FindPort), and a pod that does not declare a named targetPort has no
 *   port for it (getEndpointPorts skips it, logging "Failed to find port for service").
 */
import { createHash } from "node:crypto";
import type { Controller, ControllerWriter } from "../controllers.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

const MANAGED_BY = "endpointslice-controller.k8s.io";

function hash(text: string, n: number): string {
  return createHash("sha256").update(text).digest("hex").slice(0, n);
}

function matches(labels: Record<string, string> | undefined, selector: Record<string, string>) {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function podReady(pod: Any): boolean {
  return (pod.status?.conditions ?? []).some((c: Any) => c.type === "Ready" && c.status === "True");
}

/** podutil.FindPort: a number is itself; a name is the container port of that name, if any. */
function findPort(pod: Any, targetPort: number | string): number | undefined {
  if (typeof targetPort === "number") return targetPort;
  for (const c of pod.spec?.containers ?? [])
    for (const p of c.ports ?? []) if (p.name === targetPort) return p.containerPort;
  return undefined;
}

const deploymentPods: Controller = {
  name: "deployment-pods",
  owns: [],
  reconcile: () => undefined,
  sync(view: ControllerWriter) {
    const deployments = view.list("apps/Deployment") as Any[];
    for (const dep of deployments) {
      const template = dep.spec?.template ?? {};
      const ns = dep.metadata.namespace;
      const templateHash = hash(JSON.stringify(template), 10);
      const n = typeof dep.spec?.replicas === "number" ? dep.spec.replicas : 1;
      const wanted = new Set<string>();
      for (let i = 0; i < n; i++) {
        const name = `${dep.metadata.name}-${templateHash}-${hash(`${templateHash}/${i}`, 5)}`;
        wanted.add(name);
        if (view.list("/Pod", ns).some((p: Any) => p.metadata.name === name)) continue;
        view.write(
          {
            apiVersion: "v1",
            kind: "Pod",
            metadata: {
              name,
              namespace: ns,
              labels: { ...template.metadata?.labels, "pod-template-hash": templateHash },
              ownerReferences: [
                {
                  apiVersion: "apps/v1",
                  kind: "Deployment",
                  name: dep.metadata.name,
                  uid: dep.metadata.uid,
                  controller: true,
                },
              ],
            },
            spec: { ...template.spec },
          },
          "kube-controller-manager",
        );
      }
      for (const pod of view.list("/Pod", ns) as Any[]) {
        const owner = pod.metadata.ownerReferences?.find((o: Any) => o.kind === "Deployment");
        if (owner?.uid === dep.metadata.uid && !wanted.has(pod.metadata.name))
          view.remove("v1", "Pod", pod.metadata.name, ns);
      }
    }
    const live = new Set(deployments.map((d) => d.metadata.uid));
    for (const pod of view.list("/Pod") as Any[]) {
      const owner = pod.metadata.ownerReferences?.find((o: Any) => o.kind === "Deployment");
      if (owner && !live.has(owner.uid)) view.remove("v1", "Pod", pod.metadata.name, pod.metadata.namespace);
    }
  },
};

const endpointSlices: Controller = {
  name: "endpointslice",
  owns: [],
  reconcile: () => undefined,
  sync(view: ControllerWriter) {
    const wanted = new Set<string>();
    for (const svc of view.list("/Service") as Any[]) {
      const selector = svc.spec?.selector;
      if (!selector || !Object.keys(selector).length) continue;
      const ns = svc.metadata.namespace;
      const groups = new Map<string, { ports: Any[]; endpoints: Any[] }>();
      for (const pod of view.list("/Pod", ns) as Any[]) {
        if (!matches(pod.metadata.labels, selector) || !pod.status?.podIP) continue;
        const ports: Any[] = [];
        for (const p of svc.spec.ports ?? []) {
          const port = findPort(pod, p.targetPort ?? p.port);
          if (port !== undefined) ports.push({ name: p.name ?? "", port, protocol: p.protocol ?? "TCP" });
        }
        const key = JSON.stringify(ports);
        const group = groups.get(key) ?? { ports, endpoints: [] };
        const ready = podReady(pod);
        group.endpoints.push({
          addresses: [pod.status.podIP],
          conditions: { ready, serving: ready, terminating: false },
          ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
          targetRef: { kind: "Pod", name: pod.metadata.name, namespace: ns, uid: pod.metadata.uid },
        });
        groups.set(key, group);
      }
      for (const [key, group] of groups) {
        const name = `${svc.metadata.name}-${hash(key, 5)}`;
        wanted.add(`${ns}/${name}`);
        view.write(
          {
            apiVersion: "discovery.k8s.io/v1",
            kind: "EndpointSlice",
            metadata: {
              name,
              namespace: ns,
              labels: {
                "kubernetes.io/service-name": svc.metadata.name,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
              },
              ownerReferences: [
                {
                  apiVersion: "v1",
                  kind: "Service",
                  name: svc.metadata.name,
                  uid: svc.metadata.uid,
                  controller: true,
                },
              ],
            },
            addressType: "IPv4",
            endpoints: group.endpoints,
            ports: group.ports,
          },
          "endpointslice-controller",
        );
      }
    }
    for (const slice of view.list("discovery.k8s.io/EndpointSlice") as Any[]) {
      if (slice.metadata.labels?.["endpointslice.kubernetes.io/managed-by"] !== MANAGED_BY) continue;
      if (!wanted.has(`${slice.metadata.namespace}/${slice.metadata.name}`))
        view.remove("discovery.k8s.io/v1", "EndpointSlice", slice.metadata.name, slice.metadata.namespace);
    }
  },
};

/** The Deployment's pods, then the Services' EndpointSlices. */
export function workloadControllers(): Controller[] {
  return [deploymentPods, endpointSlices];
}
