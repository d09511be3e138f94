/**
 * This stage's hops of the exposure walk (`expose:hops`): where the path enters the cluster
 * (Traefik running, with the LoadBalancer address the lb stage gave it) and whether Traefik sends
 * the Host header to the Service. What Traefik answers by itself tells its cases apart, after its
 * sources at v3.7.9: no router for the host is net/http's NotFoundHandler ("404 page not found",
 * pkg/server/router/router.go); a router whose service has no server (allowEmptyServices, which
 * this stage sets) is the load balancer's http.Error 503 "no available server"
 * (pkg/server/service/loadbalancer/wrr/wrr.go ServeHTTP); a server that refuses the connection is
 * the proxy's 502 with the bare status text "Bad Gateway" (pkg/proxy/httputil/proxy.go
 * ErrorHandlerWithContext, ComputeStatusCode). Why there is no router comes from the Ingress provider's rules
 * (pkg/provider/kubernetes/ingress/kubernetes.go: shouldProcessIngress, loadService) and the line
 * it logs for each.
 */
import {
  type ExposeTarget,
  type HookPayload,
  type Hop,
  type HopContext,
  type HopResult,
  type HttpAnswer,
  httpGet,
  type KubeClient,
  type KubeObject,
  type PluginContext,
  pending,
  poll,
} from "kubehyve";
import { loadBalancerAddress, traefikDeploymentReady } from "./hops.ts";
import { NAME } from "./manifests.ts";
import type { TraefikOptions } from "./options.ts";

type Ctx = PluginContext<TraefikOptions>;

/** The IngressClass controller Traefik reads Ingresses for (kubernetes.go traefikDefaultIngressClassController). */
const CONTROLLER = "traefik.io/ingress-controller";
const CLASS_ANNOTATION = "kubernetes.io/ingress.class";

type Answer = "routed" | "no-router" | "no-server" | "refused" | "other" | "no-answer";

function kindOf(answer: HttpAnswer, target: ExposeTarget): Answer {
  if (answer.status === undefined) return "no-answer";
  const body = answer.body.trim();
  if (answer.status === 404 && body === "404 page not found") return "no-router";
  if (answer.status === 503 && body === "no available server") return "no-server";
  if (answer.status === 502 && body === "Bad Gateway") return "refused";
  if (target.expects === "whoami") {
    // whoamiHandler: "Hostname: …" first, then the request as net/http's Request.Write prints it.
    const host = new RegExp(`^Host: ${target.host.replace(/\./g, "\\.")}\\r?$`, "mi");
    return /^Hostname: \S+/m.test(answer.body) && host.test(answer.body) ? "routed" : "other";
  }
  return "routed";
}

/** Hop: Traefik runs and its Service has the external address the path enters at. */
function entryHop(ctx: Ctx): Hop {
  const ns = ctx.options.namespace;
  return {
    id: "traefik.address",
    place: "entry",
    title: "Traefik runs and has an external address",
    async walk(): Promise<HopResult> {
      const kube = await ctx.kube();
      const ready = await traefikDeploymentReady(kube, ns);
      if (ready.severity === "error") return { status: "broken", summary: ready.summary, hint: ready.hint };
      const lb = await loadBalancerAddress(kube, ns, ctx.options.address);
      if (!lb.address) return { status: "broken", summary: lb.diagnostic.summary, hint: lb.diagnostic.hint };
      const note = lb.diagnostic.severity === "warn" ? ` (${lb.diagnostic.summary})` : "";
      return {
        status: "ok",
        summary: `${lb.address}, entrypoint web on port 80 (Service ${ns}/${NAME})${note}`,
        facts: { address: lb.address, port: 80 },
      };
    },
  };
}

interface Rule {
  host?: string;
  http?: {
    paths?: { backend?: { service?: { name: string; port?: { number?: number; name?: string } } } }[];
  };
}

