/**
 * The exposure walk on the API test server: a real dnsmasq answers for the lab's DNS server,
 * Traefik's web entrypoint answers on the LoadBalancer address as Traefik v3.7.9 does, the host's
 * requests go through a real curl, and the bhyve stage reads the simulated FreeBSD host. Each hop
 * is broken in turn, and the walk names that hop and its fix; the canary is gone afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { v } from "kubehyve";
import { exposeHops } from "../../plugins/lb/metallb/expose.ts";
import metallbPlugin from "../../plugins/lb/metallb/index.ts";
import { optionsSchema as metallbOptions } from "../../plugins/lb/metallb/options.ts";
import { type AnyPlugin, definePlugin } from "../../src/core/contract.ts";
import {
  type ExposeTarget,
  type HopPlace,
  type HopReport,
  type HopResult,
  type SourcedHop,
  verdictOf,
  walkHops,
} from "../../src/core/expose.ts";
import type { RunEvent } from "../../src/core/reporter.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import type { Target } from "../../src/targets/target.ts";
import { type ExposeLab, startExposeLab } from "../lab/expose-lab.ts";
import { have } from "../lab/prereq.ts";

type Hop = HopReport & { type: "hop" };
const hops = (events: RunEvent[]) => events.filter((e): e is Hop & RunEvent => e.type === "hop") as Hop[];
const statuses = (events: RunEvent[]) => hops(events).map((h) => `${h.id} ${h.status}`);
const verdict = (events: RunEvent[]) =>
  events.find((e) => e.type === "diagnostic" && (e.code === "expose.ok" || e.code === "expose.broken")) as
    | (RunEvent & { type: "diagnostic" })
    | undefined;

const FAST = { settleMs: 1500, httpTimeoutSec: 2, readyTimeoutMs: 5000 };

let lab: ExposeLab;
beforeAll(async () => {
  if (!have("dnsmasq", "dnsmasq-base") || !have("curl", "curl") || !have("openssl", "openssl")) return;
  lab = await startExposeLab();
}, 60_000);
afterAll(async () => {
  await lab?.stop();
}, 60_000);

describe("the walk itself", () => {
  const target: ExposeTarget = {
    host: "whoami.lab.home.arpa",
    path: "/",
    ingress: { namespace: "default", name: "whoami" },
    service: { namespace: "default", name: "whoami", port: 80 },
    expects: "any",
  };
  const hop = (id: string, place: HopPlace, walk: () => Promise<HopResult>): SourcedHop => ({
    hop: { id, place, title: id, walk },
    from: "test",
  });

  test("a hop that throws is broken with the error as its reason, and the hops after it are still walked", async () => {
    const report = await walkHops(target, [
      hop("a.entry", "entry", async () => {
        throw new Error("no route to host");
      }),
      hop("b.pod", "pod", async () => ({ status: "ok", summary: "the pod is ready" })),
    ]);
    expect(report.hops.map((h) => [h.id, h.status, h.summary])).toEqual([
      ["a.entry", "broken", "the hop could not be walked: no route to host"],
      ["b.pod", "ok", "the pod is ready"],
    ]);
    expect(verdictOf(report)).toMatchObject({ code: "expose.broken", severity: "error" });
  });

  test("with only blocked hops left, the first of them is named, with its fix", async () => {
    const report = await walkHops(target, [
      hop("a.entry", "entry", async () => ({ status: "ok", summary: "fine" })),
      hop("b.route", "route", async () => ({
        status: "blocked",
        summary: "no answer yet",
        hint: "kubectl get endpoints",
      })),
      hop("c.pod", "pod", async () => ({ status: "blocked", summary: "waiting" })),
    ]);
    expect(report.broken?.id).toBe("b.route");
    expect(verdictOf(report)).toMatchObject({
      code: "expose.broken",
      summary: "whoami.lab.home.arpa: the first broken hop is 2, b.route: no answer yet",
      hint: "kubectl get endpoints",
    });
  });
});

describe("verify --expose", () => {
  test("a healthy path is walked hop by hop from the host, all ok, and the canary is removed", async () => {
    await lab.dns([lab.record()]);
    const { exitCode, events } = await lab.run("verify", { app: { kind: "canary" }, ...FAST });
    expect(statuses(events)).toEqual([
      "traefik.address ok",
      "expose.dns ok",
      "metallb.address ok",
      "traefik.route ok",
      "expose.endpoints ok",
      "expose.pods ok",
    ]);
    expect(exitCode).toBe(0);
    expect(verdict(events)?.code).toBe("expose.ok");
    const route = hops(events).find((h) => h.id === "traefik.route")!;
    expect(route.summary).toMatch(/is answered by pod kubehyve-whoami-[0-9a-f]{10}-[0-9a-f]{5}$/);
    expect(lab.canaryLeft()).toEqual([]);
  }, 60_000);
});

describe("verify --expose, with a stage that meddles", () => {
  test("a stage's hop handler cannot change the target the other stages and the walk see", async () => {
    await lab.dns([lab.record()]);
    const tried: string[] = [];
    const meddler = definePlugin({
      id: "audit/meddler",
      title: "meddler",
      apiVersion: 1,
      check: async () => ({ changes: [], diagnostics: [] }),
      hooks: {
        "expose:hops": (_ctx, target) => {
          try {
            (target as { host: string }).host = "elsewhere.example";
          } catch (error) {
            tried.push((error as Error).name);
          }
          tried.push(target.host);
          return undefined;
        },
      },
    });
    const stages = [{ slot: "audit", plugin: meddler as AnyPlugin, options: {} }, ...lab.stages];
    const { exitCode, events } = await lab.run("verify", { app: { kind: "canary" }, ...FAST }, { stages });
    expect(tried).toEqual(["TypeError", `whoami.${lab.cluster.network.domain}`]);
    expect(verdict(events)?.code).toBe("expose.ok");
    expect(exitCode).toBe(0);
    expect(lab.canaryLeft()).toEqual([]);
  }, 60_000);
});

const broken = (events: RunEvent[]) => hops(events).find((h) => h.status === "broken");

describe("verify --expose, each hop broken in turn", () => {
  test("a name that resolves elsewhere is the DNS hop, with the exact dnsmasq line to add", async () => {
    await lab.dns([`host-record=whoami.lab.home.arpa,${lab.net}.241`]);
    const { exitCode, events } = await lab.run("verify", { app: { kind: "canary" }, ...FAST });
    expect(exitCode).toBe(1);
    const hop = broken(events)!;
    expect(hop.id).toBe("expose.dns");
    expect(hop.summary).toBe(
      `whoami.lab.home.arpa does not resolve to ${lab.address}: ${lab.dnsAddress} answers ${lab.net}.241`,
    );
    expect(hop.hint).toContain(`host-record=whoami.lab.home.arpa,${lab.address}`);
    expect(hop.hint).toContain(`address=/whoami.lab.home.arpa/${lab.address}`);
    expect(verdict(events)!.summary).toStartWith("whoami.lab.home.arpa: the first broken hop is 2, ");
    expect(lab.canaryLeft()).toEqual([]);
  }, 60_000);

  test("a name the lab's DNS does not know is the DNS hop too", async () => {
    await lab.dns([]);
    const { events } = await lab.run("verify", { app: { kind: "canary" }, ...FAST });
    const hop = broken(events)!;
    expect(hop.id).toBe("expose.dns");
    expect(hop.summary).toBe(
      `whoami.lab.home.arpa does not resolve to ${lab.address}: ${lab.dnsAddress} refuses the query`,
    );
    expect(lab.canaryLeft()).toEqual([]);
  }, 60_000);

  test("an Ingress of no class is the route hop: Traefik's 404, and the patch that gives it Traefik's class", async () => {
    await lab.dns([lab.record()]);
    const cls = lab.kube.server.get("networking.k8s.io/v1", "IngressClass", "traefik")!;
    const { annotations: _a, ...meta } = cls.metadata as Record<string, unknown>;
    lab.kube.server.put({ ...cls, metadata: meta });
    try {
      const { events } = await lab.run("verify", { app: { kind: "canary" }, ...FAST });
      const hop = broken(events)!;
      expect(hop.id).toBe("traefik.route");
      expect(hop.summary).toBe(
        "Traefik has no route for whoami.lab.home.arpa: Ingress default/kubehyve-whoami has no ingressClassName (and no kubernetes.io/ingress.class annotation): Traefik does not read it",
      );
      expect(hop.hint).toBe(
        `kubectl -n default patch ingress kubehyve-whoami --type=merge -p '{"spec":{"ingressClassName":"traefik"}}'`,
      );
      expect(lab.web()!.requests).toContain("whoami.lab.home.arpa 404");
      expect(lab.canaryLeft()).toEqual([]);
    } finally {
      lab.kube.server.put(cls);
    }
  }, 60_000);

  test("a pod no node takes is the pod hop, with its condition; the hops before it say they wait on it", async () => {
    await lab.dns([lab.record()]);
    const taint = { key: "example.com/maintenance", value: "true", effect: "NoSchedule" };
    const nodes = lab.cluster.nodes.map((n) => lab.kube.server.get("v1", "Node", n.name)!);
    for (const node of nodes)
      lab.kube.server.put({ ...node, spec: { ...(node.spec as object), taints: [taint] } });
    try {
      const { events } = await lab.run("verify", { app: { kind: "canary" }, ...FAST });
      expect(statuses(events)).toEqual([
        "traefik.address ok",
        "expose.dns ok",
        "metallb.address ok",
        "traefik.route blocked",
        "expose.endpoints blocked",
        "expose.pods broken",
      ]);
      const hop = broken(events)!;
      expect(hop.summary).toMatch(
        /^pod default\/kubehyve-whoami-\S+ is not ready: PodScheduled=False Unschedulable: 0\/2 nodes are available$/,
      );
      expect(hop.hint).toMatch(/^kubectl -n default describe pod kubehyve-whoami-/);
      expect(verdict(events)!.summary).toContain("the first broken hop is 6, ");
      expect(lab.canaryLeft()).toEqual([]);
    } finally {
      for (const node of nodes) lab.kube.server.put(node);
    }
  }, 60_000);

  test("an address that does not answer is the address hop, with the host's layer-2 findings", async () => {
    await lab.dns([lab.record()]);
    await lab.stopWeb();
    lab.freebsd.inject({ kind: "pf" });
    try {
      const { events } = await lab.run("verify", { app: { kind: "canary" }, ...FAST });
      const hop = broken(events)!;
      expect(hop.id).toBe("metallb.address");
      expect(hop.summary).toStartWith(`${lab.address} port 80 does not answer hv1: `);
      expect(hop.summary).toEndWith("(pool lab; no speaker announces it)");
      expect(hop.findings?.map((f) => f.code)).toContain("bhyve.l2-filtered");
      expect(hop.detail).toContain("(bhyve.l2-filtered)");
      expect(verdict(events)!.summary).toContain("the first broken hop is 3, ");
      expect(lab.canaryLeft()).toEqual([]);
    } finally {
      lab.freebsd.inject({ kind: "pf", enabled: false });
      lab.startWeb();
    }
  }, 60_000);
});

/** A workload of the user's, applied as with kubectl: a Deployment serving 8080 (named http) and its Service. */
function userApp(opts: { selector?: Record<string, string>; targetPort?: number | string } = {}) {
  const labels = { app: "web" };
  lab.kube.server.put({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web", namespace: "default" },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          containers: [
            {
              name: "web",
              image: "docker.io/library/nginx:1.27",
              ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }],
            },
          ],
        },
      },
    },
  });
  lab.kube.server.put({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "web", namespace: "default" },
    spec: {
      selector: opts.selector ?? labels,
      ports: [{ name: "http", port: 80, targetPort: opts.targetPort ?? "http", protocol: "TCP" }],
    },
  });
  lab.kube.server.reconcile();
}

