import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import {
  formatPath,
  loadClusterFile,
  type PluginLookup,
  parseClusterText,
  parsePath,
} from "../../src/core/config.ts";
import { type AnyPlugin, definePlugin } from "../../src/core/contract.ts";
import { diag } from "../../src/core/diagnostics.ts";
import { InputError } from "../../src/lib/errors.ts";
import { ordinaryAliases } from "../reliability/mutate.ts";

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

  test("every unknown field of one object is reported, not only the first, in the core and in a stage", () => {
    const text = VALID.replace("name: lab\n", "name: lab\nnmae: lab\nnetwrok: {}\n")
      .replace("    role: control-plane\n", "    role: control-plane\n    cpu: 2\n    mem: 4GiB\n")
      .replace("    plugin: fake\n", "    plugin: fake\n    swich: lan\n    hostreserve: 2GiB\n");
    expect(problemsOf(text).map((p) => [p.path, p.message])).toEqual([
      ["nodes[0].cpu", "unknown field (cpu is not one of the fields allowed here)"],
      ["nodes[0].mem", "unknown field (mem is not one of the fields allowed here)"],
      ["nmae", "unknown field (nmae is not one of the fields allowed here)"],
      ["netwrok", "unknown field (netwrok is not one of the fields allowed here)"],
      ["stages.hypervisor.swich", "unknown field (swich is not one of the fields allowed here)"],
      ["stages.hypervisor.hostreserve", "unknown field (hostreserve is not one of the fields allowed here)"],
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

  test("an empty file, or one of comments only, is called empty, at line 1 column 1", () => {
    for (const text of ["", "\n\n", "# name: lab\n# nodes: []\n"])
      expect(problemsOf(text)).toEqual([
        {
          path: "",
          message:
            "is empty: it must be a mapping with name:, network:, nodes: and stages: (kubehyve init writes an example)",
          where: "kubehyve.yaml:1:1",
        },
      ]);
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
    for (const path of [
      ["nodes", 1, "memory"],
      ["stages", "k8s", "release", "sha256"],
      ["name"],
      ["stages", "k8s", "extraVars", "a.b"],
      ["evil\n  kubehyve.yaml:1:1: fine", "x"],
      ["stages", 'say "[0]"', "plugin"],
    ] as const)
      expect(parsePath(formatPath(path))).toEqual([...path]);
  });

  test("a key that is not a plain word is quoted, so that a path is one line and means one thing", () => {
    expect(formatPath(["stages", "k8s", "extraVars", "a.b"])).toBe('stages.k8s.extraVars["a.b"]');
    expect(formatPath(["evil\n\u001b[31m", "x"])).toBe('["evil\\n\\u001b[31m"].x');
    expect(formatPath(["<<"])).toBe("<<");
  });
});

describe("a value that may take one of several shapes", () => {
  test("an object is judged as the object shape: its own field is named, not the whole choice", () => {
    const text = VALID.replace("disks: [50GiB]", "disks: [{ size: 50GiB, what: 1 }, { size: 0GiB }, lots]");
    expect(problemsOf(text).map((p) => [p.path, p.message])).toEqual([
      ["nodes[1].disks[0].what", "unknown field (what is not one of the fields allowed here)"],
      ["nodes[1].disks[1].size", "must be at least 1 GiB"],
      ["nodes[1].disks[2]", 'must be a size such as "4GiB" or "512MiB"'],
    ]);
  });
});

describe("a list where a map belongs", () => {
  // valibot's object schemas take an array (an array is an object): `timeouts: []` passed as no
  // timeouts, and a list under a stage said only that the map's first key was missing.
  const nested = definePlugin({
    id: "hypervisor/nested",
    title: "nested options",
    apiVersion: 1,
    options: v.strictObject({
      window: v.optional(v.strictObject({ days: v.array(v.string()), start: v.string() })),
      labels: v.optional(v.record(v.string(), v.strictObject({ value: v.string() }))),
      boot: v.optional(
        v.variant("kind", [
          v.strictObject({ kind: v.literal("file"), at: v.strictObject({ path: v.string() }) }),
          v.strictObject({ kind: v.literal("none") }),
        ]),
      ),
      either: v.optional(v.union([v.array(v.string()), v.strictObject({ only: v.string() })])),
    }),
    check: async () => ({ changes: [], diagnostics: [] }),
  });
  const lookup: PluginLookup = {
    find: (id) => (id === nested.id ? (nested as AnyPlugin) : undefined),
    searchPath: [],
  };
  const problems = (text: string) => {
    try {
      parseClusterText(text, "kubehyve.yaml", lookup);
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      return (error as InputError).problems.map((p) => [p.path, p.message, p.where]);
    }
    return [];
  };
  const withStage = (options: string) =>
    VALID.replace("    plugin: fake\n", `    plugin: nested\n${options}`);
  const LIST = "must be a map (key: value), not a list";

  test("is named at the list, in the core's fields and in a stage's, with nothing said of its insides", () => {
    const text = withStage(
      "    window: [Sat, Sun]\n    labels: { a: [x] }\n    boot: { kind: file, at: [] }\n",
    )
      .replace("network:\n", "timeouts: []\nssh: [a]\nnetwork:\n")
      .replace("disks: [50GiB]", "disks: [[]]");
    expect(problems(text)).toEqual([
      ["ssh", LIST, "kubehyve.yaml:3:6"],
      [
        "nodes[1].disks[0]",
        'must be a size such as "50GiB" or { name, size }, not a list',
        "kubehyve.yaml:16:13",
      ],
      ["timeouts", LIST, "kubehyve.yaml:2:11"],
      ["stages.hypervisor.window", LIST, "kubehyve.yaml:20:13"],
      ["stages.hypervisor.labels.a", LIST, "kubehyve.yaml:21:18"],
      ["stages.hypervisor.boot.at", LIST, "kubehyve.yaml:22:29"],
    ]);
  });

  test("is left alone where the schema takes a list, and maps and empty values pass as before", () => {
    expect(problems(withStage("    either: [a, b]\n"))).toEqual([]);
    expect(problems(withStage("    either: { only: a }\n    window: { days: [Sat], start: x }\n"))).toEqual(
      [],
    );
    expect(problems(withStage("    labels: {}\n    boot: { kind: none }\n"))).toEqual([]);
    expect(problems(withStage("").replace("network:\n", "timeouts: {}\nnetwork:\n"))).toEqual([]);
  });
});

describe("a stage option refused by a rule its plugin gave no words for", () => {
  test("is said the way the core says it, and a number where text belongs is told to be quoted", () => {
    const strict = definePlugin({
      id: "hypervisor/fake",
      title: "strict",
      apiVersion: 1,
      options: v.strictObject({
        version: v.optional(v.string()),
        autostart: v.optional(v.boolean()),
        kind: v.optional(v.picklist(["virtio-blk", "nvme"])),
        runner: v.optional(
          v.variant("kind", [v.object({ kind: v.literal("venv") }), v.object({ kind: v.literal("system") })]),
        ),
        port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535))),
        count: v.optional(v.number()),
      }),
      check: async () => ({ changes: [], diagnostics: [] }),
    }) as AnyPlugin;
    const lookup: PluginLookup = { find: (id) => (id === strict.id ? strict : undefined), searchPath: [] };
    const text = VALID.replace(
      "    plugin: fake\n",
      '    plugin: fake\n    version: 1.20\n    autostart: "yes"\n    kind: ide\n    runner: { kind: docker }\n    port: 70000\n    count: many\n',
    );
    try {
      parseClusterText(text, "kubehyve.yaml", lookup);
      throw new Error("accepted");
    } catch (error) {
      expect((error as InputError).problems.map((p) => [p.path, p.message])).toEqual([
        ["stages.hypervisor.version", "must be text, not the number 1.2: put the value in quotes"],
        ["stages.hypervisor.autostart", 'must be true or false, not "yes"'],
        ["stages.hypervisor.kind", 'must be one of "virtio-blk", "nvme", not "ide"'],
        ["stages.hypervisor.runner.kind", 'must be one of "venv", "system", not "docker"'],
        ["stages.hypervisor.port", "must be at most 65535"],
        ["stages.hypervisor.count", 'must be a number, not "many"'],
      ]);
    }
    const float = VALID.replace("    plugin: fake\n", "    plugin: fake\n    port: 1.5\n");
    try {
      parseClusterText(float, "kubehyve.yaml", lookup);
      throw new Error("accepted");
    } catch (error) {
      expect((error as InputError).problems.map((p) => p.message)).toEqual(["must be a whole number"]);
    }
  });
});

