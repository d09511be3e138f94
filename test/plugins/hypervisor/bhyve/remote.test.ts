import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bhyvePlugin } from "../../../../plugins/hypervisor/bhyve/index.ts";
import { SshTarget } from "../../../../src/targets/ssh.ts";
import { createFreebsdHost, type FreebsdHost, run } from "../../../lab/freebsd/host.ts";
import { have } from "../../../lab/prereq.ts";
import { loginOf, type Sshd, startSshd } from "../../../lab/sshd.ts";
import { exampleCluster, isMutating, labContext, up } from "./lab.ts";

describe.skipIf(!have("sshd", "openssh-server"))("hypervisor/bhyve driving a remote host over ssh", () => {
  let host: FreebsdHost;
  let sshd: Sshd;
  let stateDir: string;
  let target: SshTarget;

  beforeAll(async () => {
    host = createFreebsdHost({ stopDelayMs: 100 });
    // The sessions find the shims first on PATH, as root on hv1 finds FreeBSD's own commands.
    sshd = await startSshd({ env: host.env });
    stateDir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-remote-"));
    target = new SshTarget({ ...loginOf(sshd), stateDir, name: "root@hv1" });
  });

  afterAll(async () => {
    await target?.close();
    await sshd?.stop();
    host?.cleanup();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const ctx = (extra: Partial<Parameters<typeof labContext>[0]> = {}) =>
    labContext({
      host: target,
      stateDir,
      cluster: exampleCluster({ host: { kind: "ssh", user: "root", hostname: "hv1", port: 22 } }),
      options: { firmware: host.firmwarePath, stopTimeoutSec: 5 },
      ...extra,
    });

  test("plans, brings up, keeps and tears down the cluster's VMs over one ssh connection", async () => {
    const plan = await bhyvePlugin.check(ctx());
    expect(plan.changes.map((c) => c.kind)).toEqual([
      "host.rcconf",
      "host.datastore",
      "host.init",
      "host.switch-create",
      "vm.create",
      "vm.start",
      "vm.create",
      "vm.start",
      "vm.create",
      "vm.start",
      "host.autostart",
    ]);
    expect(
      plan.changes.every((c) => c.target === "root@hv1" || ["cp1", "w1", "w2"].includes(c.target!)),
    ).toBe(true);
    expect(host.log().filter(isMutating)).toEqual([]);

    const first = await up(ctx());
    expect(first.verified.map((d) => `${d.severity} ${d.code}`)).toEqual(
      Array(3).fill("ok bhyve.vm-running"),
    );
    expect(host.vm("cp1").running).toBe(true);

    host.clearLog();
    const second = await up(ctx());
    expect(second.plan.changes).toEqual([]);
    expect(host.log().filter(isMutating)).toEqual([]);

    host.createForeignVm("legacy", { running: true });
    run(host, ["sysrc", "vm_list+=legacy"]);
    await bhyvePlugin.destroy!(ctx({ assumeYes: true }));
    expect(["cp1", "w1", "w2", "legacy"].map((n) => host.vm(n).exists)).toEqual([false, false, false, true]);
    expect(host.vm("legacy").running).toBe(true);

    const logins = readFileSync(join(sshd.dir, "sshd.log"), "utf8").match(/Accepted publickey/g) ?? [];
    expect(logins).toHaveLength(1);
  }, 30_000);
});
