import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { formatPath, type PluginLookup, parseClusterText, parsePath } from "../../src/core/config.ts";
import { type AnyPlugin, definePlugin } from "../../src/core/contract.ts";
import { diag } from "../../src/core/diagnostics.ts";
import { InputError } from "../../src/core/errors.ts";

const fakeHypervisor = definePlugin({
  id: "hypervisor/fake",
  title: "fake hypervisor",
  apiVersion: 1,
  options: v.strictObject({
    switch: v.optional(v.string(), "public"),
    hostReserve: v.optional(v.pipe(v.string(), v.regex(/^\d+GiB$/, "must be like 2GiB")), "2GiB"),
  }),
  check: async () => ({ changes: [], diagnostics: [] }),
});

const plugins: PluginLookup = {
  find: (id) => (id === fakeHypervisor.id ? (fakeHypervisor as AnyPlugin) : undefined),
  searchPath: ["/etc/kubehyve-test/plugins"],
};

const VALID = `name: lab
network:
  gateway: 192.168.1.1
  subnet: 192.168.1.0/24
  dhcpRange: 192.168.1.100-192.168.1.199
nodes:
  - name: cp1
    role: control-plane
    address: 192.168.1.21
  - name: w1
    role: worker
    memory: 6GiB
    address: 192.168.1.22
    disks: [50GiB]
stages:
  hypervisor:
    plugin: fake
`;

function problemsOf(text: string): { path: string; message: string; where?: string }[] {
  try {
    parseClusterText(text, "kubehyve.yaml", plugins);
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).exitCode).toBe(2);
    return [...(error as InputError).problems];
  }
  throw new Error("expected the file to be refused");
}

describe("a valid cluster file", () => {
  test("is normalised with defaults, sizes in bytes and full plugin ids", () => {
    const { cluster, stages, warnings } = parseClusterText(VALID, "kubehyve.yaml", plugins);
    expect(cluster.host).toEqual({ kind: "local" });
    expect(cluster.network).toMatchObject({
      domain: "lab.home.arpa",
      dns: ["192.168.1.1"],
      podCidr: "10.233.64.0/18",
      dhcpRange: { start: "192.168.1.100", end: "192.168.1.199" },
    });
    expect(cluster.nodes[0]).toMatchObject({
      cpus: 2,
      memory: 4 * 1024 ** 3,
      disk: 20 * 1024 ** 3,
      disks: [],
    });
    expect(cluster.nodes[1]!.disks).toEqual([{ name: "data1", size: 50 * 1024 ** 3 }]);
    expect(stages).toHaveLength(1);
    expect(stages[0]!.plugin.id).toBe("hypervisor/fake");
    expect(stages[0]!.options).toEqual({ switch: "public", hostReserve: "2GiB" });
    expect(warnings).toEqual([]);
  });

  test("an ssh host keeps its user and port", () => {
    const { cluster } = parseClusterText(
      VALID.replace("name: lab\n", "name: lab\nhost: ssh://admin@hv1.lab:2222\n"),
      "f",
      plugins,
    );
    expect(cluster.host).toEqual({ kind: "ssh", user: "admin", hostname: "hv1.lab", port: 2222 });
  });

  test("an even number of control planes is left to the Kubernetes stage, which knows its etcd", () => {
    const text = VALID.replace("role: worker", "role: control-plane");
    const { warnings } = parseClusterText(text, "f", plugins);
    expect(warnings).toEqual([]);
  });
});

