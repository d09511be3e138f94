/**
 * MetalLB v0.16.1 (metallb-native.yaml), as far as the lb stage waits on it. Upstream sources are
 * metallb/metallb at v0.16.1:
 *
 * - Controller (controller/service.go convergeBalancer, internal/allocator/allocator.go): once the
 *   `controller` Deployment runs, a Service of type LoadBalancer without a loadBalancerClass gets
 *   the first free address of its pool and `status.loadBalancer.ingress: [{ip}]` (service.go
 *   lbIngressIPs). The pool is the one the `metallb.io/address-pool` annotation names, else any
 *   pool with `autoAssign` (the default) and no serviceAllocation (Allocate: "if !pool.AutoAssign
 *   || pool.ServiceAllocations != nil { continue }"). A kept address stays while its pool holds it;
 *   `avoidBuggyIPs` skips .0 and .255 addresses. No pools, no address.
 * - Configuration (internal/config/config.go poolsFor, ParseCIDR): an address is a CIDR or a
 *   `start-end` range; pools whose ranges overlap make the whole configuration invalid ("CIDR %q in
 *   pool %q overlaps with already defined CIDR %q"), which the controller and each speaker report
 *   in their ConfigurationState (`controller`, `speaker-<node>`; status.result Valid or Invalid
 *   with errorSummary: internal/k8s/controllers/configuration_state_controller.go, k8s.go).
 * - Speakers (speaker/layer2_controller.go ShouldAnnounce, speakersForAds): an address is
 *   announced from one node only if an L2Advertisement selects its pool (by `ipAddressPools`,
 *   `ipAddressPoolSelectors`, or neither, which means every pool: config.go
 *   setL2AdvertisementsToPools) and matches the node (`nodeSelectors`), the Service has a ready
 *   endpoint, and the node's speaker runs, is not NetworkUnavailable and does not carry
 *   `node.kubernetes.io/exclude-from-external-load-balancers`. Among the candidates the node whose
 *   sha256(node + "#" + ip) sorts first wins. The announcement shows as a ServiceL2Status in
 *   metallb-system (api/v1beta1/servicel2status_types.go; labels metallb.io/node,
 *   metallb.io/service-name, metallb.io/service-namespace from controllers/values.go).
 * - Webhook (metallb-webhook-configuration, failurePolicy Fail): served by the controller pod
 *   behind metallb-webhook-service. Without a ready controller the API server finds no endpoint;
 *   for `webhookRefusesForMs` after the controller became available its calls are refused, as
 *   right after an install while the cert-controller (open-policy-agent/cert-controller rotator in
 *   internal/k8s/webhook.go) has not put its CA bundle in place (metallb/metallb#1597, #1540:
 *   "failed calling webhook ... connect: connection refused"). Then it validates IPAddressPools as
 *   the configuration above (webhooks/webhookv1beta1/ipaddresspool_webhook.go: only in
 *   metallb-system, parsed, no overlap) and denies with admission.Denied.
 *
 * `startL2DataPlane` plays the LAN: an announced address answers HTTP from a ready backend pod as
 * agnhost netexec does (`/hostname` is the pod's name); one nobody announces answers nothing
 * (no ARP reply: the client's connection times out).
 */
import { createHash } from "node:crypto";
import { formatIpv4, parseIpv4 } from "../../../../src/core/ipv4.ts";
import type { Controller, ControllerView, ControllerWriter } from "../controllers.ts";
import type { KubeApiServer } from "../server.ts";
import type { WebhookAnswer, WebhookBackend, WebhookCall } from "../webhooks.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

const NS = "metallb-system";
const EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers";

interface Range {
  first: number;
  last: number;
}

/** Prefixes covering [first, last] exactly (what ipaddr.Summarize gives ParseCIDR for a range). */
function summarize(range: Range): string[] {
  const out: string[] = [];
  let start = range.first;
  while (start <= range.last) {
    let size = 1;
    while (start % (size * 2) === 0 && start + size * 2 - 1 <= range.last && size < 2 ** 32) size *= 2;
    out.push(`${formatIpv4(start)}/${32 - Math.log2(size)}`);
    start += size;
  }
  return out;
}

