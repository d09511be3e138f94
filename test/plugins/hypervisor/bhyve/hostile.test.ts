/**
 * What a careless or hostile operator puts in the way of the bhyve stage: configs that are links or
 * FIFOs, reads cut short, things of their own inside a VM of the cluster's. `up` and `down` act
 * only on what this cluster made, lose nothing else, and say what they left and why.
 */
import { beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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

const lab = perTestHost("kubehyve-bhyve-hostile-");
const stateDir = lab.stateDir;
let host: FreebsdHost;
beforeEach(() => {
  host = lab.host();
});

const mutations = () => host.log().filter(isMutating);

/** `kubehyve up|down --yes` (or `down --dry-run`) of one cluster, through the engine. */
async function engine(
  command: "up" | "down",
  state: string,
  opts: { cluster?: Cluster; options?: Record<string, unknown>; dryRun?: boolean } = {},
) {
  const reporter = memoryReporter();
  const result = await runEngine({
    command,
    cluster: opts.cluster ?? exampleCluster(),
    stages: [
      {
        slot: "hypervisor",
        plugin: bhyvePlugin as AnyPlugin,
        options: parseBhyveOptions({
          nic: "em0",
          firmware: host.firmwarePath,
          stopTimeoutSec: 5,
          ...opts.options,
        }),
      },
    ],
    stateDir: state,
    reporter,
    assumeYes: true,
    dryRun: opts.dryRun,
    targets: { host: () => hostTarget(host), node: () => hostTarget(host) },
  });
  const text = (e: (typeof reporter.events)[number]) =>
    "summary" in e ? String(e.summary) : "message" in e ? String(e.message) : "";
  const errors = reporter.events
    .filter((e) => e.type === "diagnostic" && e.severity === "error")
    .map((e) => e as unknown as { code: string; summary: string; hint?: string; detail?: string });
  return { ...result, lines: reporter.events.map(text), events: reporter.events, errors };
}

const guests = () =>
  Object.keys(host.state().datasets)
    .filter((d) => /^zroot\/vm\/[^/@]+$/.test(d))
    .sort();

describe("a VM config that is not a regular file", () => {
  test("a hand-made VM whose config is a link to this cluster's VM's config is neither adopted by up nor destroyed by down", async () => {
    // A directory datastore: no dataset mark stands behind the config's.
    const vmDir = join(host.root, "vm");
    const options = { vmDir };
    const state = stateDir();
    expect((await engine("up", state, { options })).exitCode).toBe(0);
    // The operator makes w3 by hand and has its config share w1's settings through a link.
    host.createForeignVm("w3");
    const w3conf = join(vmDir, "w3", "w3.conf");
    rmSync(w3conf);
    symlinkSync(join(vmDir, "w1", "w1.conf"), w3conf);
    const w1before = readFileSync(join(vmDir, "w1", "w1.conf"), "utf8");
    const cluster = exampleCluster({
      nodes: [...exampleCluster().nodes, labNode("w3", "worker", "192.168.1.24")],
    });
    host.clearLog();

    const again = await engine("up", state, { cluster, options });
    expect(again.exitCode).not.toBe(0);
    expect(again.errors.map((e) => `${e.code} ${e.summary}`)).toEqual([
      `bhyve.vm-not-ours a VM named w3 exists on the host and its config ${w3conf} is a symbolic link to ${join(vmDir, "w1", "w1.conf")}, not a regular file; kubehyve neither reads nor changes it`,
    ]);
    expect(mutations()).toEqual([]);
    const verified = await bhyvePlugin.verify!(
      labContext({
        host: hostTarget(host),
        stateDir: state,
        cluster,
        options: { ...options, firmware: host.firmwarePath },
      }),
    );
    expect(verified.filter((d) => d.target === "w3").map((d) => `${d.code} ${d.summary}`)).toEqual([
      `bhyve.vm-not-ours the VM named w3 has a config that is a symbolic link to ${join(vmDir, "w1", "w1.conf")}, not a regular file`,
    ]);

    const down = await engine("down", state, { cluster, options });
    expect(down.exitCode).toBe(0);
    expect(down.lines.filter((l) => l.includes("left alone"))).toEqual([
      `hv1: left alone: the VM named w3 has a config that is a symbolic link to ${join(vmDir, "w1", "w1.conf")}, not a regular file (${w3conf})`,
    ]);
    // w3 keeps its disk and its link (which now leads nowhere: w1 was this cluster's).
    expect(readdirSync(join(vmDir, "w3")).sort()).toEqual(["disk0.img", "vm-bhyve.log", "w3.conf"]);
    expect(host.vm("w1").exists).toBe(false);
    expect(w1before).toContain("kubehyve_cluster=");
    expect(
      mutations()
        .filter((a) => a[0] === "vm" && a[1] === "destroy")
        .map((a) => a.join(" "))
        .sort(),
    ).toEqual(["vm destroy -f cp1", "vm destroy -f w1", "vm destroy -f w2"]);
  });

  test("a FIFO where a config is being written does not hold check until its time limit", async () => {
    const state = stateDir();
    expect((await engine("up", state)).exitCode).toBe(0);
    // Where writeHostFile puts a config before renaming it: a FIFO there would make grep wait.
    run(host, ["sh", "-c", `mkfifo "$1"`, "sh", `${host.vm("w1").configPath}.kubehyve-new`]);
    const started = Date.now();
    const again = await engine("up", state, { cluster: { ...exampleCluster(), timeouts: tight } });
    expect(again.errors).toEqual([]);
    expect(again.exitCode).toBe(0);
    expect(Date.now() - started).toBeLessThan(tight.read);
  });
});

/** Limits short enough that a command held until its limit shows in the test's time. */
const tight = { read: 8_000, change: 60_000, long: 60_000 };

describe("a read of the VMs' configs that is cut short", () => {
  test("stops down with the command and the host named, instead of taking every VM for someone else's", async () => {
    const state = stateDir();
    expect((await engine("up", state)).exitCode).toBe(0);
    host.clearLog();
    // Killed half-way (a signal, output past the limit): what grep did not reach would read as empty.
    host.inject({ kind: "fail-once", command: "grep", code: 143, stderr: "Terminated" });
    const down = await engine("down", state);
    expect(down.exitCode).not.toBe(0);
    expect(down.lines.some((l) => l.includes("left alone"))).toBe(false);
    const failed = down.lines.find((l) => l.includes("grep -D skip -H"));
    expect(failed).toMatch(
      /hv1: `grep -D skip -H {2}-- \S+\/cp1\/cp1\.conf \(and \d+ more files\)` exited 143: Terminated/,
    );
    expect(mutations()).toEqual([]);
    expect(guests()).toEqual(["zroot/vm/cp1", "zroot/vm/w1", "zroot/vm/w2"]);
  });
});

describe("a listing of the VMs' disk files that fails", () => {
  test("stops up with the failure named, calls no disk missing, and changes nothing", async () => {
    const options = { vmDir: join(host.root, "vm") };
    const state = stateDir();
    expect((await engine("up", state, { options })).exitCode).toBe(0);
    host.clearLog();
    host.inject({
      kind: "fail-once",
      command: "ls",
      args: ["-lnd"],
      code: 1,
      stderr: "ls: Input/output error",
    });
    const again = await engine("up", state, { options });
    expect(again.exitCode).not.toBe(0);
    // The one finding: a listing that failed says nothing of the disks, so none is called missing.
    expect(again.errors.map((e) => [e.code, e.summary, e.detail])).toEqual([
      [
        "bhyve.host-read-failed",
        "could not read the VMs' disk files",
        "ls -lnd exited 1: ls: Input/output error",
      ],
    ]);
    expect(mutations()).toEqual([]);
  });
});

describe("what the operator keeps inside a VM of this cluster", () => {
  test("down destroys neither a VM holding a snapshot, a dataset or a file of theirs nor those things, names each, and its dry run says the same", async () => {
    const state = stateDir();
    expect((await engine("up", state)).exitCode).toBe(0);
    run(host, ["zfs", "snapshot", "zroot/vm/w1@before-upgrade"]);
    run(host, ["zfs", "create", "zroot/vm/w1/backup"]);
    writeFileSync(join(host.vm("w2").dir, "notes.txt"), "how I set up w2\n");
    // What vm-bhyve itself leaves beside a guest is no reason to keep it (lib/vm-run).
    for (const file of [
      "uefi-vars.fd",
      "cp1.save",
      "cp1.save.kern",
      "vtcon.org.qemu.guest_agent.0",
      "bhyve.log",
    ])
      writeFileSync(join(host.vm("cp1").dir, file), "");
    host.clearLog();

    const dry = await engine("down", state, { dryRun: true });
    expect(mutations()).toEqual([]);
    const real = await engine("down", state);
    for (const result of [dry, real]) {
      expect(result.exitCode).not.toBe(0);
      const refusal = result.lines.find((l) => l.includes("not destroyed"));
      expect(refusal).toBe(
        [
          "hypervisor destroy failed: hv1: not destroyed: VM w1 holds what this cluster did not make, which would go with it: zroot/vm/w1/backup (a dataset), zroot/vm/w1@before-upgrade (a snapshot); move those elsewhere (or remove them if they are not needed), then kubehyve down again",
          `VM w2 holds what this cluster did not make, which would go with it: ${host.vm("w2").dir}/notes.txt; move those elsewhere (or remove them if they are not needed), then kubehyve down again`,
        ].join("; "),
      );
    }
    // The dry run named every step the real run then took, and no other.
    const steps = (r: typeof dry) =>
      r.events.filter((e) => e.type === "wet").map((e) => String((e as { description: string }).description));
    expect(steps(dry).sort()).toEqual(steps(real).sort());
    expect(steps(real).sort()).toEqual([
      "destroy VM cp1 and its disks",
      "stop VM cp1",
      'stop starting the cluster\'s VMs at boot: sysrc vm_list="w1 w2"',
    ]);
    // Only cp1 went; w1 and w2 keep running, start at boot, and keep what the operator put there.
    expect(guests()).toEqual(["zroot/vm/w1", "zroot/vm/w2"]);
    expect(host.state().datasets["zroot/vm/w1@before-upgrade"]).toBeDefined();
    expect(readFileSync(join(host.vm("w2").dir, "notes.txt"), "utf8")).toBe("how I set up w2\n");
    expect([host.vm("w1").running, host.vm("w2").running]).toEqual([true, true]);
    expect(host.rcConf().vm_list).toBe("w1 w2");
  });
});

describe("a dataset an interrupted run left", () => {
  test("is neither made again by up nor destroyed by down while it holds the operator's snapshot", async () => {
    const state = stateDir();
    expect((await engine("up", state)).exitCode).toBe(0);
    const id = readFileSync(join(state, "cluster-id"), "utf8").trim();
    // vm create of a new node w3 was stopped after zfs create; the operator snapshotted what was there.
    run(host, ["zfs", "create", "-o", `kubehyve:cluster=${id}`, "zroot/vm/w3"]);
    run(host, ["zfs", "snapshot", "zroot/vm/w3@look"]);
    const cluster = exampleCluster({
      nodes: [...exampleCluster().nodes, labNode("w3", "worker", "192.168.1.24")],
    });
    host.clearLog();

    const again = await engine("up", state, { cluster });
    expect(again.exitCode).not.toBe(0);
    expect(again.errors.map((e) => [e.code, e.summary, e.detail])).toEqual([
      [
        "bhyve.dataset-holds-foreign",
        "ZFS dataset zroot/vm/w3 was left by an interrupted run of this cluster, but holds what this cluster did not make: kubehyve does not destroy it to make VM w3 again",
        "zroot/vm/w3@look (a snapshot)",
      ],
    ]);
    expect(mutations()).toEqual([]);

    const down = await engine("down", state, { cluster });
    expect(down.exitCode).not.toBe(0);
    expect(down.lines.find((l) => l.includes("not destroyed"))).toContain(
      "not destroyed: zroot/vm/w3 holds what this cluster did not make, which would go with it: zroot/vm/w3@look (a snapshot)",
    );
    expect(guests()).toEqual(["zroot/vm/w3"]);
    expect(host.state().datasets["zroot/vm/w3@look"]).toBeDefined();
  });

  test("is destroyed by down, with the template that run left, and another cluster's template stays", async () => {
    const state = stateDir();
    expect((await engine("up", state)).exitCode).toBe(0);
    const id = readFileSync(join(state, "cluster-id"), "utf8").trim();
    // vm create of a new node w3 was stopped after zfs create, its template still in .templates.
    run(host, ["zfs", "create", "-o", `kubehyve:cluster=${id}`, "zroot/vm/w3"]);
    const templates = join(host.vmDir(), ".templates");
    writeFileSync(join(templates, `kubehyve-${id}-w3.conf`), `kubehyve_cluster=${id}\n`);
    const theirs = "kubehyve-00000000-0000-4000-8000-000000000000-w3.conf";
    writeFileSync(join(templates, theirs), "kubehyve_cluster=00000000-0000-4000-8000-000000000000\n");
    const cluster = exampleCluster({
      nodes: [...exampleCluster().nodes, labNode("w3", "worker", "192.168.1.24")],
    });

    const down = await engine("down", state, { cluster });
    expect(down.exitCode).toBe(0);
    expect(guests()).toEqual([]);
    expect(readdirSync(templates).sort()).toEqual(["default.conf", theirs]);
  });
});

describe("a node's VM renamed by hand", () => {
  test("keeps up from making the node again with the MAC the renamed VM still has, and down leaves it, saying so", async () => {
    const state = stateDir();
    expect((await engine("up", state)).exitCode).toBe(0);
    const mac = host.vm("w1").config.network0_mac!;
    run(host, ["vm", "stop", "w1"]);
    await Bun.sleep(300);
    run(host, ["vm", "rename", "w1", "w1-old"]);
    expect(host.vm("w1-old").config.network0_mac).toBe(mac);
    host.clearLog();

    const again = await engine("up", state);
    expect(again.exitCode).not.toBe(0);
    expect(again.errors.map((e) => `${e.code} ${e.summary}`)).toEqual([
      `bhyve.vm-mac-taken VM w1-old has node w1's MAC address ${mac} and this cluster's mark (is it w1, renamed by hand?): with VM w1 the switch would see it twice`,
    ]);
    expect(again.errors[0]!.hint).toBe(
      `if it is the old w1, name it back (vm rename w1-old w1) or destroy it if it is not needed (vm destroy -f w1-old); otherwise remove network0_mac from ${host.vm("w1-old").configPath} (sysrc -f ${host.vm("w1-old").configPath} -x network0_mac) so that vm-bhyve gives it a MAC of its own at its next start`,
    );
    expect(mutations()).toEqual([]);

    const down = await engine("down", state);
    expect(down.exitCode).toBe(0);
    expect(down.lines.filter((l) => l.includes("left alone"))).toEqual([
      "hv1: left alone: VM w1-old carries this cluster's mark but is no node of the cluster file (renamed by hand, or dropped from the file); if it is not needed: vm stop w1-old; vm destroy -f w1-old",
    ]);
    expect(guests()).toEqual(["zroot/vm/w1-old"]);
  });
});

describe("a host command that never answers", () => {
  test("vm list hanging while a VM stops fails the step naming it and the host, and does not power the VM off", async () => {
    const ctx = () =>
      labContext({
        host: hostTarget(host),
        stateDir: state,
        // Inside a step every command has the limit of a change, the polls' vm list too.
        cluster: { ...exampleCluster(), timeouts: { read: 3_000, change: 3_000, long: 60_000 } },
        options: { firmware: host.firmwarePath, stopTimeoutSec: 20 },
        assumeYes: true,
      });
    const state = stateDir();
    await up(ctx());
    host.vm("w2").edit({ memory: "8G" });
    const plan = await bhyvePlugin.check(ctx());
    expect(plan.changes.map((c) => c.summary)).toEqual(["reconfigure VM w2: memory (restarts it)"]);
    // The guest takes a while to shut down, and the list that would show it gone never answers.
    host.setStopDelay(10_000);
    host.inject({ kind: "hang", command: "vm", args: ["list"] });
    host.clearLog();
    const failed = await bhyvePlugin.apply!(ctx(), plan.changes).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(failed?.message).toBe(
      "hv1: `vm list` did not finish within 3 s (the limit for a change) and was killed",
    );
    expect(mutations().map((a) => a.slice(0, 2).join(" "))).toEqual(["vm stop"]);
  });
});

describe("a hand-made VM with this cluster's mark copied into its config", () => {
  test("is refused by up and left by down, which says how to find out who made it", async () => {
    const state = stateDir();
    expect((await engine("up", state)).exitCode).toBe(0);
    const id = readFileSync(join(state, "cluster-id"), "utf8").trim();
    host.createForeignVm("w3");
    host.vm("w3").edit({ kubehyve_cluster: id, kubehyve_cluster_name: "lab" });
    const cluster = exampleCluster({
      nodes: [...exampleCluster().nodes, labNode("w3", "worker", "192.168.1.24")],
    });
    host.clearLog();
    const again = await engine("up", state, { cluster });
    expect(again.errors.map((e) => e.code)).toEqual(["bhyve.vm-mark-mismatch"]);
    expect(mutations()).toEqual([]);
    const down = await engine("down", state, { cluster });
    expect(down.exitCode).toBe(0);
    expect(down.lines.filter((l) => l.includes("left alone"))).toEqual([
      "hv1: left alone: VM w3 carries this cluster's mark, its dataset carries no kubehyve mark: it was made by hand, by another tool or by an older kubehyve; find out who made it (zfs get -r kubehyve:cluster zroot/vm/w3) and, if it is not needed: vm destroy -f w3",
    ]);
    expect(guests()).toEqual(["zroot/vm/w3"]);
  });
});