describe("a stage whose plugin breaks while checking its options", () => {
  test("is a problem naming the plugin and what it threw, not a kubehyve bug", () => {
    const breaking = definePlugin({
      id: "hypervisor/fake",
      title: "breaking",
      apiVersion: 1,
      validate() {
        throw new TypeError("cannot read properties of undefined (reading 'pools')");
      },
      check: async () => ({ changes: [], diagnostics: [] }),
    }) as AnyPlugin;
    const lookup: PluginLookup = {
      find: (id) => (id === breaking.id ? breaking : undefined),
      searchPath: [],
    };
    try {
      parseClusterText(VALID, "kubehyve.yaml", lookup);
      throw new Error("accepted");
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).problems.map((p) => [p.path, p.message])).toEqual([
        [
          "stages.hypervisor",
          "plugin hypervisor/fake failed while checking its options, a bug in the plugin: cannot read properties of undefined (reading 'pools')",
        ],
      ]);
    }
  });
});

describe("a stage whose options schema throws", () => {
  test("is the same problem: the plugin's bug, named", () => {
    const breaking = definePlugin({
      id: "hypervisor/fake",
      title: "breaking",
      apiVersion: 1,
      options: v.object({
        switch: v.optional(
          v.pipe(
            v.string(),
            v.check(() => {
              throw new Error("no regexp compiled");
            }),
          ),
        ),
      }),
      check: async () => ({ changes: [], diagnostics: [] }),
    }) as AnyPlugin;
    const lookup: PluginLookup = {
      find: (id) => (id === breaking.id ? breaking : undefined),
      searchPath: [],
    };
    const text = VALID.replace("    plugin: fake\n", "    plugin: fake\n    switch: lan\n");
    try {
      parseClusterText(text, "kubehyve.yaml", lookup);
      throw new Error("accepted");
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).problems.map((p) => [p.path, p.message])).toEqual([
        [
          "stages.hypervisor",
          "plugin hypervisor/fake failed while checking its options, a bug in the plugin: no regexp compiled",
        ],
      ]);
    }
  });
});

