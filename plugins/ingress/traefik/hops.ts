/**
 * The hops of the path from outside to Traefik, each one small named check that answers one
 * Diagnostic: verify runs them in order, and the exposure walk reuses them one by one.
 */
import {
  type Diagnostic,
  diag,
  type HttpAnswer,
  httpGet,
  isReady,
  type KubeClient,
  type Target,
} from "kubehyve";
import { parseIpv4 } from "./ipv4.ts";
import { NAME } from "./manifests.ts";

export type { HttpAnswer } from "kubehyve";

export type HttpGet = (url: string, opts?: { host?: string; signal?: AbortSignal }) => Promise<HttpAnswer>;

/**
 * GET through a target: curl where it is installed, else FreeBSD's fetch(1), which the base system
 * has. Either way the request leaves from that machine (the hypervisor host, on the lab's LAN).
 */
export function httpGetOn(target: Target, timeoutSeconds = 5): HttpGet {
  return (url, opts = {}) => httpGet(target, url, { ...opts, timeoutSeconds });
}

/** Hop: Traefik's Deployment has every replica ready (its readiness probe is GET /ping on :8080). */
export async function traefikDeploymentReady(kube: KubeClient, namespace: string): Promise<Diagnostic> {
  const dep = await kube.get("apps/v1", "Deployment", NAME, namespace);
  if (!dep) {
    return diag.error("traefik.not-installed", `Deployment ${namespace}/${NAME} does not exist`, {
      hint: "kubehyve up",
    });
  }
  const r = isReady(dep);
  return r.ready
    ? diag.ok("traefik.ready", `Traefik is running: ${r.reason}`)
    : diag.error("traefik.not-ready", `Traefik is not ready: ${r.reason}`, {
        hint: `kubectl -n ${namespace} describe pods -l app.kubernetes.io/name=${NAME}`,
      });
}

/** Hop: the LoadBalancer Service has an external address (the one asked for, when one was). */
export async function loadBalancerAddress(
  kube: KubeClient,
  namespace: string,
  wanted?: string,
): Promise<{ diagnostic: Diagnostic; address?: string }> {
  const svc = await kube.get("v1", "Service", NAME, namespace);
  if (!svc) {
    return {
      diagnostic: diag.error("traefik.no-service", `Service ${namespace}/${NAME} does not exist`, {
        hint: "kubehyve up",
      }),
    };
  }
  const ingress = (svc.status?.loadBalancer?.ingress ?? []) as { ip?: string; hostname?: string }[];
  const address = ingress.find((i) => i.ip)?.ip;
  if (!address) {
    return {
      diagnostic: diag.error(
        "traefik.no-address",
        `Service ${namespace}/${NAME} has no external address: the load balancer has not assigned one`,
        {
          hint: `kubectl -n ${namespace} describe service ${NAME}   # MetalLB's events say why (pool exhausted, address not in a pool)`,
        },
      ),
    };
  }
  // It goes into a URL the host asks for: "203.0.113.9@evil.example" would send that request to
  // another host. kube-apiserver admits only an IP there (ValidateLoadBalancerStatus), so anything
  // else is a broken or hostile server's.
  if (address.trim() !== address || parseIpv4(address) === undefined) {
    return {
      diagnostic: diag.error(
        "traefik.address-malformed",
        `Service ${namespace}/${NAME} reports the external address ${JSON.stringify(address)}, which is no IPv4 address: it is not asked`,
        { hint: `kubectl -n ${namespace} get service ${NAME} -o yaml   # status.loadBalancer.ingress` },
      ),
    };
  }
  if (wanted && address !== wanted) {
    return {
      address,
      diagnostic: diag.warn(
        "traefik.address-differs",
        `Traefik answers at ${address}, not at the fixed address ${wanted}`,
        { path: "stages.ingress.address", hint: `kubectl -n ${namespace} describe service ${NAME}` },
      ),
    };
  }
  return { address, diagnostic: diag.ok("traefik.address", `Traefik's external address is ${address}`) };
}

/** Hop: `GET http://ADDRESS:PORT/ping` is answered by Traefik's ping handler ("OK"). */
export async function pingThroughEntrypoint(
  get: HttpGet,
  address: string,
  port = 80,
  namespace = "traefik",
): Promise<Diagnostic> {
  const url = `http://${address}${port === 80 ? "" : `:${port}`}/ping`;
  const answer = await get(url);
  if (answer.error !== undefined || answer.status === undefined) {
    return diag.error("traefik.unreachable", `GET ${url} got no answer: ${answer.error ?? "no status"}`, {
      hint: "the address does not answer from the host: see the lb stage's checks (kubehyve doctor)",
    });
  }
  if (answer.status !== 200 || answer.body.trim() !== "OK") {
    return diag.error(
      "traefik.ping-failed",
      `GET ${url} answered ${answer.status} ${JSON.stringify(answer.body.trim().slice(0, 80))}, not Traefik's "OK"`,
      {
        hint: `kubectl get ingressroute -A; kubectl -n ${namespace} logs deploy/${NAME}   # is something else at that address, or is the ping route missing?`,
      },
    );
  }
  return diag.ok("traefik.ping", `GET ${url} is answered by Traefik`);
}

/** doctor: IngressRoutes of the traefik.containo.us group, which Traefik v3 no longer reads. */
export async function legacyIngressRoutes(kube: KubeClient): Promise<Diagnostic[]> {
  const crd = await kube.get(
    "apiextensions.k8s.io/v1",
    "CustomResourceDefinition",
    "ingressroutes.traefik.containo.us",
  );
  if (!crd) return [];
  const versions = ((crd.spec?.versions ?? []) as { name: string; served?: boolean }[]).filter(
    (v) => v.served !== false,
  );
  const out: Diagnostic[] = [];
  for (const version of versions) {
    const routes = await kube.list(`traefik.containo.us/${version.name}`, "IngressRoute");
    for (const r of routes) {
      out.push(
        diag.warn(
          "traefik.legacy-ingressroute",
          `IngressRoute ${r.metadata.namespace}/${r.metadata.name} is of the old traefik.containo.us group: Traefik v3 ignores it without a word`,
          {
            hint: `change its apiVersion to traefik.io/v1alpha1 (kubectl -n ${r.metadata.namespace} get ingressroute.traefik.containo.us ${r.metadata.name} -o yaml | sed 's#traefik.containo.us/${version.name}#traefik.io/v1alpha1#' | kubectl apply -f -)`,
          },
        ),
      );
    }
  }
  return out;
}
