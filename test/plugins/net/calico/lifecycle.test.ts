/**
 * The net stage against a cluster: Calico v3.32.1's exact release bytes, served on loopback and
 * fetched through the download cache, applied server-side through our client to the API test
 * server, which plays the tigera operator; then a second `up` that changes nothing, edits someone
 * made by hand, pruning, and `down`.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Diagnostic } from "kubehyve";
import calicoPlugin from "../../../../plugins/net/calico/index.ts";
import { have } from "../../../lab/prereq.ts";
import { type CalicoLab, editByHand, RELEASE_PATH, startCalicoLab } from "./lab.ts";

// A whole `up` against the test server takes seconds; on a loaded 2-core machine, many.
setDefaultTimeout(90_000);

// biome-ignore lint/suspicious/noExplicitAny: stored API objects are read field by field
type Json = Record<string, any>;

const diagnosticsOf = (events: readonly { type: string }[]) =>
  events.filter((e) => e.type === "diagnostic") as unknown as Diagnostic[];
const changesOf = (events: readonly { type: string }[]) =>
  (events.filter((e) => e.type === "change") as unknown as { summary: string; detail?: string }[]).map(
    (c) => c.summary,
  );

describe.skipIf(!have("openssl", "openssl"))("net/calico on a cluster", () => {
  let lab: CalicoLab;
  beforeAll(async () => {
    lab = await startCalicoLab();
  });
  afterAll(async () => {
    await lab?.stop();
  });

  test("plan on the live cluster says what up would create, and writes nothing", async () => {
    const { exitCode, reporter } = await lab.run("plan");
    expect(exitCode).toBe(0);
    expect(changesOf(reporter.events)).toEqual([
      "Calico v3.32.1 operator-crds.yaml: create 32 objects",
      "Calico v3.32.1 tigera-operator.yaml: create 7 objects",
      "Calico's custom resources: create 2 objects",
    ]);
    expect(lab.mutations()).toEqual([]);
    expect(lab.files.hits(`${RELEASE_PATH}/operator-crds.yaml`)).toBe(1);
  });

  test("up applies the pinned manifests server-side, CRDs first, through 500s and 429s, and Calico works", async () => {
    lab.server.requests.length = 0;
    lab.server.injectFault({
      path: /customresourcedefinitions\/installations\.operator\.tigera\.io$/,
      method: "PATCH",
      status: 500,
      times: 2,
    });
    lab.server.injectFault({
      path: /\/namespaces\/tigera-operator$/,
      method: "PATCH",
      status: 429,
      times: 2,
      retryAfter: 0,
    });
    const { exitCode, reporter } = await lab.run("up");
    expect(exitCode).toBe(0);

    const patches = lab.server.requests.filter((r) => r.method === "PATCH");
    const writes = lab.server.requests.filter(
      (r) => ["PATCH", "POST"].includes(r.method) && !r.query.includes("dryRun"),
    );
    // Server-side apply, no client-side apply (the Installation CRD is too large for its
    // annotation): what is new is created (so that one someone made meanwhile is not taken over),
    // then applied, then the create's managedFields entry is dropped with a merge patch.
    expect(new Set(writes.map((w) => `${w.method} ${w.contentType}`))).toEqual(
      new Set([
        "POST application/json",
        "PATCH application/apply-patch+yaml",
        "PATCH application/merge-patch+json",
      ]),
    );
    // The faults meet check's dry run first; it retries, and so does the write after it.
    const installationsCrd = patches.filter((w) => w.path.endsWith("/installations.operator.tigera.io"));
    expect(
      installationsCrd.map((w) => [w.status, w.query.includes("dryRun=All"), w.contentType?.split("/")[1]]),
    ).toEqual([
      [500, true, "apply-patch+yaml"],
      [500, true, "apply-patch+yaml"],
      [201, true, "apply-patch+yaml"],
      [200, false, "apply-patch+yaml"],
      [200, false, "merge-patch+json"],
    ]);
    const namespace = patches.filter((w) => w.path.endsWith("/namespaces/tigera-operator"));
    expect(namespace.map((w) => w.status)).toEqual([429, 429, 201, 200, 200]);
    const order = (pattern: RegExp) => writes.findIndex((w) => pattern.test(w.path) && w.status < 300);
    expect(order(/customresourcedefinitions\/tigerastatuses/)).toBeLessThan(
      order(/deployments\/tigera-operator$/),
    );
    expect(order(/deployments\/tigera-operator$/)).toBeLessThan(order(/installations\/default$/));

    // The release's bytes came once, through the cache's mirror.
    expect(lab.files.hits(`${RELEASE_PATH}/operator-crds.yaml`)).toBe(1);
    expect(lab.files.hits(`${RELEASE_PATH}/tigera-operator.yaml`)).toBe(1);

    const installation = lab.server.get("operator.tigera.io/v1", "Installation", "default") as Json;
    expect(installation.spec.calicoNetwork.ipPools[0]).toMatchObject({
      cidr: "10.233.64.0/18",
      encapsulation: "VXLANCrossSubnet",
    });
    expect(installation.spec.calicoNetwork.nodeAddressAutodetectionV4).toEqual({ cidrs: ["192.168.1.0/24"] });
    expect(installation.spec.flexVolumePath).toBe("None");
    // The operator wrote its defaults beside ours (variant, cni, bgp ...), as the real one does.
    expect(installation.spec.variant).toBe("Calico");
    expect(installation.metadata.labels).toMatchObject({ "kubehyve.io/stage": "net" });

    expect(diagnosticsOf(reporter.events).map((d) => [d.code, d.severity])).toEqual([
      ["calico.component", "ok"],
      ["calico.component", "ok"],
      ["calico.node-agents", "ok"],
      ["calico.pod-network", "ok"],
    ]);
    expect(diagnosticsOf(reporter.events).at(-1)!.summary).toMatch(
      /^a pod reaches another from w1 to w2 at 10\.233\.64\.\d+:8080$/,
    );
    // The canary cleaned up after itself.
    expect(lab.server.list("v1", "Pod", "default")).toEqual([]);
  });

  test("a second up changes nothing: no change is planned, nothing is written, and the canary that passed is not run again", async () => {
    lab.server.requests.length = 0;
    const { exitCode, reporter } = await lab.run("up");
    expect(exitCode).toBe(0);
    expect(changesOf(reporter.events)).toEqual([]);
    expect(lab.mutations()).toEqual([]);
    expect(diagnosticsOf(reporter.events).find((d) => d.code === "calico.pod-network")).toMatchObject({
      severity: "info",
      summary: expect.stringMatching(
        /^the pod network canary passed at \d{4}-\d\d-\d\dT[\d:.]+Z, and nothing changed since: not run again$/,
      ),
      hint: "kubehyve up --only net --canaries runs it again",
    });
    expect(lab.files.hits(`${RELEASE_PATH}/operator-crds.yaml`)).toBe(1);
  });

  test("up --canaries runs the canary on a cluster that changed nothing, and writes nothing else", async () => {
    lab.server.requests.length = 0;
    const { exitCode, reporter } = await lab.run("up", {}, { canaries: true });
    expect(exitCode).toBe(0);
    expect(diagnosticsOf(reporter.events).at(-1)).toMatchObject({
      code: "calico.pod-network",
      severity: "ok",
    });
    const writes = lab.mutations();
    // The canary makes two pods and removes them.
    expect(
      writes.every((w) => w.path.startsWith("/api/v1/namespaces/default/pods/kubehyve-canary-net-")),
    ).toBe(true);
    expect(writes.map((w) => w.method).sort()).toEqual(["DELETE", "DELETE", "PATCH", "PATCH"]);
  });

  test("a field kubehyve applied that someone changed by hand is planned, and up puts it back", async () => {
    await editByHand(lab.server, "/apis/operator.tigera.io/v1/installations/default", {
      spec: { flexVolumePath: null },
    });
    // Without None the operator renders the flexvol-driver volume under /usr, read-only on Fedora
    // CoreOS: calico-node never starts, and verify says where it stopped.
    await Bun.sleep(50);
    const broken = await lab.run("verify");
    expect(broken.exitCode).toBe(1);
    const nodeAgents = diagnosticsOf(broken.reporter.events).find((d) => d.code === "calico.node-agents")!;
    expect(nodeAgents.summary).toBe("calico-node is not ready on 3 of 3 nodes");
    expect(nodeAgents.detail).toContain("flexvol-driver waiting: PodInitializing");

    const plan = await lab.run("plan");
    expect(changesOf(plan.reporter.events)).toEqual([
      "Calico's custom resources: update Installation default (spec.flexVolumePath)",
    ]);
    lab.server.requests.length = 0;
    const { exitCode, reporter } = await lab.run("up");
    expect(exitCode).toBe(0);
    expect(
      (lab.server.get("operator.tigera.io/v1", "Installation", "default") as Json).spec.flexVolumePath,
    ).toBe("None");
    // An up that changed the stage proves the pod network again.
    expect(diagnosticsOf(reporter.events).at(-1)).toMatchObject({
      code: "calico.pod-network",
      severity: "ok",
    });
    expect(lab.mutations().filter((w) => w.path.includes("/pods/kubehyve-canary-net-"))).toHaveLength(4);
  });

  test("an up stopped between its change and the canary leaves no record of a pass: the next up runs the canary", async () => {
    await editByHand(lab.server, "/apis/operator.tigera.io/v1/installations/default", {
      spec: { flexVolumePath: null },
    });
    const ctx = lab.ctx();
    const { changes } = await calicoPlugin.check(ctx as never);
    expect(changes).toHaveLength(1);
    // The run that applies it goes no further: no verify, no canary.
    await calicoPlugin.apply!(ctx as never, changes);
    lab.server.requests.length = 0;
    const { exitCode, reporter } = await lab.run("up");
    expect(exitCode).toBe(0);
    expect(changesOf(reporter.events)).toEqual([]);
    expect(diagnosticsOf(reporter.events).at(-1)).toMatchObject({
      code: "calico.pod-network",
      severity: "ok",
    });
    expect(
      lab
        .mutations()
        .map((w) => w.method)
        .sort(),
    ).toEqual(["DELETE", "DELETE", "PATCH", "PATCH"]);
    // Proven now: the next no-op up writes nothing.
    lab.server.requests.length = 0;
    expect((await lab.run("up")).exitCode).toBe(0);
    expect(lab.mutations()).toEqual([]);
  });

  test("what the stage no longer renders is pruned by its labels, and nothing without them", async () => {
    // Someone's own objects, one with a name the stage used to apply.
    await lab.client.apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "tigera-operator-extra" },
      rules: [],
    });
    const plan = await lab.run("plan", { apiServer: false });
    expect(changesOf(plan.reporter.events)).toEqual([
      "delete APIServer default this stage applied before and no longer renders",
    ]);
    const up = await lab.run("up", { apiServer: false });
    expect(up.exitCode).toBe(0);
    expect(lab.server.get("operator.tigera.io/v1", "APIServer", "default")).toBeUndefined();
    // The operator removed what it made for it.
    expect(lab.server.get("apps/v1", "Deployment", "calico-apiserver", "calico-system")).toBeUndefined();

    // An APIServer made by hand, with the very name the stage used: not the stage's, so left alone.
    await lab.client.apply({
      apiVersion: "operator.tigera.io/v1",
      kind: "APIServer",
      metadata: { name: "default" },
      spec: {},
    });
    const again = await lab.run("plan", { apiServer: false });
    expect(changesOf(again.reporter.events)).toEqual([]);
  });

  test("down removes what the stage applied, custom resources first, and nothing else", async () => {
    // What Calico's own components make for this install goes with it (they are cluster-scoped):
    // IPAM state, calico-node's settings, the operator's pool. A policy of the user's does not.
    const calico = (kind: string, name: string, labels?: Record<string, string>) =>
      lab.server.put({
        apiVersion: "crd.projectcalico.org/v1",
        kind,
        metadata: { name, ...(labels ? { labels } : {}) },
        spec: {},
      });
    calico("IPAMBlock", "10-233-64-0-26");
    calico("BlockAffinity", "w1-10-233-64-0-26");
    calico("ClusterInformation", "default");
    calico("FelixConfiguration", "default");
    calico("FelixConfiguration", "node.w1");
    calico("Tier", "default");
    calico("IPPool", "default-ipv4-ippool", { "app.kubernetes.io/managed-by": "tigera-operator" });
    calico("GlobalNetworkPolicy", "deny-app");
    lab.server.requests.length = 0;
    const { exitCode, reporter } = await lab.run("down", { apiServer: false });
    console.log(
      "EV",
      JSON.stringify(reporter.events.filter((e) => e.type === "log")),
      JSON.stringify(lab.server.list("operator.tigera.io/v1", "APIServer")),
    );
    expect(exitCode).toBe(0);
    const deletes = lab.server.requests.filter((r) => r.method === "DELETE").map((r) => r.path);
    expect(deletes[0]).toBe("/apis/operator.tigera.io/v1/installations/default");
    expect(deletes.at(-1)).toBe("/api/v1/namespaces/tigera-operator");
    const crds = lab.server.list("apiextensions.k8s.io/v1", "CustomResourceDefinition");
    // The APIServer made by hand in the test before is someone's too: its CRD stays with it.
    expect(crds.map((c) => (c.metadata as Json).name).sort()).toEqual([
      "apiservers.operator.tigera.io",
      "globalnetworkpolicies.crd.projectcalico.org",
    ]);
    expect(lab.server.get("crd.projectcalico.org/v1", "GlobalNetworkPolicy", "deny-app")).toBeDefined();
    expect(lab.server.get("operator.tigera.io/v1", "APIServer", "default")).toBeDefined();
    expect(reporter.events).toContainEqual(
      expect.objectContaining({
        type: "log",
        level: "warn",
        message:
          "left CustomResourceDefinition globalnetworkpolicies.crd.projectcalico.org: 1 object of it that this stage did not make (deny-app) would go with it; once they are not needed: kubectl delete crd globalnetworkpolicies.crd.projectcalico.org",
      }),
    );
    expect(lab.server.get("v1", "Namespace", "calico-system")).toBeUndefined();
    expect(lab.server.get("v1", "Namespace", "tigera-operator")).toBeUndefined();
    expect(lab.server.get("rbac.authorization.k8s.io/v1", "ClusterRole", "tigera-operator")).toBeUndefined();
    // Not the stage's: still there.
    expect(
      lab.server.get("rbac.authorization.k8s.io/v1", "ClusterRole", "tigera-operator-extra"),
    ).toBeDefined();
  });
});

describe.skipIf(!have("openssl", "openssl"))("net/calico's verify when the network is not right", () => {
  let lab: CalicoLab;
  let blocked = false;
  beforeAll(async () => {
    lab = await startCalicoLab({ reachable: (from, to) => !blocked || from === to });
    expect((await lab.run("up")).exitCode).toBe(0);
  });
  afterAll(async () => {
    await lab?.stop();
  });

  test("pods that cannot reach each other across nodes fail the canary, with the encapsulation's port in the hint", async () => {
    blocked = true;
    const { exitCode, reporter } = await lab.run("verify");
    blocked = false;
    // verify is read-only: the canary is only run by up, and verify says so.
    expect(exitCode).toBe(0);
    expect(diagnosticsOf(reporter.events).find((d) => d.code === "calico.pod-network")).toMatchObject({
      severity: "info",
      hint: "kubehyve up --only net",
    });
    // Nothing changed since the canary of the first up passed: only --canaries runs it.
    blocked = true;
    const up = await lab.run("up", {}, { canaries: true });
    blocked = false;
    const canary = diagnosticsOf(up.reporter.events).find((d) => d.code === "calico.pod-network")!;
    expect(up.exitCode).toBe(1);
    expect(canary.severity).toBe("error");
    expect(canary.summary).toBe("a pod cannot reach another from w1 to w2: TIMEOUT");
    expect(canary.hint).toContain("VXLAN needs UDP 4789 between the nodes");
    expect(lab.server.list("v1", "Pod", "default")).toEqual([]);
    // A canary that failed left no record of a pass: the next up runs it again.
    const again = await lab.run("up");
    expect(again.exitCode).toBe(0);
    expect(diagnosticsOf(again.reporter.events).at(-1)).toMatchObject({
      code: "calico.pod-network",
      severity: "ok",
    });
  });

  test("a node whose calico-node is not ready is named, with the operator's own words", async () => {
    lab.server.setNodeReady("w2", false);
    await Bun.sleep(50);
    const { exitCode, reporter } = await lab.run("up");
    lab.server.setNodeReady("w2", true);
    expect(exitCode).toBe(1);
    const found = diagnosticsOf(reporter.events);
    expect(found.find((d) => d.code === "calico.component")).toMatchObject({
      severity: "error",
      summary:
        'Calico component calico is not available: Progressing True (ResourceNotReady): DaemonSet "calico-system/calico-node" is not available (awaiting 1 nodes); Available False (Unknown)',
    });
    expect(found.find((d) => d.code === "calico.node-agents")?.detail).toMatch(/^w2: calico-node-\w+ /);
    expect(found.find((d) => d.code === "calico.pod-network")?.severity).toBe("info");
  });
});

describe.skipIf(!have("openssl", "openssl"))("net/calico on a cluster that has a Calico of its own", () => {
  test("refuses to take over the objects of it, applying nothing", async () => {
    const lab = await startCalicoLab();
    try {
      await lab.client.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "tigera-operator" } });
      lab.server.requests.length = 0;
      const { exitCode, reporter } = await lab.run("up");
      expect(exitCode).toBe(1);
      expect(diagnosticsOf(reporter.events)).toEqual([
        expect.objectContaining({
          code: "calico.foreign-objects",
          severity: "error",
          summary:
            "1 object of Calico's manifests already exists without this stage's labels: kubehyve does not take over what it did not make",
          detail: "Namespace tigera-operator",
        }),
      ]);
      expect(lab.mutations()).toEqual([]);
      // A plan made before the cluster was there is checked again by apply, and refused the same way.
      const install = (await calicoPlugin.check(lab.ctx({}, { upstreamPending: true }))).changes;
      expect(install.map((c) => c.kind)).toEqual(["calico.install"]);
      await expect(calicoPlugin.apply!(lab.ctx(), install)).rejects.toThrow(
        "1 object of Calico's manifests already exists without this stage's labels",
      );
      expect(lab.mutations()).toEqual([]);
    } finally {
      await lab.stop();
    }
  });
});
