import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  biosDisabledLine,
  parseColumns,
  parseFreebsdVersion,
  parseGuestLog,
  parseIfconfig,
  parseLsLong,
  parseRcVars,
  parseSwitchList,
  parseSysctl,
  parseVmList,
  parseVmVersion,
  parseZpoolList,
  tapsOf,
  versionAtLeast,
} from "../../../../plugins/hypervisor/bhyve/parse.ts";
import { ORACLES } from "../../../lab/oracles.ts";

/** A sample file without its `# source:` line, and the command output that follows a prompt line. */
function sample(name: string, after?: RegExp): string {
  const lines = readFileSync(join(ORACLES, "freebsd/samples", name), "utf8")
    .split("\n")
    .slice(1);
  if (!after) return lines.join("\n");
  const start = lines.findIndex((l) => after.test(l));
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => l.trim() === "" || /^# /.test(l));
  return rest.slice(0, end < 0 ? undefined : end).join("\n");
}

describe("parseVmList", () => {
  test("reads the captured vm list with VNC addresses, autostart positions and two datastores", () => {
    const vms = parseVmList(sample("vm-list.txt", /sudo vm list$/));
    expect(vms.map((v) => v.name)).toEqual([
      "guacamole",
      "nextcloud-psg",
      "ubuntu-template",
      "xubuntu",
      "keep-awake",
      "seafile",
    ]);
    expect(vms[0]).toEqual({
      name: "guacamole",
      datastore: "default",
      loader: "uefi",
      cpu: "2",
      memory: "4G",
      autostart: 2,
      state: { kind: "running", pid: 1637 },
    });
    expect(vms[2]).toMatchObject({
      name: "ubuntu-template",
      autostart: undefined,
      state: { kind: "stopped" },
    });
    expect(vms[4]).toMatchObject({ name: "keep-awake", datastore: "fantom", memory: "2G", autostart: 3 });
  });

  test("reads the other capture, whose columns sit at different positions", () => {
    const vms = parseVmList(sample("vm-info.txt", /vm list \| grep bhyveload$/));
    expect(vms).toEqual([
      {
        name: "fbsd14",
        datastore: "default",
        loader: "bhyveload",
        cpu: "1",
        memory: "256M",
        autostart: undefined,
        state: { kind: "stopped" },
      },
      {
        name: "spos-osy",
        datastore: "default",
        loader: "bhyveload",
        cpu: "2",
        memory: "1024M",
        autostart: 3,
        state: { kind: "running", pid: 58627 },
      },
    ]);
  });

  test("reads vm list -v, which puts %CPU RSZ UPTIME before STATE", () => {
    // core::list in vm-bhyve v1.7.5 lib/vm-core: the verbose format, through column -t.
    const text = [
      "NAME  DATASTORE  LOADER  CPU  MEMORY  VNC  AUTO     %CPU       RSZ          UPTIME  STATE",
      "cp1   default    uefi    2    4G      -    Yes [1]   3.1     1.02G       1d 02:03:04  Running (4242)",
      "old   default    uefi    1    1G      -    No          -         -               -  Locked (hv2)",
    ].join("\n");
    const vms = parseVmList(text);
    expect(vms[0]).toMatchObject({ name: "cp1", autostart: 1, state: { kind: "running", pid: 4242 } });
    expect(vms[1]!.state).toEqual({ kind: "locked", host: "hv2" });
  });

  test("finds no VM in an empty list", () => {
    expect(parseVmList("NAME  DATASTORE  LOADER  CPU  MEMORY  VNC  AUTO  STATE\n")).toEqual([]);
    expect(parseColumns("")).toEqual([]);
  });
});

describe("parseSwitchList", () => {
  test("reads ports that hold several interfaces and a switch whose bridge is not loaded", () => {
    // switch::list (lib/vm-switch): NAME TYPE IFACE ADDRESS PRIVATE MTU VLAN PORTS through column -t.
    const text = [
      "NAME     TYPE      IFACE      ADDRESS  PRIVATE  MTU  VLAN  PORTS",
      "public   standard  vm-public  -        no       -    -     em0 igb1",
      "lab      standard  -          -        no       -    -     -",
    ].join("\n");
    expect(parseSwitchList(text)).toEqual([
      { name: "public", type: "standard", iface: "vm-public", ports: ["em0", "igb1"] },
      { name: "lab", type: "standard", iface: undefined, ports: [] },
    ]);
  });
});

