/**
 * lb/metallb without a cluster: the pool rules `config validate` decides from the cluster file
 * alone (exit 2), the objects it generates held to MetalLB's own CRD schemas, what it asks of
 * Kubespray, and render.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Diagnostic, type KubeObject, parseYaml, v } from "kubehyve";
import { builtinPlugins } from "../../../../plugins/index.ts";
import {
  advertisementSelects,
  checkAgainstCluster,
  parsePoolAddress,
} from "../../../../plugins/lb/metallb/addresses.ts";
import metallbPlugin from "../../../../plugins/lb/metallb/index.ts";
import { configObjects } from "../../../../plugins/lb/metallb/manifests.ts";
import { optionsSchema } from "../../../../plugins/lb/metallb/options.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";
import { parseClusterText } from "../../../../src/core/config.ts";
import { createPluginContext } from "../../../../src/core/context.ts";
import { runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import exampleText from "../../../../src/example/kubehyve.yaml" with { type: "text" };
import { parseManifests } from "../../../../src/kube/apply.ts";
import { createKubeClient } from "../../../../src/kube/client.ts";
import { runCli } from "../../../lab/cli.ts";
import { labCluster } from "../../../lab/cluster.ts";
import { parsePoolAddress as metallbParse } from "../../../lab/kube/controllers/metallb.ts";
import { resourcesOfCrd } from "../../../lab/kube/resources.ts";
import { validateAgainstSchema } from "../../../lab/kube/schema.ts";
import { startKubeApiServer } from "../../../lab/kube/server.ts";
import { oracle } from "../../../lab/oracles.ts";
import { have } from "../../../lab/prereq.ts";
import { CLUSTER_ID } from "./lab.ts";

// A whole `up` against the test server takes seconds; on a loaded 2-core machine, many.
setDefaultTimeout(90_000);

const work = mkdtempSync(join(tmpdir(), "kubehyve-metallb-stage-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The example lab: 192.168.1.0/24, gateway and DNS .1, DHCP .100-.199, nodes .21-.23. */
const cluster = labCluster({
  network: { ...labCluster().network, dhcpRange: { start: "192.168.1.100", end: "192.168.1.199" } },
  stages: { lb: { plugin: "lb/metallb", options: {} } },
});
const options = (pools: unknown[], extra: Record<string, unknown> = {}) =>
  v.parse(optionsSchema, { pools, ...extra });
const validate = (pools: unknown[], extra: Record<string, unknown> = {}): Diagnostic[] =>
  metallbPlugin.validate!({ cluster, options: options(pools, extra) });
const codes = (found: Diagnostic[]) => found.map((d) => [d.code, d.path]);