/** Each case: a broken file, and the path and message its problem must carry. */
const BROKEN: [string, string, string, RegExp][] = [
  ["an upper-case cluster name", VALID.replace("name: lab", "name: Lab"), "name", /DNS label/],
  ["a missing network", VALID.replace(/network:\n( {2}.*\n)+/, ""), "network", /required/],
  [
    "a gateway that is not an address",
    VALID.replace("gateway: 192.168.1.1", "gateway: 192.168.1.300"),
    "network.gateway",
    /IPv4 address/,
  ],
  [
    "a subnet with host bits",
    VALID.replace("subnet: 192.168.1.0/24", "subnet: 192.168.1.5/24"),
    "network.subnet",
    /host bits zero/,
  ],
  [
    "a gateway outside the subnet",
    VALID.replace("gateway: 192.168.1.1", "gateway: 10.0.0.1"),
    "network.gateway",
    /outside the node subnet/,
  ],
  [
    "a pod CIDR overlapping the node subnet",
    VALID.replace("  subnet: 192.168.1.0/24\n", "  subnet: 192.168.1.0/24\n  podCidr: 192.168.0.0/16\n"),
    "network.podCidr",
    /overlaps the node subnet/,
  ],
  [
    "a service CIDR overlapping the pods",
    VALID.replace("  subnet: 192.168.1.0/24\n", "  subnet: 192.168.1.0/24\n  serviceCidr: 10.233.64.0/20\n"),
    "network.serviceCidr",
    /overlaps podCidr/,
  ],
  [
    "a backwards DHCP range",
    VALID.replace("192.168.1.100-192.168.1.199", "192.168.1.199-192.168.1.100"),
    "network.dhcpRange",
    /first-last/,
  ],
  ["no nodes at all", VALID.replace(/nodes:\n( {2}.*\n)+/, "nodes: []\n"), "nodes", /at least one node/],
  ["a node name with an underscore", VALID.replace("name: w1", "name: w_1"), "nodes[1].name", /DNS label/],
  ["a hostile node name", VALID.replace("name: w1", 'name: "w1; rm -rf /"'), "nodes[1].name", /DNS label/],
  [
    "an unknown role",
    VALID.replace("role: worker", "role: master"),
    "nodes[1].role",
    /"control-plane" or "worker"/,
  ],
  [
    "memory that is not a size",
    VALID.replace("memory: 6GiB", "memory: plenty"),
    "nodes[1].memory",
    /size such as/,
  ],
  [
    "a fractional CPU count",
    VALID.replace("memory: 6GiB", "memory: 6GiB\n    cpus: 1.5"),
    "nodes[1].cpus",
    /whole number/,
  ],
  ["zero CPUs", VALID.replace("memory: 6GiB", "memory: 6GiB\n    cpus: 0"), "nodes[1].cpus", /at least 1/],
  [
    "a misspelt node field",
    VALID.replace("memory: 6GiB", "memroy: 6GiB"),
    "nodes[1].memroy",
    /unknown field/,
  ],
  [
    "a duplicate node name",
    VALID.replace("name: w1", "name: cp1"),
    "nodes[1].name",
    /also the name of nodes\[0\]/,
  ],
  [
    "a duplicate address",
    VALID.replace("address: 192.168.1.22", "address: 192.168.1.21"),
    "nodes[1].address",
    /also the address of nodes\[0\]/,
  ],
  [
    "an address outside the subnet",
    VALID.replace("address: 192.168.1.22", "address: 10.9.9.9"),
    "nodes[1].address",
    /outside the node subnet/,
  ],
  [
    "an address in the DHCP range",
    VALID.replace("address: 192.168.1.22", "address: 192.168.1.150"),
    "nodes[1].address",
    /DHCP range/,
  ],
  [
    "the gateway's address on a node",
    VALID.replace("address: 192.168.1.22", "address: 192.168.1.1"),
    "nodes[1].address",
    /gateway's address/,
  ],
  [
    "the broadcast address on a node",
    VALID.replace("address: 192.168.1.22", "address: 192.168.1.255"),
    "nodes[1].address",
    /broadcast address/,
  ],
  [
    "no control plane",
    VALID.replace("role: control-plane", "role: worker"),
    "nodes",
    /at least one node with role "control-plane"/,
  ],
  [
    "a data disk that is not a size",
    VALID.replace("disks: [50GiB]", "disks: [fifty]"),
    "nodes[1].disks[0]",
    /size/,
  ],
  [
    "an ssh key that is not a public key",
    VALID.replace("stages:", 'ssh:\n  authorizedKeys: ["-----BEGIN OPENSSH PRIVATE KEY-----"]\nstages:'),
    "ssh.authorizedKeys[0]",
    /public key line/,
  ],
  [
    "a host that is not local or ssh",
    VALID.replace("name: lab\n", "name: lab\nhost: http://hv1\n"),
    "host",
    /ssh:\/\/user@host/,
  ],
  ["an unknown top-level field", `${VALID}colour: blue\n`, "colour", /unknown field/],
  [
    "a stage without a plugin",
    VALID.replace("    plugin: fake\n", "    switch: x\n"),
    "stages.hypervisor.plugin",
    /required|name a plugin/,
  ],
  [
    "a plugin that does not exist",
    VALID.replace("plugin: fake", "plugin: xen"),
    "stages.hypervisor.plugin",
    /no plugin hypervisor\/xen .* \/etc\/kubehyve-test\/plugins/,
  ],
  [
    "a plugin in the wrong slot",
    VALID.replace("plugin: fake", "plugin: os/coreos"),
    "stages.hypervisor.plugin",
    /fills the slot "os"/,
  ],
  [
    "a bad plugin option",
    VALID.replace("plugin: fake", "plugin: fake\n    hostReserve: lots"),
    "stages.hypervisor.hostReserve",
    /must be like 2GiB/,
  ],
  [
    "an unknown plugin option",
    VALID.replace("plugin: fake", "plugin: fake\n    swtich: x"),
    "stages.hypervisor.swtich",
    /unknown field/,
  ],
];