/**
 * Go's strings.TrimSpace, which MetalLB's ParseCIDR trims each end of a range with: it trims what
 * unicode.IsSpace calls space (Unicode's White_Space: NEL and the no-break spaces, but not the byte
 * order mark that JavaScript's trim() also removes).
 */
const GO_SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const GO_TRIM = new RegExp(`^${GO_SPACE}+|${GO_SPACE}+$`, "g");
const trimSpace = (s: string) => s.replace(GO_TRIM, "");

/**
 * Go's strings.SplitN(s, "-", 2): the text before the first dash and all of the rest (JavaScript's
 * split("-", 2) drops what follows a second dash).
 */
function splitRange(text: string): [string, string] {
  const i = text.indexOf("-");
  return [text.slice(0, i), text.slice(i + 1)];
}

/** MetalLB's ParseCIDR: the prefixes of a CIDR or a range, or its error message. */
export function parsePoolAddress(text: string): { prefixes: Range[] } | { error: string } {
  if (!text.includes("-")) {
    const m = /^([\d.]+)\/(\d{1,2})$/.exec(text);
    const ip = m ? parseIpv4(m[1]!) : undefined;
    const bits = m ? Number(m[2]) : 99;
    if (ip === undefined || bits > 32) return { error: `invalid CIDR "${text}"` };
    const size = 2 ** (32 - bits);
    const first = Math.floor(ip / size) * size;
    return { prefixes: [{ first, last: first + size - 1 }] };
  }
  const [a, b] = splitRange(text);
  const first = parseIpv4(trimSpace(a));
  if (first === undefined) return { error: `invalid IP range "${text}": invalid start IP "${a}"` };
  const last = parseIpv4(trimSpace(b));
  if (last === undefined) return { error: `invalid IP range "${text}": invalid end IP "${b}"` };
  if (first > last)
    return {
      error: `invalid IP range "${text}": start IP "${trimSpace(a)}" is after the end IP "${trimSpace(b)}"`,
    };
  return {
    prefixes: summarize({ first, last }).map((p) => {
      const [ip, bits] = p.split("/");
      const start = parseIpv4(ip!)!;
      return { first: start, last: start + 2 ** (32 - Number(bits)) - 1 };
    }),
  };
}

const show = (r: Range) => `${formatIpv4(r.first)}/${32 - Math.log2(r.last - r.first + 1)}`;

/** The configuration error of a set of pools, in MetalLB's words, or undefined when valid. */
export function poolsProblem(pools: readonly Any[]): string | undefined {
  const seen: Range[] = [];
  for (const pool of pools) {
    for (const address of pool.spec?.addresses ?? []) {
      const parsed = parsePoolAddress(String(address));
      if ("error" in parsed)
        return `parsing address pool ${pool.metadata.name}: invalid CIDR "${address}" in pool "${pool.metadata.name}": ${parsed.error}`;
      for (const r of parsed.prefixes) {
        const clash = seen.find((m) => r.first <= m.last && m.first <= r.last);
        if (clash)
          return `CIDR "${show(r)}" in pool "${pool.metadata.name}" overlaps with already defined CIDR "${show(clash)}"`;
        seen.push(r);
      }
    }
  }
  return undefined;
}

function available(obj: Any): boolean {
  return obj?.status?.conditions?.some((c: Any) => c.type === "Available" && c.status === "True") ?? false;
}

function podReady(p: Any): boolean {
  return (
    p.status?.phase === "Running" &&
    p.status?.conditions?.some((c: Any) => c.type === "Ready" && c.status === "True")
  );
}