describe("a stage whose plugin is not there", () => {
  test("names the plugin files that were found but not loaded: one of them may be it", () => {
    const text = VALID.replace("    plugin: fake\n", "    plugin: fake\n  extra:\n    plugin: thing\n");
    const lookup: PluginLookup = {
      ...plugins,
      entries: [
        { origin: "built-in", status: "loaded" },
        { origin: "/etc/kubehyve-test/plugins/thing.ts", status: "failed" },
      ],
    };
    try {
      parseClusterText(text, "kubehyve.yaml", lookup);
      throw new Error("accepted");
    } catch (error) {
      expect((error as InputError).problems.map((p) => [p.path, p.message])).toEqual([
        [
          "stages.extra.plugin",
          "no plugin extra/thing is built in or found in the plugin path: /etc/kubehyve-test/plugins; 1 plugin file there was not loaded, `kubehyve plugins` says why: /etc/kubehyve-test/plugins/thing.ts",
        ],
      ]);
    }
  });
});

describe("an unknown field", () => {
  test("is placed at its key, not at its value on the line below or past the end of its line", () => {
    const text = VALID.replace("  subnet: 192.168.1.0/24\n", "  subnet: 192.168.1.0/24\n  bogus:\n")
      .replace("nodes:\n", "extra:\n  deep: 1\nnodes:\n")
      .replace("    plugin: fake\n", "    plugin: fake\n    zzz: { a: 1 }\n");
    expect(problemsOf(text).map((p) => [p.path, p.where])).toEqual([
      ["network.bogus", "kubehyve.yaml:5:3"],
      ["extra", "kubehyve.yaml:7:1"],
      ["stages.hypervisor.zzz", "kubehyve.yaml:21:5"],
    ]);
  });
});

describe("a stage slot that is not a name", () => {
  test("is one problem, not a second one about its plugin", () => {
    const problems = problemsOf(
      VALID.replace("  hypervisor:\n", '  "../x": { plugin: fake }\n  hypervisor:\n'),
    );
    expect(problems.map((p) => p.path)).toEqual(['stages["../x"]']);
  });
});

describe("a key holding a line break or a terminal escape", () => {
  test("is shown quoted in the path and in the message, never raw", () => {
    const problems = problemsOf(
      VALID.replace("name: lab\n", 'name: lab\n"evil\\n  kubehyve.yaml:1:1: nodes: fine\\e[31m": 1\n'),
    );
    expect(problems.map((p) => [p.path, p.message])).toEqual([
      [
        '["evil\\n  kubehyve.yaml:1:1: nodes: fine\\u001b[31m"]',
        'unknown field ("evil\\n  kubehyve.yaml:1:1: nodes: fine\\u001b[31m" is not one of the fields allowed here)',
      ],
    ]);
  });
});