function removeUserApp() {
  lab.kube.server.delete("networking.k8s.io/v1", "Ingress", "web", "default");
  lab.kube.server.delete("v1", "Service", "web", "default");
  lab.kube.server.delete("apps/v1", "Deployment", "web", "default");
  lab.kube.server.reconcile();
}

const exposeWeb = { kind: "service" as const, namespace: "default", name: "web", host: "web.lab.home.arpa" };

describe("kubehyve expose: a Service of the user's", () => {
  test("gets an Ingress of kubehyve's for its host, and its path is walked down to its pod", async () => {
    await lab.dns([lab.record("web.lab.home.arpa")]);
    userApp();
    try {
      const { exitCode, events } = await lab.run("expose", { app: exposeWeb, ...FAST });
      expect(statuses(events)).toEqual([
        "traefik.address ok",
        "expose.dns ok",
        "metallb.address ok",
        "traefik.route ok",
        "expose.endpoints ok",
        "expose.pods ok",
      ]);
      expect(exitCode).toBe(0);
      const ingress = lab.kube.server.get("networking.k8s.io/v1", "Ingress", "web", "default") as Record<
        string,
        // biome-ignore lint/suspicious/noExplicitAny: an API object
        any
      >;
      expect(ingress.metadata.labels).toMatchObject({
        "app.kubernetes.io/managed-by": "kubehyve",
        "kubehyve.io/exposure": "service",
      });
      expect(ingress.spec.ingressClassName).toBe("traefik");
      expect(ingress.spec.rules[0].host).toBe("web.lab.home.arpa");
    } finally {
      removeUserApp();
    }
  }, 60_000);

  test("a selector that matches no pod is the endpoints hop, showing the pods' labels", async () => {
    await lab.dns([lab.record("web.lab.home.arpa")]);
    userApp({ selector: { app: "wbe" } });
    try {
      const { exitCode, events } = await lab.run("expose", { app: exposeWeb, ...FAST });
      expect(exitCode).toBe(1);
      expect(statuses(events).slice(3)).toEqual([
        "traefik.route blocked",
        "expose.endpoints broken",
        "expose.pods skipped",
      ]);
      const hop = broken(events)!;
      expect(hop.summary).toBe(
        "the selector app=wbe of Service default/web matches no pod in namespace default",
      );
      expect(hop.detail).toMatch(
        /^pods in default:\n(.*\n)*web-[0-9a-f]{10}-[0-9a-f]{5}: app=web,pod-template-hash=/m,
      );
      expect(hop.hint).toContain("kubectl -n default edit service web");
    } finally {
      removeUserApp();
    }
  }, 60_000);

  test("a targetPort that names no port of the pods is the endpoints hop, naming the ports they have", async () => {
    await lab.dns([lab.record("web.lab.home.arpa")]);
    userApp({ targetPort: "htpp" });
    try {
      const { events } = await lab.run("expose", { app: exposeWeb, ...FAST });
      const hop = broken(events)!;
      expect(hop.id).toBe("expose.endpoints");
      expect(hop.summary).toBe(
        "port http of Service default/web has targetPort htpp, which names no port of its pods (they have: http 8080/TCP)",
      );
    } finally {
      removeUserApp();
    }
  }, 60_000);
});