describe("config validate for lb/metallb", () => {
  test("the example's pool passes", () => {
    expect(validate([{ name: "lab", addresses: ["192.168.1.240-192.168.1.250"] }])).toEqual([]);
  });

  test("a pool outside the node subnet is an error", () => {
    expect(validate([{ name: "lab", addresses: ["192.168.2.240/28"] }])).toEqual([
      expect.objectContaining({
        code: "metallb.pool-outside-subnet",
        severity: "error",
        summary: "pool lab: 192.168.2.240/28 lies outside the node subnet 192.168.1.0/24",
        path: "stages.lb.pools[0].addresses[0]",
      }),
    ]);
  });

  test("a pool holding a node, the gateway or a DNS server is an error naming it", () => {
    expect(
      validate([{ name: "lab", addresses: ["192.168.1.20-192.168.1.22"] }]).map((d) => d.summary),
    ).toEqual([
      "pool lab: 192.168.1.20-192.168.1.22 holds 192.168.1.21, the address of node cp1",
      "pool lab: 192.168.1.20-192.168.1.22 holds 192.168.1.22, the address of node w1",
    ]);
    expect(codes(validate([{ name: "lab", addresses: ["192.168.1.1/32"] }]))).toEqual([
      ["metallb.pool-overlaps-gateway", "stages.lb.pools[0].addresses[0]"],
      ["metallb.pool-overlaps-dns", "stages.lb.pools[0].addresses[0]"],
    ]);
  });

  test("a pool in the router's DHCP range is an error", () => {
    expect(
      validate([{ name: "lab", addresses: ["192.168.1.224/28", "192.168.1.190-192.168.1.210"] }]),
    ).toEqual([
      expect.objectContaining({
        code: "metallb.pool-overlaps-dhcp",
        summary:
          "pool lab: 192.168.1.190-192.168.1.210 overlaps the router's DHCP range 192.168.1.100-192.168.1.199",
        path: "stages.lb.pools[0].addresses[1]",
      }),
    ]);
  });

  test("pools that overlap each other, or the subnet's own network or broadcast address, are errors", () => {
    expect(
      codes(
        validate([
          { name: "a", addresses: ["192.168.1.240/29"] },
          { name: "b", addresses: ["192.168.1.246-192.168.1.255"] },
        ]),
      ),
    ).toEqual([
      ["metallb.pool-subnet-edge", "stages.lb.pools[1].addresses[0]"],
      ["metallb.pools-overlap", "stages.lb.pools[1].addresses[0]"],
    ]);
  });

  test("an address MetalLB cannot parse, or a CIDR that is not a block's start, is an error with the fix", () => {
    expect(
      validate([{ name: "lab", addresses: ["banana", "192.168.1.241/28", "192.168.1.250-192.168.1.240"] }]),
    ).toEqual([
      expect.objectContaining({
        code: "metallb.pool-address-invalid",
        summary: 'pool lab: invalid CIDR "banana"',
      }),
      expect.objectContaining({
        code: "metallb.pool-address-invalid",
        summary:
          "pool lab: 192.168.1.241/28 is not the first address of its block: MetalLB would hand out all of 192.168.1.240/28",
        hint: "write 192.168.1.240/28, or a range such as 192.168.1.241-192.168.1.255",
      }),
      expect.objectContaining({
        code: "metallb.pool-address-invalid",
        summary:
          'pool lab: invalid IP range "192.168.1.250-192.168.1.240": start IP "192.168.1.250" is after the end IP "192.168.1.240"',
      }),
    ]);
  });

  test("pool names are unique, the L2 advertisement names known pools, and an unknown release needs its sha256", () => {
    const pools = [
      { name: "lab", addresses: ["192.168.1.240/30"] },
      { name: "lab", addresses: ["192.168.1.244/30"] },
    ];
    expect(codes(validate(pools, { l2: { pools: ["lab", "nope"] }, version: "v0.16.2" }))).toEqual([
      ["metallb.pool-name-duplicate", "stages.lb.pools[1].name"],
      ["metallb.l2-unknown-pool", "stages.lb.l2.pools[1]"],
      ["metallb.release-unpinned", "stages.lb.sha256"],
    ]);
  });

  test("without the router's DHCP range the pools cannot be checked against it: a warning", () => {
    const noDhcp = labCluster({ stages: { lb: { plugin: "lb/metallb", options: {} } } });
    const found = metallbPlugin.validate!({
      cluster: noDhcp,
      options: options([{ name: "lab", addresses: ["192.168.1.224/28"] }]),
    });
    expect(found.map((d) => [d.code, d.severity, d.path])).toEqual([
      ["metallb.dhcp-range-unknown", "warn", "network.dhcpRange"],
    ]);
  });

  test("addresses are read as MetalLB reads them", () => {
    for (const text of [
      "192.168.1.240/28",
      "192.168.1.240-192.168.1.250",
      "192.168.1.240 - 192.168.1.250",
      "10.0.0.0/8",
    ]) {
      const ours = parsePoolAddress(text);
      const theirs = metallbParse(text);
      expect("first" in ours && "prefixes" in theirs).toBe(true);
      if ("first" in ours && "prefixes" in theirs) {
        expect([ours.first, ours.last]).toEqual([theirs.prefixes[0]!.first, theirs.prefixes.at(-1)!.last]);
      }
    }
    expect("error" in parsePoolAddress("192.168.1.300/28")).toBe(true);
  });

  test("an address MetalLB refuses is refused by config validate too, whatever is around its dash", () => {
    // Go's strings.SplitN(cidr, "-", 2) keeps everything after the first dash in the end IP, and
    // strings.TrimSpace trims Unicode's White_Space, which has no byte order mark and has NEL.
    const refused = {
      "192.168.1.240-192.168.1.245-192.168.1.250":
        'invalid IP range "192.168.1.240-192.168.1.245-192.168.1.250": invalid end IP "192.168.1.245-192.168.1.250"',
      "\ufeff192.168.1.240-192.168.1.250":
        'invalid IP range "\ufeff192.168.1.240-192.168.1.250": invalid start IP "\ufeff192.168.1.240"',
      "192.168.1.240-192.168.1.250\n-":
        'invalid IP range "192.168.1.240-192.168.1.250\n-": invalid end IP "192.168.1.250\n-"',
    };
    for (const [text, error] of Object.entries(refused)) {
      expect({ text, theirs: metallbParse(text) }).toEqual({ text, theirs: { error } });
      expect({ text, ours: parsePoolAddress(text) }).toEqual({ text, ours: { error } });
      expect(codes(validate([{ name: "lab", addresses: [text] }]))).toEqual([
        ["metallb.pool-address-invalid", "stages.lb.pools[0].addresses[0]"],
      ]);
    }
    const nel = "\u0085192.168.1.240 -\t192.168.1.250";
    expect(metallbParse(nel)).toMatchObject({ prefixes: expect.any(Array) });
    expect(parsePoolAddress(nel)).toMatchObject({ first: 0xc0a801f0, last: 0xc0a801fa });
  });

  test("config validate exits 2 for a pool in the DHCP range, naming the file's path", () => {
    const dir = mkdtempSync(join(work, "cli-"));
    const file = join(dir, "kubehyve.yaml");
    writeFileSync(
      file,
      exampleText.replace(
        "addresses: [192.168.1.240-192.168.1.250]",
        "addresses: [192.168.1.150-192.168.1.160]",
      ),
    );
    const result = runCli(
      [process.execPath, join(import.meta.dir, "../../../../src/main.ts"), "config", "validate", "-c", file],
      { cwd: dir },
    );
    expect(result.code).toBe(2);
    expect(result.out).toContain("stages.lb.pools[0].addresses[0]");
    expect(result.out).toContain("overlaps the router's DHCP range 192.168.1.100-192.168.1.199");
  });
});