describe("input that costs little", () => {
  const cpuMs = (fn: () => void) => {
    const t0 = process.cpuUsage();
    fn();
    const used = process.cpuUsage(t0);
    return (used.user + used.system) / 1000;
  };

  test("an alias to no anchor is refused with file:line:column, not a crash", () => {
    const problems = problemsOf(VALID.replace("gateway: 192.168.1.1", "gateway: *x"));
    expect(problems).toEqual([
      { path: "", message: "the alias *x refers to no anchor &x before it", where: "kubehyve.yaml:3:12" },
    ]);
  });

  test("an ordinary file with 101 references to one anchor is accepted", () => {
    const { cluster } = parseClusterText(ordinaryAliases(101), "kubehyve.yaml", plugins);
    const sizes = cluster.nodes.flatMap((n) => [n.disk, ...n.disks.map((d) => d.size)]);
    expect(sizes).toHaveLength(102);
    expect(new Set(sizes)).toEqual(new Set([20 * 1024 ** 3]));
  });

  test("aliases of aliases (a billion laughs) are refused before anything walks them", () => {
    const laughs = Array.from({ length: 12 }, (_, i) =>
      i === 0
        ? "l0: &l0 [a, a, a, a, a, a, a, a, a, a]"
        : `l${i}: &l${i} [${Array(10)
            .fill(`*l${i - 1}`)
            .join(", ")}]`,
    ).join("\n");
    let problems: { message: string }[] = [];
    const ms = cpuMs(() => {
      problems = problemsOf(`${VALID}${laughs}\n`);
    });
    expect(problems[0]!.message).toMatch(/more than 20000 values once its aliases are expanded/);
    expect(ms).toBeLessThan(500);
  });

  test("an alias inside the node it refers to is refused", () => {
    expect(problemsOf(`${VALID}x: &a [*a]\n`)[0]).toMatchObject({
      message: "the alias *a refers to a node that contains it",
      where: "kubehyve.yaml:18:8",
    });
  });

  test("a YAML merge key is explained", () => {
    const text = VALID.replace("  - name: w1\n", "  - <<: { cpus: 4 }\n    name: w1\n");
    expect(problemsOf(text).find((p) => p.path === "nodes[1].<<")!.message).toMatch(
      /YAML merge keys \(<<\) are not supported/,
    );
  });

  test("a mapping of 14 000 keys is checked in well under a second: duplicates are found in linear time", () => {
    const keys = Array.from({ length: 14_000 }, (_, i) => `k${i}: 1`);
    const text = `${VALID}extra: {${[...keys, "k7: 2"].join(", ")}}\n`;
    let problems: { message: string }[] = [];
    const ms = cpuMs(() => {
      problems = problemsOf(text);
    });
    expect(problems.map((p) => p.message)).toContain(
      'map keys must be unique: "k7" is already a key on line 18',
    );
    // The library's own check compares each key with every earlier one: 2 s of CPU here.
    expect(ms).toBeLessThan(1200);
  });

  test("more than 50 problems: the first 50 are listed and all are counted", () => {
    const nodes = Array.from(
      { length: 60 },
      (_, i) => `  - name: n${i}\n    role: boss\n    address: 192.168.1.${i + 2}\n`,
    ).join("");
    let error: InputError | undefined;
    try {
      parseClusterText(VALID.replace(/nodes:\n( {2}.*\n| {4}.*\n)+/, `nodes:\n${nodes}`), "f.yaml", plugins);
    } catch (e) {
      error = e as InputError;
    }
    expect(error!.message).toBe("f.yaml has 61 problems (the first 50 follow)");
    expect(error!.problems).toHaveLength(50);
  });

  test("deep nesting is refused before the parser descends into it", () => {
    let problems: { path: string; message: string; where?: string }[] = [];
    const ms = cpuMs(() => {
      problems = problemsOf(`${VALID}deep: ${"[".repeat(1000)}\n`);
    });
    expect(problems).toEqual([
      { path: "", message: "nests collections deeper than 64 levels", where: "kubehyve.yaml:18:71" },
    ]);
    expect(ms).toBeLessThan(500);
    expect(problemsOf(`${VALID}${"- ".repeat(100)}x\n`)[0]!.message).toBe(
      "nests more than 64 collections on one line",
    );
  });

  test("more than 10 000 lines are refused at the first line past them, comments counted too", () => {
    const lines = VALID.split("\n").length - 1;
    const at = (n: number) => `${VALID}${"# a note\n".repeat(n - lines)}`;
    // 10 000 lines are a file like any other; the line after them is refused, where it starts.
    expect(() => parseClusterText(at(10_000), "kubehyve.yaml", plugins)).not.toThrow();
    expect(problemsOf(at(10_001))).toEqual([
      {
        path: "",
        message: "has more than 10000 lines, more than any lab needs",
        where: "kubehyve.yaml:10001:1",
      },
    ]);
  });

  test("more than 30 000 YAML indicators are refused, and those in comments do not count", () => {
    const list = (n: number) => `extra: [${Array(n).fill("1").join(",")}]\n`;
    // `extra: [` and `]` are three, each comma one more.
    expect(problemsOf(`${VALID}${list(30_000)}`)[0]!.message).toBe(
      "holds more than 30000 YAML indicators ([]{},:-?&*!|>'\"%@), more than any lab needs",
    );
    const note = `# ${",".repeat(40_000)}\n`;
    expect(problemsOf(`${VALID}${note}x: 1\n`).map((p) => p.message)).not.toContainEqual(
      expect.stringContaining("YAML indicators"),
    );
  });

  test("more than 1000 references to anchors are refused", () => {
    const refs = (n: number) => `a: &a 1\nrefs: [${Array(n).fill("*a").join(", ")}]\n`;
    expect(problemsOf(`${VALID}${refs(1000)}`).map((p) => p.message)).not.toContainEqual(
      expect.stringContaining("refers to anchors"),
    );
    expect(problemsOf(`${VALID}${refs(1001)}`)[0]!.message).toBe("refers to anchors more than 1000 times");
  });

  test("block collections nested deeper than 64 levels, one per line, are refused too", () => {
    const deep = Array.from({ length: 70 }, (_, i) => `${"  ".repeat(i)}k:`).join("\n");
    expect(problemsOf(`${VALID}${deep} 1\n`)[0]!.message).toBe("nests collections deeper than 64 levels");
  });

  test("a key of a megabyte makes a short message", () => {
    const problems = problemsOf(`${VALID}${"k".repeat(200_000)}: 1\n`);
    for (const p of problems) expect(p.path.length + p.message.length).toBeLessThan(700);
  });
});