describe("the canary goes, whatever happens", () => {
  test("Ctrl-C during the walk ends the run as interrupted, and the canary is removed", async () => {
    await lab.dns([lab.record()]);
    const cls = lab.kube.server.get("networking.k8s.io/v1", "IngressClass", "traefik")!;
    const { annotations: _a, ...meta } = cls.metadata as Record<string, unknown>;
    // No class: the route hop waits for Traefik to route the name, long enough to be interrupted.
    lab.kube.server.put({ ...cls, metadata: meta });
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 2500);
    try {
      const { exitCode, events } = await lab.run(
        "verify",
        { app: { kind: "canary" }, ...FAST, settleMs: 30_000 },
        { signal: stop.signal },
      );
      expect(exitCode).toBe(130);
      expect(
        events.some((e) => e.type === "wet" && e.description.startsWith("remove the whoami canary")),
      ).toBe(true);
      expect(lab.canaryLeft()).toEqual([]);
    } finally {
      clearTimeout(timer);
      lab.kube.server.put(cls);
    }
  }, 60_000);

  test("--dry-run says what it would deploy and changes nothing", async () => {
    const before = lab.mutations().length;
    const { exitCode, events } = await lab.run("verify", { app: { kind: "canary" }, dryRun: true, ...FAST });
    expect(exitCode).toBe(0);
    expect(lab.mutations().length).toBe(before);
    expect(
      events.filter((e) => e.type === "wet").map((e) => (e as { description: string }).description),
    ).toEqual([
      "deploy the whoami canary for whoami.lab.home.arpa: Deployment, Service and Ingress default/kubehyve-whoami (docker.io/traefik/whoami:v1.11.0)",
    ]);
    expect(hops(events)).toEqual([]);
  }, 60_000);
});