/** The line Traefik's Ingress provider logs when it skips a path (zerolog's console format). */
function logLine(
  message: string,
  ingress: KubeObject,
  service: string,
  port: string,
  error?: string,
): string {
  // kubernetes.go loadConfigurationFromIngresses logs with ingress, namespace, serviceName and
  // servicePort; zerolog's console writer puts error first and sorts the other fields.
  return `ERR ${message}${error ? ` error="${error}"` : ""} ingress=${ingress.metadata.name} namespace=${ingress.metadata.namespace} providerName=kubernetes serviceName=${service} servicePort=${port}`;
}

/** Why Traefik has no router for the host: the Ingress as its provider reads it. */
async function whyNoRouter(ctx: Ctx, kube: KubeClient, target: ExposeTarget): Promise<HopResult> {
  const { namespace, name } = target.ingress;
  const ref = `Ingress ${namespace}/${name}`;
  const logs = `kubectl -n ${ctx.options.namespace} logs deploy/${NAME} | grep 'ingress=${name} namespace=${namespace}'`;
  const routes = await ingressRoutesFor(kube, target.host);
  const also = routes.length
    ? `IngressRoutes that match Host(\`${target.host}\`): ${routes.join(", ")}`
    : undefined;
  const broken = (summary: string, hint: string, detail?: string): HopResult => ({
    status: "broken",
    summary: `Traefik has no route for ${target.host}: ${summary}`,
    hint,
    ...(detail || also ? { detail: [detail, also].filter(Boolean).join("\n") } : {}),
  });
  const ingress = await kube.get("networking.k8s.io/v1", "Ingress", name, namespace);
  if (!ingress) return broken(`${ref} does not exist`, "kubehyve expose SERVICE --host NAME makes it");
  const className = ingress.spec?.ingressClassName as string | undefined;
  if (className !== undefined) {
    const ingressClass = await kube.get("networking.k8s.io/v1", "IngressClass", className);
    if (ingressClass?.spec?.controller !== CONTROLLER)
      return broken(
        `${ref} has ingressClassName ${className}, ${ingressClass ? `whose controller is ${ingressClass.spec?.controller}` : "which does not exist"}: Traefik reads only Ingresses of a class of ${CONTROLLER}`,
        `kubectl -n ${namespace} patch ingress ${name} --type=merge -p '{"spec":{"ingressClassName":"${NAME}"}}'`,
      );
  } else {
    // shouldProcessIngress: without a class name, only the annotation `kubernetes.io/ingress.class:
    // traefik` makes Traefik read it (an Ingress made before a default IngressClass existed).
    const annotated = ingress.metadata.annotations?.[CLASS_ANNOTATION];
    if (annotated !== NAME)
      return broken(
        annotated === undefined
          ? `${ref} has no ingressClassName (and no ${CLASS_ANNOTATION} annotation): Traefik does not read it`
          : `${ref} is annotated ${CLASS_ANNOTATION}: ${annotated}, which Traefik does not read`,
        `kubectl -n ${namespace} patch ingress ${name} --type=merge -p '{"spec":{"ingressClassName":"${NAME}"}}'`,
      );
  }
  const rules = (ingress.spec?.rules ?? []) as Rule[];
  const rule = rules.find((r) => r.host === target.host);
  if (!rule)
    return broken(
      `${ref} has no rule for host ${target.host} (its hosts: ${rules.map((r) => r.host ?? "*").join(", ") || "none"})`,
      `kubectl -n ${namespace} edit ingress ${name}`,
    );
  const backend = rule.http?.paths?.[0]?.backend?.service;
  if (!backend)
    return broken(
      `${ref}'s rule for ${target.host} has no service backend`,
      `kubectl -n ${namespace} edit ingress ${name}`,
    );
  const wanted = backend.port?.number ?? backend.port?.name;
  const service = await kube.get("v1", "Service", backend.name, namespace);
  if (!service)
    return broken(
      `it sends ${target.host} to Service ${namespace}/${backend.name}, which does not exist`,
      logs,
      `Traefik logs: ${logLine("Cannot create service", ingress, backend.name, String(wanted), "service not found")}`,
    );
  const ports = (service.spec?.ports ?? []) as { name?: string; port: number }[];
  if (!ports.some((p) => p.port === wanted || (p.name !== undefined && p.name === wanted)))
    return broken(
      `it names port ${wanted} of Service ${namespace}/${backend.name}, which has ${ports.map((p) => p.name ?? p.port).join(", ") || "no port"}`,
      `kubectl -n ${namespace} edit ingress ${name}   # name a port of the Service`,
      `Traefik logs: ${logLine("Cannot create service", ingress, backend.name, String(wanted), "service port not found")}`,
    );
  // This stage sets allowEmptyServices, so a Service without endpoints still gets its router (and
  // answers 503): a 404 past every rule above is Traefik's to explain.
  return broken(`Traefik answers 404 although ${ref} looks right to it`, logs);
}

