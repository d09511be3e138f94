import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { v } from "kubehyve";
import { parse } from "yaml";
import { kubesprayPlugin } from "../../../../plugins/k8s/kubespray/index.ts";
import { optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import { createPluginContext } from "../../../../src/core/context.ts";
import type { Target } from "../../../../src/targets/target.ts";
import { answering } from "../../../lab/hooks.ts";
import { have } from "../../../lab/prereq.ts";
import { labCluster, node } from "./lab.ts";

describe.skipIf(!have("ssh-keygen", "openssh-client"))("k8s/kubespray without a cluster", () => {
  let stateDir: string;
  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "kubehyve-kubespray-plan-"));
  });
  afterAll(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  const cluster = labCluster([node("cp1", "control-plane"), node("w1", "worker")]);
  const options = v.parse(optionsSchema, {
    release: { sha256: "a".repeat(64) },
    runner: { kind: "venv", python: "python3" },
  });

  test("render gives the inventory and the group vars, with what other stages asked for", async () => {
    const ctx = createPluginContext({
      cluster,
      plugin: kubesprayPlugin,
      options,
      stateDir,
      hooks: answering({ "k8s:kubespray-vars": [{ kube_proxy_strict_arp: true }] }),
    });
    const files = await kubesprayPlugin.render!(ctx);
    expect(files.map((f) => f.path)).toEqual([
      "inventory/hosts.yaml",
      "inventory/group_vars/k8s_cluster/kubehyve.yml",
    ]);
    expect(parse(String(files[0]!.content)).all.vars.ansible_ssh_private_key_file).toBe(
      join(stateDir, "ssh", "id_ed25519"),
    );
    expect(String(files[1]!.content)).toContain("kube_proxy_strict_arp: true");
  });

  test("what another stage asks for may not change the connection or kubehyve's own variables", async () => {
    // As extraVars may not: ansible_connection: local would run every task here, as root, and
    // kube_version or kubeconfig_localhost would change what the stage installs and hands over.
    const ctx = createPluginContext({
      cluster,
      plugin: kubesprayPlugin,
      options,
      stateDir,
      dryRun: true,
      hooks: answering({
        "k8s:kubespray-vars": [
          {
            ansible_connection: "local",
            kube_version: "1.33.0",
            kubeconfig_localhost: false,
            "not-a-name": 1,
            kube_proxy_strict_arp: true,
          },
        ],
      }),
    });
    const { diagnostics } = await kubesprayPlugin.check(ctx);
    const fromHook = diagnostics.filter((d) => d.code === "kubespray.hook-vars-invalid");
    expect(fromHook.map((d) => [d.code, d.summary])).toEqual([
      [
        "kubespray.hook-vars-invalid",
        "a stage answered k8s:kubespray-vars with ansible_connection, a connection setting, which other stages may not change",
      ],
      [
        "kubespray.hook-vars-invalid",
        "a stage answered k8s:kubespray-vars with kube_version, which kubehyve sets from stages.k8s.kubernetesVersion",
      ],
      [
        "kubespray.hook-vars-invalid",
        "a stage answered k8s:kubespray-vars with kubeconfig_localhost, which kubehyve sets from its handover of the admin kubeconfig (Kubespray copies it to the inventory's artifacts/ only then)",
      ],
      [
        "kubespray.hook-vars-invalid",
        'a stage answered k8s:kubespray-vars with "not-a-name", which is not an Ansible variable name',
      ],
    ]);
    const files = await kubesprayPlugin.render!(ctx);
    const vars = parse(String(files[1]!.content));
    expect(vars).toMatchObject({
      kube_version: "1.35.4",
      kubeconfig_localhost: true,
      kube_proxy_strict_arp: true,
    });
    expect(vars.ansible_connection).toBeUndefined();
  });

  test("a plan before the earlier stages are done names a runner directory it may not take, starting no program", async () => {
    const theirs = await mkdtemp(join(tmpdir(), "kubehyve-their-dir-"));
    await mkdir(theirs, { recursive: true });
    await writeFile(join(theirs, "notes.txt"), "mine\n");
    const refusing: Target = {
      name: "local",
      run: async (argv) => {
        throw new Error(`nothing may run in a plan: ${argv.join(" ")}`);
      },
      close: async () => {},
    };
    const ctx = createPluginContext({
      cluster,
      plugin: kubesprayPlugin,
      options: v.parse(optionsSchema, { runner: { kind: "venv", dir: theirs } }),
      stateDir: join(theirs, "state"),
      dryRun: true,
      upstreamPending: true,
      targets: { local: refusing },
    });
    const { changes, diagnostics } = await kubesprayPlugin.check(ctx);
    expect(changes.map((c) => c.kind)).toEqual(["kubespray.install"]);
    expect(diagnostics.map((d) => [d.code, d.severity])).toEqual([["kubespray.runner-dir-foreign", "error"]]);
    await rm(theirs, { recursive: true, force: true });
  });

  test("a dry run lists every step of an install and changes nothing", async () => {
    const ctx = createPluginContext({ cluster, plugin: kubesprayPlugin, options, stateDir, dryRun: true });
    const { changes } = await kubesprayPlugin.check(ctx);
    await kubesprayPlugin.apply!(ctx, changes);
    expect(ctx.wetLog).toEqual([
      `write the Kubespray inventory to ${join(stateDir, "k8s", "inventory")}`,
      "record the control planes' order cp1 and etcd member names",
      `fetch Kubespray v2.31.0 into ${join(stateDir, "cache", "kubespray-v2.31.0")}, verified by its tree-sha256-v1 5739f59bab42016d667a979ad6b467816966a7887f8079dbbf43811f039bda33`,
      "create the Ansible venv for Kubespray v2.31.0",
      "run ansible-playbook cluster.yml (Kubespray v2.31.0)",
      `copy the admin kubeconfig to ${join(stateDir, "kubeconfig")} (server on 127.0.0.1)`,
    ]);
    expect(await readdir(stateDir)).toEqual(["ssh"]);
  });
});