describe("a host without curl", () => {
  test("the address hop says the walk cannot ask, with the package to install, not the layer-2 checks", async () => {
    // FreeBSD's base system has fetch(1) but no curl, and fetch(1) cannot send a Host header.
    const empty = mkdtempSync(join(tmpdir(), "kubehyve-no-curl-"));
    const local = new LocalTarget();
    const host: Target = {
      name: "hv1",
      run: (argv, opts = {}) => local.run(argv, { ...opts, env: { ...opts.env, PATH: empty } }),
      close: () => local.close(),
    };
    let asked = 0;
    const ctx = lab.kube.ctx(metallbPlugin, v.parse(metallbOptions, lab.cluster.stages.lb!.options), {
      host,
      hooks: {
        call: (async () => {
          asked++;
          return [];
        }) as never,
      },
    });
    const target: ExposeTarget = {
      host: "whoami.lab.home.arpa",
      path: "/",
      ingress: { namespace: "default", name: "kubehyve-whoami" },
      service: { namespace: "default", name: "kubehyve-whoami", port: "http" },
      expects: "whoami",
    };
    const [hop] = exposeHops(ctx as never, target);
    const result = await hop!.walk({
      target,
      facts: { address: lab.address, port: 80 },
      signal: new AbortController().signal,
      settleMs: 0,
      httpTimeoutSec: 2,
    });
    expect(result).toEqual({
      status: "broken",
      summary: `the walk cannot ask ${lab.address} from hv1: curl is not installed on hv1, and fetch(1) cannot send a Host header`,
      hint: "pkg install curl",
    });
    expect(asked).toBe(0);
  }, 60_000);
});
