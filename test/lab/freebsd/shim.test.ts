import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseSwitchList, parseVmList, parseZpoolList } from "../../../plugins/hypervisor/bhyve/parse.ts";
import { oracle } from "../oracles.ts";
import { createFreebsdHost, type FreebsdHost, run } from "./host.ts";

const SAMPLES = oracle("freebsd/samples");

let host: FreebsdHost;
beforeEach(() => {
  host = createFreebsdHost({ stopDelayMs: 150 });
  host.prepareVmBhyve();
});
afterEach(() => host.cleanup());

const tryRun = (argv: string[]) => {
  const proc = Bun.spawnSync(argv, { env: { ...process.env, ...host.env } });
  return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
};

describe("the simulated FreeBSD host", () => {
  test("prints vm list with the header of a real vm-bhyve capture", () => {
    host.createForeignVm("legacy");
    const header = readFileSync(join(SAMPLES, "vm-info.txt"), "utf8").split("\n")[2]!.split(/\s+/).join(" ");
    const out = run(host, ["vm", "list"]);
    expect(out.split("\n")[0]!.split(/\s+/).join(" ")).toBe(header);
    expect(parseVmList(out)).toEqual([
      {
        name: "legacy",
        datastore: "default",
        loader: "bhyveload",
        cpu: "1",
        memory: "256M",
        autostart: undefined,
        state: { kind: "stopped" },
      },
    ]);
  });

  test("keeps create, start, stop, destroy and list in agreement, with stop taking its time", async () => {
    host.createForeignVm("legacy", { running: true });
    expect(parseVmList(run(host, ["vm", "list"]))[0]!.state.kind).toBe("running");
    expect(run(host, ["vm", "stop", "legacy"])).toBe("Sending ACPI shutdown to legacy\n");
    expect(parseVmList(run(host, ["vm", "list"]))[0]!.state.kind).toBe("running");
    expect(tryRun(["vm", "destroy", "-f", "legacy"])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining("appears to be running"),
    });
    await Bun.sleep(200);
    expect(parseVmList(run(host, ["vm", "list"]))[0]!.state.kind).toBe("stopped");
    expect(host.vm("legacy").log()).toContain(": bhyve exited with status 1\n");
    run(host, ["vm", "destroy", "-f", "legacy"]);
    expect(parseVmList(run(host, ["vm", "list"]))).toEqual([]);
    expect(host.state().datasets["zroot/vm/legacy"]).toBeUndefined();
  });

  test("bridges the switch to the NIC and puts started guests' taps on it", () => {
    host.createForeignVm("legacy", { running: true });
    expect(parseSwitchList(run(host, ["vm", "switch", "list"]))).toEqual([
      { name: "public", type: "standard", iface: "vm-public", ports: ["em0"] },
    ]);
    const bridge = run(host, ["ifconfig", "vm-public"]);
    expect(bridge).toContain("\tmember: em0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n");
    expect(bridge).toContain("\tmember: tap0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n");
    // The bridge's groups as on a real host (the capture's tabs became spaces on the web page).
    const captured = readFileSync(join(SAMPLES, "ifconfig-vm-public.txt"), "utf8")
      .split("\n")
      .find((l) => l.includes("groups:"))!;
    expect(
      bridge
        .split("\n")
        .find((l) => l.includes("groups:"))!
        .trim(),
    ).toBe(captured.trim());
  });

  test("fails a command once when told to, then behaves again", () => {
    host.inject({ kind: "fail-once", command: "zpool", code: 1, stderr: "internal error: out of memory" });
    expect(tryRun(["zpool", "list", "-Hp"])).toMatchObject({
      code: 1,
      stderr: "internal error: out of memory\n",
    });
    expect(parseZpoolList(run(host, ["zpool", "list", "-Hp", "-o", "name,size,alloc,free"]))[0]!.name).toBe(
      "zroot",
    );
  });

  test("answers each command after the configured latency and logs it", () => {
    host.setLatency(120);
    host.clearLog();
    const started = performance.now();
    run(host, ["freebsd-version", "-u"]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(120);
    expect(host.log()).toEqual([["freebsd-version", "-u"]]);
  });

  test("counts thick zvols against the pool and not sparse ones", () => {
    const free = () =>
      parseZpoolList(run(host, ["zpool", "list", "-Hp", "-o", "name,size,alloc,free"]))[0]!.free;
    const before = free();
    run(host, ["zfs", "create", "-s", "-V", "10G", "zroot/vm/sparse"]);
    expect(free()).toBe(before);
    run(host, ["zfs", "create", "-V", "10G", "zroot/vm/thick"]);
    expect(free()).toBe(before - 10 * 1024 ** 3);
  });

  test("sets, appends and reads rc.conf variables as sysrc does", () => {
    expect(run(host, ["sysrc", "vm_list=cp1"])).toBe("vm_list:  -> cp1\n");
    expect(run(host, ["sysrc", "vm_list+=w1"])).toBe("vm_list: cp1 -> cp1 w1\n");
    expect(run(host, ["sysrc", "-n", "vm_list"])).toBe("cp1 w1\n");
    expect(tryRun(["sysrc", "nothing_here"])).toMatchObject({
      code: 1,
      stderr: "sysrc: unknown variable 'nothing_here'\n",
    });
    expect(run(host, ["sysrc", "-i", "-e", "nothing_here", "vm_enable"])).toBe('vm_enable="YES"\n');
  });

  test("refuses vm commands as vm-bhyve does while it is not enabled", () => {
    run(host, ["sysrc", "vm_enable=NO"]);
    expect(tryRun(["vm", "list"])).toMatchObject({
      code: 1,
      stderr: "/usr/local/sbin/vm: ERROR: $vm_enable is not enabled in /etc/rc.conf!\n",
    });
    expect(run(host, ["vm", "version"])).toBe("vm-bhyve: Bhyve virtual machine management v1.7.5\n");
  });
});
