/**
 * The k8s/kubespray stage end to end with real programs: Debian's ansible-playbook runs the stand-in
 * Kubespray tree over a real sshd on loopback, the release tarball comes through the artifact cache
 * from a loopback HTTP server, and check/verify ask the Kubernetes API test server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { kubesprayPlugin } from "../../../../plugins/k8s/kubespray/index.ts";
import type { RunEvent } from "../../../../src/core/reporter.ts";
import { have } from "../../../lab/prereq.ts";
import { type Lab, labCluster, node, startLab } from "./lab.ts";

const ready =
  have("sshd", "openssh-server") &&
  have("ansible-playbook", "ansible") &&
  have("sudo", "sudo") &&
  have("tar", "tar");

function progressLines(events: RunEvent[]): { message: string; current?: number; total?: number }[] {
  return events.flatMap((e) => (e.type === "progress" ? [e] : []));
}

describe.skipIf(!ready)("k8s/kubespray with ansible-playbook over a loopback sshd", () => {
  let lab: Lab;
  const cp1 = node("cp1", "control-plane");
  const w1 = node("w1", "worker");
  const w2 = node("w2", "worker");

  beforeAll(async () => {
    lab = await startLab();
  });
  afterAll(async () => {
    await lab?.stop();
  });

  test("a cluster that does not exist yet is installed with cluster.yml and hands over its kubeconfig", async () => {
    const cluster = labCluster([cp1, w1]);
    const ctx = lab.context(cluster, lab.options(), {
      hooks: {
        call: async <T>(name: string) =>
          name === "k8s:kubespray-vars" ? [{ kube_proxy_strict_arp: true } as T] : [],
      },
    });
    const { changes, diagnostics } = await kubesprayPlugin.check(ctx);
    expect(diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(changes.map((c) => c.kind)).toEqual(["kubespray.install"]);

    await kubesprayPlugin.apply!(ctx, changes);

    // Every host ran the node role with the variables the inventory gave it.
    const cpSettings = JSON.parse((await lab.readNodeFile("cp1", "kubelet.json"))!);
    expect(cpSettings).toMatchObject({
      playbook: "cluster",
      kube_version: "1.35.4",
      kube_network_plugin: "cni",
      kube_proxy_mode: "ipvs",
      kube_proxy_strict_arp: true,
      container_manager: "containerd",
      become_user: "root",
    });
    expect(cpSettings.groups).toEqual(expect.arrayContaining(["kube_control_plane", "etcd", "k8s_cluster"]));
    const w1Settings = JSON.parse((await lab.readNodeFile("w1", "kubelet.json"))!);
    expect(w1Settings.groups).toEqual(expect.arrayContaining(["kube_node", "k8s_cluster"]));
    expect(w1Settings.groups).not.toContain("etcd");

    // Progress: "task N of ~M" with M from --list-tasks, the current task, per-host counts.
    const progress = progressLines(ctx.events);
    expect(progress.length).toBeGreaterThan(5);
    const last = progress.at(-1)!;
    expect(last.total).toBeGreaterThan(5);
    expect(last.message).toMatch(/^task \d+ of ~\d+: /);
    expect(
      progress.some((p) =>
        p.message.includes("kubernetes/preinstall : Stop if memory is too small for control plane nodes"),
      ),
    ).toBe(true);
    const summary = ctx.events.filter((e) => e.type === "log").map((e) => (e as { message: string }).message);
    expect(
      summary.some((m) =>
        /^cluster\.yml: task \d+ of ~\d+ — cp1 ok \d+ changed \d+, w1 ok \d+ changed \d+$/.test(m),
      ),
    ).toBe(true);

    // The whole log, jsonl events included, is in the state dir.
    const logs = await readdir(join(ctx.dir, "logs"));
    expect(logs.some((f) => f.endsWith("-cluster.log"))).toBe(true);
    const log = await readFile(join(ctx.dir, "logs", logs.find((f) => f.endsWith("-cluster.log"))!), "utf8");
    expect(log).toContain('"_event":"v2_playbook_on_stats"');
    expect(
      (await stat(join(ctx.dir, "logs", logs.find((f) => f.endsWith("-cluster.log"))!))).mode & 0o777,
    ).toBe(0o600);

    // The admin kubeconfig is in the state dir, private, and reaches the API server.
    const info = await stat(ctx.kubeconfigPath);
    expect(info.mode & 0o777).toBe(0o600);
    const kubeconfig = await readFile(ctx.kubeconfigPath, "utf8");
    expect(kubeconfig).toContain(`server: https://127.0.0.1:${lab.kube.port}`);
    const kube = await lab.context(cluster, lab.options()).kube();
    expect((await kube.version()).gitVersion).toBe("v1.35.4");

    const counts = ctx.state.get<Record<string, number>>("taskCounts");
    expect(counts?.["v2.31.0/cluster.yml"]).toBe(last.current);
  }, 120_000);

  test("check finds nothing to do when every node is Ready at the desired version", async () => {
    lab.kube.setNodeReady("cp1", true);
    lab.kube.setNodeReady("w1", true);
    const cluster = labCluster([cp1, w1]);
    const ctx = lab.context(cluster, lab.options(), {
      hooks: { call: async <T>() => [{ kube_proxy_strict_arp: true } as T] },
    });
    const { changes } = await kubesprayPlugin.check(ctx);
    expect(changes).toEqual([]);
  });

  test("a variable another stage asks for later makes check run cluster.yml again", async () => {
    const ctx = lab.context(labCluster([cp1, w1]), lab.options());
    const { changes } = await kubesprayPlugin.check(ctx);
    expect(changes.map((c) => c.kind)).toEqual(["kubespray.converge"]);
    expect(changes[0]!.summary).toContain("variables changed");
  });

  test("a node that is not Ready makes check run cluster.yml again", async () => {
    lab.kube.setNodeReady("w1", false);
    const ctx = lab.context(labCluster([cp1, w1]), lab.options());
    const { changes } = await kubesprayPlugin.check(ctx);
    expect(changes.map((c) => c.summary)).toEqual([expect.stringContaining("w1 not Ready")]);
    lab.kube.setNodeReady("w1", true);
  });

  test("a declared worker missing from the cluster is added with facts.yml and scale.yml limited to it", async () => {
    const cluster = labCluster([cp1, w1, w2]);
    const ctx = lab.context(cluster, lab.options(), {
      hooks: { call: async <T>() => [{ kube_proxy_strict_arp: true } as T] },
    });
    const { changes } = await kubesprayPlugin.check(ctx);
    expect(changes.map((c) => c.kind)).toEqual(["kubespray.scale"]);
    expect(changes[0]!.summary).toContain("w2");

    await kubesprayPlugin.apply!(ctx, changes);
    expect(await lab.readNodeFile("w2", "runs")).toBe("scale\n");
    expect(await lab.readNodeFile("w1", "runs")).toBe("cluster\n");
    expect(ctx.wetLog).toEqual(
      expect.arrayContaining([
        expect.stringContaining("run ansible-playbook playbooks/facts.yml"),
        expect.stringContaining("run ansible-playbook scale.yml on w2"),
      ]),
    );
    lab.kube.setNodeReady("w2", true);
  }, 120_000);

  test("a failed assert ends the run with the host, the task, the message and Kubespray's memory rule", async () => {
    const cluster = labCluster([cp1, w1, w2]);
    // A control plane "with" less memory than the host has: the same assert Kubespray runs, failing.
    const options = lab.options({}, { minimal_master_memory_mb: 1_000_000_000, kube_proxy_strict_arp: true });
    const ctx = lab.context(cluster, options);
    const error = await kubesprayPlugin.apply!(ctx, [{ kind: "kubespray.converge", summary: "again" }]).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(Error);
    const message = error!.message;
    expect(message).toContain("cluster.yml failed (ansible-playbook exited 2)");
    expect(message).toContain(
      'cp1: task "kubernetes/preinstall : Stop if memory is too small for control plane nodes"',
    );
    expect(message).toContain("failed: Assertion failed");
    expect(message).toContain("assertion: ansible_memtotal_mb >= minimal_master_memory_mb");
    expect(message).toContain("at least 1500 MB of memory on a control plane node");
    expect(message).toMatch(/full log: .*\/logs\/.*-cluster\.log/);
    // Only the host that failed is named: the workers passed the assert.
    expect(message).not.toContain("w1:");
  }, 120_000);

  test("a new Kubernetes version is a disruptive upgrade with upgrade-cluster.yml", async () => {
    const cluster = labCluster([cp1, w1, w2]);
    const options = lab.options({ kubernetesVersion: "1.35.5" }, { kube_proxy_strict_arp: true });
    const ctx = lab.context(cluster, options);
    const { changes } = await kubesprayPlugin.check(ctx);
    // Disruptive: the engine asks before apply unless --yes (see test/core/engine.test.ts).
    expect(changes.map((c) => [c.kind, c.disruptive])).toEqual([["kubespray.upgrade", true]]);
    expect(changes[0]!.summary).toContain("v1.35.4 -> v1.35.5");
    await kubesprayPlugin.apply!(ctx, changes);
    expect(ctx.wetLog.some((line) => line.includes("ansible-playbook upgrade-cluster.yml"))).toBe(true);
    const settings = JSON.parse((await lab.readNodeFile("w2", "kubelet.json"))!);
    expect(settings).toMatchObject({ playbook: "upgrade", kube_version: "1.35.5" });
  }, 120_000);

  test("down resets the cluster with reset.yml and removes the kubeconfig", async () => {
    const cluster = labCluster([cp1, w1, w2]);
    expect(await lab.readNodeFile("cp1", "runs")).toBeDefined();
    const ctx = lab.context(cluster, lab.options());
    await kubesprayPlugin.destroy!(ctx);
    expect(await lab.readNodeFile("cp1", "runs")).toBeUndefined();
    expect(await lab.readNodeFile("w2", "runs")).toBeUndefined();
    await expect(stat(ctx.kubeconfigPath)).rejects.toThrow();
  }, 120_000);
});