function selects(selector: Any, labels: Record<string, string> | undefined): boolean {
  const ml = selector?.matchLabels ?? {};
  const okLabels = Object.entries(ml).every(([k, v]) => labels?.[k] === v);
  const okExpr = (selector?.matchExpressions ?? []).every((e: Any) => {
    const v = labels?.[e.key];
    if (e.operator === "In") return v !== undefined && e.values.includes(v);
    if (e.operator === "NotIn") return v === undefined || !e.values.includes(v);
    if (e.operator === "Exists") return v !== undefined;
    if (e.operator === "DoesNotExist") return v === undefined;
    return false;
  });
  return okLabels && okExpr;
}

/** The L2Advertisements that select a pool (config.go setL2AdvertisementsToPools). */
export function advertisementsFor(pool: Any, ads: readonly Any[]): Any[] {
  return ads.filter((ad) => {
    const names: string[] = ad.spec?.ipAddressPools ?? [];
    const selectors: Any[] = ad.spec?.ipAddressPoolSelectors ?? [];
    if (names.length === 0 && selectors.length === 0) return true;
    return names.includes(pool.metadata.name) || selectors.some((s) => selects(s, pool.metadata.labels));
  });
}

function rangesOf(pool: Any): Range[] {
  const out: Range[] = [];
  for (const a of pool.spec?.addresses ?? []) {
    const p = parsePoolAddress(String(a));
    if ("prefixes" in p) out.push(...p.prefixes);
  }
  return out;
}

function poolOf(ip: string, pools: readonly Any[]): Any | undefined {
  const n = parseIpv4(ip);
  return n === undefined
    ? undefined
    : pools.find((p) => rangesOf(p).some((r) => n >= r.first && n <= r.last));
}

function ingressIp(svc: Any): string | undefined {
  return svc.status?.loadBalancer?.ingress?.[0]?.ip;
}

export interface MetallbLabOptions {
  /** How long the webhook refuses its calls after the controller became available (default 0). */
  webhookRefusesForMs?: number;
}

export interface MetallbLab {
  controllers: Controller[];
  /** Webhook backends by Service, for validatingWebhooks(). */
  backends: Map<string, WebhookBackend>;
  /** Calls the webhook refused so far. */
  refusals(): number;
}

