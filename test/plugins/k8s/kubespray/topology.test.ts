import { describe, expect, test } from "bun:test";
import { v } from "kubehyve";
import { failedByBootstrapReboot } from "../../../../plugins/k8s/kubespray/failures.ts";
import { buildInventory, mergeGroupVars } from "../../../../plugins/k8s/kubespray/inventory.ts";
import { optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import { resolveTopology } from "../../../../plugins/k8s/kubespray/topology.ts";
import { labCluster, labNode } from "../../../lab/cluster.ts";

const cp = (name: string, n: number) => labNode(name, "control-plane", `192.168.1.${20 + n}`);
const w1 = labNode("w1", "worker", "192.168.1.30");

describe("the control planes' order and etcd names", () => {
  test("a first run takes the file's order and names each member after its node", () => {
    expect(resolveTopology([cp("cp1", 1), w1, cp("cp2", 2), cp("cp3", 3)], undefined)).toEqual({
      order: ["cp1", "cp2", "cp3"],
      names: { cp1: "cp1", cp2: "cp2", cp3: "cp3" },
      added: [],
      removed: [],
    });
  });

  test("reordering the cluster file changes neither the first control plane nor any member's name", () => {
    const record = { order: ["cp1", "cp2", "cp3"], names: { cp1: "cp1", cp2: "cp2", cp3: "cp3" } };
    const t = resolveTopology([cp("cp3", 3), cp("cp2", 2), w1, cp("cp1", 1)], record);
    expect(t.order).toEqual(["cp1", "cp2", "cp3"]);
    const inventory = buildInventory({
      cluster: labCluster({ nodes: [cp("cp3", 3), cp("cp2", 2), w1, cp("cp1", 1)] }),
      options: v.parse(optionsSchema, {}),
      privateKeyPath: "/k",
      etcd: t,
    }) as {
      all: { hosts: Record<string, Record<string, unknown>>; children: Record<string, { hosts: object }> };
    };
    expect(Object.keys(inventory.all.children.kube_control_plane!.hosts)).toEqual(["cp1", "cp2", "cp3"]);
    expect(Object.keys(inventory.all.children.etcd!.hosts)).toEqual(["cp1", "cp2", "cp3"]);
    expect(inventory.all.hosts.cp2!.etcd_member_name).toBe("cp2");
    expect(inventory.all.hosts.w1!.etcd_member_name).toBeUndefined();
  });

  test("new control planes are appended and removed ones reported", () => {
    const record = { order: ["cp1", "cp2", "cp3"], names: { cp1: "cp1", cp2: "cp2", cp3: "cp3" } };
    const t = resolveTopology([cp("cp4", 4), cp("cp1", 1), cp("cp3", 3), cp("cp5", 5)], record);
    expect(t).toMatchObject({ order: ["cp1", "cp3", "cp4", "cp5"], added: ["cp4", "cp5"], removed: ["cp2"] });
  });

  test("a cluster installed before names were recorded keeps Kubespray's positional names", () => {
    const t = resolveTopology([cp("b", 2), cp("a", 1), cp("c", 3), w1], undefined, ["a", "w1", "b", "c"]);
    expect(t.order).toEqual(["a", "b", "c"]);
    expect(t.names).toEqual({ a: "etcd1", b: "etcd2", c: "etcd3" });
  });
});

describe("the user's extraVars", () => {
  test("always win over another stage's answer, replacing a map whole as Ansible does", () => {
    const merged = mergeGroupVars(
      { kube_version: "1.35.4" },
      [
        {
          kubelet_flexvolumes_plugins_dir: "/var/lib/kubelet/volumeplugins",
          containerd_registries_mirrors: { a: 1, b: 2 },
        },
      ],
      {
        kubelet_flexvolumes_plugins_dir: "/var/lib/kubelet/my-plugins",
        containerd_registries_mirrors: { c: 3 },
      },
    );
    expect(merged.vars).toEqual({
      kube_version: "1.35.4",
      kubelet_flexvolumes_plugins_dir: "/var/lib/kubelet/my-plugins",
      containerd_registries_mirrors: { c: 3 },
    });
    expect(merged.diagnostics).toEqual([]);
  });
});

describe("a run lost to Kubespray's rpm-ostree reboot", () => {
  const lost = (host: string, task: string, unreachable: boolean) => ({
    host,
    task,
    message: unreachable
      ? "Failed to connect to the host via ssh: Connection refused"
      : "timed out waiting for ping module test",
    unreachable,
  });

  test("is recognised when every failure is a rebooted node that stopped answering or did not come back", () => {
    expect(
      failedByBootstrapReboot(
        [
          lost("cp1", "bootstrap_os : Create remote_tmp for it is used by another module", true),
          lost("w1", "bootstrap_os : Wait for the reboot to complete", false),
        ],
        ["cp1", "w1"],
      ),
    ).toBe(true);
  });

  test("is not assumed for a node that was not rebooted, or for any other failure", () => {
    expect(failedByBootstrapReboot([lost("cp1", "x", true)], [])).toBe(false);
    expect(
      failedByBootstrapReboot(
        [lost("cp1", "kubernetes/preinstall : Stop if memory is too small for nodes", false)],
        ["cp1"],
      ),
    ).toBe(false);
    expect(failedByBootstrapReboot([], ["cp1"])).toBe(false);
  });
});