describe("a broken cluster file", () => {
  test.each(BROKEN)("refuses %s", (_name, text, path, message) => {
    const problems = problemsOf(text);
    const match = problems.find((p) => p.path === path);
    expect(match, `problems were: ${JSON.stringify(problems)}`).toBeDefined();
    expect(match!.message).toMatch(message);
    expect(match!.message).not.toContain("    at "); // never a stack trace
  });

  test("reports every problem at once, each with file:line:column", () => {
    const text = VALID.replace("name: lab", "name: Lab")
      .replace("memory: 6GiB", "memory: plenty")
      .replace("address: 192.168.1.22", "address: 192.168.1.21");
    const problems = problemsOf(text);
    expect(problems.map((p) => [p.path, p.where])).toEqual([
      ["name", "kubehyve.yaml:1:7"],
      ["nodes[1].memory", "kubehyve.yaml:12:13"],
      ["nodes[1].address", "kubehyve.yaml:13:14"],
    ]);
  });

  test("a YAML syntax error names file:line:column", () => {
    const problems = problemsOf("name: lab\nnodes:\n  - name: a\n   role: worker\n");
    expect(problems[0]!.where).toMatch(/^kubehyve\.yaml:4:\d+$/);
    expect(problems[0]!.message).not.toContain("at line");
  });

  test("a duplicate key is a syntax error, not a silent override", () => {
    const problems = problemsOf(`${VALID}name: other\n`);
    expect(problems[0]!.message).toMatch(/unique/i);
  });

  test("a list instead of a mapping is explained", () => {
    expect(problemsOf("- name: lab\n")[0]!.message).toMatch(/must be a mapping/);
  });

  test("an empty file is explained", () => {
    expect(problemsOf("")[0]!.message).toMatch(/must be a mapping/);
  });
});

describe("a stage's own validation", () => {
  const strictHypervisor = definePlugin({
    ...fakeHypervisor,
    validate: ({ cluster, options }) => [
      ...cluster.nodes
        .map((n, i) => [n, i] as const)
        .filter(([n]) => n.name.length < 2)
        .map(([n, i]) =>
          diag.error("fake.short-name", `"${n.name}" is too short for this hypervisor`, {
            path: `nodes[${i}].name`,
          }),
        ),
      ...(options.switch === "public"
        ? [diag.warn("fake.default-switch", "the default switch is shared", { path: "stages.hypervisor" })]
        : []),
    ],
  });
  const lookup: PluginLookup = { find: () => strictHypervisor as AnyPlugin, searchPath: [] };

  test("reports its errors with the cluster-file path and position, exit 2", () => {
    const text = VALID.replace("name: w1", "name: w");
    let error: InputError | undefined;
    try {
      parseClusterText(text, "kubehyve.yaml", lookup);
    } catch (e) {
      error = e as InputError;
    }
    expect(error).toBeInstanceOf(InputError);
    expect(error!.exitCode).toBe(2);
    expect(error!.problems).toEqual([
      {
        path: "nodes[1].name",
        message: '"w" is too short for this hypervisor',
        where: "kubehyve.yaml:10:11",
      },
    ]);
  });

  test("passes its warnings on without refusing the file", () => {
    const { warnings } = parseClusterText(VALID, "kubehyve.yaml", lookup);
    expect(warnings.map((w) => w.code)).toEqual(["fake.default-switch"]);
  });

  test("sees options with their defaults, as the stage will", () => {
    const seen: unknown[] = [];
    const spy = definePlugin({
      ...fakeHypervisor,
      validate: ({ options }) => {
        seen.push(options);
        return [];
      },
    });
    parseClusterText(VALID, "kubehyve.yaml", { find: () => spy as AnyPlugin, searchPath: [] });
    expect(seen).toEqual([{ switch: "public", hostReserve: "2GiB" }]);
  });
});

describe("parsePath", () => {
  test("is the inverse of formatPath", () => {
    for (const path of [["nodes", 1, "memory"], ["stages", "k8s", "release", "sha256"], ["name"]] as const)
      expect(parsePath(formatPath(path))).toEqual([...path]);
  });
});
