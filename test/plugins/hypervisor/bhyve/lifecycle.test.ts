import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bhyvePlugin, type NodeBoot } from "../../../../plugins/hypervisor/bhyve/index.ts";
import { parseBhyveOptions } from "../../../../plugins/hypervisor/bhyve/options.ts";
import type { AnyPlugin } from "../../../../src/core/contract.ts";
import { type EngineRequest, runEngine } from "../../../../src/core/engine.ts";
import type { NodeSpec } from "../../../../src/core/model.ts";
import { nodeMac } from "../../../../src/core/node-identity.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import { GiB } from "../../../../src/core/units.ts";
import type { Target } from "../../../../src/targets/target.ts";
import { createFreebsdHost, type FreebsdHost, hostTarget, run } from "../../../lab/freebsd/host.ts";
import { exampleCluster, isMutating, labContext, up } from "./lab.ts";

// Every host command is a process on the simulated host: a whole `up` takes seconds on a busy machine.
setDefaultTimeout(30_000);

let host: FreebsdHost;
let stateDir: string;

beforeEach(() => {
  host = createFreebsdHost({ stopDelayMs: 100 });
  stateDir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-state-"));
});

afterEach(() => {
  host.cleanup();
  rmSync(stateDir, { recursive: true, force: true });
});

const ctxFor = (extra: Partial<Parameters<typeof labContext>[0]> = {}) =>
  labContext({
    host: hostTarget(host),
    stateDir,
    options: { firmware: host.firmwarePath, stopTimeoutSec: 5 },
    ...extra,
  });

const mutations = () => host.log().filter(isMutating);

/** A run of the stage engine, as the CLI starts it, with the simulated host as the hypervisor. */
const engine = (command: EngineRequest["command"], extra: Partial<EngineRequest> = {}) =>
  runEngine({
    command,
    cluster: exampleCluster(),
    stages: [
      {
        slot: "hypervisor",
        plugin: bhyvePlugin as AnyPlugin,
        options: parseBhyveOptions({ nic: "em0", firmware: host.firmwarePath, stopTimeoutSec: 5 }),
      },
    ],
    stateDir,
    reporter: memoryReporter(),
    targets: { host: () => hostTarget(host), node: () => hostTarget(host) },
    ...extra,
  });

