/**
 * The bhyve stage acts only on what carries this cluster's mark: a VM with a node's name made by
 * hand, or by another cluster, is refused by `up` (naming its owner, before anything changes) and
 * left alone by `down`, and so are switches this cluster did not make.
 */
import { beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bhyvePlugin } from "../../../../plugins/hypervisor/bhyve/index.ts";
import { parseBhyveOptions } from "../../../../plugins/hypervisor/bhyve/options.ts";
import type { AnyPlugin } from "../../../../src/core/contract.ts";
import { runEngine } from "../../../../src/core/engine.ts";
import type { Cluster } from "../../../../src/core/model.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import { labNode } from "../../../lab/cluster.ts";
import { type FreebsdHost, hostTarget, run } from "../../../lab/freebsd/host.ts";
import { exampleCluster, isMutating, labContext, up } from "./lab.ts";
import { perTestHost } from "./per-test.ts";

setDefaultTimeout(60_000);

const lab = perTestHost("kubehyve-bhyve-owner-");
const stateDir = lab.stateDir;
let host: FreebsdHost;
beforeEach(() => {
  host = lab.host();
});

const options = (extra: Record<string, unknown> = {}) => ({
  firmware: host.firmwarePath,
  stopTimeoutSec: 5,
  ...extra,
});
const ctxFor = (state: string, extra: Partial<Parameters<typeof labContext>[0]> = {}) =>
  labContext({ host: hostTarget(host), stateDir: state, options: options(), ...extra });
const mutations = () => host.log().filter(isMutating);

/** `kubehyve up|down --yes` of one cluster, through the engine, on the simulated host. */
async function engine(command: "up" | "down", state: string, cluster: Cluster = exampleCluster()) {
  const reporter = memoryReporter();
  const result = await runEngine({
    command,
    cluster,
    stages: [
      {
        slot: "hypervisor",
        plugin: bhyvePlugin as AnyPlugin,
        options: parseBhyveOptions({ nic: "em0", ...options() }),
      },
    ],
    stateDir: state,
    reporter,
    assumeYes: true,
    targets: { host: () => hostTarget(host), node: () => hostTarget(host) },
  });
  const lines = reporter.events.map((e) =>
    "summary" in e ? String(e.summary) : "message" in e ? String(e.message) : "",
  );
  const errors = reporter.events
    .filter((e) => e.type === "diagnostic" && e.severity === "error")
    .map((e) => e as unknown as { code: string; summary: string; hint?: string });
  return { ...result, lines, errors };
}

