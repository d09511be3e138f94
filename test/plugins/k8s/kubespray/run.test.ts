/**
 * The k8s/kubespray stage end to end with real programs: Debian's ansible-playbook runs the stand-in
 * Kubespray tree over a real sshd on loopback, the release tarball comes through the artifact cache
 * from a loopback HTTP server, and check/verify ask the Kubernetes API test server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseYaml } from "kubehyve";
import { kubesprayPlugin } from "../../../../plugins/k8s/kubespray/index.ts";
import { type AnsibleRunner, playbookArgv, playbookEnv } from "../../../../plugins/k8s/kubespray/runner.ts";
import type { RunEvent } from "../../../../src/core/reporter.ts";
import { answering } from "../../../lab/hooks.ts";
import { have } from "../../../lab/prereq.ts";
import { type Lab, labCluster, node, startLab } from "./lab.ts";

const ready =
  have("sshd", "openssh-server") &&
  have("ansible-playbook", "ansible") &&
  have("sudo", "sudo") &&
  have("tar", "tar") &&
  have("ssh-keygen", "openssh-client");

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
      hooks: answering({ "k8s:kubespray-vars": [{ kube_proxy_strict_arp: true }] }),
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

    // Ansible pinned the nodes' key where their targets do, so that the hypervisor stage's forgetting
    // a node made anew holds for both; it keeps no file of its own.
    const pins = await readFile(join(lab.stateDir, "ssh", "known_hosts"), "utf8");
    expect(pins).toContain(
      `[127.0.0.1]:${lab.sshd.port} ${lab.sshd.hostPublicKey.split(" ").slice(0, 2).join(" ")}`,
    );
    expect(await stat(join(ctx.dir, "known_hosts")).catch(() => undefined)).toBeUndefined();

    // The admin kubeconfig is in the state dir, private, and reaches the API server.
    const info = await stat(ctx.kubeconfigPath);
    expect(info.mode & 0o777).toBe(0o600);
    const kubeconfig = await readFile(ctx.kubeconfigPath, "utf8");
    expect(kubeconfig).toContain(`server: https://127.0.0.1:${lab.kube.port}`);
    const kube = await lab.context(cluster, lab.options()).kube();
    expect((await kube.version()).gitVersion).toBe("v1.35.4");

    const counts = ctx.state.get<Record<string, number>>("taskCounts");
    expect(counts?.["v2.31.0/cluster.yml"]).toBe(last.current);

    // bootstrap_os layered packages and rebooted both nodes; the run lost them and was started once
    // more by itself, saying why; the second run found them bootstrapped and did not reboot them.
    expect(summary).toContainEqual(
      expect.stringMatching(
        /^cluster\.yml: cp1, w1 rebooted to apply the packages rpm-ostree layered .* running cluster\.yml once more, as Kubespray's docs\/operating_systems\/fcos\.md says$/,
      ),
    );
    expect(logs.filter((f) => /-cluster(-again)?\.log$/.test(f)).length).toBe(2);
    expect(await readFile(join(lab.standInRoot, "cp1.reboots"), "utf8")).toBe("reboot\n");
    expect(await readFile(join(lab.standInRoot, "w1.reboots"), "utf8")).toBe("reboot\n");
    expect(await lab.readNodeFile("cp1", "runs")).toBe("cluster\n");
    // The control planes' order and etcd member names are recorded for every later run.
    expect(ctx.state.get("etcd")).toEqual({ order: ["cp1"], names: { cp1: "cp1" } });
  }, 180_000);

  test("check finds nothing to do when every node is Ready at the desired version", async () => {
    lab.kube.setNodeReady("cp1", true);
    lab.kube.setNodeReady("w1", true);
    const cluster = labCluster([cp1, w1]);
    const ctx = lab.context(cluster, lab.options(), {
      hooks: answering({ "k8s:kubespray-vars": [{ kube_proxy_strict_arp: true }] }),
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
      hooks: answering({ "k8s:kubespray-vars": [{ kube_proxy_strict_arp: true }] }),
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

  test("a node whose host key changed since Ansible pinned it is refused, with the key to forget", async () => {
    // A lab of its own: an ssh master another test left open to the same sshd would skip the check.
    const own = await startLab();
    try {
      const ctx = own.context(labCluster([cp1]), own.options());
      // Where the nodes' targets pin their keys, and Ansible with them.
      const knownHosts = join(own.stateDir, "ssh", "known_hosts");
      // A re-created node: the address answers with another host key than the one pinned for it.
      const other = join(own.dir, "other-host-key");
      Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other]);
      const entry = `[127.0.0.1]:${own.sshd.port}`;
      await mkdir(ctx.dir, { recursive: true, mode: 0o700 });
      const otherKey = (await readFile(`${other}.pub`, "utf8")).split(" ").slice(0, 2).join(" ");
      await writeFile(knownHosts, `${entry} ${otherKey}\n`, { mode: 0o600 });
      const error = await kubesprayPlugin.apply!(ctx, [
        { kind: "kubespray.converge", summary: "again" },
      ]).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error).toBeInstanceOf(Error);
      expect(error!.message).toContain("cp1: task");
      expect(error!.message).toContain(
        `hint: the node's SSH host key is not the one pinned for it in ${knownHosts}`,
      );
      expect(error!.message).toContain(`ssh-keygen -f ${knownHosts} -R '${entry}'`);
    } finally {
      await own.stop();
    }
  }, 120_000);

  test("a node at an older Kubernetes version is a disruptive upgrade with upgrade-cluster.yml", async () => {
    const cluster = labCluster([cp1, w1, w2]);
    // w2's kubelet still reports the release before: the cluster file's version is newer.
    const w2Node = lab.kube.get("v1", "Node", "w2")! as { status: { nodeInfo: { kubeletVersion: string } } };
    w2Node.status.nodeInfo.kubeletVersion = "v1.35.3";
    lab.kube.put(w2Node as never);
    const options = lab.options({}, { kube_proxy_strict_arp: true });
    const ctx = lab.context(cluster, options);
    const { changes } = await kubesprayPlugin.check(ctx);
    // Disruptive: the engine asks before apply unless --yes (see test/core/engine.test.ts).
    expect(changes.map((c) => [c.kind, c.disruptive])).toEqual([["kubespray.upgrade", true]]);
    expect(changes[0]!.summary).toContain("v1.35.3 -> v1.35.4");
    await kubesprayPlugin.apply!(ctx, changes);
    expect(ctx.wetLog.some((line) => line.includes("ansible-playbook upgrade-cluster.yml"))).toBe(true);
    const settings = JSON.parse((await lab.readNodeFile("w2", "kubelet.json"))!);
    expect(settings).toMatchObject({ playbook: "upgrade", kube_version: "1.35.4" });
    w2Node.status.nodeInfo.kubeletVersion = "v1.35.4";
    lab.kube.put(w2Node as never);
  }, 120_000);

  test("a new control plane in a running cluster is refused with Kubespray's procedure, until it is registered", async () => {
    const cp2 = node("cp2", "control-plane");
    const cp3 = node("cp3", "control-plane");
    const ctx = lab.context(
      labCluster([cp3, cp1, w1, w2, cp2]),
      lab.options({}, { kube_proxy_strict_arp: true }),
    );
    const { changes, diagnostics } = await kubesprayPlugin.check(ctx);
    expect(changes).toEqual([]);
    const refusal = diagnostics.find((d) => d.code === "kubespray.control-plane-add")!;
    expect(refusal).toMatchObject({ severity: "error", path: "nodes" });
    expect(refusal.summary).toBe(
      "adding control planes cp3, cp2 to a running cluster is not done by kubehyve",
    );
    expect(refusal.detail).toContain(
      "cluster.yml --limit=etcd,kube_control_plane -e ignore_assert_errors=yes",
    );
    expect(refusal.detail).toContain("upgrade-cluster.yml --limit=etcd,kube_control_plane");
    expect(refusal.detail).toContain("--etcd-servers");
    expect(refusal.detail).toContain("nginx-proxy");
    // The inventory keeps the first control plane first and appends the new ones, named by name.
    const hosts = parseYaml(String((await kubesprayPlugin.render!(ctx))[0]!.content)) as {
      all: { hosts: Record<string, { etcd_member_name?: string }>; children: { etcd: { hosts: object } } };
    };
    expect(Object.keys(hosts.all.children.etcd.hosts)).toEqual(["cp1", "cp3", "cp2"]);
    expect(hosts.all.hosts.cp3!.etcd_member_name).toBe("cp3");
    // Once the procedure is done, the members are registered and kubehyve goes on.
    lab.kube.setNodeReady("cp2", true);
    lab.kube.setNodeReady("cp3", true);
    const after = await kubesprayPlugin.check(ctx);
    expect(after.diagnostics.filter((d) => d.code.startsWith("kubespray.control-plane"))).toEqual([]);
    lab.kube.delete("v1", "Node", "cp2");
    lab.kube.delete("v1", "Node", "cp3");
  }, 60_000);

  test("the stand-in's asserts stop a string given for a boolean, as config validate does", async () => {
    const cluster = labCluster([cp1, w1, w2]);
    const options = lab.options({}, { kube_proxy_strict_arp: true, download_run_once: "false" });
    expect(kubesprayPlugin.validate!({ cluster, options })).toContainEqual(
      expect.objectContaining({
        code: "kubespray.var-not-boolean",
        severity: "error",
        path: "stages.k8s.extraVars.download_run_once",
      }),
    );
    // Past validation (called directly here), the playbook stops at Kubespray's own assert.
    const ctx = lab.context(cluster, options);
    const error = await kubesprayPlugin.apply!(ctx, [{ kind: "kubespray.converge", summary: "again" }]).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain('task "validate_inventory : Stop if known booleans are set as strings');
  }, 120_000);

  test("without the skipped tag, Kubespray's python3-libdnf5 task fails the bootstrap", async () => {
    // The same run as kubehyve's, minus --skip-tags: the stand-in's task fails as it does on CoreOS.
    const kubesprayDir = join(lab.stateDir, "cache", "kubespray-v2.31.0");
    const inventoryDir = join(lab.stateDir, "k8s", "inventory");
    const req = {
      kubesprayDir,
      inventoryDir,
      playbook: "playbooks/facts.yml",
      logFile: "",
      workDir: join(lab.stateDir, "k8s"),
    };
    // The inventory as kubehyve writes it for this cluster (the test before left a broken one).
    const rendered = await kubesprayPlugin.render!(
      lab.context(labCluster([cp1, w1, w2]), lab.options({}, { kube_proxy_strict_arp: true })),
    );
    for (const f of rendered) await writeFile(join(lab.stateDir, "k8s", f.path), f.content);
    const runner = { command: () => ["ansible-playbook"] } as unknown as AnsibleRunner;
    const argv = playbookArgv(runner, req);
    expect(argv).toContain("--skip-tags");
    const without = argv.filter((a, i) => a !== "--skip-tags" && argv[i - 1] !== "--skip-tags");
    const proc = Bun.spawn(without, {
      cwd: kubesprayDir,
      env: { ...process.env, ...playbookEnv(req) },
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = await new Response(proc.stdout).text();
    expect(await proc.exited).not.toBe(0);
    expect(out).toContain("Install python3-libdnf5 on Fedora >= 41");
    expect(out).toContain("/usr is a read-only file system");
  }, 120_000);

  test("down resets the cluster with reset.yml and removes the kubeconfig, the admin.conf and a pins file of the stage's own, not the nodes' pins", async () => {
    const cluster = labCluster([cp1, w1, w2]);
    expect(await lab.readNodeFile("cp1", "runs")).toBeDefined();
    const ctx = lab.context(cluster, lab.options());
    // Ansible pinned the nodes' key in their targets' file, not in one of the stage's own.
    const pins = join(lab.stateDir, "ssh", "known_hosts");
    const pinned = await readFile(pins, "utf8");
    expect(pinned).toContain(`[127.0.0.1]:${lab.sshd.port} `);
    await expect(stat(join(ctx.dir, "known_hosts"))).rejects.toThrow();
    // An earlier version kept a file of the stage's own: its pins would refuse the next cluster's nodes.
    const ownPins = join(ctx.dir, "known_hosts");
    await writeFile(ownPins, pinned, { mode: 0o600 });
    expect((await stat(join(ctx.dir, "inventory", "artifacts", "admin.conf"))).isFile()).toBe(true);
    await kubesprayPlugin.destroy!(ctx);
    await expect(stat(ownPins)).rejects.toThrow();
    expect(await lab.readNodeFile("cp1", "runs")).toBeUndefined();
    expect(await lab.readNodeFile("w2", "runs")).toBeUndefined();
    await expect(stat(ctx.kubeconfigPath)).rejects.toThrow();
    // A new cluster gets a new admin credential. The nodes are the same machines until the
    // hypervisor stage makes or destroys their VMs, which forgets their pins then.
    await expect(stat(join(ctx.dir, "inventory", "artifacts", "admin.conf"))).rejects.toThrow();
    expect(await readFile(pins, "utf8")).toBe(pinned);
  }, 120_000);
});