describe("the generated objects", () => {
  const ctx = () =>
    createPluginContext({
      cluster,
      plugin: metallbPlugin,
      options: options(
        [
          { name: "lab", addresses: ["192.168.1.240-192.168.1.250"] },
          { name: "spare", addresses: ["192.168.1.232/29"], autoAssign: false, avoidBuggyIPs: true },
        ],
        { l2: { interfaces: ["enp1s0"] } },
      ),
      stateDir: work,
      clusterId: CLUSTER_ID,
    });

  function schemas(paths: string[]) {
    const out = new Map<string, Record<string, unknown>>();
    for (const p of paths)
      for (const crd of parseManifests(readFileSync(oracle(p), "utf8"), p))
        for (const r of resourcesOfCrd(crd))
          if (r.schema) out.set(`${r.group}/${r.version}/${r.kind}`, r.schema);
    return out;
  }

  const sources: [string, string[]][] = [
    ["the release's metallb-native.yaml", ["releases/metallb/config/manifests/metallb-native.yaml"]],
    ["MetalLB's main branch", readdirSync(oracle("metallb/crds")).map((f) => `metallb/crds/${f}`)],
  ];
  for (const [name, paths] of sources) {
    test(`validate against the CRD schemas of ${name}, with objects closed`, () => {
      const found = schemas(paths);
      const objects = configObjects(ctx());
      expect(objects.map((o) => o.kind)).toEqual(["IPAddressPool", "IPAddressPool", "L2Advertisement"]);
      for (const obj of objects) {
        const schema = found.get(`${obj.apiVersion}/${obj.kind}`);
        expect(schema).toBeDefined();
        expect({ name: obj.metadata.name, problems: validateAgainstSchema(obj, schema!) }).toEqual({
          name: obj.metadata.name,
          problems: [],
        });
      }
    });
  }

  test("the L2 advertisement announces every pool unless told otherwise", () => {
    const l2 = configObjects(ctx()).at(-1)!;
    expect(l2.spec).toEqual({ ipAddressPools: ["lab", "spare"], interfaces: ["enp1s0"] });
  });
});

