/**
 * Traefik v3.7.9's `web` entrypoint on a loopback address, answering from what the API test server
 * stores, the way Traefik's Kubernetes providers would configure it (traefik/traefik at v3.7.9):
 *
 * - Routers come from Ingresses Traefik processes (pkg/provider/kubernetes/ingress/kubernetes.go
 *   shouldProcessIngress: an ingressClassName naming an IngressClass of controller
 *   traefik.io/ingress-controller, or the annotation `kubernetes.io/ingress.class: traefik`); a
 *   path whose Service does not exist or has no such port is skipped ("Cannot create service",
 *   loadService: "service not found", "service port not found"). Servers are the EndpointSlices'
 *   addresses with the port of the Service port's name, unless `serving` is false. The provider
 *   runs with allowEmptyServices=true (as the ingress stage deploys it), so a Service without a
 *   server keeps its router.
 * - `Path(/ping)` on web is the stage's ping IngressRoute to ping@internal: "OK" (pkg/ping/ping.go).
 * - No router for the Host: net/http's NotFoundHandler, 404 "404 page not found\n"
 *   (pkg/server/router/router.go). A router with no server: 503 "no available server\n", by
 *   http.Error (pkg/server/service/loadbalancer/wrr/wrr.go ServeHTTP). A server that refuses the
 *   connection: 502 with the bare status text "Bad Gateway" (pkg/proxy/httputil/proxy.go
 *   ErrorHandlerWithContext, ComputeStatusCode for a net.Error).
 * - A server is a pod of the store that is Running and serves the port (declares it); a
 *   traefik/whoami pod answers as its whoamiHandler does (traefik/whoami v1.11.0 app.go: "Hostname:",
 *   its IPs, "RemoteAddr:", then the request as net/http's Request.Write prints it).
 */
import type { KubeApiServer } from "./server.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

const CONTROLLER = "traefik.io/ingress-controller";
const TEXT = { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" };

export interface TraefikWeb {
  address: string;
  port: number;
  /** `HOST STATUS` per request, in order. */
  requests: string[];
  stop(): Promise<void>;
}

function processes(server: KubeApiServer, ingress: Any): boolean {
  const className = ingress.spec?.ingressClassName;
  if (className !== undefined)
    return server
      .list("networking.k8s.io/v1", "IngressClass")
      .some((c: Any) => c.metadata.name === className && c.spec?.controller === CONTROLLER);
  return ingress.metadata.annotations?.["kubernetes.io/ingress.class"] === "traefik";
}

/** The servers of a backend, or undefined when Traefik would skip the path (no router). */
function serversOf(server: KubeApiServer, namespace: string, backend: Any): string[] | undefined {
  const svc = server.get("v1", "Service", backend.name, namespace) as Any;
  if (!svc) return undefined;
  const port = (svc.spec?.ports ?? []).find(
    (p: Any) => backend.port?.number === p.port || (p.name && backend.port?.name === p.name),
  );
  if (!port) return undefined;
  const servers: string[] = [];
  for (const slice of server.list("discovery.k8s.io/v1", "EndpointSlice", namespace) as Any[]) {
    if (slice.metadata.labels?.["kubernetes.io/service-name"] !== backend.name) continue;
    const slicePort = (slice.ports ?? []).find((p: Any) => (p.name ?? "") === (port.name ?? ""));
    if (!slicePort?.port) continue;
    for (const e of slice.endpoints ?? []) {
      if (e.conditions?.serving === false) continue;
      for (const a of e.addresses ?? []) servers.push(`${a}:${slicePort.port}`);
    }
  }
  return servers;
}

function route(server: KubeApiServer, host: string, path: string): string[] | undefined {
  for (const ingress of server.list("networking.k8s.io/v1", "Ingress") as Any[]) {
    if (!processes(server, ingress)) continue;
    for (const rule of ingress.spec?.rules ?? []) {
      if (rule.host !== host) continue;
      for (const p of rule.http?.paths ?? []) {
        if (!p.backend?.service || !path.startsWith(p.path ?? "/")) continue;
        const servers = serversOf(server, ingress.metadata.namespace, p.backend.service);
        if (servers) return servers;
      }
    }
  }
  return undefined;
}

function whoami(pod: Any, req: Request, remote: string): string {
  const url = new URL(req.url);
  const head = [`${req.method} ${url.pathname}${url.search} HTTP/1.1`];
  for (const [k, v] of req.headers) head.push(`${k.replace(/(^|-)[a-z]/g, (c) => c.toUpperCase())}: ${v}`);
  return `Hostname: ${pod.metadata.name}\nIP: 127.0.0.1\nIP: ${pod.status.podIP}\nRemoteAddr: ${remote}\n${head.join("\r\n")}\r\n\r\n`;
}

export function serveTraefikWeb(server: KubeApiServer, address: string, port = 80): TraefikWeb {
  const requests: string[] = [];
  const http = Bun.serve({
    hostname: address,
    port,
    fetch(req, bun) {
      const url = new URL(req.url);
      const host = (req.headers.get("host") ?? "").replace(/:\d+$/, "").toLowerCase();
      const answer = (status: number, body: string) => {
        requests.push(`${host} ${status}`);
        return new Response(body, { status, headers: TEXT });
      };
      if (url.pathname === "/ping") {
        const ping = (server.list("traefik.io/v1alpha1", "IngressRoute") as Any[]).some((r) =>
          (r.spec?.routes ?? []).some(
            (x: Any) =>
              x.match === "Path(`/ping`)" && (x.services ?? []).some((s: Any) => s.name === "ping@internal"),
          ),
        );
        if (ping) return answer(200, "OK");
      }
      const servers = route(server, host, url.pathname);
      if (!servers) return answer(404, "404 page not found\n");
      if (!servers.length) return answer(503, "no available server\n");
      const [ip, p] = servers[0]!.split(":");
      const pod = (server.list("v1", "Pod") as Any[]).find(
        (x) =>
          x.status?.podIP === ip &&
          x.status?.phase === "Running" &&
          (x.spec?.containers ?? []).some((c: Any) =>
            (c.ports ?? []).some((cp: Any) => cp.containerPort === Number(p)),
          ),
      );
      if (!pod) return answer(502, "Bad Gateway");
      const remote = bun.requestIP(req);
      const image = pod.spec.containers.map((c: Any) => c.image).join(" ");
      if (/(^|\/)traefik\/whoami:/.test(image))
        return answer(200, whoami(pod, req, `${remote?.address ?? "127.0.0.1"}:${remote?.port ?? 0}`));
      return answer(200, `served by ${pod.metadata.name}\n`);
    },
  });
  return {
    address,
    port: http.port as number,
    requests,
    stop: () => http.stop(true),
  };
}
