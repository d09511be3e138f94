import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { v } from "kubehyve";
import { parse } from "yaml";
import {
  baseGroupVars,
  buildInventory,
  GROUP_VARS_FILE,
  INVENTORY_FILE,
  mergeGroupVars,
  renderGroupVars,
  renderInventory,
} from "../../../../plugins/k8s/kubespray/inventory.ts";
import { optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import { validateStage } from "../../../../plugins/k8s/kubespray/validate.ts";
import { toYaml } from "../../../../plugins/k8s/kubespray/yaml.ts";
import { labCluster, labNode } from "../../../lab/cluster.ts";
import { oracle } from "../../../lab/oracles.ts";
import { have } from "../../../lab/prereq.ts";

const readOracle = (path: string) => readFile(oracle(path), "utf8");

/** The example lab: one control plane, two workers with a data disk each. */
const exampleLab = labCluster({
  stages: { k8s: { plugin: "k8s/kubespray", options: {} }, net: { plugin: "net/calico", options: {} } },
});
const options = v.parse(optionsSchema, {});
const KEY = "/var/db/kubehyve/lab/ssh/id_ed25519";

async function spawnText(
  argv: string[],
  opts: { env?: Record<string, string | undefined>; stdin?: Uint8Array } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(argv, { env: opts.env, stdin: opts.stdin, stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, stdout, stderr };
}

function ansibleInventory(dir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return spawnText(["ansible-inventory", "-i", join(dir, INVENTORY_FILE), "--list"], {
    env: {
      ...process.env,
      // ansible-inventory exits 0 on a file it cannot parse unless told otherwise (oracles README).
      ANSIBLE_INVENTORY_ENABLED: "yaml",
      ANSIBLE_INVENTORY_UNPARSED_FAILED: "True",
      ANSIBLE_NOCOLOR: "1",
    },
  });
}

async function writeInventory(dir: string, hosts: string, groupVars: string): Promise<void> {
  await mkdir(join(dir, "group_vars", "k8s_cluster"), { recursive: true });
  await writeFile(join(dir, INVENTORY_FILE), hosts);
  await writeFile(join(dir, GROUP_VARS_FILE), groupVars);
}

describe.skipIf(!have("ansible-inventory", "ansible"))("the inventory as ansible-inventory reads it", () => {
  let dir: string;
  // biome-ignore lint/suspicious/noExplicitAny: ansible-inventory's JSON
  let listed: any;
  const vars = mergeGroupVars(baseGroupVars(exampleLab, options), [{ kube_proxy_strict_arp: true }], {}).vars;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kubehyve-inventory-"));
    await writeInventory(
      dir,
      renderInventory({ cluster: exampleLab, options, privateKeyPath: KEY }),
      renderGroupVars(vars),
    );
    const r = await ansibleInventory(dir);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    listed = JSON.parse(r.stdout);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("an inventory Ansible cannot parse fails the check, so passing it means something", async () => {
    const broken = await mkdtemp(join(tmpdir(), "kubehyve-inventory-"));
    try {
      await writeInventory(broken, "all:\n  hosts: [cp1\n", "");
      expect((await ansibleInventory(broken)).code).not.toBe(0);
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });

  test("has the groups of Kubespray's sample inventory, with k8s_cluster made of the control planes and the workers", async () => {
    const ini = await readOracle("kubespray/inventory.ini");
    const sampleGroups = [...ini.matchAll(/^\[([a-z_]+)(?::children)?\]$/gm)].map((m) => m[1]);
    expect(sampleGroups).toEqual(["kube_control_plane", "etcd", "kube_node"]);
    expect(await readOracle("kubespray/inventory.md")).toContain(
      "**k8s_cluster** is dynamically defined as the union of **kube_node**, **kube_control_plane**",
    );
    for (const group of sampleGroups) expect(listed[group!]).toBeDefined();
    expect(listed.kube_control_plane.hosts).toEqual(["cp1"]);
    expect(listed.etcd.hosts).toEqual(["cp1"]);
    expect(listed.kube_node.hosts).toEqual(["w1", "w2"]);
    expect(listed.k8s_cluster.children).toEqual(["kube_control_plane", "kube_node"]);
  });

  test("gives every host the address variables the sample names and the login of the cluster key", () => {
    expect(listed._meta.hostvars.w2).toMatchObject({
      ansible_host: "192.168.1.23",
      ip: "192.168.1.23",
      access_ip: "192.168.1.23",
      ansible_user: "core",
      ansible_port: 22,
      ansible_ssh_private_key_file: KEY,
    });
  });

  test("hands the group vars to every host of k8s_cluster with their types intact", () => {
    expect(listed._meta.hostvars.cp1).toMatchObject({
      kube_version: "1.35.4",
      kube_network_plugin: "cni",
      kube_pods_subnet: "10.233.64.0/18",
      kube_service_addresses: "10.233.0.0/18",
      container_manager: "containerd",
      kube_proxy_mode: "ipvs",
      kube_proxy_strict_arp: true,
      kubeconfig_localhost: true,
      upstream_dns_servers: ["192.168.1.1"],
    });
  });

  test("sets only variables Kubespray defines, to values its inventory validation accepts", async () => {
    const known = [
      await readOracle("kubespray/group_vars/k8s_cluster/k8s-cluster.yml"),
      await readOracle("kubespray/group_vars/k8s_cluster/addons.yml"),
      await readOracle("kubespray/group_vars/all/all.yml"),
      await readOracle("kubespray/group_vars/all/containerd.yml"),
      await readOracle("releases/kubespray/roles/kubespray_defaults/defaults/main/main.yml"),
    ].join("\n");
    for (const name of Object.keys(vars)) {
      expect({ name, known: new RegExp(`^#? ?${name}:`, "m").test(known) }).toEqual({ name, known: true });
    }
    const validation = await readOracle("kubespray/roles/validate_inventory-tasks-main.yml");
    const allowed = (name: string) => {
      const m = validation.match(new RegExp(`- ${name} in (\\[[^\\]]+\\])`));
      if (!m) throw new Error(`no allowed values for ${name} in validate_inventory`);
      return JSON.parse(m[1]!.replaceAll("'", '"')) as string[];
    };
    expect(allowed("kube_network_plugin")).toContain(vars.kube_network_plugin as string);
    expect(allowed("kube_proxy_mode")).toContain(vars.kube_proxy_mode as string);
    expect(allowed("container_manager")).toContain(vars.container_manager as string);
  });
});

describe.skipIf(!have("ansible", "ansible"))("a node named like a group or Ansible's localhost", () => {
  /** The hosts Ansible picks for `pattern` from the inventory of these nodes. */
  async function picked(names: string[], pattern: string): Promise<string[]> {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-names-"));
    try {
      const cluster = labCluster({
        nodes: [
          labNode("cp1", "control-plane", "192.168.1.21"),
          ...names.map((n, i) => labNode(n, "worker", `192.168.1.${22 + i}`)),
        ],
        stages: { k8s: { plugin: "k8s/kubespray", options: {} } },
      });
      await writeInventory(dir, renderInventory({ cluster, options, privateKeyPath: KEY }), "");
      const r = await spawnText(["ansible", "-i", join(dir, INVENTORY_FILE), "--list-hosts", pattern], {
        env: { ...process.env, ANSIBLE_NOCOLOR: "1", ANSIBLE_INVENTORY_UNPARSED_FAILED: "True" },
      });
      expect(r.code).toBe(0);
      return r.stdout
        .split("\n")
        .slice(1)
        .map((l) => l.trim())
        .filter(Boolean);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  test("takes the place of what Kubespray's plays name, so config validate refuses it", async () => {
    // A plain host name wins over a group of that name (ansible-core stable-2.18,
    // inventory/manager.py _evaluate_patterns): Kubespray's 22 plays for `all` and its etcd plays
    // would run on that one node, and `--limit` of a scale would pick it alone or the group.
    expect(await picked(["w1"], "all")).toEqual(["cp1", "w1"]);
    expect(await picked(["all"], "all")).toEqual(["all"]);
    expect(await picked(["w1"], "etcd")).toEqual(["cp1"]);
    expect(await picked(["etcd"], "etcd")).toEqual(["etcd"]);
    // playbooks/boilerplate.yml's `hosts: bastion[0]` finds a host when no group has the name, and
    // an inventory host named localhost replaces Ansible's own, reached over ssh.
    expect(await picked(["w1"], "bastion[0]")).toEqual([]);
    expect(await picked(["bastion"], "bastion[0]")).toEqual(["bastion"]);
    for (const name of ["all", "etcd", "bastion", "localhost", "ungrouped"]) {
      const cluster = labCluster({
        nodes: [labNode("cp1", "control-plane", "192.168.1.21"), labNode(name, "worker", "192.168.1.22")],
        stages: { k8s: { plugin: "k8s/kubespray", options: {} } },
      });
      expect(validateStage({ cluster, options })).toContainEqual(
        expect.objectContaining({
          code: "kubespray.node-name-taken",
          severity: "error",
          path: "nodes[1].name",
        }),
      );
    }
    expect(validateStage({ cluster: exampleLab, options }).map((d) => d.code)).not.toContain(
      "kubespray.node-name-taken",
    );
  });
});

describe("group vars", () => {
  test("leave networking to Kubespray's Calico when no net stage is declared", () => {
    const { net: _net, ...stages } = exampleLab.stages;
    expect(baseGroupVars({ ...exampleLab, stages }, options).kube_network_plugin).toBe("calico");
  });

  test("take other stages' answers in stage order and report a conflict", () => {
    const merged = mergeGroupVars(
      { kube_proxy_mode: "ipvs" },
      [{ kube_proxy_strict_arp: true }, { kube_proxy_strict_arp: false }],
      {},
    );
    expect(merged.vars).toEqual({ kube_proxy_mode: "ipvs", kube_proxy_strict_arp: false });
    expect(merged.diagnostics).toEqual([
      expect.objectContaining({
        code: "kubespray.hook-vars-conflict",
        severity: "warn",
        summary: expect.stringContaining("kube_proxy_strict_arp"),
      }),
    ]);
  });

  test("merge nested maps and report only the leaves that differ", () => {
    const merged = mergeGroupVars(
      { containerd_registries_mirrors: { a: 1, b: 2 } },
      [{ containerd_registries_mirrors: { b: 2, c: 3 } }],
      {},
    );
    expect(merged.vars).toEqual({ containerd_registries_mirrors: { a: 1, b: 2, c: 3 } });
    expect(merged.diagnostics).toEqual([]);
  });

  test("replace a list whole: an Ansible list is one value, not a set to add to", () => {
    const merged = mergeGroupVars(
      { kube_apiserver_enable_admission_plugins: ["NodeRestriction"], dns_extra: { a: [1] } },
      [{ kube_apiserver_enable_admission_plugins: ["PodSecurity"], dns_extra: { a: [2] } }],
      {},
    );
    expect(merged.vars).toEqual({
      kube_apiserver_enable_admission_plugins: ["PodSecurity"],
      dns_extra: { a: [2] },
    });
  });

  test("let extraVars win over everything without a warning", () => {
    const merged = mergeGroupVars({ kube_proxy_mode: "ipvs" }, [{ kube_proxy_mode: "iptables" }], {
      kube_proxy_mode: "nftables",
    });
    expect(merged.vars.kube_proxy_mode).toBe("nftables");
    expect(merged.diagnostics.map((d) => d.code)).toEqual(["kubespray.hook-vars-conflict"]);
  });

  test("reject an answer that is not a map of variables", () => {
    const merged = mergeGroupVars({}, [["kube_proxy_strict_arp"], undefined], {});
    expect(merged.diagnostics).toEqual([
      expect.objectContaining({ code: "kubespray.hook-vars-invalid", severity: "error" }),
    ]);
  });
});

describe("inventory options", () => {
  test("take the ssh user and port from the options", () => {
    const custom = v.parse(optionsSchema, { ssh: { user: "admin", port: 2222 } });
    const inv = buildInventory({ cluster: exampleLab, options: custom, privateKeyPath: KEY }) as {
      all: { vars: Record<string, unknown> };
    };
    expect(inv.all.vars).toMatchObject({ ansible_user: "admin", ansible_port: 2222 });
  });

  test("a cluster of control planes only schedules pods on them", () => {
    const single = { ...exampleLab, nodes: exampleLab.nodes.slice(0, 1) };
    const inv = parse(renderInventory({ cluster: single, options, privateKeyPath: KEY }));
    expect(Object.keys(inv.all.children.kube_node.hosts)).toEqual(["cp1"]);
  });

  test("reject a Kubespray version that is not a release tag, naming the expected form", () => {
    const r = v.safeParse(optionsSchema, { version: "2.31" });
    expect(r.success).toBe(false);
    expect(r.issues?.[0]?.message).toContain('a Kubespray release tag such as "v2.31.0"');
  });
});

describe("toYaml", () => {
  test("writes strings YAML would otherwise read as other types so they come back as strings", () => {
    const data = {
      yes: "yes",
      octal: "0755",
      version: "1.35",
      colon: "a: b",
      hash: "#not a comment",
      multi: "line one\nline two",
      quote: `it's "quoted"`,
      unicode: "Grüße",
      empty: "",
      nothing: null,
      list: [1, "two", { three: true }, []],
      nested: { deeper: { deepest: false }, emptyMap: {} },
      "key with space": 1,
    };
    expect(parse(toYaml(data))).toEqual(data);
  });

  test.skipIf(!have("python3", "python3-yaml"))(
    "writes what PyYAML, Ansible's YAML reader, reads back unchanged",
    async () => {
      const data = {
        yes: "no",
        on: "off",
        Y: "n",
        null: "~",
        "1.35": "1.35",
        list: ["yes", 0o755, "0755", null],
        t: true,
      };
      const {
        code,
        stdout: out,
        stderr: err,
      } = await spawnText(
        ["python3", "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
        { stdin: new TextEncoder().encode(toYaml(data)) },
      );
      expect({ code, err }).toEqual({ code: 0, err: "" });
      expect(JSON.parse(out)).toEqual(data);
    },
  );
});

/**
 * Ansible templates every string of the inventory and the group vars when a task reads it, and a
 * template runs code on this machine (lookup('pipe', …)) as the user that runs kubehyve, root. What
 * kubehyve writes there is data, so each string that could start a template is tagged `!unsafe`
 * (Ansible docs, playbooks_advanced_syntax "Unsafe or raw strings": on each element of a list or map).
 */
describe.skipIf(!have("ansible-playbook", "ansible"))(
  "values as the real ansible-playbook reads them",
  () => {
    async function readBack(input: {
      extraVars: Record<string, unknown>;
      hookAnswers?: unknown[];
      privateKeyPath?: string;
      names: string[];
    }): Promise<{ dir: string; values: Record<string, unknown> }> {
      const dir = await mkdtemp(join(tmpdir(), "kubehyve-unsafe-"));
      const merged = mergeGroupVars(
        baseGroupVars(exampleLab, options),
        input.hookAnswers ?? [],
        input.extraVars,
      );
      await writeInventory(
        dir,
        renderInventory({ cluster: exampleLab, options, privateKeyPath: input.privateKeyPath ?? KEY }),
        renderGroupVars(merged.vars),
      );
      const playbook = join(dir, "read.yml");
      await writeFile(
        playbook,
        toYaml([
          {
            hosts: "cp1",
            gather_facts: false,
            connection: "local",
            tasks: input.names.map((name) => ({ name, "ansible.builtin.debug": { var: name } })),
          },
        ]),
      );
      const r = await spawnText(["ansible-playbook", "-i", join(dir, INVENTORY_FILE), playbook], {
        env: {
          ...process.env,
          ANSIBLE_STDOUT_CALLBACK: "json",
          ANSIBLE_NOCOLOR: "1",
          ANSIBLE_INVENTORY_ENABLED: "yaml",
          ANSIBLE_INVENTORY_UNPARSED_FAILED: "True",
        },
      });
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
      // biome-ignore lint/suspicious/noExplicitAny: the json callback's output
      const tasks = JSON.parse(r.stdout).plays[0].tasks as any[];
      const values = Object.fromEntries(
        tasks.map((t) => [t.task.name, t.hosts.cp1[t.task.name]] as [string, unknown]),
      );
      return { dir, values };
    }

    test("a template in extraVars, another stage's answer or the key's path is a string, never run", async () => {
      const dir = await mkdtemp(join(tmpdir(), "kubehyve-unsafe-mark-"));
      const pipe = (what: string) => `{{ lookup('pipe', 'touch ${dir}/ran-${what}') }}`;
      const extraVars = {
        kubelet_custom_flags: [pipe("list"), "--v=2"],
        containerd_registries_mirrors: { [pipe("key")]: { endpoint: pipe("nested") } },
        kube_apiserver_ip: pipe("plain"),
        kube_oidc_url: `{% set x = lookup('pipe', 'touch ${dir}/ran-block') %}x`,
        kube_token_dir: "{# a comment #}/etc/kubernetes/tokens",
        kube_proxy_strict_arp: true,
        kubelet_max_pods: 110,
      };
      const keyPath = `/var/db/kubehyve/${pipe("key-path")}/id_ed25519`;
      try {
        const names = [...Object.keys(extraVars), "kube_read_only_port", "ansible_ssh_private_key_file"];
        const { values, dir: inventoryDir } = await readBack({
          extraVars,
          hookAnswers: [{ kube_read_only_port: pipe("hook") }],
          privateKeyPath: keyPath,
          names,
        });
        await rm(inventoryDir, { recursive: true, force: true });
        expect((await readdir(dir)).filter((n) => n.startsWith("ran-"))).toEqual([]);
        expect(values).toEqual({
          ...extraVars,
          kube_read_only_port: pipe("hook"),
          ansible_ssh_private_key_file: keyPath,
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }, 120_000);

    test("a string with characters PyYAML refuses in a stream reaches the play unchanged", async () => {
      const extraVars = {
        kube_oidc_username_prefix:
          "a\u007fb\u0085c\u0001d\u009fe\tf\u{1f600}g\u00e9h\u2028i\u2029j\ufeffk\r\nl",
      };
      const { values, dir } = await readBack({ extraVars, names: Object.keys(extraVars) });
      await rm(dir, { recursive: true, force: true });
      expect(values).toEqual(extraVars);
    }, 120_000);
  },
);