/** IngressRoutes (traefik.io) whose match names the host: another way to that name. */
async function ingressRoutesFor(kube: KubeClient, host: string): Promise<string[]> {
  try {
    const routes = await kube.list("traefik.io/v1alpha1", "IngressRoute");
    return routes
      .filter((r) =>
        ((r.spec?.routes ?? []) as { match?: string }[]).some((m) => m.match?.includes(`Host(\`${host}\`)`)),
      )
      .map((r) => `${r.metadata.namespace}/${r.metadata.name}`);
  } catch {
    // No IngressRoute CRD served: no IngressRoute to name.
    return [];
  }
}

/** Hop: a GET with the Host header, from the host to the address, reaches the Service's pods. */
function routeHop(ctx: Ctx, target: ExposeTarget): Hop {
  return {
    id: "traefik.route",
    place: "route",
    title: `Traefik routes ${target.host} to Service ${target.service.namespace}/${target.service.name}`,
    needs: ["address"],
    async walk(hc: HopContext): Promise<HopResult> {
      const { address, port = 80 } = hc.facts;
      const url = `http://${address}${port === 80 ? "" : `:${port}`}${target.path}`;
      let answer: HttpAnswer = { body: "", error: "not asked yet" };
      // A fresh Ingress takes Traefik a moment to see (its informers): its 404 and 503 are awaited.
      await poll(
        `Traefik to route ${target.host}`,
        async () => {
          answer = await httpGet(ctx.host, url, {
            host: target.host,
            timeoutSeconds: hc.httpTimeoutSec,
            signal: hc.signal,
          });
          const kind = kindOf(answer, target);
          return kind === "no-router" || kind === "no-server" ? pending(`HTTP ${answer.status}`) : true;
        },
        { timeoutMs: hc.settleMs, intervalMs: 1000, signal: hc.signal },
      ).catch((error: unknown) => {
        if (hc.signal.aborted) throw error;
      });
      const shown = `GET ${url} with Host: ${target.host}`;
      const kube = await ctx.kube();
      switch (kindOf(answer, target)) {
        case "routed": {
          const pod = /^Hostname: (\S+)/m.exec(answer.body)?.[1];
          return {
            status: "ok",
            summary: pod
              ? `${shown} is answered by pod ${pod}`
              : `${shown} is answered by the Service (HTTP ${answer.status})`,
          };
        }
        case "no-answer":
          return {
            status: "broken",
            summary: `${shown} gets no answer: ${answer.error}`,
            ...(answer.noClient ? { hint: answer.noClient } : {}),
          };
        case "no-router":
          return whyNoRouter(ctx, kube, target);
        case "no-server":
          return {
            status: "blocked",
            summary: `Traefik routes ${target.host} to Service ${target.service.namespace}/${target.service.name} but has no server for it (503 no available server): the Service has no ready endpoint`,
          };
        case "refused":
          return {
            status: "blocked",
            summary: `Traefik routes ${target.host}, but the pod it sends to does not answer on the Service's target port (502 Bad Gateway)`,
          };
        default:
          return {
            status: "broken",
            summary: `${shown} is answered, but not by the canary: HTTP ${answer.status} ${JSON.stringify(answer.body.trim().slice(0, 80))}`,
            hint: `another route takes ${target.host}: kubectl get ingress,ingressroute -A | grep ${target.host}`,
          };
      }
    },
  };
}

/** The `expose:hops` answer. */
export function exposeHops(ctx: Ctx, target: HookPayload<"expose:hops">): Hop[] {
  return [entryHop(ctx), routeHop(ctx, target)];
}
