import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bhyvePlugin } from "../../../../plugins/hypervisor/bhyve/index.ts";
import type { BhyveOptionsInput } from "../../../../plugins/hypervisor/bhyve/options.ts";
import type { Cluster } from "../../../../src/core/model.ts";
import { GiB } from "../../../../src/core/units.ts";
import {
  createFreebsdHost,
  type Fault,
  type FreebsdHost,
  hostTarget,
  run,
} from "../../../lab/freebsd/host.ts";
import { exampleCluster, labContext } from "./lab.ts";

let host: FreebsdHost;
let stateDir: string;

beforeEach(() => {
  host = createFreebsdHost();
  host.prepareVmBhyve();
  stateDir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-state-"));
});

afterEach(() => {
  host.cleanup();
  rmSync(stateDir, { recursive: true, force: true });
});

async function diagnosticsWith(
  fault?: Fault,
  extra: { cluster?: Cluster; options?: BhyveOptionsInput } = {},
) {
  if (fault) host.inject(fault);
  const ctx = labContext({
    host: hostTarget(host),
    stateDir,
    cluster: extra.cluster,
    options: { firmware: host.firmwarePath, ...extra.options },
  });
  return (await bhyvePlugin.check(ctx)).diagnostics;
}

const find = (diagnostics: Awaited<ReturnType<typeof diagnosticsWith>>, code: string) =>
  diagnostics.filter((d) => d.code === code);
const errors = (diagnostics: Awaited<ReturnType<typeof diagnosticsWith>>) =>
  diagnostics.filter((d) => d.severity === "error").map((d) => d.code);

