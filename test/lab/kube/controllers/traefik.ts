/**
 * What the test server plays for the ingress stage: Traefik's pods become ready only when their
 * readiness probe asks an entrypoint that serves /ping, and LoadBalancer Services get an address
 * from a pool (a small stand-in for MetalLB's controller, to be replaced by the lb stage's own).
 */
import { type Controller, type ControllerView, deploymentController } from "../controllers.ts";
import type { Obj } from "../ssa.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

/**
 * The port Traefik answers /ping on, from its arguments, or undefined when it does not. Traefik's
 * ping handler is enabled by `--ping` / `--ping=true` and served on `--ping.entryPoint` (default
 * "traefik"), whose port is in `--entryPoints.NAME.address=:PORT` (traefik/traefik
 * pkg/config/static/static_config.go SetEffectiveConfiguration and pkg/ping/ping.go).
 */
export function traefikPingPort(args: string[]): number | undefined {
  const ping = args.some((a) => a === "--ping" || a === "--ping=true");
  if (!ping) return undefined;
  const entry =
    args.find((a) => a.toLowerCase().startsWith("--ping.entrypoint="))?.split("=")[1] ?? "traefik";
  const address = args
    .find((a) => a.toLowerCase().startsWith(`--entrypoints.${entry.toLowerCase()}.address=`))
    ?.split("=")[1];
  const port = address ? Number(/:(\d+)/.exec(address)?.[1]) : Number.NaN;
  return Number.isFinite(port) ? port : undefined;
}

function isTraefik(obj: Any): boolean {
  return (obj.spec?.template?.spec?.containers ?? []).some((c: Any) => /(^|\/)traefik:/.test(c.image ?? ""));
}

/** Would the kubelet's readiness probe (GET path on port) get Traefik's 200? */
export function traefikProbeAnswers(container: Any): boolean {
  const port = traefikPingPort(container.args ?? []);
  const get = container.readinessProbe?.httpGet;
  if (port === undefined || !get || get.path !== "/ping") return false;
  const named = (container.ports ?? []).find((p: Any) => p.name === get.port)?.containerPort;
  return (typeof get.port === "number" ? get.port : named) === port;
}

/**
 * kube-controller-manager's Deployment status (deploymentController), except that a Traefik
 * Deployment whose probe would not be answered never has a ready replica, as on a real node.
 */
export const traefikDeploymentController: Controller = {
  name: "deployment",
  owns: ["apps/Deployment"],
  reconcile(obj: Any, view: ControllerView) {
    if (!isTraefik(obj)) return deploymentController.reconcile(obj, view);
    const container = obj.spec.template.spec.containers.find((c: Any) => /(^|\/)traefik:/.test(c.image));
    const answers = traefikProbeAnswers(container);
    return deploymentController.reconcile(obj, { ...view, held: (o) => view.held(o) || !answers });
  },
};

/**
 * A stand-in for MetalLB's controller (metallb/metallb internal/allocator and controller/service.go):
 * a LoadBalancer Service gets the address its `metallb.io/loadBalancerIPs` annotation asks for when
 * that address is in the pool and free, or else the first free one; an address it cannot have leaves
 * the status empty (MetalLB's AllocationFailed event). A Service keeps the address it has.
 */
export function loadBalancerStandIn(pool: string[]): Controller {
  return {
    name: "loadbalancer-standin",
    owns: ["/Service"],
    reconcile(obj: Any, view) {
      if (obj.spec?.type !== "LoadBalancer") return undefined;
      const current = obj.status?.loadBalancer?.ingress?.[0]?.ip;
      const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
      const taken = new Set(
        view
          .list("/Service")
          .filter((s: Any) => `${s.metadata.namespace}/${s.metadata.name}` !== key)
          .map((s: Any) => s.status?.loadBalancer?.ingress?.[0]?.ip)
          .filter(Boolean),
      );
      const wanted = obj.metadata.annotations?.["metallb.io/loadBalancerIPs"];
      let ip: string | undefined;
      if (wanted) ip = pool.includes(wanted) && !taken.has(wanted) ? wanted : undefined;
      else ip = current && pool.includes(current) ? current : pool.find((a) => !taken.has(a));
      const status: Obj = {
        ...(obj.status ?? {}),
        loadBalancer: ip ? { ingress: [{ ip, ipMode: "VIP" }] } : {},
      };
      return status;
    },
  };
}