describe("reading the cluster file", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "kubehyve-config-read-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const refusal = async (path: string) => {
    try {
      await loadClusterFile(path, plugins);
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      return error as InputError;
    }
    throw new Error(`${path} was accepted`);
  };

  test("a FIFO is refused at once instead of waiting for a writer", async () => {
    const fifo = join(dir, "fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const error = await Promise.race([refusal(fifo), Bun.sleep(3000).then(() => "still waiting")]);
    expect((error as InputError).message).toBe(`cluster file ${fifo} is a FIFO, not a regular file`);
  });

  test("a device and a directory are refused without reading them", async () => {
    expect((await refusal("/dev/zero")).message).toBe(
      "cluster file /dev/zero is a character device, not a regular file",
    );
    expect((await refusal(dir)).message).toBe(`cluster file ${dir} is a directory, not a regular file`);
  });

  test("a file over 1 MiB is refused by its size", async () => {
    const big = join(dir, "big.yaml");
    writeFileSync(big, `${VALID}# ${"x".repeat(1024 * 1024)}\n`);
    expect((await refusal(big)).message).toMatch(
      /^cluster file .*big\.yaml is larger than 1 MiB \(\d+ bytes\)/,
    );
  });

  test("bytes that are not UTF-8 are refused with their line and column", async () => {
    const file = join(dir, "latin1.yaml");
    writeFileSync(
      file,
      Buffer.concat([Buffer.from(VALID.replace("name: lab", "name: l")), Buffer.from([0xe9])]),
    );
    writeFileSync(file, Buffer.concat([Buffer.from("name: l"), Buffer.from([0xe9]), Buffer.from("b\n")]));
    expect((await refusal(file)).problems).toEqual([
      { path: "", message: "is not UTF-8 text (byte 0xe9 at offset 7)", where: `${file}:1:8` },
    ]);
  });

  test("a UTF-8 byte order mark is allowed", async () => {
    const file = join(dir, "bom.yaml");
    writeFileSync(file, `\ufeff${VALID}`);
    expect((await loadClusterFile(file, plugins)).cluster.name).toBe("lab");
  });
});
