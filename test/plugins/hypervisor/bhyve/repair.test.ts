/**
 * Half-made things are finished, not trusted: what an interrupted run (Ctrl-C, a kill, a failed
 * command) leaves is recognised by check, reported by verify, and finished by the next up; the
 * interrupted command itself leaves no template or temporary file behind.
 */
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bhyvePlugin, type NodeBoot } from "../../../../plugins/hypervisor/bhyve/index.ts";
import { GiB } from "../../../../src/core/units.ts";
import { CancelledError } from "../../../../src/lib/errors.ts";
import { createFreebsdHost, type FreebsdHost, hostTarget, run } from "../../../lab/freebsd/host.ts";
import { labContext, up } from "./lab.ts";

setDefaultTimeout(60_000);

let host: FreebsdHost;
let stateDir: string;
let image: string;

beforeEach(() => {
  host = createFreebsdHost({ stopDelayMs: 100 });
  stateDir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-repair-"));
  image = join(host.root, "fcos.raw");
  writeFileSync(image, "FCOS-IMAGE-BYTES");
});

afterEach(() => {
  host.cleanup();
  rmSync(stateDir, { recursive: true, force: true });
});

/** The os stage's hook, as it answers during `up`: a file image for every node. */
const fileImage = {
  call: async <T>(): Promise<T[]> => [{ bootImage: { kind: "file", path: image } } satisfies NodeBoot as T],
};

const ctxFor = (extra: Partial<Parameters<typeof labContext>[0]> = {}) =>
  labContext({
    host: hostTarget(host),
    stateDir,
    options: { firmware: host.firmwarePath, stopTimeoutSec: 5 },
    ...extra,
  });

const errorsOf = (diagnostics: { severity: string; code: string }[]) =>
  diagnostics.filter((d) => d.severity === "error").map((d) => d.code);

/** Aborts `controller` as soon as the host has started a command matching `match`. */
function abortWhen(controller: AbortController, match: (argv: string[]) => boolean): () => void {
  const timer = setInterval(() => {
    if (host.log().some(match)) {
      controller.abort(new CancelledError("interrupted"));
      clearInterval(timer);
    }
  }, 10);
  return () => clearInterval(timer);
}

async function waitStopped(name: string) {
  for (let i = 0; i < 100 && host.vm(name).running; i++) await Bun.sleep(50);
}

