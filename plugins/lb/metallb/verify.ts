/**
 * Does MetalLB work? Its controller and a speaker on every node run, the components accept the
 * configuration (their ConfigurationStates), and a canary LoadBalancer Service per pool gets an
 * address of that pool which answers the hypervisor host over HTTP.
 */
import {
  type Diagnostic,
  diag,
  isReady,
  type KubeClient,
  type KubeObject,
  ownerLabels,
  type PluginContext,
  parseIpv4,
  pending,
  poll,
  stageOwner,
} from "kubehyve";
import { parsePoolAddress } from "./addresses.ts";
import { METALLB_NAMESPACE } from "./manifests.ts";
import type { MetallbOptions, PoolOptions } from "./options.ts";

type Ctx = PluginContext<MetallbOptions>;

const BACKEND_PORT = 8080;

export async function componentDiagnostics(ctx: Ctx, kube: KubeClient): Promise<Diagnostic[]> {
  const out: Diagnostic[] = [];
  const k = `kubectl --kubeconfig ${ctx.kubeconfigPath} -n ${METALLB_NAMESPACE}`;
  const controller = await kube.get("apps/v1", "Deployment", "controller", METALLB_NAMESPACE);
  const c = controller ? isReady(controller) : { ready: false, reason: "not found" };
  out.push(
    c.ready
      ? diag.ok("metallb.controller", "MetalLB's controller is ready")
      : diag.error("metallb.controller", `MetalLB's controller is not ready: ${c.reason}`, {
          hint: `${k} describe deploy/controller; ${k} logs deploy/controller`,
        }),
  );
  const pods = await kube.list("v1", "Pod", {
    namespace: METALLB_NAMESPACE,
    labelSelector: "component=speaker",
  });
  const missing = ctx.cluster.nodes
    .map((n) => n.name)
    .filter((name) => !pods.some((p) => p.spec?.nodeName === name && isReady(p).ready));
  out.push(
    missing.length === 0
      ? diag.ok(
          "metallb.speakers",
          `a MetalLB speaker is ready on ${ctx.cluster.nodes.map((n) => n.name).join(", ")}`,
        )
      : diag.error("metallb.speakers", `no ready MetalLB speaker on ${missing.join(", ")}`, {
          hint: `${k} get pods -l component=speaker -o wide; ${k} describe ds/speaker`,
        }),
  );
  const states = await kube.list("metallb.io/v1beta1", "ConfigurationState", {
    namespace: METALLB_NAMESPACE,
  });
  const invalid = states.filter((s) => s.status?.result === "Invalid");
  if (invalid.length)
    out.push(
      diag.error("metallb.configuration", "MetalLB refuses its configuration", {
        detail: invalid.map((s) => `${s.metadata.name}: ${s.status?.errorSummary ?? ""}`).join("\n"),
        hint: `${k} get configurationstates -o yaml`,
      }),
    );
  else if (!states.some((s) => s.status?.result === "Valid"))
    out.push(
      diag.warn("metallb.configuration", "MetalLB's components have not reported on the configuration yet", {
        hint: `${k} get configurationstates`,
      }),
    );
  else out.push(diag.ok("metallb.configuration", "MetalLB's components accept the configuration"));
  return out;
}

function inPool(pool: PoolOptions, ip: string): boolean {
  const n = parseIpv4(ip);
  return (
    n !== undefined &&
    pool.addresses.some((a) => {
      const r = parsePoolAddress(a);
      return "first" in r && n >= r.first && n <= r.last;
    })
  );
}

/** What the canary found, per pool, and whether its pod and Services are gone again. */
export interface CanaryResult {
  found: Diagnostic[];
  cleanedUp: boolean;
}

/**
 * A backend pod (agnhost netexec, whose /hostname answers with the pod's name) and, per pool, a
 * LoadBalancer Service that asks for an address of that pool (`metallb.io/address-pool`). The host
 * then fetches http://ADDRESS:PORT/hostname with FreeBSD's fetch(1) (`-T` timeout, `-o -` to
 * stdout, exit 1 on failure: usr.bin/fetch/fetch.1) and must get the pod's name. Everything is
 * removed afterwards.
 */