describe("what lb/metallb asks of the other stages", () => {
  test("Kubespray sets strictARP for kube-proxy's IPVS mode", async () => {
    const lookup = { find: (id: string) => builtinPlugins.find((p) => p.id === id), searchPath: [] };
    const { cluster: example, stages } = parseClusterText(exampleText, "example", lookup);
    const out = join(work, "render");
    const result = await runEngine({
      command: "render",
      cluster: example,
      stages,
      stateDir: join(work, "render-state"),
      reporter: memoryReporter(),
      renderDir: out,
    });
    expect(result.exitCode).toBe(0);
    const vars = parseYaml(
      readFileSync(join(out, "k8s/inventory/group_vars/k8s_cluster/kubehyve.yml"), "utf8"),
    );
    expect(vars.kube_proxy_mode).toBe("ipvs");
    expect(vars.kube_proxy_strict_arp).toBe(true);
    // And render wrote the stage's objects, and where the release's manifest comes from.
    expect(readdirSync(join(out, "lb/manifests")).sort()).toEqual([
      "10-metallb-native.yaml.missing",
      "20-address-pools.yaml",
    ]);
    const pools = parseManifests(
      readFileSync(join(out, "lb/manifests/20-address-pools.yaml"), "utf8"),
      "render",
    );
    expect(pools.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      "IPAddressPool/lab",
      "L2Advertisement/kubehyve",
    ]);
  });

  test("render writes the release's manifest, labelled, once it is in the cache", async () => {
    const { serveFiles } = await import("../../../lab/http.ts");
    const files = serveFiles({
      "/metallb/metallb/v0.16.1/config/manifests/metallb-native.yaml": Bun.file(
        oracle("releases/metallb/config/manifests/metallb-native.yaml"),
      ),
    });
    try {
      const artifacts = new DownloadCache({ dir: join(work, "cache"), mirror: files.url });
      const ctx = createPluginContext({
        cluster,
        plugin: metallbPlugin,
        options: options([{ name: "lab", addresses: ["192.168.1.240/28"] }]),
        stateDir: join(work, "full"),
        clusterId: CLUSTER_ID,
        artifacts,
      });
      await artifacts.fetch({
        url: "https://raw.githubusercontent.com/metallb/metallb/v0.16.1/config/manifests/metallb-native.yaml",
        sha256: "bf25feebb7582ca7df845efd52ffbc2960d6cbf4cfc972f47fded9f788b67f0b",
        name: "metallb-v0.16.1-metallb-native.yaml",
      });
      const rendered = await metallbPlugin.render!(ctx);
      const objects = parseManifests(String(rendered[0]!.content), "render");
      expect(rendered[0]!.path).toBe("manifests/10-metallb-native.yaml");
      expect(objects).toHaveLength(26);
      expect(objects.every((o) => o.metadata.labels?.["kubehyve.io/stage"] === "lb")).toBe(true);
    } finally {
      await files.stop();
    }
  });
});

describe("the host's side of layer 2 (lb:l2-host)", () => {
  const ctxWith = (answer: unknown, heard: unknown[] = []) =>
    createPluginContext({
      cluster,
      plugin: metallbPlugin,
      options: options([{ name: "lab", addresses: ["192.168.1.240-192.168.1.250"] }]),
      stateDir: join(work, "hook"),
      clusterId: CLUSTER_ID,
      hooks: {
        call: (async (name: string, payload: unknown) => {
          heard.push({ name, payload });
          return [answer];
        }) as never,
      },
    });

  test("asks whichever stage knows the host, and reports what it says", async () => {
    const heard: unknown[] = [];
    const finding = {
      code: "bhyve.switch-not-bridged",
      severity: "error",
      summary: "switch public has no physical port",
      hint: "vm switch add public em0",
    };
    const { diagnostics } = await metallbPlugin.check(ctxWith([finding], heard));
    expect(heard).toEqual([
      {
        name: "lb:l2-host",
        payload: { subnet: "192.168.1.0/24", addresses: ["192.168.1.240-192.168.1.250"] },
      },
    ]);
    expect(diagnostics.map((d) => d.code)).toEqual(["bhyve.switch-not-bridged", "metallb.no-cluster"]);
  });

  test("an answer that is not a list of diagnostics is a bug of the stage that gave it", async () => {
    await expect(metallbPlugin.check(ctxWith({ ok: true }))).rejects.toThrow(
      "a stage answered lb:l2-host with a object, not a list of diagnostics",
    );
    await expect(metallbPlugin.check(ctxWith([{ code: "x" }]))).rejects.toThrow(
      'with {"code":"x"}, not a diagnostic',
    );
  });
});

