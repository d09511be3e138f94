/**
 * `kubehyve doctor` on the simulated FreeBSD host, as its user runs it: the hypervisor stage's
 * catalogue entries land in the report, each with its id and a hint, in the documented JSON shape.
 * The host is this machine with the shims first on PATH (test/lab/freebsd), nothing else; the
 * command runs as a process of its own, since a program's PATH is the process's from its start.
 */

const MAIN = join(import.meta.dir, "../../../../src/main.ts");

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DoctorReport } from "../../../../src/core/doctor-report.ts";
import { GiB } from "../../../../src/core/units.ts";
import { runCli } from "../../../lab/cli.ts";
import { createFreebsdHost, type FreebsdHost } from "../../../lab/freebsd/host.ts";

let host: FreebsdHost;
beforeEach(() => {
  host = createFreebsdHost();
  host.prepareVmBhyve();
});
afterEach(() => host.cleanup());

/** A cluster file with the hypervisor stage only; n2 is given less memory than a node needs. */
function clusterFile(dir: string): void {
  writeFileSync(
    join(dir, "kubehyve.yaml"),
    `name: simlab
host: local
network:
  gateway: 192.168.1.1
  subnet: 192.168.1.0/24
nodes:
  - { name: n1, role: control-plane, address: 192.168.1.21, memory: 4GiB }
  - { name: n2, role: worker, address: 192.168.1.22, memory: 1GiB }
stages:
  hypervisor:
    plugin: bhyve
    firmware: ${host.firmwarePath}
    nic: em0
`,
  );
}

async function doctor(args: string[]) {
  const dir = join(host.root, "work");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(dir, { recursive: true });
  clusterFile(dir);
  return runCli([process.execPath, MAIN, "doctor", ...args, "--state-dir", join(dir, "state")], {
    cwd: dir,
    env: { PATH: `${host.binDir}:${process.env.PATH ?? "/usr/bin:/bin"}` },
  });
}

describe("doctor on the simulated FreeBSD host", () => {
  test("reports vmm, the pool, the firmware and a small node by id, each with a hint", async () => {
    host.inject({ kind: "vmm-not-loaded" });
    host.inject({ kind: "pool-full", free: 90 * GiB });
    host.inject({ kind: "firmware-missing" });
    const r = await doctor(["--json"]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as DoctorReport;
    expect(doc.v).toBe(1);
    const findings = doc.stages.find((s) => s.slot === "hypervisor")!.findings;
    const byId = (id: string) => findings.filter((f) => f.id === id).map((f) => [f.severity, f.target]);
    expect(byId("bhyve.vmm-not-loaded")).toEqual([["error", "local"]]);
    expect(byId("bhyve.pool-nearly-full")).toEqual([["warn", "local"]]);
    expect(byId("bhyve.firmware-missing")).toEqual([["error", "local"]]);
    expect(byId("bhyve.node-memory-too-small")).toEqual([["error", "n2"]]);
    // One hint per finding that is not ok.
    expect(findings.filter((f) => f.severity !== "ok" && !f.hint)).toEqual([]);
    expect(doc.summary.error).toBe(findings.filter((f) => f.severity === "error").length);
  });

  test("--ignore turns those errors into ignored warnings; the exit code follows the rest", async () => {
    host.inject({ kind: "vmm-not-loaded" });
    const some = await doctor(["--ignore", "bhyve.vmm-not-loaded,bhyve.node-memory-too-small"]);
    expect(some.stdout).toContain(
      "⚠ the vmm kernel module is not loaded [local] (bhyve.vmm-not-loaded, ignored)",
    );
    expect(some.stdout).toContain("(bhyve.node-memory-too-small, ignored)");
    expect(some.stdout).toContain("kubeadm's preflight (1700 MB)");
    // Without vmm the guests cannot be listed, and that is still an error.
    expect(some.stdout.split("\n").filter((l) => l.startsWith("  ✖"))).toEqual([
      "  ✖ cannot list the VMs on the host [local] (bhyve.vm-list-failed)",
    ]);
    expect(some.code).toBe(1);
    // vm-bhyve loads vmm for any `vm` command, `vm list` included (lib/vm-base): doctor runs none.
    expect(some.stdout).toContain(
      "the VMs were not looked at: the vmm kernel module is not loaded, and vm would load it [local] (bhyve.vms)",
    );
    expect(host.state().vmm.loaded).toBe(false);
    const all = await doctor([
      "--ignore",
      "bhyve.vmm-not-loaded,bhyve.node-memory-too-small",
      "--ignore",
      "bhyve.vm-list-failed,bhyve.vm-missing",
    ]);
    expect(all.stderr).toBe("");
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/\ndoctor: 0 errors, \d+ warnings, 1 skipped, 1 info, \d+ ok\n$/);
    expect(host.state().vmm.loaded).toBe(false);
  });
});