export function metallbControllers(opts: MetallbLabOptions = {}): MetallbLab {
  let readySince: number | undefined;
  let refused = 0;
  const controllerUp = (view: ControllerView) =>
    available(view.list("apps/Deployment", NS).find((d: Any) => d.metadata.name === "controller"));
  const pools = (view: ControllerView) =>
    (view.list("metallb.io/IPAddressPool", NS) as Any[]).sort((a, b) =>
      a.metadata.name < b.metadata.name ? -1 : 1,
    );

  const allocator: Controller = {
    name: "metallb-controller",
    manager: "metallb-controller",
    owns: ["/Service"],
    reconcile(svc: Any, view) {
      if (svc.spec?.type !== "LoadBalancer" || svc.spec?.loadBalancerClass) return undefined;
      if (!controllerUp(view)) return undefined;
      const all = pools(view);
      if (poolsProblem(all)) return undefined;
      const wanted = svc.metadata.annotations?.["metallb.io/address-pool"];
      const candidates = wanted
        ? all.filter((p) => p.metadata.name === wanted)
        : all.filter((p) => p.spec?.autoAssign !== false && !p.spec?.serviceAllocation);
      const current = ingressIp(svc);
      if (current && candidates.includes(poolOf(current, all))) return svc.status;
      const used = new Set(
        (view.list("/Service") as Any[]).filter((s) => s.metadata.uid !== svc.metadata.uid).map(ingressIp),
      );
      for (const pool of candidates) {
        for (const r of rangesOf(pool)) {
          for (let n = r.first; n <= r.last; n++) {
            if (pool.spec?.avoidBuggyIPs && (n % 256 === 0 || n % 256 === 255)) continue;
            const ip = formatIpv4(n);
            if (!used.has(ip)) return { ...svc.status, loadBalancer: { ingress: [{ ip }] } };
          }
        }
      }
      return { ...svc.status, loadBalancer: {} };
    },
  };

  const speakers: Controller = {
    name: "metallb-speaker",
    manager: "metallb-speaker",
    owns: [],
    reconcile: () => undefined,
    sync(view: ControllerWriter) {
      const up = controllerUp(view);
      if (up) readySince ??= Date.now();
      else readySince = undefined;
      const all = pools(view);
      const problem = poolsProblem(all);
      const nodes = view.list("/Node") as Any[];
      const speakerPods = (view.list("/Pod", NS) as Any[]).filter(
        (p) => p.metadata.labels?.component === "speaker" && podReady(p),
      );
      const speakerNodes = new Set(speakerPods.map((p) => p.spec.nodeName));
      const state = (name: string, labels: Record<string, string>) => ({
        apiVersion: "metallb.io/v1beta1",
        kind: "ConfigurationState",
        metadata: { name, namespace: NS, labels },
        status: problem
          ? { result: "Invalid", errorSummary: problem }
          : { result: "Valid", errorSummary: "" },
      });
      if (
        !view
          .list("apiextensions.k8s.io/CustomResourceDefinition")
          .some((c: Any) => c.metadata.name === "configurationstates.metallb.io")
      )
        return;
      if (up)
        view.write(state("controller", { "metallb.io/component-type": "controller" }), "configReconciler");
      for (const node of speakerNodes)
        view.write(
          state(`speaker-${node}`, { "metallb.io/component-type": "speaker", "metallb.io/node-name": node }),
          "configReconciler",
        );
      const ads = view.list("metallb.io/L2Advertisement", NS) as Any[];
      const announced = new Set<string>();
      for (const svc of view.list("/Service") as Any[]) {
        const ip = ingressIp(svc);
        if (svc.spec?.type !== "LoadBalancer" || !ip || problem) continue;
        const pool = poolOf(ip, all);
        if (!pool) continue;
        const endpoints = (view.list("/Pod", svc.metadata.namespace) as Any[]).filter(
          (p) =>
            svc.spec.selector &&
            selects({ matchLabels: svc.spec.selector }, p.metadata.labels) &&
            podReady(p),
        );
        if (endpoints.length === 0) continue;
        const forService = advertisementsFor(pool, ads).filter(
          (ad) =>
            !(ad.spec?.serviceSelectors ?? []).length ||
            ad.spec.serviceSelectors.some((s: Any) => selects(s, svc.metadata.labels)),
        );
        const candidates = nodes
          .filter((n) => speakerNodes.has(n.metadata.name))
          .filter(
            (n) =>
              !n.status?.conditions?.some((c: Any) => c.type === "NetworkUnavailable" && c.status === "True"),
          )
          .filter((n) => n.metadata.labels?.[EXCLUDE] === undefined)
          .filter((n) =>
            forService.some(
              (ad) =>
                !(ad.spec?.nodeSelectors ?? []).length ||
                ad.spec.nodeSelectors.some((s: Any) => selects(s, n.metadata.labels)),
            ),
          )
          .map((n) => String(n.metadata.name))
          .sort((a, b) => {
            const ha = createHash("sha256").update(`${a}#${ip}`).digest("hex");
            const hb = createHash("sha256").update(`${b}#${ip}`).digest("hex");
            return ha < hb ? -1 : 1;
          });
        const node = candidates[0];
        if (!node) continue;
        const name = `l2-${createHash("sha256").update(`${svc.metadata.namespace}/${svc.metadata.name}`).digest("hex").slice(0, 5)}`;
        announced.add(name);
        view.write(
          {
            apiVersion: "metallb.io/v1beta1",
            kind: "ServiceL2Status",
            metadata: {
              name,
              namespace: NS,
              labels: {
                "metallb.io/node": node,
                "metallb.io/service-name": svc.metadata.name,
                "metallb.io/service-namespace": svc.metadata.namespace,
              },
            },
            spec: {},
            status: {
              node,
              serviceName: svc.metadata.name,
              serviceNamespace: svc.metadata.namespace,
              interfaces: [{ name: "enp1s0" }],
            },
          },
          "metallb-speaker",
        );
      }
      for (const s of view.list("metallb.io/ServiceL2Status", NS) as Any[])
        if (!announced.has(s.metadata.name))
          view.remove("metallb.io/v1beta1", "ServiceL2Status", s.metadata.name, NS);
    },
  };

  let viewRef: ControllerView | undefined;
  const watcher: Controller = {
    name: "metallb-webhook-endpoints",
    owns: [],
    reconcile: () => undefined,
    sync(view) {
      viewRef = view;
    },
  };

  const webhook: WebhookBackend = (call: WebhookCall): WebhookAnswer => {
    const view = viewRef;
    const url = `https://metallb-webhook-service.${NS}.svc:443${call.path}?timeout=10s`;
    if (!view || !controllerUp(view))
      return { unreachable: `Post "${url}": no endpoints available for service "metallb-webhook-service"` };
    readySince ??= Date.now();
    if (Date.now() - readySince < (opts.webhookRefusesForMs ?? 0)) {
      refused++;
      return { unreachable: `Post "${url}": dial tcp 10.233.12.88:443: connect: connection refused` };
    }
    const req = call.request;
    if (req.resource.kind !== "IPAddressPool" || req.operation === "DELETE") return { allowed: true };
    const obj = req.object as Any;
    if (obj.metadata?.namespace !== NS)
      return { allowed: false, message: `resource must be created in ${NS} namespace` };
    const others = pools(view).filter((p) => p.metadata.name !== obj.metadata.name);
    const problem = poolsProblem([...others, obj]);
    return problem ? { allowed: false, message: problem } : { allowed: true };
  };

  return {
    controllers: [watcher, allocator, speakers],
    backends: new Map([[`${NS}/metallb-webhook-service`, webhook]]),
    refusals: () => refused,
  };
}