describe.skipIf(!have("openssl", "openssl"))("a cluster whose API does not answer", () => {
  test("is a finding of check, not a failed phase", async () => {
    const server = await startKubeApiServer();
    const client = await createKubeClient(server.kubeconfigPath, { retries: 0 });
    await server.stop();
    const ctx = createPluginContext({
      cluster,
      plugin: metallbPlugin,
      options: options([{ name: "lab", addresses: ["192.168.1.240-192.168.1.250"] }]),
      stateDir: join(work, "down"),
      clusterId: CLUSTER_ID,
      kube: async () => client,
    });
    const { changes, diagnostics } = await metallbPlugin.check(ctx);
    expect(changes).toEqual([]);
    expect(diagnostics).toEqual([
      expect.objectContaining({
        code: "metallb.api-unreachable",
        severity: "error",
        detail: expect.stringContaining("cannot connect"),
      }),
    ]);
  });
});

describe("objects of a cluster without MetalLB's schema", () => {
  const pool = (name: string, addresses: unknown): KubeObject => ({
    apiVersion: "metallb.io/v1beta1",
    kind: "IPAddressPool",
    metadata: { name, namespace: "metallb-system", labels: { tier: "lab" } },
    spec: { addresses },
  });
  const advertisement = (spec: Record<string, unknown>): KubeObject => ({
    apiVersion: "metallb.io/v1beta1",
    kind: "L2Advertisement",
    metadata: { name: "other", namespace: "metallb-system" },
    spec,
  });

  test("an L2Advertisement whose pool lists are not lists selects no pool, rather than every pool or a crash", () => {
    const lab = pool("lab", ["192.168.1.240-192.168.1.250"]);
    expect(advertisementSelects(advertisement({}), lab)).toBe(true);
    expect(advertisementSelects(advertisement({ ipAddressPools: ["lab"] }), lab)).toBe(true);
    expect(advertisementSelects(advertisement({ ipAddressPools: "lab" }), lab)).toBe(false);
    expect(advertisementSelects(advertisement({ ipAddressPools: [7] }), lab)).toBe(false);
    expect(
      advertisementSelects(advertisement({ ipAddressPoolSelectors: { matchLabels: { tier: "lab" } } }), lab),
    ).toBe(false);
    expect(advertisementSelects(advertisement({ ipAddressPoolSelectors: [null] }), lab)).toBe(false);
    expect(
      advertisementSelects(
        advertisement({ ipAddressPoolSelectors: [{ matchLabels: { tier: "lab" } }] }),
        lab,
      ),
    ).toBe(true);
  });

  test("another's pool whose addresses are not a list of strings is checked for what it has, not a crash", () => {
    const options = v.parse(optionsSchema, {
      version: "v0.16.1",
      pools: [{ name: "lab", addresses: ["192.168.1.240-192.168.1.250"] }],
    });
    const check = (addresses: unknown) =>
      checkAgainstCluster({
        options,
        kubeconfigPath: "/nonexistent/kubeconfig",
        ours: { pools: [], advertisement: advertisement({}) },
        livePools: [pool("theirs", addresses)],
        liveAdvertisements: [],
        nodes: [],
        isOurs: () => false,
      }).map((d) => d.code);
    expect(check("192.168.1.245/32")).not.toContain("metallb.pool-overlaps-foreign");
    expect(check([7, null, "192.168.1.245/32"])).toContain("metallb.pool-overlaps-foreign");
  });

  test("nodes excluded from load balancers are a warning only when every node is", () => {
    const options = v.parse(optionsSchema, {
      version: "v0.16.1",
      pools: [{ name: "lab", addresses: ["192.168.1.240-192.168.1.250"] }],
    });
    const node = (name: string, excluded: boolean): KubeObject => ({
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name,
        labels: excluded ? { "node.kubernetes.io/exclude-from-external-load-balancers": "" } : {},
      },
    });
    const excludedWarning = (nodes: KubeObject[]) =>
      checkAgainstCluster({
        options,
        kubeconfigPath: "/nonexistent/kubeconfig",
        ours: { pools: [], advertisement: advertisement({}) },
        livePools: [],
        liveAdvertisements: [],
        nodes,
        isOurs: () => false,
      }).filter((d) => d.code === "metallb.all-nodes-excluded");
    // kubeadm labels its control planes: with a worker left, MetalLB announces from it.
    expect(excludedWarning([node("cp1", true), node("w1", false)])).toEqual([]);
    expect(excludedWarning([])).toEqual([]);
    expect(excludedWarning([node("cp1", true), node("cp2", true)]).map((d) => d.hint)).toEqual([
      "kubectl --kubeconfig /nonexistent/kubeconfig label node cp1 cp2 node.kubernetes.io/exclude-from-external-load-balancers-   (or add a worker node)",
    ]);
  });
});
