/**
 * Traefik's objects, modelled on the defaults of the official Helm chart (traefik/traefik-helm-chart
 * v41.3.0, commit a8a66d00: traefik/values.yaml and traefik/templates/), written out here so that no
 * Helm is needed: the chart's `ports` (traefik 8080 not exposed, web 8000 as 80, websecure 8443 as 443
 * with TLS), its probes on `/ping`, its security contexts, its two Kubernetes providers and its
 * default IngressClass. The upstream CRDs and RBAC come verbatim from the pinned release files.
 */
import type { KubeObject } from "kubehyve";
import { TRAEFIK_IMAGE } from "./release.ts";

export const NAME = "traefik";
/** The upstream RBAC file's ServiceAccount and ClusterRole name (kubernetes-crd-rbac.yml). */
export const RBAC_NAME = "traefik-ingress-controller";
export const PING_ROUTE = "traefik-ping";

/** values.yaml `ports`: name, container port, Service port (undefined: not exposed). */
export const ENTRYPOINTS = [
  { name: "traefik", port: 8080, exposed: undefined },
  { name: "web", port: 8000, exposed: 80 },
  { name: "websecure", port: 8443, exposed: 443 },
] as const;

/** templates/_helpers.tpl `traefik.labelselector`: what the Service selects the pods by. */
export function selectorLabels(namespace: string): Record<string, string> {
  return { "app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": `${NAME}-${namespace}` };
}

export interface TraefikInput {
  namespace: string;
  replicas: number;
  /** A fixed MetalLB address, or undefined for any address of the pool. */
  address?: string;
}

/** The container arguments of templates/_podtemplate.tpl at the chart's defaults. */
export function traefikArgs(namespace: string): string[] {
  return [
    ...ENTRYPOINTS.map((e) => `--entryPoints.${e.name}.address=:${e.port}/tcp`),
    // ports.websecure.http.tls.enabled: true
    "--entryPoints.websecure.http.tls=true",
    "--ping=true",
    "--log.level=INFO",
    "--providers.kubernetescrd",
    "--providers.kubernetescrd.allowEmptyServices=true",
    "--providers.kubernetesingress",
    "--providers.kubernetesingress.allowEmptyServices=true",
    // providers.kubernetesIngress.publishedService.enabled: Ingresses show the Service's address.
    `--providers.kubernetesingress.ingressendpoint.publishedservice=${namespace}/${NAME}`,
  ];
}

function probe(failureThreshold: number): Record<string, unknown> {
  // values.yaml readinessProbe / livenessProbe, on deployment.healthchecksPort = ports.traefik.port.
  return {
    httpGet: { path: "/ping", port: 8080, scheme: "HTTP" },
    failureThreshold,
    initialDelaySeconds: 2,
    periodSeconds: 10,
    successThreshold: 1,
    timeoutSeconds: 2,
  };
}

export function deployment({ namespace, replicas }: TraefikInput): KubeObject {
  const labels = selectorLabels(namespace);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: NAME, namespace, labels: { ...labels } },
    spec: {
      replicas,
      selector: { matchLabels: labels },
      // values.yaml updateStrategy: a new pod is ready before the old one goes.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      minReadySeconds: 0,
      template: {
        metadata: { labels: { ...labels } },
        spec: {
          serviceAccountName: RBAC_NAME,
          automountServiceAccountToken: true,
          terminationGracePeriodSeconds: 60,
          containers: [
            {
              name: NAME,
              image: TRAEFIK_IMAGE,
              imagePullPolicy: "IfNotPresent",
              args: traefikArgs(namespace),
              ports: ENTRYPOINTS.map((e) => ({ name: e.name, containerPort: e.port, protocol: "TCP" })),
              readinessProbe: probe(1),
              livenessProbe: probe(3),
              env: [
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
                { name: "USER", value: "traefik" },
              ],
              securityContext: {
                allowPrivilegeEscalation: false,
                capabilities: { drop: ["ALL"] },
                readOnlyRootFilesystem: true,
              },
              // The root filesystem is read-only: Traefik writes only to these (persistence `data`, `tmp`).
              volumeMounts: [
                { name: "data", mountPath: "/data" },
                { name: "tmp", mountPath: "/tmp" },
              ],
            },
          ],
          securityContext: {
            runAsGroup: 65532,
            runAsNonRoot: true,
            runAsUser: 65532,
            seccompProfile: { type: "RuntimeDefault" },
          },
          volumes: [
            { name: "data", emptyDir: {} },
            { name: "tmp", emptyDir: {} },
          ],
        },
      },
    },
  };
}

/** templates/service.yaml with service.spec.type LoadBalancer; the traefik entrypoint stays unexposed. */
export function service({ namespace, address }: TraefikInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: NAME,
      namespace,
      labels: selectorLabels(namespace),
      // MetalLB's way to ask for one address of its pools (metallb docs, usage: "Requesting specific IPs").
      ...(address ? { annotations: { "metallb.io/loadBalancerIPs": address } } : {}),
    },
    spec: {
      type: "LoadBalancer",
      selector: selectorLabels(namespace),
      ports: ENTRYPOINTS.filter((e) => e.exposed !== undefined).map((e) => ({
        name: e.name,
        port: e.exposed,
        targetPort: e.name,
        protocol: "TCP",
      })),
    },
  };
}

/** templates/ingressclass.yaml: ingressClass.enabled and isDefaultClass at their defaults. */
export function ingressClass(): KubeObject {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "IngressClass",
    metadata: {
      name: NAME,
      annotations: { "ingressclass.kubernetes.io/is-default-class": "true" },
    },
    spec: { controller: "traefik.io/ingress-controller" },
  };
}

/**
 * values.yaml ingressRoute.healthcheck (disabled there), moved to the web entrypoint so that
 * `GET http://ADDRESS/ping` reaches Traefik's own ping handler from outside. Priority 1 is the
 * lowest: any application route that also matches /ping wins over it.
 */
export function pingRoute(namespace: string): KubeObject {
  return {
    apiVersion: "traefik.io/v1alpha1",
    kind: "IngressRoute",
    metadata: { name: PING_ROUTE, namespace },
    spec: {
      entryPoints: ["web"],
      routes: [
        {
          match: "Path(`/ping`)",
          kind: "Rule",
          priority: 1,
          services: [{ name: "ping@internal", kind: "TraefikService" }],
        },
      ],
    },
  };
}

export function namespaceObject(namespace: string): KubeObject {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } };
}

export function serviceAccount(namespace: string): KubeObject {
  return { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: RBAC_NAME, namespace } };
}

/**
 * The upstream RBAC file binds its ClusterRole to the ServiceAccount in `default`; Traefik runs in
 * its own namespace here, so that subject is moved there. Nothing else is changed.
 */
export function rbacFor(rbac: KubeObject[], namespace: string): KubeObject[] {
  return rbac.map((obj) => {
    if (obj.kind !== "ClusterRoleBinding") return obj;
    const subjects = (obj.subjects as { kind: string; name: string; namespace?: string }[] | undefined) ?? [];
    return {
      ...obj,
      subjects: subjects.map((s) =>
        s.kind === "ServiceAccount" && s.name === RBAC_NAME ? { ...s, namespace } : s,
      ),
    };
  });
}