describe("host preflight on the simulated FreeBSD host", () => {
  test("passes a ready host with ok findings only", async () => {
    const diagnostics = await diagnosticsWith();
    expect(errors(diagnostics)).toEqual([]);
    expect(diagnostics.filter((d) => d.severity === "ok").map((d) => d.code)).toEqual([
      "bhyve.freebsd-version",
      "bhyve.vmm",
      "bhyve.vm-bhyve",
      "bhyve.memory",
      "bhyve.pool-capacity",
    ]);
  });

  test("warns of a pool over 80% full and calls one over 90% an error, from zpool list", async () => {
    // 500 GiB pool: 410 GiB used is 82%, 460 GiB used 92%.
    const [warned] = find(
      await diagnosticsWith({ kind: "pool-full", free: 90 * GiB }),
      "bhyve.pool-nearly-full",
    );
    expect(warned).toMatchObject({
      severity: "warn",
      summary: "pool zroot is 82% full (410 GiB of 500 GiB)",
      target: "hv1",
    });
    expect(warned!.hint).toContain("zfs list -o space -r zroot");
    const [full] = find(
      await diagnosticsWith({ kind: "pool-full", free: 40 * GiB }),
      "bhyve.pool-nearly-full",
    );
    expect(full).toMatchObject({ severity: "error", summary: "pool zroot is 92% full (460 GiB of 500 GiB)" });
  });

  test("takes 80% and 90% themselves as the marks: 79% is fine, 80% and 89% warn, 90% is an error", async () => {
    const severityAt = async (usedGiB: number) => {
      host.cleanup();
      host = createFreebsdHost();
      host.prepareVmBhyve();
      const found = await diagnosticsWith({ kind: "pool-full", free: (500 - usedGiB) * GiB });
      return found
        .filter((d) => d.code === "bhyve.pool-nearly-full" || d.code === "bhyve.pool-capacity")
        .map((d) => `${d.severity} ${d.code}`);
    };
    expect(await severityAt(395)).toEqual(["ok bhyve.pool-capacity"]);
    expect(await severityAt(400)).toEqual(["warn bhyve.pool-nearly-full"]);
    expect(await severityAt(445)).toEqual(["warn bhyve.pool-nearly-full"]);
    expect(await severityAt(450)).toEqual(["error bhyve.pool-nearly-full"]);
  });

  const cases: { name: string; fault: Fault; code: string; severity?: string; hint: RegExp }[] = [
    {
      name: "vmm not loaded",
      fault: { kind: "vmm-not-loaded" },
      code: "bhyve.vmm-not-loaded",
      hint: /kldload vmm && sysrc kld_list\+=vmm/,
    },
    {
      name: "virtualisation disabled in the BIOS",
      fault: { kind: "virtualisation-disabled-by-bios" },
      code: "bhyve.virtualisation-disabled",
      hint: /VT-x.*AMD-V|firmware setup/,
    },
    {
      name: "a CPU without unrestricted guest",
      fault: { kind: "no-unrestricted-guest" },
      code: "bhyve.no-unrestricted-guest",
      hint: /unrestricted guest/,
    },
    {
      name: "the UEFI firmware missing",
      fault: { kind: "firmware-missing" },
      code: "bhyve.firmware-missing",
      hint: /pkg install edk2-bhyve/,
    },
    {
      name: "vm-bhyve not installed",
      fault: { kind: "vm-bhyve-missing" },
      code: "bhyve.vm-bhyve-missing",
      hint: /pkg install vm-bhyve/,
    },
    {
      name: "vm-bhyve 1.6",
      fault: { kind: "vm-bhyve-version", version: "1.6.2" },
      code: "bhyve.vm-bhyve-too-old",
      hint: /pkg upgrade vm-bhyve/,
    },
    {
      name: "FreeBSD 13",
      fault: { kind: "freebsd-version", version: "13.2-RELEASE-p4" },
      code: "bhyve.freebsd-too-old",
      hint: /freebsd-update/,
    },
    { name: "a user other than root", fault: { kind: "not-root" }, code: "bhyve.not-root", hint: /as root/ },
    {
      name: "too little memory",
      fault: { kind: "physmem", bytes: 12 * GiB },
      code: "bhyve.memory-insufficient",
      hint: /arc_max/,
    },
    {
      name: "CPUs over hw.vmm.maxcpu",
      fault: { kind: "cpus", ncpu: 4, maxcpu: 1 },
      code: "bhyve.cpu-over-maxcpu",
      hint: /cpus: 1 or fewer/,
    },
    {
      name: "more vCPUs than host CPUs",
      fault: { kind: "cpus", ncpu: 4 },
      code: "bhyve.cpu-overcommit",
      severity: "warn",
      hint: /nodes\[\]\.cpus/,
    },
    {
      name: "a full pool",
      fault: { kind: "pool-full", free: 10 * GiB },
      code: "bhyve.pool-space",
      hint: /zfs list -o space zroot/,
    },
  ];
  for (const c of cases) {
    test(`reports ${c.name} as ${c.code} with a hint`, async () => {
      const found = find(await diagnosticsWith(c.fault), c.code);
      expect(found).toHaveLength(c.code === "bhyve.cpu-over-maxcpu" ? 3 : 1);
      expect(found[0]!.severity).toBe((c.severity ?? "error") as never);
      expect(found[0]!.hint).toMatch(c.hint);
    });
  }

  test("quotes the kernel's own words when the BIOS disabled virtualisation", async () => {
    const [found] = find(
      await diagnosticsWith({ kind: "virtualisation-disabled-by-bios" }),
      "bhyve.virtualisation-disabled",
    );
    expect(found!.detail).toBe("dmesg: vmx_init: VMX operation disabled by BIOS");
  });

  test("adds vfs.zfs.arc_max to the host's share of memory", async () => {
    host.inject({ kind: "physmem", bytes: 16 * GiB });
    expect(find(await diagnosticsWith(), "bhyve.memory-insufficient")).toEqual([]);
    const [found] = find(
      await diagnosticsWith({ kind: "arc-max", bytes: 4 * GiB }),
      "bhyve.memory-insufficient",
    );
    expect(found!.detail).toBe("guests 12 GiB + host reserve 2 GiB + vfs.zfs.arc_max 4 GiB");
  });

  test("counts the memory of other running VMs", async () => {
    host.createForeignVm("legacy", { running: true });
    host.inject({ kind: "physmem", bytes: 14 * GiB });
    const [found] = find(await diagnosticsWith(), "bhyve.memory-insufficient");
    expect(found!.detail).toContain("other running VMs (legacy) 256 MiB");
  });

  test("explains why a node needs 2 GiB, at the node's path in the cluster file", async () => {
    const cluster = exampleCluster();
    cluster.nodes[0]!.memory = 1 * GiB;
    const [found] = find(await diagnosticsWith(undefined, { cluster }), "bhyve.node-memory-too-small");
    expect(found).toMatchObject({ severity: "error", path: "nodes[0].memory", target: "cp1" });
    expect(found!.hint).toContain("1700 MB");
    expect(found!.hint).toContain('"Assertion failed"');
    expect(found!.hint).toStartWith("give it memory: 2GiB or more.");
  });

  test("takes 2 GiB itself as enough, and a MiB less as too little", async () => {
    const cluster = exampleCluster();
    cluster.nodes[0]!.memory = 2 * GiB;
    cluster.nodes[1]!.memory = 2 * GiB - 1024 * 1024;
    const found = find(await diagnosticsWith(undefined, { cluster }), "bhyve.node-memory-too-small");
    expect(found.map((d) => [d.target, d.summary])).toEqual([
      [cluster.nodes[1]!.name, `node ${cluster.nodes[1]!.name} has 2047 MiB of memory, less than 2 GiB`],
    ]);
  });

  test("warns when the switch has no NIC and fails on a NIC the host lacks", async () => {
    const ctx = labContext({ host: hostTarget(host), stateDir, options: { firmware: host.firmwarePath } });
    (ctx.options as { nic?: string }).nic = undefined;
    expect(find((await bhyvePlugin.check(ctx)).diagnostics, "bhyve.switch-nic-unset")[0]?.severity).toBe(
      "warn",
    );
    expect(
      find(await diagnosticsWith(undefined, { options: { nic: "igb9" } }), "bhyve.nic-missing")[0]?.hint,
    ).toContain("ifconfig -l");
  });

  test("refuses to move vm-bhyve to another vm_dir", async () => {
    run(host, ["sysrc", "vm_dir=/usr/local/vm"]);
    const [found] = find(await diagnosticsWith(), "bhyve.vm-dir-mismatch");
    expect(found).toMatchObject({ severity: "error", path: "stages.hypervisor.vmDir" });
    expect(found!.hint).toContain('vmDir: "/usr/local/vm"');
  });
});

describe("plan --offline", () => {
  test("says a node has less than 2 GiB, as a plan on the host would, though it inspects nothing", async () => {
    const { runInProcess } = await import("../../../lab/cli.ts");
    const { exampleText } = await import("../../../../src/cli/_shared.ts");
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-offline-"));
    // The example lab with its first node given 1 GiB; without the storage stage, whose own rule
    // (the memory Ceph's daemons need) would refuse the file before any plan.
    const text = exampleText.replace("memory: 4GiB", "memory: 1GiB").replace(/\n {2}storage:[\s\S]*$/, "\n");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(dir, "kubehyve.yaml"), text);
    const r = await runInProcess(["plan", "--offline", "--state-dir", join(dir, "state")], { cwd: dir });
    expect(r.out).toContain("node cp1 has 1 GiB of memory, less than 2 GiB");
    expect(r.out).toContain("(bhyve.node-memory-too-small)");
    expect(r.code).toBe(1);
  });
});
