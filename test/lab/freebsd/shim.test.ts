import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  parseColumns,
  parseSwitchList,
  parseVmList,
  parseZpoolList,
} from "../../../plugins/hypervisor/bhyve/parse.ts";
import { oracle } from "../oracles.ts";
import { createFreebsdHost, type FreebsdHost, run } from "./host.ts";

const SAMPLES = oracle("freebsd/samples");
// Every command is a process; on a busy machine a test of several takes seconds.
setDefaultTimeout(20_000);

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
  test("takes over at once a lock whose pid now names another process, and waits for a live holder", async () => {
    const lock = join(host.root, ".sim", "lock");
    const { mkdirSync } = require("node:fs") as typeof import("node:fs");
    // A holder long gone whose pid the kernel has since given to this test's process: same pid,
    // another start.
    mkdirSync(lock, { recursive: true });
    writeFileSync(join(lock, "pid"), `${process.pid} 1`);
    const started = Date.now();
    expect(run(host, ["sysrc", "lab_test=1"])).toBe("lab_test:  -> 1\n");
    expect(Date.now() - started).toBeLessThan(5000);
    // The same pid with its own start is this process, alive: the command waits for it.
    const stat = readFileSync(`/proc/${process.pid}/stat`, "utf8");
    mkdirSync(lock, { recursive: true });
    writeFileSync(
      join(lock, "pid"),
      `${process.pid} ${stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]}`,
    );
    const child = Bun.spawn(["sysrc", "lab_test=2"], {
      env: { ...process.env, ...host.env },
      stdout: "pipe",
    });
    Bun.sleepSync(1000);
    expect(child.exitCode).toBeNull();
    rmSync(lock, { recursive: true, force: true });
    expect(await child.exited).toBe(0);
    expect(await new Response(child.stdout).text()).toBe("lab_test: 1 -> 2\n");
  });

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
    // Long enough for the commands below to run while the guest is still shutting down.
    host.setStopDelay(2000);
    expect(parseVmList(run(host, ["vm", "list"]))[0]!.state.kind).toBe("running");
    expect(run(host, ["vm", "stop", "legacy"])).toBe("Sending ACPI shutdown to legacy\n");
    expect(parseVmList(run(host, ["vm", "list"]))[0]!.state.kind).toBe("running");
    expect(tryRun(["vm", "destroy", "-f", "legacy"])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining("appears to be running"),
    });
    await Bun.sleep(2100);
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

  test("a test process that changes the host's state is not ended by a SIGINT meant for a command's handler", async () => {
    // In a process of its own: the handler this guards against would end the test runner itself.
    // The in-process command tests deliver Ctrl-C with process.emit, which reaches every listener.
    const script = `
      import { createFreebsdHost } from ${JSON.stringify(join(import.meta.dir, "host.ts"))};
      const host = createFreebsdHost();
      host.setLatency(0);
      host.inject({ kind: "fail-once", command: "zpool", code: 1, stderr: "x" });
      host.clearFaults();
      const handled = [];
      process.on("SIGINT", () => handled.push("SIGINT"));
      process.emit("SIGINT");
      host.cleanup();
      console.log(JSON.stringify({ handled, listeners: process.listenerCount("SIGINT") }));
    `;
    const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const [code, stdout, stderr] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(stdout)).toEqual({ handled: ["SIGINT"], listeners: 1 });
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

describe("the simulated vm-bhyve, as v1.7.5's scripts behave", () => {
  const withStdin = (argv: string[], stdin: string) => {
    const proc = Bun.spawnSync(argv, { env: { ...process.env, ...host.env }, stdin: Buffer.from(stdin) });
    return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
  };

  test("vm poweroff and vm destroy without -f go ahead on an empty stdin, and do nothing when told no", async () => {
    // util::confirm's `while read` ends at the end of its input having run no body: status 0, yes.
    host.createForeignVm("legacy", { running: true });
    expect(withStdin(["vm", "poweroff", "legacy"], "n\n")).toMatchObject({ code: 0 });
    expect(host.vm("legacy").running).toBe(true);
    expect(withStdin(["vm", "poweroff", "legacy"], "")).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect(host.vm("legacy").running).toBe(false);
    expect(withStdin(["vm", "destroy", "legacy"], "maybe\nno\n")).toMatchObject({ code: 0 });
    expect(host.vm("legacy").exists).toBe(true);
    expect(withStdin(["vm", "destroy", "legacy"], "")).toMatchObject({ code: 0 });
    expect(host.vm("legacy").exists).toBe(false);
  });

  test("vm start takes a run.lock, a stale one shows as Locked (host), and vm destroy refuses a locked guest", async () => {
    host.createForeignVm("legacy", { running: true });
    const lock = join(host.vm("legacy").dir, "run.lock");
    expect(readFileSync(lock, "utf8")).toBe("hv1.lab.home.arpa\n");
    run(host, ["vm", "poweroff", "-f", "legacy"]);
    expect(existsSync(lock)).toBe(false);
    // The host died with the guest running on another node sharing the datastore.
    host.vm("legacy").lock("hv2.lab.home.arpa");
    expect(parseVmList(run(host, ["vm", "list"]))[0]!.state).toEqual({
      kind: "locked",
      host: "hv2.lab.home.arpa",
    });
    // -r leaves out Stopped guests only (core::list).
    expect(parseVmList(run(host, ["vm", "list", "-r"])).map((v) => v.name)).toEqual(["legacy"]);
    expect(tryRun(["vm", "destroy", "-f", "legacy"])).toMatchObject({
      code: 1,
      stderr: "/usr/local/sbin/vm: WARNING: legacy appears to be running on hv2.lab.home.arpa (locked)\n",
    });
    expect(tryRun(["vm", "start", "legacy"])).toMatchObject({
      code: 1,
      stdout: expect.stringContaining("  ! guest appears to be running already\n"),
    });
  });

  test("logs a start with vm-run's lines, in its order, and the bhyve command line's parts", () => {
    host.createForeignVm("legacy", { running: true });
    const uuid = host.vm("legacy").config.uuid!;
    const mac = host.vm("legacy").config.network0_mac!;
    const messages = host
      .vm("legacy")
      .log()
      .split("\n")
      .filter(Boolean)
      .map((l) => l.replace(/^\S+: /, ""));
    const dir = host.vm("legacy").dir;
    expect(messages).toEqual([
      `generated static mac ${mac}`,
      "initialising",
      " [loader: bhyveload]",
      " [cpu: 1]",
      " [memory: 256M]",
      " [hostbridge: standard]",
      " [com ports: com1]",
      ` [uuid: ${uuid}]`,
      " [debug mode: no]",
      " [primary disk: disk0.img]",
      " [primary disk dev: file]",
      "initialising network device tap0",
      "adding tap0 -> vm-public (public addm)",
      "bring up tap0 -> vm-public (public addm)",
      "booting",
      ` [bhyve options: -c 1 -m 256M -AHPw -U ${uuid} -u]`,
      ` [bhyve devices: -s 0,hostbridge -s 31,lpc -s 0:4:0,virtio-blk,${dir}/disk0.img -s 0:5:0,virtio-net,tap0,mac=${mac}]`,
      " [bhyve console: -l com1,/dev/nmdm-legacy.1A]",
      "starting bhyve (run 1)",
    ]);
  });

  test("puts a UEFI guest's firmware before its bhyve_options and its disks in slots of their own", () => {
    host.createForeignVm("uefi1");
    host.vm("uefi1").edit({
      loader: "uefi",
      disk1_type: "nvme",
      disk1_name: "disk1.img",
      bhyve_options: "-o lpc.fwcfg=qemu",
    });
    writeFileSync(join(host.vm("uefi1").dir, "disk1.img"), "");
    run(host, ["vm", "start", "uefi1"]);
    const log = host.vm("uefi1").log();
    const uuid = host.vm("uefi1").config.uuid!;
    expect(log).toContain(
      ` [bhyve options: -c 1 -m 256M -AHPw -l bootrom,/usr/local/share/uefi-firmware/BHYVE_UEFI.fd -o lpc.fwcfg=qemu -U ${uuid} -u]\n`,
    );
    expect(log).toMatch(
      / \[bhyve devices: -s 0,hostbridge -s 31,lpc -s 0:4:0,virtio-blk,\S+\/disk0\.img -s 0:5:0,nvme,\S+\/disk1\.img -s 0:6:0,virtio-net,tap0,mac=\S+\]\n/,
    );
  });

  test("a guest whose disk is missing stops at once, bhyve exiting 4", () => {
    host.createForeignVm("legacy");
    rmSync(join(host.vm("legacy").dir, "disk0.img"));
    run(host, ["vm", "start", "legacy"]);
    expect(host.vm("legacy").log()).toMatch(/starting bhyve \(run 1\)\n.*: bhyve exited with status 4\n/);
    expect(host.vm("legacy").running).toBe(false);
  });

  test("vm list -v adds %CPU, RSZ and UPTIME before STATE", () => {
    host.createForeignVm("legacy", { running: true });
    const out = run(host, ["vm", "list", "-v"]);
    expect(out.split("\n")[0]!.split(/\s+/)).toEqual([
      "NAME",
      "DATASTORE",
      "LOADER",
      "CPU",
      "MEMORY",
      "VNC",
      "AUTO",
      "%CPU",
      "RSZ",
      "UPTIME",
      "STATE",
    ]);
    // A guest started a moment ago: its uptime is a second or two on a busy machine.
    expect(parseColumns(out)[0]).toMatchObject({
      "%CPU": "0.0",
      RSZ: "256.0M",
      UPTIME: expect.stringMatching(/^00:0\d$/),
    });
    expect(parseVmList(out)[0]!.state.kind).toBe("running");
  });

  test("vm init makes what vm-bhyve's makes: null.iso, the sample default template, its kernel modules", () => {
    const dir = host.vmDir();
    expect(readFileSync(join(dir, ".config/null.iso"), "utf8")).toBe("");
    expect(readFileSync(join(dir, ".templates/default.conf"), "utf8")).toBe(
      readFileSync(oracle("vm-bhyve/sample-templates/default.conf"), "utf8"),
    );
    for (const mod of ["nmdm", "if_bridge", "if_tuntap", "vmm"])
      expect(tryRun(["kldstat", "-q", "-m", mod]).code).toBe(0);
  });

  test("vm create marks the dataset with zfs_dataset_opts and makes no disk for a custom one", () => {
    const template = join(host.vmDir(), ".templates", "marked.conf");
    writeFileSync(
      template,
      'loader="uefi"\ncpu=1\nmemory=1G\ndisk0_type="virtio-blk"\ndisk0_name="disk0"\ndisk0_dev="custom"\ndisk1_type="virtio-blk"\ndisk1_name="disk1"\ndisk1_dev="sparse-zvol"\ndisk1_size="1G"\nzfs_dataset_opts="a:b=1 c:d=2"\n',
    );
    run(host, ["vm", "create", "-t", "marked", "guest1"]);
    const datasets = host.state().datasets;
    expect(datasets["zroot/vm/guest1"]!.props).toEqual({ "a:b": "1", "c:d": "2" });
    expect(Object.keys(datasets).filter((d) => d.startsWith("zroot/vm/guest1/"))).toEqual([
      "zroot/vm/guest1/disk1",
    ]);
    expect(datasets["zroot/vm/guest1/disk1"]).toMatchObject({ volmode: "dev", sparse: true });
    expect(tryRun(["vm", "create", "-t", "marked", "g"])).toMatchObject({
      code: 1,
      stderr: "/usr/local/sbin/vm: ERROR: invalid virtual machine name - 'g'\n",
    });
  });
  test("vm rename moves the dataset with its snapshots, the directory and the config, and refuses a running guest", () => {
    host.createForeignVm("legacy", { running: true });
    expect(tryRun(["vm", "rename", "legacy", "old"])).toMatchObject({ code: 1 });
    run(host, ["vm", "poweroff", "-f", "legacy"]);
    run(host, ["zfs", "snapshot", "zroot/vm/legacy@x"]);
    const mac = host.vm("legacy").config.network0_mac;
    run(host, ["vm", "rename", "legacy", "old"]);
    expect(host.vm("legacy").exists).toBe(false);
    expect(host.vm("old").config.network0_mac).toBe(mac);
    expect(
      Object.keys(host.state().datasets)
        .filter((d) => d.startsWith("zroot/vm/"))
        .sort(),
    ).toEqual(["zroot/vm/old", "zroot/vm/old@x"]);
    expect(host.state().datasets["zroot/vm/old"]!.mountpoint).toBe(host.vm("old").dir);
    // The default template's disk is a file beside the config.
    expect(existsSync(join(host.vm("old").dir, "disk0.img"))).toBe(true);
  });
});

describe("the simulated zfs", () => {
  test("inherits user properties and says where from", () => {
    run(host, ["zfs", "create", "-o", "kubehyve:cluster=abc", "zroot/vm/g1"]);
    run(host, ["zfs", "create", "-s", "-V", "1G", "zroot/vm/g1/disk0"]);
    expect(
      run(host, [
        "zfs",
        "get",
        "-Hp",
        "-r",
        "-o",
        "name,property,value,source",
        "kubehyve:cluster",
        "zroot/vm",
      ]),
    ).toBe(
      "zroot/vm\tkubehyve:cluster\t-\t-\nzroot/vm/g1\tkubehyve:cluster\tabc\tlocal\nzroot/vm/g1/disk0\tkubehyve:cluster\tabc\tinherited from zroot/vm/g1\n",
    );
  });

  test("rounds a zvol up to its block size on create and refuses such a size on set", () => {
    run(host, ["zfs", "create", "-V", "1000000", "zroot/vm/odd"]);
    expect(run(host, ["zfs", "get", "-Hp", "-o", "value", "volsize", "zroot/vm/odd"])).toBe("1015808\n");
    expect(tryRun(["zfs", "set", "volsize=2000000", "zroot/vm/odd"])).toMatchObject({
      code: 1,
      stderr: "cannot set property for 'zroot/vm/odd': Invalid argument\n",
    });
    expect(tryRun(["zfs", "create", "-V", "0", "zroot/vm/zero"]).stderr).toBe(
      "cannot create 'zroot/vm/zero': volume size cannot be zero\n",
    );
  });

  test("holds a zvol's contents behind /dev/zvol: dd writes them, never past the end, and rename keeps them", () => {
    const image = join(host.root, "image.raw");
    writeFileSync(image, "IMAGE".repeat(10));
    run(host, ["zfs", "create", "-s", "-V", "16384", "zroot/vm/small"]);
    run(host, ["dd", `if=${image}`, "of=/dev/zvol/zroot/vm/small", "conv=sparse"]);
    expect(host.zvol("zroot/vm/small")!.subarray(0, 50).toString()).toBe("IMAGE".repeat(10));
    expect(host.zvol("zroot/vm/small")!.size).toBe(16384);
    run(host, ["zfs", "rename", "zroot/vm/small", "zroot/vm/renamed"]);
    expect(host.zvol("zroot/vm/renamed")!.subarray(0, 5).toString()).toBe("IMAGE");
    writeFileSync(image, Buffer.alloc(20000, 1));
    expect(tryRun(["dd", `if=${image}`, "of=/dev/zvol/zroot/vm/renamed"])).toMatchObject({ code: 1 });
    expect(tryRun(["ls", "/dev/zvol/zroot/vm/absent"]).code).not.toBe(0);
  });
});

describe("the simulated network commands", () => {
  test("pfctl without pf.ko fails as pfctl's err(1, /dev/pf) does; -s info prints print_status's layout", () => {
    expect(tryRun(["pfctl", "-s", "info"])).toMatchObject({
      code: 1,
      stderr: "pfctl: /dev/pf: No such file or directory\n",
    });
    host.inject({ kind: "pf", nat: ["nat on em0 inet from 192.168.8.0/24 to any -> (em0) round-robin"] });
    const info = run(host, ["pfctl", "-s", "info"]).split("\n");
    // The captured `pfctl -s info` of Telegraf's pf input README, column for column.
    expect(info[0]).toMatch(/^Status: Enabled for 0 days 00:1\d:\d\d {11}Debug: Urgent$/);
    expect(info[2]).toBe("State Table                          Total             Rate");
    expect(info[4]).toBe("  searches                               0            0.0/s");
    expect(run(host, ["pfctl", "-s", "nat"])).toBe(
      "nat on em0 inet from 192.168.8.0/24 to any -> (em0) round-robin\n",
    );
  });

  test("ifconfig prints options= from the IFCAP bits, and a bridge strips LRO from its members", () => {
    host.cleanup();
    host = createFreebsdHost();
    expect(run(host, ["ifconfig", "em0"])).toContain(
      "\toptions=4e527bb<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,JUMBO_MTU,VLAN_HWCSUM,TSO4,TSO6,LRO,WOL_MAGIC,VLAN_HWFILTER,VLAN_HWTSO,RXCSUM_IPV6,TXCSUM_IPV6,HWSTATS,MEXTPG>\n",
    );
    host.prepareVmBhyve();
    expect(run(host, ["ifconfig", "em0"])).toContain("TSO4,TSO6,WOL_MAGIC");
    host.createForeignVm("legacy", { running: true });
    // A guest's tap has no TSO: no member keeps it (bridge_mutecaps).
    expect(run(host, ["ifconfig", "em0"])).toContain("VLAN_HWCSUM,WOL_MAGIC");
  });

  test("the bridge's sysctls exist once if_bridge is loaded, and sysctl NAME=VALUE keeps the value", () => {
    expect(run(host, ["sysctl", "-n", "net.link.bridge.pfil_member"])).toBe("1\n");
    expect(run(host, ["sysctl", "net.link.bridge.pfil_member=0"])).toBe(
      "net.link.bridge.pfil_member: 1 -> 0\n",
    );
    expect(run(host, ["sysctl", "-n", "net.link.bridge.pfil_member"])).toBe("0\n");
    expect(tryRun(["sysctl", "net.link.bridge.member_ifaddrs"])).toMatchObject({ code: 1 });
  });

  test("vm switch info prints info::switch_show's block, with the guests' ports", () => {
    host.createForeignVm("legacy", { running: true });
    expect(run(host, ["vm", "switch", "info", "public"])).toBe(
      [
        "------------------------",
        "Virtual Switch: public",
        "------------------------",
        "  type: standard",
        "  ident: vm-public",
        "  vlan: -",
        "  physical-ports: em0",
        "  bytes-in: 0 (0.000B)",
        "  bytes-out: 0 (0.000B)",
        "",
        "  virtual-port",
        "    device: tap0",
        "    vm: legacy",
        "",
        "",
      ].join("\n"),
    );
  });

  test("FreeBSD 15 refuses a NIC with an address as a bridge member, as if_bridge does", () => {
    host.cleanup();
    host = createFreebsdHost();
    host.inject({ kind: "freebsd-version", version: "15.0-RELEASE" });
    run(host, ["ifconfig", "bridge", "create"]);
    expect(tryRun(["ifconfig", "bridge0", "addm", "em0"])).toMatchObject({
      code: 1,
      stderr: "ifconfig: BRDGADD em0: Invalid argument\n",
    });
    run(host, ["sysctl", "net.link.bridge.member_ifaddrs=1"]);
    run(host, ["ifconfig", "bridge0", "addm", "em0"]);
  });
});