export interface L2DataPlane {
  /** Requests each address was asked, in order: `127.0.0.241 GET /hostname`. */
  requests: string[];
  stop(): Promise<void>;
}

/**
 * The LAN as seen from the hypervisor host: HTTP on `port` of each address, answered only while
 * MetalLB announces it for a LoadBalancer Service with that port (see the module comment).
 */
export function startL2DataPlane(
  server: KubeApiServer,
  addresses: readonly string[],
  port: number,
): L2DataPlane {
  const requests: string[] = [];
  const servers = addresses.map((address) =>
    Bun.serve({
      hostname: address,
      port,
      idleTimeout: 30,
      async fetch(req) {
        const path = new URL(req.url).pathname;
        requests.push(`${address} ${req.method} ${path}`);
        const svc = (server.list("v1", "Service") as Any[]).find(
          (s) => ingressIp(s) === address && (s.spec?.ports ?? []).some((p: Any) => p.port === port),
        );
        const announced =
          svc &&
          (server.list("metallb.io/v1beta1", "ServiceL2Status", NS) as Any[]).some(
            (l) =>
              l.status?.serviceName === svc.metadata.name &&
              l.status?.serviceNamespace === svc.metadata.namespace,
          );
        const backend =
          announced &&
          (server.list("v1", "Pod", svc.metadata.namespace) as Any[])
            .filter((p) => selects({ matchLabels: svc.spec.selector }, p.metadata.labels) && podReady(p))
            .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1))[0];
        if (!backend) {
          // Nobody answers ARP for the address: the client waits until it gives up.
          await new Promise((resolve) => req.signal.addEventListener("abort", resolve, { once: true }));
          return new Response(null, { status: 504 });
        }
        if (path === "/hostname") return new Response(String(backend.metadata.name));
        return new Response(`NOW: ${new Date().toISOString()}`);
      },
    }),
  );
  return {
    requests,
    async stop() {
      await Promise.all(servers.map((s) => s.stop(true)));
    },
  };
}

/** Loopback addresses `base+from` .. `base+to` of 127.0.0.0/8 (e.g. 127.77.0.240 - 127.77.0.243). */
export function loopbackRange(prefix: string, from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => `${prefix}.${from + i}`);
}