describe("what the bhyve stage owns", () => {
  test("up refuses a hand-made VM with a node's name, says it carries no mark, and changes nothing", async () => {
    host.prepareVmBhyve();
    host.createForeignVm("cp1", { running: true });
    const before = readFileSync(host.vm("cp1").configPath, "utf8");
    const pid = host.state().running.cp1!.pid;
    host.clearLog();
    const result = await engine("up", stateDir());
    expect(result.exitCode).not.toBe(0);
    expect(result.errors.map((e) => e.code)).toEqual(["bhyve.vm-not-ours"]);
    expect(result.errors[0]!.summary).toBe(
      "a VM named cp1 exists on the host and carries no kubehyve mark: it was made by hand, by another tool or by an older kubehyve; kubehyve neither adopts nor changes it",
    );
    expect(result.errors[0]!.hint).toContain("rename the node in the cluster file");
    // Handing it to the cluster takes both marks: the config's and the dataset's.
    expect(result.errors[0]!.hint).toMatch(
      /mark it: sysrc -f \S+\/cp1\/cp1\.conf kubehyve_cluster=[0-9a-f-]{36}; zfs set kubehyve:cluster=[0-9a-f-]{36} zroot\/vm\/cp1$/,
    );
    // Refused at check: nothing at all happened on the host, not even to the other nodes.
    expect(mutations()).toEqual([]);
    expect(readFileSync(host.vm("cp1").configPath, "utf8")).toBe(before);
    expect(host.state().running.cp1!.pid).toBe(pid);
  });

  test("up --yes of a second cluster with the same node names neither rewrites nor restarts the first's VMs", async () => {
    const first = stateDir();
    expect((await engine("up", first)).exitCode).toBe(0);
    const id = readFileSync(join(first, "cluster-id"), "utf8").trim();
    const configs = ["cp1", "w1", "w2"].map((n) => readFileSync(host.vm(n).configPath, "utf8"));
    const pids = ["cp1", "w1", "w2"].map((n) => host.state().running[n]!.pid);
    host.clearLog();

    const second = await engine("up", stateDir(), exampleCluster({ name: "lab2" }));
    expect(second.exitCode).not.toBe(0);
    expect(second.errors.map((e) => `${e.code} ${e.summary}`)).toEqual(
      ["cp1", "w1", "w2"].map(
        (n) =>
          `bhyve.vm-not-ours a VM named ${n} exists on the host and belongs to another cluster, lab, (id ${id}); kubehyve neither adopts nor changes it`,
      ),
    );
    expect(mutations()).toEqual([]);
    expect(["cp1", "w1", "w2"].map((n) => readFileSync(host.vm(n).configPath, "utf8"))).toEqual(configs);
    expect(["cp1", "w1", "w2"].map((n) => host.state().running[n]!.pid)).toEqual(pids);
  });

  test("down destroys only this cluster's VMs and says what it left alone", async () => {
    const first = stateDir();
    await engine("up", first);
    // A second cluster that shares the node names and has one more, made by hand.
    host.createForeignVm("w3");
    const second = stateDir();
    const other = exampleCluster({
      name: "lab2",
      nodes: [...exampleCluster().nodes, labNode("w3", "worker", "192.168.1.24")],
    });
    host.clearLog();
    const down = await engine("down", second, other);
    expect(down.exitCode).toBe(0);
    expect(mutations()).toEqual([]);
    expect(down.lines.filter((l) => l.includes("left alone"))).toEqual([
      expect.stringMatching(/left alone: the VM named cp1 belongs to another cluster, lab, \(id /),
      expect.stringMatching(/left alone: the VM named w1 belongs to another cluster, lab,/),
      expect.stringMatching(/left alone: the VM named w2 belongs to another cluster, lab,/),
      "hv1: left alone: the VM named w3 carries no kubehyve mark: it was made by hand, by another tool or by an older kubehyve",
    ]);
    expect(host.rcConf().vm_list).toBe("cp1 w1 w2");

    expect((await engine("down", first)).exitCode).toBe(0);
    expect(["cp1", "w1", "w2", "w3"].map((n) => host.vm(n).exists)).toEqual([false, false, false, true]);
    expect(Object.keys(host.state().datasets).filter((d) => d.startsWith("zroot/vm/"))).toEqual([
      "zroot/vm/w3",
    ]);
  });

  test("down leaves a VM another host holds the lock of, names the lock, and keeps it in vm_list", async () => {
    const state = stateDir();
    await engine("up", state);
    // Its host died with cp1 running on another host sharing the datastore (vm::lock's run.lock).
    run(host, ["vm", "poweroff", "-f", "cp1"]);
    host.vm("cp1").lock("hv2.lab.home.arpa");
    const down = await engine("down", state);
    expect(down.exitCode).toBe(1);
    expect(down.lines.join("\n")).toContain(
      `VM cp1 is locked by host hv2.lab.home.arpa (run.lock): if that host does not run it, rm ${host.vm("cp1").dir}/run.lock, then kubehyve down again`,
    );
    expect(["cp1", "w1", "w2"].map((n) => host.vm(n).exists)).toEqual([true, false, false]);
    expect(host.rcConf().vm_list).toBe("cp1");
  });

  test("a half-written zvol in another cluster's VM is that cluster's to clean up, not this one's", async () => {
    const first = stateDir();
    await engine("up", first);
    // The first cluster was interrupted while writing one of w1's disks.
    run(host, ["zfs", "create", "-V", "1G", "zroot/vm/w1/disk0.kubehyve-new"]);
    const second = stateDir();
    const other = exampleCluster({ name: "lab2" });
    const plan = await bhyvePlugin.check(ctxFor(second, { cluster: other }));
    expect(plan.changes.filter((c) => c.summary.includes("interrupted run"))).toEqual([]);
    // The first cluster finds it as its own leftover.
    const own = await bhyvePlugin.check(ctxFor(first));
    expect(own.changes.map((c) => c.summary)).toContain(
      "remove what an interrupted run left: zroot/vm/w1/disk0.kubehyve-new",
    );
  });

  test("marks each VM's config and dataset, and the disks inherit the dataset's mark", async () => {
    const state = stateDir();
    await up(ctxFor(state));
    const id = readFileSync(join(state, "cluster-id"), "utf8").trim();
    expect(host.vm("w1").config).toMatchObject({ kubehyve_cluster: id, kubehyve_cluster_name: "lab" });
    expect(
      run(host, ["zfs", "get", "-Hp", "-r", "-o", "name,value,source", "kubehyve:cluster", "zroot/vm/w1"]),
    ).toBe(
      `zroot/vm/w1\t${id}\tlocal\nzroot/vm/w1/disk0\t${id}\tinherited from zroot/vm/w1\nzroot/vm/w1/disk1\t${id}\tinherited from zroot/vm/w1\n`,
    );
    // The datastore kubehyve made says who made it, in a property no guest's ownership depends on.
    expect(host.state().datasets["zroot/vm"]!.props).toEqual({ "kubehyve:datastore-of": id });
  });

  test("a dataset with a node's name that is not this cluster's stops up before anything changes", async () => {
    host.prepareVmBhyve();
    run(host, ["zfs", "create", "zroot/vm/w1"]);
    host.clearLog();
    const plan = await bhyvePlugin.check(ctxFor(stateDir()));
    expect(plan.diagnostics.filter((d) => d.severity === "error").map((d) => d.code)).toEqual([
      "bhyve.dataset-not-ours",
    ]);
    expect(plan.changes.some((c) => c.target === "w1")).toBe(false);
  });

  test("down leaves a dataset with a node's name that is not this cluster's, and one of another cluster", async () => {
    host.prepareVmBhyve();
    run(host, ["zfs", "create", "zroot/vm/w1"]);
    run(host, [
      "zfs",
      "create",
      "-o",
      "kubehyve:cluster=0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5",
      "zroot/vm/w2",
    ]);
    host.clearLog();
    expect((await engine("down", stateDir())).exitCode).toBe(0);
    expect(mutations()).toEqual([]);
    expect(Object.keys(host.state().datasets).filter((d) => d.startsWith("zroot/vm/"))).toEqual([
      "zroot/vm/w1",
      "zroot/vm/w2",
    ]);
  });

  test("never gives a NIC to a switch this cluster did not make, and does to one it made", async () => {
    run(host, ["zfs", "create", "-p", "zroot/vm"]);
    run(host, ["sysrc", "vm_enable=YES", "vm_dir=zfs:zroot/vm"]);
    run(host, ["vm", "init"]);
    run(host, ["vm", "switch", "create", "public"]);
    const plan = await bhyvePlugin.check(ctxFor(stateDir()));
    expect(
      plan.diagnostics.filter((d) => d.severity === "error").map((d) => `${d.code} ${d.summary}`),
    ).toEqual([
      "bhyve.switch-not-ours virtual switch public was not made by this cluster, and em0 is not on it: kubehyve does not change it",
    ]);

    // A cluster that made its switch without a NIC may add one later.
    const state = stateDir();
    const own = (nic?: string) =>
      labContext({
        host: hostTarget(host),
        stateDir: state,
        options: { ...options(), switch: "lab-net", ...(nic ? { nic } : { nic: undefined }) },
      });
    const first = await bhyvePlugin.check(own());
    await bhyvePlugin.apply!(
      own(),
      first.changes.filter((c) => c.kind?.startsWith("host.")),
    );
    expect(run(host, ["vm", "switch", "list"])).toMatch(/^lab-net\s+standard\s+vm-lab-net\s.*\s-$/m);
    const next = await bhyvePlugin.check(own("em0"));
    expect(next.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(next.changes.map((c) => c.summary)).toContain("add em0 to virtual switch lab-net");
  });
});
