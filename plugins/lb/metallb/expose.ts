/**
 * This stage's hop of the exposure walk (`expose:hops`): the address the path enters at answers
 * from the hypervisor host. When it does not, the walk says whether the address is one of MetalLB's
 * pools, which node announces it (its ServiceL2Status), and what the stage that knows the host
 * finds on it through `lb:l2-host` (the bridge, pf/ipfw, TSO/LRO): the same checks as this stage's
 * check, now as the reasons behind one broken hop.
 */
import {
  type Diagnostic,
  type HookPayload,
  type Hop,
  type HopContext,
  type HopResult,
  httpGet,
  type PluginContext,
  parseIpv4,
} from "kubehyve";
import { poolRanges } from "./addresses.ts";
import { collectHostDiagnostics, L2_HOST_HOOK } from "./host-hook.ts";
import { METALLB_NAMESPACE } from "./manifests.ts";
import type { MetallbOptions } from "./options.ts";

type Ctx = PluginContext<MetallbOptions>;

/** Who announces `address`, from MetalLB's ServiceL2Status objects (one per announced Service). */
async function announcerOf(ctx: Ctx, address: string): Promise<string | undefined> {
  try {
    const kube = await ctx.kube();
    const services = await kube.list("v1", "Service");
    const svc = services.find((s) =>
      ((s.status?.loadBalancer?.ingress ?? []) as { ip?: string }[]).some((i) => i.ip === address),
    );
    if (!svc) return undefined;
    const statuses = await kube.list("metallb.io/v1beta1", "ServiceL2Status", {
      namespace: METALLB_NAMESPACE,
    });
    const mine = statuses.find(
      (s) =>
        s.status?.serviceName === svc.metadata.name && s.status?.serviceNamespace === svc.metadata.namespace,
    );
    return mine?.status?.node as string | undefined;
  } catch {
    // No ServiceL2Status served (another MetalLB version): nothing to name.
    return undefined;
  }
}

function addressHop(ctx: Ctx): Hop {
  return {
    id: "metallb.address",
    place: "address",
    title: "the address answers from the host",
    needs: ["address"],
    async walk(hc: HopContext): Promise<HopResult> {
      const { address, port = 80 } = hc.facts as { address: string; port?: number };
      const url = `http://${address}${port === 80 ? "" : `:${port}`}/`;
      const answer = await httpGet(ctx.host, url, {
        host: hc.target.host,
        timeoutSeconds: hc.httpTimeoutSec,
        signal: hc.signal,
      });
      // Nothing was asked: saying the address does not answer (and blaming layer 2) would be wrong.
      if (answer.noClient)
        return {
          status: "broken",
          summary: `the walk cannot ask ${address} from ${ctx.host.name}: ${answer.error}`,
          hint: answer.noClient,
        };
      // Any HTTP answer is enough here: what it says is the next hop's business.
      if (answer.status !== undefined)
        return {
          status: "ok",
          summary: `${address} port ${port} answers ${ctx.host.name} (HTTP ${answer.status})`,
        };
      const ip = parseIpv4(address);
      const pool = poolRanges(ctx.options).find(
        (r) => ip !== undefined && ip >= r.range.first && ip <= r.range.last,
      );
      const summary = `${address} port ${port} does not answer ${ctx.host.name}: ${answer.error ?? "no answer"}`;
      if (!pool)
        return {
          status: "broken",
          summary: `${summary}; it is in none of MetalLB's pools, so no node announces it`,
          hint: "give the Service an address of stages.lb.pools (kubectl describe service shows MetalLB's events)",
        };
      const host: Diagnostic[] = collectHostDiagnostics(
        await ctx.hooks.call(L2_HOST_HOOK, {
          subnet: ctx.cluster.network.subnet,
          addresses: ctx.options.pools.flatMap((p) => p.addresses),
        }),
      );
      const problems = host.filter((d) => d.severity === "error" || d.severity === "warn");
      const announcer = await announcerOf(ctx, address);
      const k = `kubectl --kubeconfig ${ctx.kubeconfigPath} -n ${METALLB_NAMESPACE}`;
      return {
        status: "broken",
        summary: `${summary} (pool ${pool.pool}; ${announcer ? `announced from node ${announcer}` : "no speaker announces it"})`,
        detail: problems.length
          ? `the host's layer-2 checks:\n${problems.map((d) => `${d.summary} (${d.code})`).join("\n")}`
          : "the host's layer-2 checks find nothing wrong",
        hint:
          problems.find((d) => d.hint)?.hint ??
          (announcer
            ? `${k} logs ds/speaker; on ${ctx.host.name}: arp -an | grep ${address}`
            : `${k} get servicel2statuses; ${k} logs ds/speaker (node.kubernetes.io/exclude-from-external-load-balancers?)`),
        findings: host,
      };
    },
  };
}

/** The `expose:hops` answer. */
export function exposeHops(ctx: Ctx, _target: HookPayload<"expose:hops">): Hop[] {
  return [addressHop(ctx)];
}