describe("parseIfconfig", () => {
  test("reads the captured vm-bhyve bridge stanza", () => {
    const interfaces = parseIfconfig(sample("ifconfig-vm-public.txt"));
    const bridge = interfaces.get("vm-public");
    expect(bridge?.flags).toEqual(["UP", "BROADCAST", "RUNNING", "SIMPLEX", "MULTICAST"]);
    expect(bridge?.groups).toEqual(["bridge", "vm-switch", "viid-4c918@"]);
    expect(bridge?.members).toEqual([]);
  });

  test("finds a guest's taps by the description vm-bhyve gives them and the bridge members", () => {
    const text = [
      "vm-public: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500",
      "\tether 1e:77:56:53:11:0f",
      "\tmember: tap3 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>",
      "\t        ifmaxaddr 0 port 7 priority 128 path cost 2000000",
      "\tgroups: bridge vm-switch viid-4c918@",
      "tap3: flags=8943<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST> metric 0 mtu 1500",
      "\tdescription: vmnet/cp1/0/public",
      "\tgroups: tap vm-port",
      "tap4: flags=8943<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST> metric 0 mtu 1500",
      "\tdescription: vmnet/cp10/0/public",
    ].join("\n");
    const interfaces = parseIfconfig(text);
    expect(interfaces.get("vm-public")?.members).toEqual(["tap3"]);
    expect(tapsOf(interfaces, "cp1")).toEqual([{ tap: "tap3", index: 0, switchName: "public" }]);
  });
});

describe("small formats", () => {
  test("reads sysctl's name: value lines, values with spaces included", () => {
    const values = parseSysctl(
      "hw.physmem: 34228301824\nhw.model: Intel(R) Xeon(R) CPU E5-2650 v4 @ 2.20GHz\nhw.vmm.maxcpu: 16\n",
    );
    expect(values.get("hw.physmem")).toBe("34228301824");
    expect(values.get("hw.model")).toBe("Intel(R) Xeon(R) CPU E5-2650 v4 @ 2.20GHz");
  });

  test("reads rc.conf-style values the way vm-bhyve's config.sample describes them", () => {
    const vars = parseRcVars(
      'vm_enable="YES"\nvm_dir="zfs:zroot/vm"\ncpu=1\n  memory="8G"\nloader="uefi" # the firmware\n#graphics="yes"\n',
    );
    expect(Object.fromEntries(vars)).toEqual({
      vm_enable: "YES",
      vm_dir: "zfs:zroot/vm",
      cpu: "1",
      loader: "uefi",
    });
  });

  test("reads zpool list -Hp as exact bytes", () => {
    expect(parseZpoolList("zroot\t536870912000\t42949672960\t493921239040\n")).toEqual([
      { name: "zroot", size: 536870912000, alloc: 42949672960, free: 493921239040 },
    ]);
  });

  test("reads FreeBSD and vm-bhyve versions and compares them", () => {
    expect(parseFreebsdVersion("14.3-RELEASE-p2\n")).toEqual({
      major: 14,
      minor: 3,
      text: "14.3-RELEASE-p2",
    });
    expect(parseFreebsdVersion("15.0-CURRENT")?.major).toBe(15);
    expect(parseFreebsdVersion("Linux")).toBeUndefined();
    expect(parseVmVersion("vm-bhyve: Bhyve virtual machine management v1.7.5\n")).toEqual([1, 7, 5]);
    expect(versionAtLeast([1, 7, 5], [1, 7])).toBe(true);
    expect(versionAtLeast([1, 6, 2], [1, 7])).toBe(false);
    expect(versionAtLeast([2, 0], [1, 7])).toBe(true);
  });

  test("recognises the kernel's words for virtualisation disabled in the firmware", () => {
    expect(biosDisabledLine("CPU: Intel\nvmx_init: VMX operation disabled by BIOS\n")).toBe(
      "vmx_init: VMX operation disabled by BIOS",
    );
    expect(biosDisabledLine("SVM: disabled by BIOS.\n")).toBe("SVM: disabled by BIOS.");
    expect(biosDisabledLine("vmm0: <vmm> on motherboard\n")).toBeUndefined();
  });
});