describe("half-made VMs", () => {
  test("a VM whose zvol is missing is not started before the zvol is made, and verify says so first", async () => {
    await up(ctxFor());
    run(host, ["vm", "stop", "w1"]);
    await waitStopped("w1");
    run(host, ["zfs", "destroy", "zroot/vm/w1/disk1"]);

    const verified = await bhyvePlugin.verify!(ctxFor());
    expect(verified.filter((d) => d.target === "w1").map((d) => d.code)).toEqual([
      "bhyve.vm-disk-missing",
      "bhyve.vm-not-running",
    ]);
    const plan = await bhyvePlugin.check(ctxFor());
    expect(plan.changes.map((c) => c.summary)).toEqual([
      "make the missing disks of VM w1: create disk1 (50 GiB, data1)",
      "start VM w1",
    ]);
    await bhyvePlugin.apply!(ctxFor(), plan.changes);
    expect(host.state().datasets["zroot/vm/w1/disk1"]).toMatchObject({ volsize: 50 * GiB, sparse: true });
    expect(host.vm("w1").running).toBe(true);
    expect((await bhyvePlugin.check(ctxFor())).changes).toEqual([]);
  });

  test("Ctrl-C during the boot image copy leaves neither the partial copy nor a template, and the next up copies it whole", async () => {
    host.prepareVmBhyve();
    host.inject({ kind: "slow", command: "dd", ms: 3000 });
    const controller = new AbortController();
    const ctx = ctxFor({ hooks: fileImage, signal: controller.signal });
    const plan = await bhyvePlugin.check(ctx);
    const stop = abortWhen(controller, (a) => a[0] === "dd");
    await expect(bhyvePlugin.apply!(ctx, plan.changes)).rejects.toThrow(CancelledError);
    stop();
    // The copy's own script removed its temporary zvol when it was stopped; vm create's took the template.
    const datasets = Object.keys(host.state().datasets);
    expect(datasets.filter((d) => d.includes(".kubehyve-new"))).toEqual([]);
    expect(readdirSync(join(host.vmDir(), ".templates"))).toEqual(["default.conf"]);
    const copying = ["cp1", "w1", "w2"].filter((n) => host.vm(n).exists);
    expect(copying.length).toBeGreaterThan(0);
    for (const name of copying) expect(datasets).not.toContain(`zroot/vm/${name}/disk0`);

    // doctor's verify calls it broken; check finishes it; up copies it whole and starts it.
    const verified = await bhyvePlugin.verify!(ctxFor());
    expect(verified.filter((d) => d.target === copying[0]).map((d) => d.code)).toContain(
      "bhyve.vm-not-running",
    );
    host.clearFaults();
    const again = await bhyvePlugin.check(ctxFor({ hooks: fileImage }));
    expect(errorsOf(again.diagnostics)).toEqual([]);
    for (const name of copying)
      expect(again.changes.map((c) => c.summary)).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^(finish VM ${name}, whose creation was interrupted: copy the boot image to disk0, write its config|make the missing disks of VM ${name}: copy the boot image to disk0)$`,
          ),
        ),
      );
  });

  test("a boot image copy that was cut short is copied again, whole, and the VM then starts", async () => {
    host.prepareVmBhyve();
    host.inject({
      kind: "fail-once",
      command: "dd",
      code: 1,
      stderr: "dd: /dev/zvol/zroot/vm/cp1/disk0.kubehyve-new: Input/output error",
    });
    const first = ctxFor({ hooks: fileImage });
    await expect(bhyvePlugin.apply!(first, (await bhyvePlugin.check(first)).changes)).rejects.toThrow(
      /Input\/output error/,
    );
    expect(Object.keys(host.state().datasets).filter((d) => d.includes(".kubehyve-new"))).toEqual([]);
    const result = await up(ctxFor({ hooks: fileImage }));
    expect(errorsOf(result.verified)).toEqual([]);
    for (const name of ["cp1", "w1", "w2"]) {
      expect(host.zvol(`zroot/vm/${name}/disk0`)!.subarray(0, 16).toString()).toBe("FCOS-IMAGE-BYTES");
      expect(host.state().datasets[`zroot/vm/${name}/disk0`]).toMatchObject({
        volsize: 20 * GiB,
        volmode: "dev",
      });
    }
    expect((await bhyvePlugin.check(ctxFor({ hooks: fileImage }))).changes).toEqual([]);
  });

  test("a VM interrupted before its config was written is finished, not started as vm create left it", async () => {
    host.prepareVmBhyve();
    const ctx = ctxFor();
    const conf = join(host.vmDir(), "cp1", "cp1.conf");
    host.inject({
      kind: "fail-once",
      command: "mv",
      args: ["-f", `${conf}.kubehyve-new`],
      stderr: "mv: rename: Input/output error",
    });
    await expect(bhyvePlugin.apply!(ctx, (await bhyvePlugin.check(ctx)).changes)).rejects.toThrow(
      /Input\/output error/,
    );
    expect(host.vm("cp1").config.kubehyve_state).toBe("creating");
    expect(readdirSync(host.vm("cp1").dir).filter((f) => f.includes("kubehyve-new"))).toEqual([]);
    const plan = await bhyvePlugin.check(ctxFor());
    expect(plan.changes.filter((c) => c.target === "cp1").map((c) => c.summary)).toEqual([
      "finish VM cp1, whose creation was interrupted: write its config",
      "start VM cp1",
    ]);
    await bhyvePlugin.apply!(ctxFor(), plan.changes);
    expect(host.vm("cp1").config.kubehyve_state).toBeUndefined();
    expect(host.vm("cp1").running).toBe(true);
  });

  test("a dataset of this cluster's that never got its config is made again", async () => {
    host.prepareVmBhyve();
    const id = ctxFor().clusterId;
    // vm create was stopped right after zfs create (its dataset carries the mark from the start).
    run(host, ["zfs", "create", "-o", `kubehyve:cluster=${id}`, "zroot/vm/cp1"]);
    const plan = await bhyvePlugin.check(ctxFor());
    expect(errorsOf(plan.diagnostics)).toEqual([]);
    expect(plan.changes.find((c) => c.target === "cp1")!.summary).toBe(
      "create VM cp1 again: 2 vCPU, 4 GiB, 20 GiB disk (an interrupted run left zroot/vm/cp1 without a config)",
    );
    await bhyvePlugin.apply!(ctxFor(), plan.changes);
    expect(host.vm("cp1").running).toBe(true);
  });

  test("removes the templates and temporary files an interrupted run left, and no other cluster's", async () => {
    await up(ctxFor());
    const id = ctxFor().clusterId;
    const templates = join(host.vmDir(), ".templates");
    writeFileSync(join(templates, `kubehyve-${id}-w1.conf`), "kubehyve_cluster=x\n");
    writeFileSync(join(templates, "kubehyve-00000000-0000-4000-8000-000000000000-w1.conf"), "x\n");
    writeFileSync(`${host.vm("w2").configPath}.kubehyve-new`, "half a config");
    const plan = await bhyvePlugin.check(ctxFor());
    expect(plan.changes.map((c) => c.summary)).toEqual([
      `remove what an interrupted run left: ${join(templates, `kubehyve-${id}-w1.conf`)}, ${host.vm("w2").configPath}.kubehyve-new`,
    ]);
    await bhyvePlugin.apply!(ctxFor(), plan.changes);
    expect(readdirSync(templates).sort()).toEqual([
      "default.conf",
      "kubehyve-00000000-0000-4000-8000-000000000000-w1.conf",
    ]);
    expect((await bhyvePlugin.check(ctxFor())).changes).toEqual([]);
  });

  test("Ctrl-C during vm create takes the template with it", async () => {
    host.prepareVmBhyve();
    host.inject({ kind: "slow", command: "vm", args: ["create"], ms: 3000 });
    const controller = new AbortController();
    const ctx = ctxFor({ signal: controller.signal });
    const plan = await bhyvePlugin.check(ctx);
    const stop = abortWhen(controller, (a) => a[0] === "vm" && a[1] === "create");
    await expect(bhyvePlugin.apply!(ctx, plan.changes)).rejects.toThrow(CancelledError);
    stop();
    expect(readdirSync(join(host.vmDir(), ".templates"))).toEqual(["default.conf"]);
  });

  test("reports a disk of another size than declared instead of starting it or resizing it", async () => {
    await up(ctxFor());
    run(host, ["vm", "stop", "w2"]);
    await waitStopped("w2");
    run(host, ["zfs", "set", `volsize=${40 * GiB}`, "zroot/vm/w2/disk1"]);
    const plan = await bhyvePlugin.check(ctxFor());
    expect(errorsOf(plan.diagnostics)).toEqual(["bhyve.vm-disk-size"]);
    expect(plan.diagnostics.find((d) => d.code === "bhyve.vm-disk-size")!.detail).toBe(
      "disk1: 40 GiB -> 50 GiB",
    );
    expect(plan.changes.some((c) => c.target === "w2")).toBe(false);
  });
});

describe("file disks", () => {
  test("are readable by root only, and one that is not is made so", async () => {
    const vmDir = join(host.root, "vm");
    const ctx = () =>
      labContext({ host: hostTarget(host), stateDir, options: { firmware: host.firmwarePath, vmDir } });
    await up(ctx());
    for (const file of ["cp1/disk0.img", "w1/disk0.img", "w1/disk1.img"])
      expect((statSync(join(vmDir, file)).mode & 0o777).toString(8)).toBe("600");
    chmodSync(join(vmDir, "w1/disk1.img"), 0o644);
    const plan = await bhyvePlugin.check(ctx());
    expect(plan.changes.map((c) => c.summary)).toEqual([
      `make the disks of VM w1 readable by root only: chmod 600 ${join(vmDir, "w1/disk1.img")}`,
    ]);
    await bhyvePlugin.apply!(ctx(), plan.changes);
    expect((statSync(join(vmDir, "w1/disk1.img")).mode & 0o777).toString(8)).toBe("600");
  });
});

describe("other datastores", () => {
  test("file disks in a ZFS datastore are read as files, and a second up changes nothing", async () => {
    const ctx = () =>
      labContext({
        host: hostTarget(host),
        stateDir,
        options: { firmware: host.firmwarePath, diskDev: "file" },
      });
    const result = await up(ctx());
    expect(errorsOf(result.verified)).toEqual([]);
    expect(host.vm("w1").config).toMatchObject({ disk0_name: "disk0.img", disk1_name: "disk1.img" });
    const again = await bhyvePlugin.check(ctx());
    expect(errorsOf(again.diagnostics)).toEqual([]);
    expect(again.changes).toEqual([]);
  });

  test("a directory datastore's directory with a node's name and files in it is not made a VM", async () => {
    const vmDir = join(host.root, "vm");
    const ctx = () =>
      labContext({ host: hostTarget(host), stateDir, options: { firmware: host.firmwarePath, vmDir } });
    mkdirSync(join(vmDir, "w1"), { recursive: true });
    writeFileSync(join(vmDir, "w1", "notes.txt"), "mine");
    // An empty one is what vm create makes first: it is used.
    mkdirSync(join(vmDir, "w2"), { recursive: true });
    const plan = await bhyvePlugin.check(ctx());
    expect(errorsOf(plan.diagnostics)).toEqual(["bhyve.dir-not-ours"]);
    expect(plan.changes.some((c) => c.target === "w2" && c.kind === "vm.create")).toBe(true);
  });
});

describe("failed reads", () => {
  test("a kldstat that times out is a failed read, not a missing vmm; a test that fails is not a missing firmware", async () => {
    host.prepareVmBhyve();
    host.inject({
      kind: "fail-once",
      command: "kldstat",
      code: 124,
      stderr: "local: `kldstat -q -m vmm` timed out after 30s",
    });
    host.inject({ kind: "fail-once", command: "test", args: ["-f"], code: 2, stderr: "test: I/O error" });
    const plan = await bhyvePlugin.check(ctxFor());
    const codes = plan.diagnostics.map((d) => d.code);
    expect(codes).not.toContain("bhyve.vmm-not-loaded");
    expect(codes).not.toContain("bhyve.firmware-missing");
    expect(plan.diagnostics.filter((d) => d.code === "bhyve.host-read-failed").map((d) => d.detail)).toEqual([
      "`kldstat -q -m vmm` exited 124 (timed out): local: `kldstat -q -m vmm` timed out after 30s",
      `\`test -f ${host.firmwarePath}\` exited 2: test: I/O error`,
    ]);
    // The same for a zpool list that times out: no "pool missing".
    host.inject({ kind: "fail-once", command: "zpool", code: 124, stderr: "timed out" });
    const pools = await bhyvePlugin.check(ctxFor());
    expect(pools.diagnostics.map((d) => d.code)).not.toContain("bhyve.pool-missing");
    expect(pools.diagnostics.find((d) => d.code === "bhyve.host-read-failed")!.detail).toBe(
      "`zpool list -Hp -o name,size,alloc,free` exited 124 (timed out): timed out",
    );
    // Nothing is planned for VMs whose host could not be read (vm list needs vmm).
    expect(plan.changes.filter((c) => c.kind?.startsWith("vm."))).toEqual([]);
    // A real negative answer is still reported as what it is.
    host.inject({ kind: "firmware-missing" });
    expect((await bhyvePlugin.check(ctxFor())).diagnostics.map((d) => d.code)).toContain(
      "bhyve.firmware-missing",
    );
  });
});