describe("hypervisor/bhyve on the simulated host", () => {
  test("plans the whole set-up on an empty host without changing it", async () => {
    const plan = await bhyvePlugin.check(ctxFor());
    expect(plan.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(plan.changes.map((c) => c.summary)).toEqual([
      "enable vm-bhyve in rc.conf: sysrc vm_enable=YES vm_dir=zfs:zroot/vm",
      "create the VM datastore: zfs create -p zroot/vm",
      "initialise vm-bhyve: vm init",
      "create virtual switch public on em0",
      "create VM cp1: 2 vCPU, 4 GiB, 20 GiB disk",
      "start VM cp1",
      "create VM w1: 2 vCPU, 4 GiB, 20 GiB disk + 50 GiB data1",
      "start VM w1",
      "create VM w2: 2 vCPU, 4 GiB, 20 GiB disk + 50 GiB data1",
      "start VM w2",
      'start cp1, w1, w2 at boot: sysrc vm_list="cp1 w1 w2"',
    ]);
    expect(mutations()).toEqual([]);
    expect(host.state().vmm.loaded).toBe(true);
  });

  test("up creates and starts the VMs, a second up changes nothing and runs no mutating command", async () => {
    const first = await up(ctxFor());
    expect(first.verified.map((d) => `${d.severity} ${d.code} ${d.target}`)).toEqual([
      "ok bhyve.vm-running cp1",
      "ok bhyve.vm-running w1",
      "ok bhyve.vm-running w2",
    ]);
    for (const name of ["cp1", "w1", "w2"]) {
      const vm = host.vm(name);
      expect(vm.running).toBe(true);
      expect(vm.config).toMatchObject({
        loader: "uefi",
        cpu: "2",
        memory: "4G",
        network0_mac: nodeMac("lab", name),
      });
    }
    expect(host.vm("w1").config.disk1_name).toBe("disk1");
    expect(host.state().datasets["zroot/vm/w1/disk1"]).toEqual({
      type: "volume",
      volsize: 50 * GiB,
      sparse: true,
      volblocksize: 16 * 1024,
      volmode: "dev",
    });
    expect(host.rcConf()).toMatchObject({ vm_enable: "YES", vm_dir: "zfs:zroot/vm", vm_list: "cp1 w1 w2" });
    // The templates vm create used are gone again; vm init's copy of vm-bhyve's sample stays.
    expect(readdirSync(join(host.vmDir(), ".templates"))).toEqual(["default.conf"]);

    // Each phase reads what it needs once.
    for (const phase of [() => bhyvePlugin.check(ctxFor()), () => bhyvePlugin.verify!(ctxFor())]) {
      host.clearLog();
      await phase();
      const commands = host.log().map((argv) => argv.join(" "));
      expect(new Set(commands).size).toBe(commands.length);
    }
    host.clearLog();
    const second = await up(ctxFor());
    expect(second.plan.changes).toEqual([]);
    expect(mutations()).toEqual([]);
  });

  test("detects a VM whose memory was edited by hand and restarts it only when allowed", async () => {
    await up(ctxFor());
    host.vm("w2").edit({ memory: "8G" });
    const plan = await bhyvePlugin.check(ctxFor());
    expect(plan.changes).toHaveLength(1);
    expect(plan.changes[0]).toMatchObject({
      kind: "vm.reconfigure",
      target: "w2",
      disruptive: true,
      detail: "memory: 8G -> 4G",
      summary: "reconfigure VM w2: memory (restarts it)",
    });

    // Through the engine, as `kubehyve up` runs it: a restart is disruptive, so it asks first.
    const questions: string[] = [];
    host.clearLog();
    const refused = await engine("up", {
      ask: async (q) => {
        questions.push(q);
        return false;
      },
    });
    expect(refused.exitCode).toBe(1);
    expect(questions).toEqual(["hypervisor: w2: reconfigure VM w2: memory (restarts it). Go ahead?"]);
    expect(mutations()).toEqual([]);

    await bhyvePlugin.apply!(ctxFor({ assumeYes: true }), plan.changes);
    expect(host.vm("w2")).toMatchObject({ running: true, config: expect.objectContaining({ memory: "4G" }) });
    // The config is written aside and renamed over the old one.
    expect(mutations().map((a) => a.slice(0, 2).join(" "))).toEqual([
      "vm stop",
      "sh -c",
      "rm -f",
      "chmod 0644",
      "mv -f",
      "vm start",
    ]);
    expect((await bhyvePlugin.check(ctxFor())).changes).toEqual([]);
  });

  test("down stops and destroys exactly the cluster's VMs and leaves a foreign VM alone", async () => {
    await up(ctxFor());
    host.createForeignVm("legacy", { running: true });
    run(host, ["sysrc", "vm_list+=legacy"]);
    await bhyvePlugin.destroy!(ctxFor({ assumeYes: true }));
    for (const name of ["cp1", "w1", "w2"]) expect(host.vm(name).exists).toBe(false);
    expect(host.vm("legacy")).toMatchObject({ exists: true, running: true });
    expect(
      Object.keys(host.state().datasets)
        .filter((d) => d.startsWith("zroot/vm/"))
        .sort(),
    ).toEqual(["zroot/vm/legacy"]);
    expect(host.rcConf().vm_list).toBe("legacy");
    expect(
      mutations()
        .filter((a) => a[0] === "vm" && a[1] === "destroy")
        .map((a) => a.join(" "))
        .sort(),
    ).toEqual(["vm destroy -f cp1", "vm destroy -f w1", "vm destroy -f w2"]);
  });

  test("a node whose VM is made or destroyed has its pinned host key forgotten, a foreign VM's never", async () => {
    const forgotten: string[] = [];
    const node = (n: NodeSpec): Target => ({
      name: `core@${n.name}`,
      run: () => Promise.reject(new Error("the stage does not run commands on nodes")),
      close: async () => {},
      forgetHostKey: async () => {
        forgotten.push(n.name);
      },
    });
    await up(ctxFor({ node }));
    // Made anew: the key pinned for an earlier machine at its address would refuse the new one.
    expect(forgotten.toSorted()).toEqual(["cp1", "w1", "w2"]);
    forgotten.length = 0;
    await up(ctxFor({ node }));
    expect(forgotten).toEqual([]);
    host.createForeignVm("legacy", { running: true });
    await bhyvePlugin.destroy!(ctxFor({ assumeYes: true, node }));
    expect(forgotten.toSorted()).toEqual(["cp1", "w1", "w2"]);
    forgotten.length = 0;
    await bhyvePlugin.destroy!(ctxFor({ dryRun: true, node }));
    expect(forgotten).toEqual([]);
  });

  test("down asks first and does nothing when the answer is no", async () => {
    await up(ctxFor());
    host.clearLog();
    const refused = await engine("down", { ask: async () => false });
    expect(refused.exitCode).toBe(1);
    expect(mutations()).toEqual([]);
  });

  test("down in a dry run only lists what it would do, and does nothing on a host that never had VMs", async () => {
    await bhyvePlugin.destroy!(ctxFor());
    await up(ctxFor());
    host.clearLog();
    const ctx = ctxFor({ dryRun: true });
    await bhyvePlugin.destroy!(ctx);
    expect(ctx.wetLog.toSorted()).toEqual([
      "destroy VM cp1 and its disks",
      "destroy VM w1 and its disks",
      "destroy VM w2 and its disks",
      "stop VM cp1",
      "stop VM w1",
      "stop VM w2",
      'stop starting the cluster\'s VMs at boot: sysrc vm_list=""',
    ]);
    expect(mutations()).toEqual([]);
  });

  test("powers a guest off when it does not shut down in time", async () => {
    await up(ctxFor());
    host.setStopDelay(60_000);
    const ctx = labContext({
      host: hostTarget(host),
      stateDir,
      assumeYes: true,
      options: { firmware: host.firmwarePath, stopTimeoutSec: 1 },
    });
    await bhyvePlugin.destroy!(ctx);
    expect(
      host
        .log()
        .filter((a) => a[1] === "poweroff")
        .map((a) => a.join(" "))
        .sort(),
    ).toEqual(["vm poweroff -f cp1", "vm poweroff -f w1", "vm poweroff -f w2"]);
    expect(host.vm("cp1").exists).toBe(false);
  });

  test("reads a failed boot from the guest's log, since vm start returns before the guest boots", async () => {
    host.inject({ kind: "guest-start-fails", vm: "w1" });
    await expect(up(ctxFor())).rejects.toThrow(
      /hv1: VM w1 failed to start: bhyve exited with status 4 \(from .*\/zroot\/vm\/w1\/vm-bhyve.log\)/,
    );
    const verified = await bhyvePlugin.verify!(ctxFor());
    expect(verified.filter((d) => d.target === "w1").map((d) => d.code)).toEqual([
      "bhyve.vm-not-running",
      "bhyve.vm-log-error",
    ]);
  });

  test("names the failed command, and a later up finishes the job", async () => {
    const template = `kubehyve-${ctxFor().clusterId}-cp1`;
    host.inject({
      kind: "fail-once",
      command: "vm",
      args: ["create", "-t", template],
      code: 1,
      stderr: "/usr/local/sbin/vm: ERROR: failed to create new ZFS dataset zroot/vm/cp1",
    });
    await expect(up(ctxFor())).rejects.toThrow(
      `hv1: \`vm create -t ${template} cp1\` exited 1: /usr/local/sbin/vm: ERROR: failed to create new ZFS dataset zroot/vm/cp1`,
    );
    // The template went with the failed vm create.
    expect(readdirSync(join(host.vmDir(), ".templates"))).toEqual(["default.conf"]);
    const again = await up(ctxFor());
    expect(again.plan.changes.map((c) => c.summary)).toContain("create VM cp1: 2 vCPU, 4 GiB, 20 GiB disk");
    expect(again.verified.every((d) => d.severity === "ok")).toBe(true);
  });

  test("a firmware missing at start shows as the log's fatal line", async () => {
    host.prepareVmBhyve();
    const plan = await bhyvePlugin.check(ctxFor({ options: { firmware: "/nonexistent/BHYVE_UEFI.fd" } }));
    expect(plan.diagnostics.some((d) => d.code === "bhyve.firmware-missing")).toBe(true);
    host.inject({ kind: "firmware-missing" });
    await expect(bhyvePlugin.apply!(ctxFor(), plan.changes)).rejects.toThrow(
      /fatal; unable to locate firmware/,
    );
  });

  test("a dry run records every step and runs no mutating command", async () => {
    const ctx = ctxFor({ dryRun: true });
    const plan = await bhyvePlugin.check(ctx);
    host.clearLog();
    await bhyvePlugin.apply!(ctx, plan.changes);
    // VMs are worked on in parallel, so only the set of steps is fixed.
    expect(ctx.wetLog.toSorted()).toEqual(plan.changes.map((c) => c.summary).toSorted());
    expect(ctx.wetLog.at(-1)).toBe(plan.changes.at(-1)!.summary);
    expect(mutations()).toEqual([]);
  });

  test("takes bhyve options and a ZFS boot image from the os stage's hook", async () => {
    host.prepareVmBhyve();
    run(host, ["zfs", "create", "-p", "-V", "10737418240", "zroot/images/fcos"]);
    run(host, ["zfs", "snapshot", "zroot/images/fcos@44.20260707.3.1"]);
    const payloads: { node: string; vmDir: string }[] = [];
    const hooks = {
      call: async <T>(name: string, payload?: unknown): Promise<T[]> => {
        expect(name).toBe("hypervisor:node-boot");
        const { node, vmDir } = payload as { node: { name: string }; vmDir: string };
        payloads.push({ node: node.name, vmDir });
        const boot: NodeBoot = {
          bhyveOptions: `-f name=opt/com.coreos/config,file=${vmDir}/ignition.json`,
          bootImage: { kind: "zfs-snapshot", snapshot: "zroot/images/fcos@44.20260707.3.1" },
        };
        return [boot as T];
      },
    };
    await up(ctxFor({ hooks }));
    const vmDir = join(host.vmDir(), "cp1");
    expect(payloads).toContainEqual({ node: "cp1", vmDir });
    expect(host.vm("cp1").config.bhyve_options).toBe(
      `-f name=opt/com.coreos/config,file=${vmDir}/ignition.json`,
    );
    expect(host.state().datasets["zroot/vm/cp1/disk0"]).toEqual({
      type: "volume",
      volsize: 20 * GiB,
      sparse: true,
      volblocksize: 16 * 1024,
      volmode: "dev",
      origin: "zroot/images/fcos@44.20260707.3.1",
    });
    host.clearLog();
    expect((await bhyvePlugin.check(ctxFor({ hooks }))).changes).toEqual([]);
  });

  test("copies a file boot image into a directory datastore's sparse disk and grows it to the node's size", async () => {
    const image = join(host.root, "fcos.raw");
    await Bun.write(image, "FCOS-IMAGE-BYTES");
    const vmDir = join(host.root, "vm");
    const hooks = { call: async <T>(): Promise<T[]> => [{ bootImage: { kind: "file", path: image } } as T] };
    const ctx = labContext({
      host: hostTarget(host),
      stateDir,
      hooks,
      options: { firmware: host.firmwarePath, vmDir },
    });
    const result = await up(ctx);
    expect(result.plan.changes[1]!.summary).toBe(`create the VM datastore directory ${vmDir}`);
    expect(host.rcConf().vm_dir).toBe(vmDir);
    const disk = Bun.file(join(vmDir, "cp1", "disk0.img"));
    expect(disk.size).toBe(20 * GiB);
    expect(await disk.slice(0, 16).text()).toBe("FCOS-IMAGE-BYTES");
    expect(host.vm("w1").config).toMatchObject({ disk0_name: "disk0.img", disk1_name: "disk1.img" });
    // Copied under a temporary name, renamed once complete; readable by root only, as vm-bhyve's own.
    const temporary = `${join(vmDir, "cp1", "disk0.img")}.kubehyve-new`;
    expect(host.log().some((a) => a[0] === "dd" && a.includes(`of=${temporary}`))).toBe(true);
    expect(host.log()).toContainEqual(["mv", "-f", temporary, join(vmDir, "cp1", "disk0.img")]);
    for (const file of ["cp1/disk0.img", "w1/disk0.img", "w1/disk1.img"])
      expect((statSync(join(vmDir, file)).mode & 0o777).toString(8)).toBe("600");
    // A later plan reads every disk back (ls -lnd, whose GNU and FreeBSD error lines differ).
    const again = await bhyvePlugin.check(ctx);
    expect(again.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(again.changes).toEqual([]);
  });

  test("render writes each VM's config without touching the host", async () => {
    const files = await bhyvePlugin.render!(ctxFor());
    expect(files.map((f) => f.path)).toEqual(["cp1/cp1.conf", "w1/w1.conf", "w2/w2.conf"]);
    expect(String(files[1]!.content)).toContain(`network0_mac="${nodeMac("lab", "w1")}"`);
    expect(host.log()).toEqual([]);
  });
});