export async function loadBalancerCanary(ctx: Ctx, kube: KubeClient): Promise<CanaryResult> {
  const suffix = crypto.randomUUID().slice(0, 8);
  const app = `kubehyve-canary-lb-${suffix}`;
  const labels = { ...ownerLabels(stageOwner(ctx)), "kubehyve.io/canary": app };
  const made: [string, string][] = [];
  let leftover = false;
  const cleanup = async () => {
    for (const [kind, name] of made.splice(0).reverse())
      await kube.delete("v1", kind, name, "default").catch(() => {
        leftover = true;
        return false;
      });
  };
  ctx.onCleanup(cleanup);
  const timeoutMs = ctx.options.canary.timeoutSec * 1000;
  const port = ctx.options.canary.port;
  const found: Diagnostic[] = [];
  try {
    const pod: KubeObject = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: app, namespace: "default", labels },
      spec: {
        tolerations: [
          { key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" },
        ],
        terminationGracePeriodSeconds: 0,
        containers: [
          {
            name: "netexec",
            image: ctx.options.canary.image,
            args: ["netexec", `--http-port=${BACKEND_PORT}`],
            ports: [{ containerPort: BACKEND_PORT }],
          },
        ],
      },
    };
    made.push(["Pod", app]);
    await kube.apply(pod);
    await poll(
      `canary pod default/${app} to be ready`,
      async () => {
        const live = await kube.get("v1", "Pod", app, "default");
        return live && isReady(live).ready ? true : pending(live ? isReady(live).reason : "not found");
      },
      { timeoutMs, intervalMs: 1000, signal: ctx.signal },
    );
    for (const pool of ctx.options.pools) {
      const name = `${app}-${pool.name}`.slice(0, 63).replace(/-+$/, "");
      const service: KubeObject = {
        apiVersion: "v1",
        kind: "Service",
        metadata: {
          name,
          namespace: "default",
          labels,
          annotations: { "metallb.io/address-pool": pool.name },
        },
        spec: {
          type: "LoadBalancer",
          selector: { "kubehyve.io/canary": app },
          ports: [{ name: "http", port, targetPort: BACKEND_PORT, protocol: "TCP" }],
        },
      };
      made.push(["Service", name]);
      found.push(await probePool(ctx, kube, pool, service, app, timeoutMs));
    }
  } catch (error) {
    found.push(
      diag.error("metallb.canary", `the LoadBalancer canary did not complete: ${(error as Error).message}`, {
        hint: `kubectl --kubeconfig ${ctx.kubeconfigPath} get pods,svc -n default -l kubehyve.io/canary -o wide`,
      }),
    );
  } finally {
    await cleanup();
  }
  return { found, cleanedUp: !leftover };
}

async function probePool(
  ctx: Ctx,
  kube: KubeClient,
  pool: PoolOptions,
  service: KubeObject,
  backend: string,
  timeoutMs: number,
): Promise<Diagnostic> {
  const name = service.metadata.name;
  const k = `kubectl --kubeconfig ${ctx.kubeconfigPath}`;
  await kube.apply(service);
  let ip: string;
  try {
    ip = await poll(
      `Service default/${name} to get an address of pool ${pool.name}`,
      async () => {
        const live = await kube.get("v1", "Service", name, "default");
        const got = live?.status?.loadBalancer?.ingress?.[0]?.ip as string | undefined;
        return got ?? pending("no address assigned yet");
      },
      { timeoutMs, intervalMs: 1000, signal: ctx.signal },
    );
  } catch (error) {
    return diag.error("metallb.canary", `pool ${pool.name}: a LoadBalancer Service got no address`, {
      detail: (error as Error).message,
      hint: `${k} -n ${METALLB_NAMESPACE} get ipaddresspool ${pool.name} -o yaml (a full pool has no address to give); ${k} -n ${METALLB_NAMESPACE} logs deploy/controller`,
    });
  }
  if (!inPool(pool, ip))
    return diag.error(
      "metallb.canary",
      `pool ${pool.name}: the Service got ${ip}, which is not an address of the pool`,
      {
        hint: `${k} -n ${METALLB_NAMESPACE} get ipaddresspools -o yaml`,
      },
    );
  const url = `http://${ip}:${ctx.options.canary.port}/hostname`;
  const argv = ["fetch", "-q", "-o", "-", "-T", String(Math.min(5, ctx.options.canary.timeoutSec)), url];
  try {
    await poll(
      `${ip}:${ctx.options.canary.port} to answer the hypervisor host`,
      async () => {
        const r = await ctx.host.run(argv, { timeoutMs: 10_000, signal: ctx.signal });
        if (r.code === 0 && r.stdout.trim() === backend) return true;
        return pending(
          r.code === 0
            ? `answered ${JSON.stringify(r.stdout.trim())}, not ${backend}`
            : r.stderr.trim() || `fetch exited ${r.code}`,
        );
      },
      { timeoutMs, intervalMs: 2000, signal: ctx.signal },
    );
  } catch (error) {
    const statuses = await kube
      .list("metallb.io/v1beta1", "ServiceL2Status", { namespace: METALLB_NAMESPACE })
      .catch(() => []);
    const announcer = statuses.find((s) => s.status?.serviceName === name)?.status?.node as
      | string
      | undefined;
    return diag.error("metallb.canary", `pool ${pool.name}: ${ip} does not answer the hypervisor host`, {
      detail: `${(error as Error).message}\n${announcer ? `MetalLB announces it from ${announcer}.` : "No speaker announces it (no ServiceL2Status)."}`,
      hint: announcer
        ? `the node answers ARP but the traffic does not come through: check the host's bridge (${ctx.host.name}: ifconfig, and that pf/ipfw let bridged traffic pass) and ${k} -n ${METALLB_NAMESPACE} logs ds/speaker`
        : `${k} -n ${METALLB_NAMESPACE} logs ds/speaker; ${k} get nodes --show-labels (node.kubernetes.io/exclude-from-external-load-balancers)`,
    });
  }
  return diag.ok(
    "metallb.canary",
    `pool ${pool.name}: a LoadBalancer Service got ${ip}, which answers the hypervisor host over HTTP`,
  );
}
