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