describe("parseLsLong", () => {
  test("names a link by its own path, not its target's, and keeps devices and FIFOs", () => {
    const out = [
      "lrwxrwxrwx 1 0 0   13 Dec  1 21:00 /vm/w3/w3.conf -> /vm/w1/w1.conf",
      "prw-r--r-- 1 0 0    0 Dec  1 21:00 /vm/w2/w2.conf",
      "crw-r--r-- 1 0 0 1, 5 Nov 30 18:13 /vm/w4/w4.conf",
      // FreeBSD's ls shows a device's number in hex.
      "crw-rw-rw-  1 0  0  0x13 Dec  1 21:00 /vm/w5/w5.conf",
      "-rw-------  1 0  0  5 Dec  1 21:00 /vm/cp1/disk0.img",
    ].join("\n");
    expect(Object.fromEntries(parseLsLong(out))).toEqual({
      "/vm/w3/w3.conf": { mode: "lrwxrwxrwx", size: 13, path: "/vm/w3/w3.conf", link: "/vm/w1/w1.conf" },
      "/vm/w2/w2.conf": { mode: "prw-r--r--", size: 0, path: "/vm/w2/w2.conf" },
      "/vm/w4/w4.conf": { mode: "crw-r--r--", size: 0, path: "/vm/w4/w4.conf" },
      "/vm/w5/w5.conf": { mode: "crw-rw-rw-", size: 0, path: "/vm/w5/w5.conf" },
      "/vm/cp1/disk0.img": { mode: "-rw-------", size: 5, path: "/vm/cp1/disk0.img" },
    });
  });
});

describe("parseGuestLog", () => {
  // Lines as util::log (lib/vm-util) and vm::run (lib/vm-run) of vm-bhyve v1.7.5 write them.
  const oldRun = [
    "2026-11-01T10:00:00+00:00: initialising",
    "2026-11-01T10:00:00+00:00: fatal; unable to locate firmware /usr/local/share/uefi-firmware/BHYVE_UEFI.fd",
  ];
  const goodRun = [
    "2026-11-02T09:00:00+00:00: initialising",
    "2026-11-02T09:00:00+00:00:  [loader: uefi]",
    "2026-11-02T09:00:00+00:00: initialising network device tap0",
    "2026-11-02T09:00:00+00:00: adding tap0 -> vm-public (public addm)",
    "2026-11-02T09:00:00+00:00: booting",
    "2026-11-02T09:00:00+00:00: starting bhyve (run 1)",
    "2026-11-02T09:30:00+00:00: bhyve exited with status 0",
    "2026-11-02T09:30:00+00:00: restarting",
    "2026-11-02T09:30:01+00:00: starting bhyve (run 2)",
  ];

  test("looks only at the last run, so an old failure does not count", () => {
    expect(parseGuestLog([...oldRun, ...goodRun].join("\n"))).toEqual({
      startedAt: "2026-11-02T09:00:00+00:00",
      errors: [],
      booted: true,
      ended: false,
    });
  });

  test("reports fatal lines, network failures and bhyve errors of the last run", () => {
    const run = parseGuestLog(
      [
        ...goodRun,
        "2026-11-02T10:00:00+00:00: initialising",
        "2026-11-02T10:00:00+00:00: failed to find virtual switch 'lab'",
        "2026-11-02T10:00:00+00:00: starting bhyve (run 1)",
        "2026-11-02T10:00:01+00:00: bhyve exited with status 4",
        "2026-11-02T10:00:01+00:00: stopped",
      ].join("\n"),
    );
    expect(run.errors).toEqual(["failed to find virtual switch 'lab'", "bhyve exited with status 4"]);
    expect(run.ended).toBe(true);
  });

  test("knows a guest that never started", () => {
    expect(parseGuestLog("")).toEqual({ errors: [], booted: false, ended: false });
  });
});
