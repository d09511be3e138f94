/**
 * What the exposure walk puts on the cluster: the whoami canary of `verify --expose` (removed after
 * the walk) and the Ingress `kubehyve expose` makes for a Service (kept: it is the exposure). Both
 * carry kubehyve's owner labels with the stage `expose`, so that nothing of anybody else's is ever
 * taken for them.
 */
import { ownerLabels } from "../kube/ownership.ts";
import type { KubeObject } from "../kube/types.ts";
import type { ExposeTarget } from "./expose.ts";

/** The pseudo-stage the walk's objects and lines are under. */
export const EXPOSE_SLOT = "expose";
/** `canary` (the walk's own, removed after it) or `service` (an Ingress of `kubehyve expose`). */
export const EXPOSURE_LABEL = "kubehyve.io/exposure";
export const CANARY_NAME = "kubehyve-whoami";
export const CANARY_NAMESPACE = "default";
/** traefik/whoami answers with its host name and the request (app.go whoamiHandler). */
export const WHOAMI_IMAGE = "docker.io/traefik/whoami:v1.11.0";
const WHOAMI_PORT = 8080;

export const ownerOf = (clusterId: string) => ({ stage: EXPOSE_SLOT, clusterId });

function labels(clusterId: string, exposure: "canary" | "service"): Record<string, string> {
  return { ...ownerLabels(ownerOf(clusterId)), [EXPOSURE_LABEL]: exposure };
}

/**
 * An Ingress sending every path of `host` to a Service port, of the class given: the cluster's
 * default IngressClass, named as the DefaultIngressClass admission plugin would set it, so that the
 * Ingress says which controller it is for even where that plugin is off.
 */
function ingressFor(
  name: string,
  namespace: string,
  host: string,
  service: string,
  port: number | string,
  objectLabels: Record<string, string>,
  className: string | undefined,
): KubeObject {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "Ingress",
    metadata: { name, namespace, labels: objectLabels },
    spec: {
      ...(className ? { ingressClassName: className } : {}),
      rules: [
        {
          host,
          http: {
            paths: [
              {
                path: "/",
                pathType: "Prefix",
                backend: {
                  service: {
                    name: service,
                    port: typeof port === "number" ? { number: port } : { name: port },
                  },
                },
              },
            ],
          },
        },
      ],
    },
  };
}

/**
 * traefik/whoami on 8080 (its `--port` flag: app.go) as a non-root, read-only pod that a lab of
 * control planes only can also run, its Service, and the Ingress for `whoami.DOMAIN`.
 */
export function canary(
  clusterId: string,
  domain: string,
  className?: string,
): { objects: KubeObject[]; target: ExposeTarget } {
  const host = `whoami.${domain}`;
  const objectLabels = labels(clusterId, "canary");
  const selector = { "app.kubernetes.io/name": CANARY_NAME };
  const meta = { name: CANARY_NAME, namespace: CANARY_NAMESPACE, labels: { ...objectLabels, ...selector } };
  const deployment: KubeObject = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta,
    spec: {
      replicas: 1,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: { ...objectLabels, ...selector } },
        spec: {
          terminationGracePeriodSeconds: 5,
          automountServiceAccountToken: false,
          tolerations: [
            { key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" },
          ],
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65532,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [
            {
              name: "whoami",
              image: WHOAMI_IMAGE,
              args: [`--port=${WHOAMI_PORT}`],
              ports: [{ name: "http", containerPort: WHOAMI_PORT, protocol: "TCP" }],
              readinessProbe: { httpGet: { path: "/health", port: "http" }, periodSeconds: 2 },
              resources: { requests: { cpu: "10m", memory: "16Mi" }, limits: { memory: "64Mi" } },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
            },
          ],
        },
      },
    },
  };
  const service: KubeObject = {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta,
    spec: {
      selector,
      ports: [{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }],
    },
  };
  const ingress = ingressFor(
    CANARY_NAME,
    CANARY_NAMESPACE,
    host,
    CANARY_NAME,
    "http",
    objectLabels,
    className,
  );
  return {
    objects: [deployment, service, ingress],
    target: {
      host,
      path: "/",
      ingress: { namespace: CANARY_NAMESPACE, name: CANARY_NAME },
      service: { namespace: CANARY_NAMESPACE, name: CANARY_NAME, port: "http" },
      expects: "whoami",
    },
  };
}

/** The Ingress of `kubehyve expose`: named after the Service, in its namespace. */
export function serviceIngress(
  clusterId: string,
  service: { namespace: string; name: string },
  port: number | string,
  host: string,
  className?: string,
): { ingress: KubeObject; target: ExposeTarget } {
  const ingress = ingressFor(
    service.name,
    service.namespace,
    host,
    service.name,
    port,
    labels(clusterId, "service"),
    className,
  );
  return { ingress, target: targetOf(ingress)! };
}

/** What to walk for an Ingress `kubehyve expose` made: its first rule's host and backend. */
export function targetOf(ingress: KubeObject): ExposeTarget | undefined {
  const rule = (ingress.spec?.rules ?? [])[0] as
    | {
        host?: string;
        http?: {
          paths?: {
            path?: string;
            backend?: { service?: { name: string; port?: { number?: number; name?: string } } };
          }[];
        };
      }
    | undefined;
  const path = rule?.http?.paths?.[0];
  const backend = path?.backend?.service;
  const port = backend?.port?.number ?? backend?.port?.name;
  if (!rule?.host || !backend || port === undefined) return undefined;
  const namespace = ingress.metadata.namespace ?? "default";
  return {
    host: rule.host,
    path: path?.path ?? "/",
    ingress: { namespace, name: ingress.metadata.name },
    service: { namespace, name: backend.name, port },
    expects: ingress.metadata.labels?.[EXPOSURE_LABEL] === "canary" ? "whoami" : "any",
  };
}
