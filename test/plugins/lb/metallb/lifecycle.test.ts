/**
 * The lb stage against a cluster, on loopback end to end: MetalLB v0.16.1's release manifest served
 * through the download cache and applied through our client; its webhook refusing right after the
 * install; a canary LoadBalancer Service per pool fetched from the hypervisor host; a second `up`
 * that changes nothing; the rules that need the cluster; pruning and `down`.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Diagnostic } from "kubehyve";
import metallbPlugin from "../../../../plugins/lb/metallb/index.ts";
import { have } from "../../../lab/prereq.ts";
import { type MetallbLab, RELEASE_PATH, startMetallbLab } from "./lab.ts";

// A whole `up` against the test server takes seconds; on a loaded 2-core machine, many.
setDefaultTimeout(90_000);

// biome-ignore lint/suspicious/noExplicitAny: stored API objects are read field by field
type Json = Record<string, any>;

const diagnosticsOf = (events: readonly { type: string }[]) =>
  events.filter((e) => e.type === "diagnostic") as unknown as Diagnostic[];
const changesOf = (events: readonly { type: string }[]) =>
  (events.filter((e) => e.type === "change") as unknown as { summary: string }[]).map((c) => c.summary);
const EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers";

describe.skipIf(!have("openssl", "openssl"))("lb/metallb on a cluster", () => {
  let lab: MetallbLab;
  beforeAll(async () => {
    lab = await startMetallbLab({ webhookRefusesForMs: 4000 });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  test("up installs MetalLB, waits out its webhook's refusals, and every pool answers the host", async () => {
    lab.server.injectFault({ path: /\/deployments\/controller$/, method: "PATCH", status: 500, times: 2 });
    lab.server.injectFault({
      path: /\/l2advertisements\/kubehyve$/,
      method: "PATCH",
      status: 429,
      times: 1,
      retryAfter: 0,
    });
    const { exitCode, reporter } = await lab.run("up");
    expect(exitCode).toBe(0);
    expect(changesOf(reporter.events)).toEqual([
      "MetalLB v0.16.1 metallb-native.yaml: create 26 objects",
      "MetalLB's address pools and L2 advertisement: create 3 objects",
    ]);
    expect(lab.files.hits(RELEASE_PATH)).toBe(1);
    // The webhook refused the pools for a while after the controller was ready; the client waited.
    expect(lab.metallb.refusals()).toBeGreaterThan(3);
    // The pools are new: created (refused by the webhook until it serves), then applied.
    const creates = lab.server.requests.filter(
      (r) => r.path.endsWith("/ipaddresspools") && r.method === "POST",
    );
    const first = creates.findIndex((r) => r.status === 201);
    expect(first).toBeGreaterThan(1);
    expect(creates.slice(0, first).every((r) => r.status === 500)).toBe(true);
    expect(
      lab.server.requests
        .filter((r) => r.path.endsWith("/ipaddresspools/lab") && r.method === "PATCH")
        .map((r) => [r.status, r.contentType]),
    ).toEqual([
      [200, "application/apply-patch+yaml"],
      [200, "application/merge-patch+json"],
    ]);
    const controller = lab.server.requests.filter(
      (r) => r.path.endsWith("/deployments/controller") && r.method === "PATCH",
    );
    // check's dry run meets the faults, retries, then hears the namespace is not there yet
    expect(controller.filter((r) => r.query.includes("dryRun=All")).map((r) => r.status)).toEqual([
      500, 500, 404,
    ]);
    // up creates it and applies it once
    expect(
      controller.filter(
        (r) => r.contentType === "application/apply-patch+yaml" && !r.query.includes("dryRun"),
      ),
    ).toHaveLength(1);

    expect(diagnosticsOf(reporter.events).map((d) => `${d.severity} ${d.summary}`)).toEqual([
      "ok MetalLB's controller is ready",
      "ok a MetalLB speaker is ready on cp1, w1, w2",
      "ok MetalLB's components accept the configuration",
      `ok pool lab: a LoadBalancer Service got ${lab.net}.240, which answers the hypervisor host over HTTP`,
      `ok pool spare: a LoadBalancer Service got ${lab.net}.244, which answers the hypervisor host over HTTP`,
    ]);
    // The host asked with FreeBSD's fetch(1), and the LAN heard it.
    const port = (lab.options().canary as { port: number }).port;
    expect(lab.host.fetches()).toEqual([
      ["-q", "-o", "-", "-T", "5", `http://${lab.net}.240:${port}/hostname`],
      ["-q", "-o", "-", "-T", "5", `http://${lab.net}.244:${port}/hostname`],
    ]);
    expect(lab.dataPlane.requests).toEqual([`${lab.net}.240 GET /hostname`, `${lab.net}.244 GET /hostname`]);
    // The canary cleaned up after itself.
    expect(lab.server.list("v1", "Service", "default").map((s) => (s.metadata as Json).name)).toEqual([]);
    expect(lab.server.list("v1", "Pod", "default")).toEqual([]);

    const stored = lab.server.get(
      "metallb.io/v1beta1",
      "L2Advertisement",
      "kubehyve",
      "metallb-system",
    ) as Json;
    expect(stored.spec).toEqual({ ipAddressPools: ["lab", "spare"] });
  });

  test("a second up changes nothing: no change is planned, nothing is written, and the canary that passed is not run again", async () => {
    lab.server.requests.length = 0;
    const fetched = lab.host.fetches().length;
    const { exitCode, reporter } = await lab.run("up");
    expect(exitCode).toBe(0);
    expect(changesOf(reporter.events)).toEqual([]);
    expect(lab.mutations()).toEqual([]);
    expect(lab.host.fetches()).toHaveLength(fetched);
    expect(diagnosticsOf(reporter.events).at(-1)).toMatchObject({
      code: "metallb.canary",
      severity: "info",
      summary: expect.stringMatching(
        /^the LoadBalancer canary passed at \d{4}-\d\d-\d\dT[\d:.]+Z, and nothing changed since: not run again$/,
      ),
      hint: "kubehyve up --only lb --canaries runs it again",
    });
    expect(lab.files.hits(RELEASE_PATH)).toBe(1);
  });

  test("an up stopped between its change and the canary leaves no record of a pass: the next up runs the canary", async () => {
    // Someone narrows the stage's L2Advertisement by hand.
    const advertisement = lab.server.get(
      "metallb.io/v1beta1",
      "L2Advertisement",
      "kubehyve",
      "metallb-system",
    ) as Json;
    lab.server.put({ ...advertisement, spec: { ipAddressPools: ["lab"] } });
    const ctx = lab.ctx();
    const { changes } = await metallbPlugin.check(ctx as never);
    expect(changes).toHaveLength(1);
    // The run that applies it goes no further: no verify, no canary.
    await metallbPlugin.apply!(ctx as never, changes);
    lab.server.requests.length = 0;
    const { exitCode, reporter } = await lab.run("up");
    expect(exitCode).toBe(0);
    expect(changesOf(reporter.events)).toEqual([]);
    expect(diagnosticsOf(reporter.events).at(-1)).toMatchObject({ code: "metallb.canary", severity: "ok" });
    const writes = lab.mutations();
    expect(
      writes.every((w) =>
        /^\/api\/v1\/namespaces\/default\/(pods|services)\/kubehyve-canary-lb-/.test(w.path),
      ),
    ).toBe(true);
    expect(writes.filter((w) => w.method === "PATCH")).toHaveLength(3);
    expect(writes.filter((w) => w.method === "DELETE")).toHaveLength(3);
    expect(lab.files.hits(RELEASE_PATH)).toBe(1);
  });

  test("check names a pool of someone else's that overlaps one of ours, and a node address in a pool", async () => {
    await lab.client.apply({
      apiVersion: "metallb.io/v1beta1",
      kind: "IPAddressPool",
      metadata: { name: "by-hand", namespace: "metallb-system" },
      spec: { addresses: [`${lab.net}.250/32`] },
    });
    const ours = lab.options({
      pools: [
        { name: "lab", addresses: [`${lab.net}.240-${lab.net}.243`] },
        { name: "spare", addresses: [`${lab.net}.244/31`], autoAssign: false },
        { name: "more", addresses: [`${lab.net}.248-${lab.net}.251`] },
      ],
    });
    // A node the cluster file does not list, with an address in the new pool.
    lab.server.setNodeReady("extra", true, { address: `${lab.net}.249` });
    const { exitCode, reporter } = await lab.run("plan", ours);
    lab.server.delete("v1", "Node", "extra");
    expect(exitCode).toBe(1);
    expect(diagnosticsOf(reporter.events).map((d) => [d.code, d.summary, d.path])).toEqual([
      [
        "metallb.pool-overlaps-foreign",
        `pool more (${lab.net}.248-${lab.net}.251) overlaps ${lab.net}.250/32 of IPAddressPool metallb-system/by-hand, which is not this stage's`,
        "stages.lb.pools[2].addresses[0]",
      ],
      [
        "metallb.pool-overlaps-node",
        `pool more (${lab.net}.248-${lab.net}.251) holds ${lab.net}.249, an address of node extra`,
        "stages.lb.pools[2].addresses[0]",
      ],
    ]);
  });

  test("a pool no L2Advertisement selects is an error: its addresses would never be announced", async () => {
    const { exitCode, reporter } = await lab.run("plan", lab.options({ l2: { pools: ["lab"] } }));
    expect(exitCode).toBe(1);
    expect(diagnosticsOf(reporter.events)).toEqual([
      expect.objectContaining({
        code: "metallb.pool-not-announced",
        summary:
          "pool spare would hand out addresses that are never announced: no L2Advertisement selects it",
        hint: "add spare to stages.lb.l2.pools, or leave l2.pools out to announce every pool",
      }),
    ]);
    // Another L2Advertisement on the cluster that selects every pool announces it: no error then.
    await lab.client.apply({
      apiVersion: "metallb.io/v1beta1",
      kind: "L2Advertisement",
      metadata: { name: "theirs", namespace: "metallb-system" },
    });
    const again = await lab.run("plan", lab.options({ l2: { pools: ["lab"] } }));
    expect(
      diagnosticsOf(again.reporter.events).filter((d) => d.code === "metallb.pool-not-announced"),
    ).toEqual([]);
    lab.server.delete("metallb.io/v1beta1", "L2Advertisement", "theirs", "metallb-system");
  });

  test("kube-proxy in IPVS mode with strictARP off is an error with the fix; with it on, or in iptables mode, nothing", async () => {
    const kubeProxy = (config: string) =>
      lab.client.apply({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "kube-proxy", namespace: "kube-system" },
        data: { "config.conf": config },
      });
    const strictArp = async () =>
      diagnosticsOf((await lab.run("plan", lab.options())).reporter.events).filter((d) =>
        d.code.startsWith("metallb.strict-arp"),
      );
    // As kubeadm writes KubeProxyConfiguration (Kubespray's kube_proxy_mode: ipvs).
    await kubeProxy(
      "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n",
    );
    expect(await strictArp()).toEqual([
      expect.objectContaining({
        code: "metallb.strict-arp-off",
        severity: "error",
        hint: expect.stringContaining("kubehyve up --only k8s"),
      }),
    ]);
    await kubeProxy(
      "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: true\n",
    );
    expect(await strictArp()).toEqual([]);
    // kube-proxy's default for strictARP is false (KubeProxyIPVSConfiguration): left out is off.
    await kubeProxy(
      "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n",
    );
    expect((await strictArp()).map((d) => d.code)).toEqual(["metallb.strict-arp-off"]);
    await kubeProxy(
      "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\n",
    );
    expect(await strictArp()).toEqual([]);
    lab.server.delete("v1", "ConfigMap", "kube-proxy", "kube-system");
  });

  test("nodes that all carry the exclusion label are a warning with the fix, and the canary says nobody announces", async () => {
    const label = (on: boolean) => {
      for (const node of lab.cluster.nodes) {
        const n = lab.server.get("v1", "Node", node.name) as Json;
        if (on) n.metadata.labels[EXCLUDE] = "";
        else delete n.metadata.labels[EXCLUDE];
        lab.server.put(n);
      }
    };
    label(true);
    const port = (lab.options().canary as { port: number }).port;
    // Nothing of the stage changed since its canary passed: only --canaries runs it.
    const { exitCode, reporter } = await lab.run("up", lab.options({ canary: { port, timeoutSec: 2 } }), {
      canaries: true,
    });
    label(false);
    expect(exitCode).toBe(1);
    const found = diagnosticsOf(reporter.events);
    expect(found.find((d) => d.code === "metallb.all-nodes-excluded")).toMatchObject({
      severity: "warn",
      hint: `kubectl --kubeconfig ${lab.stateDir}/kubeconfig label node cp1 w1 w2 ${EXCLUDE}-   (or add a worker node)`,
    });
    const canary = found.find((d) => d.code === "metallb.canary" && d.severity === "error")!;
    expect(canary.summary).toBe(`pool lab: ${lab.net}.240 does not answer the hypervisor host`);
    expect(canary.detail).toContain("No speaker announces it (no ServiceL2Status).");
    expect(canary.detail).toContain("Operation timed out");
  });

  test("what the stage no longer renders is pruned by its labels, and nothing without them", async () => {
    const plan = await lab.run(
      "plan",
      lab.options({ pools: [{ name: "lab", addresses: [`${lab.net}.240-${lab.net}.243`] }] }),
    );
    expect(changesOf(plan.reporter.events)).toEqual([
      "MetalLB's address pools and L2 advertisement: update L2Advertisement metallb-system/kubehyve (spec.ipAddressPools)",
      "delete IPAddressPool metallb-system/spare this stage applied before and no longer renders",
    ]);
    const up = await lab.run(
      "up",
      lab.options({ pools: [{ name: "lab", addresses: [`${lab.net}.240-${lab.net}.243`] }] }),
    );
    expect(up.exitCode).toBe(0);
    expect(lab.server.get("metallb.io/v1beta1", "IPAddressPool", "spare", "metallb-system")).toBeUndefined();
    expect(lab.server.get("metallb.io/v1beta1", "IPAddressPool", "by-hand", "metallb-system")).toBeDefined();
  });

  test("down removes what the stage applied and nothing else", async () => {
    // Someone's own namespace stays, and so does their ClusterRole named like MetalLB's.
    await lab.client.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "theirs" } });
    await lab.client.apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "metallb-system:extra" },
      rules: [],
    });
    // The pool made by hand in metallb-system would go with the namespace and with its CRD: both
    // stay, named, until it is removed.
    lab.server.requests.length = 0;
    const first = await lab.run("down");
    expect(first.exitCode).toBe(0);
    const deleted = () => lab.server.requests.filter((r) => r.method === "DELETE").map((r) => r.path);
    expect(deleted().slice(0, 2).sort()).toEqual([
      "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/lab",
      "/apis/metallb.io/v1beta1/namespaces/metallb-system/l2advertisements/kubehyve",
    ]);
    expect(deleted()).not.toContain("/api/v1/namespaces/metallb-system");
    expect(
      first.reporter.events.flatMap((e) => (e.type === "log" && e.level === "warn" ? [e.message] : [])),
    ).toEqual([
      'left Namespace metallb-system: 1 object in it that this stage did not make (IPAddressPool metallb-system/by-hand: its fields are set by "kubehyve") would go with it; once they are not needed: kubectl delete namespace metallb-system',
      "left CustomResourceDefinition ipaddresspools.metallb.io: 1 object of it that this stage did not make (metallb-system/by-hand) would go with it; once they are not needed: kubectl delete crd ipaddresspools.metallb.io",
    ]);
    expect(lab.server.get("metallb.io/v1beta1", "IPAddressPool", "by-hand", "metallb-system")).toBeDefined();
    expect(lab.server.get("v1", "Namespace", "metallb-system")).toBeDefined();
    // Once it is removed, the next down takes the rest, the namespace last.
    await lab.client.delete("metallb.io/v1beta1", "IPAddressPool", "by-hand", "metallb-system");
    lab.server.requests.length = 0;
    const { exitCode } = await lab.run("down");
    expect(exitCode).toBe(0);
    const deletes = deleted();
    expect(deletes.at(-1)).toBe("/api/v1/namespaces/metallb-system");
    expect(lab.server.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")).toEqual([]);
    expect(
      lab.server.get(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "metallb-webhook-configuration",
      ),
    ).toBeUndefined();
    expect(lab.server.get("v1", "Namespace", "theirs")).toBeDefined();
    expect(
      lab.server.get("rbac.authorization.k8s.io/v1", "ClusterRole", "metallb-system:extra"),
    ).toBeDefined();
    expect(
      lab.server.get("rbac.authorization.k8s.io/v1", "ClusterRole", "metallb-system:controller"),
    ).toBeUndefined();
  });
});

describe.skipIf(!have("openssl", "openssl"))("lb/metallb on a cluster that has a MetalLB of its own", () => {
  test("refuses to take over the objects of it, applying nothing, and so does an apply planned before the cluster was there", async () => {
    const lab = await startMetallbLab();
    try {
      await lab.client.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "metallb-system" } });
      lab.server.requests.length = 0;
      const { exitCode, reporter } = await lab.run("up");
      expect(exitCode).toBe(1);
      expect(diagnosticsOf(reporter.events).filter((d) => d.severity === "error")).toEqual([
        expect.objectContaining({
          code: "metallb.foreign-objects",
          summary:
            "1 object this stage would apply already exists without this stage's labels: kubehyve does not take over what it did not make",
          detail: "Namespace metallb-system",
          hint: "another install of MetalLB (or pools of the same names) is on this cluster: remove it, or rename the pools",
        }),
      ]);
      expect(lab.mutations()).toEqual([]);
      const install = (await metallbPlugin.check(lab.ctx(lab.options(), { upstreamPending: true }))).changes;
      expect(install.map((c) => c.kind)).toEqual(["metallb.install"]);
      await expect(metallbPlugin.apply!(lab.ctx(), install)).rejects.toThrow(
        "1 object this stage would apply already exists without this stage's labels",
      );
      expect(lab.mutations()).toEqual([]);
    } finally {
      await lab.stop();
    }
  });
});
