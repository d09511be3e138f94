/**
 * The hypervisor stage's answer to `lb:l2-host`: the parsers on verbatim FreeBSD output, then each
 * check on the simulated host, broken the way a real host gets broken, with its fix run on the
 * host until the finding is gone. Everything the checks run only reads.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { v } from "kubehyve";
import { bhyvePlugin } from "../../../../plugins/hypervisor/bhyve/index.ts";
import { l2Diagnostics, l2HostCheck, readL2Facts } from "../../../../plugins/hypervisor/bhyve/l2.ts";
import { parseBhyveOptions } from "../../../../plugins/hypervisor/bhyve/options.ts";
import {
  parseIfconfig,
  parsePfctlNat,
  parsePfctlStatus,
  parseSwitchInfo,
  parseSwitchList,
} from "../../../../plugins/hypervisor/bhyve/parse.ts";
import metallb from "../../../../plugins/lb/metallb/index.ts";
import { optionsSchema as metallbOptions } from "../../../../plugins/lb/metallb/options.ts";
import type { Diagnostic } from "../../../../src/core/diagnostics.ts";
import { runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import { createFreebsdHost, type FreebsdHost, hostTarget, run } from "../../../lab/freebsd/host.ts";
import {
  IFCONFIG_BRIDGE_WITH_ADDRESS,
  IFCONFIG_HANDBOOK_BRIDGE,
  IFCONFIG_VTNET_OFFLOADS,
  PFCTL_INFO_ENABLED,
  PFCTL_NAT_PFSENSE,
  PFCTL_NAT_POT,
  VM_SWITCH_INFO_GUEST,
  VM_SWITCH_INFO_MANUAL,
  VM_SWITCH_INFO_NAT,
  VM_SWITCH_LIST_MANUAL,
  VM_SWITCH_LIST_NAT,
} from "./l2-samples.ts";
import { exampleCluster, isMutating, labContext } from "./lab.ts";

describe("parsers of the layer-2 checks, on verbatim output", () => {
  test("ifconfig: the bridge holds the address, its member the capabilities left while bridged", () => {
    const interfaces = parseIfconfig(IFCONFIG_BRIDGE_WITH_ADDRESS);
    expect(interfaces.get("bridge0")).toMatchObject({
      members: ["em0"],
      inet: [{ address: "10.90.0.94", prefix: 24 }],
      options: ["VLAN_HWTAGGING"],
      groups: ["bridge"],
    });
    expect(interfaces.get("em0")?.inet).toEqual([]);
    expect(interfaces.get("em0")?.options).not.toContain("TSO4");
    expect(interfaces.get("em0")?.options).toContain("VLAN_HWTSO");
  });

  test("ifconfig: TSO4, TSO6 and LRO in options, a /18 netmask, and lo0's own options", () => {
    const interfaces = parseIfconfig(IFCONFIG_VTNET_OFFLOADS);
    expect(interfaces.get("vtnet0")?.options).toEqual(expect.arrayContaining(["TSO4", "TSO6", "LRO"]));
    expect(interfaces.get("vtnet0")?.inet).toEqual([{ address: "172.24.0.80", prefix: 18 }]);
    expect(interfaces.get("lo0")?.inet).toEqual([{ address: "127.0.0.1", prefix: 8 }]);
  });

  test("ifconfig: FreeBSD 15's member lines of the Handbook's bridge", () => {
    expect(parseIfconfig(IFCONFIG_HANDBOOK_BRIDGE).get("bridge0")?.members).toEqual(["em1", "em0"]);
  });

  test("pfctl: the status line, and the translation rules without anchors' bodies", () => {
    expect(parsePfctlStatus(PFCTL_INFO_ENABLED)).toBe("enabled");
    expect(parsePfctlStatus(`${"Status: Disabled".padEnd(44)}  Debug: Urgent\n`)).toBe("disabled");
    expect(parsePfctlStatus("pfctl: /dev/pf: Permission denied\n")).toBeUndefined();
    expect(parsePfctlNat(PFCTL_NAT_PFSENSE)).toHaveLength(7);
    expect(parsePfctlNat(PFCTL_NAT_POT)).toEqual([
      "nat on em0 inet from 10.192.0.0/10 to any -> (em0) round-robin",
    ]);
  });

  test("vm switch list: a NAT switch's address and a manual switch's n/a columns", () => {
    expect(parseSwitchList(VM_SWITCH_LIST_NAT)).toEqual([
      { name: "public", type: "standard", iface: "vm-public", ports: [], address: "192.168.8.1/24" },
    ]);
    expect(parseSwitchList(VM_SWITCH_LIST_MANUAL)).toEqual([
      { name: "public", type: "manual", iface: "bridge0", ports: [] },
    ]);
  });

  test("vm switch info: type, the bridge, physical ports and the guests' ports", () => {
    expect(parseSwitchInfo(VM_SWITCH_INFO_NAT)).toEqual([
      { name: "public", type: "standard", ident: "vm-public", physicalPorts: [], virtualPorts: [] },
    ]);
    expect(parseSwitchInfo(VM_SWITCH_INFO_MANUAL)[0]).toMatchObject({ type: "manual", ident: "bridge0" });
    expect(parseSwitchInfo(VM_SWITCH_INFO_GUEST)[0]).toMatchObject({
      ident: "bridge0",
      physicalPorts: ["re0"],
      virtualPorts: [{ device: "tap1", vm: "wintest" }],
    });
  });
});

let host: FreebsdHost;
let stateDir: string;

beforeEach(() => {
  host = createFreebsdHost();
  stateDir = mkdtempSync(join(tmpdir(), "kubehyve-l2-"));
});

afterEach(() => {
  host.cleanup();
  rmSync(stateDir, { recursive: true, force: true });
});

const PAYLOAD = { subnet: "192.168.1.0/24", addresses: ["192.168.1.240-192.168.1.250"] };

async function check(options: Record<string, unknown> = {}): Promise<Diagnostic[]> {
  const ctx = labContext({ host: hostTarget(host), stateDir, options });
  return l2HostCheck(ctx, PAYLOAD);
}

const find = (ds: Diagnostic[], code: string) => ds.find((d) => d.code === code);
const severities = (ds: Diagnostic[]) => ds.map((d) => `${d.severity} ${d.code}`);

/** Runs a fix the hint gives, one `&&`-joined command at a time, on the simulated host. */
function runFix(command: string): void {
  for (const part of command.split(" && ")) run(host, part.trim().split(/\s+/));
}

describe("the layer-2 checks on the simulated host", () => {
  test("vm.8's basic setup: bridged, but the host's address on em0 and TSO on it", async () => {
    host.prepareVmBhyve();
    const found = await check();
    expect(severities(found)).toEqual([
      "ok bhyve.l2-switch-bridged",
      "warn bhyve.l2-address-on-member",
      "ok bhyve.l2-unfiltered",
      "warn bhyve.l2-offload",
    ]);
    expect(find(found, "bhyve.l2-address-on-member")?.summary).toBe(
      "the host's address 192.168.1.10 is on em0, a member of vm-public, not on the bridge: bridge(4) wants it on the bridge, and FreeBSD 15 refuses it on a member",
    );
    expect(find(found, "bhyve.l2-address-on-member")?.hint).toBe(
      'from the host\'s console (its address moves to the bridge): sysrc cloned_interfaces+=bridge0 ifconfig_bridge0="addm em0 DHCP up" ifconfig_em0="up"; vm switch destroy public; service netif restart && service routing restart; vm switch create -t manual -b bridge0 public; then stop and start the nodes, so that their ports join the new bridge',
    );
    // The bridge took LRO off em0 (bridge_mutecaps); TSO stays until a guest's tap joins.
    expect(find(found, "bhyve.l2-offload")?.summary).toBe(
      "em0, on switch public, has TSO4, TSO6 on: large transfers through the bridge stall while ping works",
    );
  });

  test("reads only, and never runs vm while vmm is not loaded (vm would load it)", async () => {
    host.prepareVmBhyve();
    host.inject({ kind: "vmm-not-loaded" });
    host.clearLog();
    const found = await check();
    expect(host.log().filter(isMutating)).toEqual([]);
    expect(host.log().some(([cmd]) => cmd === "vm")).toBe(false);
    expect(host.state().vmm.loaded).toBe(false);
    expect(find(found, "bhyve.l2-switch-unknown")?.summary).toBe(
      "switch public was not inspected: vmm is not loaded",
    );
  });

  test("a switch without the LAN's NIC is named with `vm switch add`, which fixes it", async () => {
    run(host, ["zfs", "create", "-p", "zroot/vm"]);
    run(host, ["sysrc", "vm_enable=YES", "vm_dir=zfs:zroot/vm"]);
    run(host, ["vm", "init"]);
    run(host, ["vm", "switch", "create", "public"]);
    const broken = find(await check(), "bhyve.l2-switch-not-bridged");
    expect(broken).toMatchObject({
      severity: "error",
      summary:
        "switch public (vm-public) is not bridged to em0: MetalLB's addresses answer only inside the host",
      hint: "vm switch add public em0",
    });
    runFix(broken!.hint!);
    expect(find(await check(), "bhyve.l2-switch-bridged")?.severity).toBe("ok");
  });

  test("on FreeBSD 15 the NIC with the address cannot join: the fix moves the address to a bridge first", async () => {
    host.inject({ kind: "freebsd-version", version: "15.0-RELEASE" });
    run(host, ["zfs", "create", "-p", "zroot/vm"]);
    run(host, ["sysrc", "vm_enable=YES", "vm_dir=zfs:zroot/vm", "ifconfig_em0=inet 192.168.1.10/24"]);
    run(host, ["vm", "init"]);
    run(host, ["vm", "switch", "create", "public"]);
    expect(() => run(host, ["vm", "switch", "add", "public", "em0"])).toThrow(
      "failed to add member em0 to the virtual switch public",
    );
    const broken = find(await check(), "bhyve.l2-switch-not-bridged");
    expect(broken?.detail).toContain("FreeBSD 15 refuses to add em0 to a bridge while em0 holds an address");
    expect(broken?.hint).toContain(
      'sysrc cloned_interfaces+=bridge0 ifconfig_bridge0="addm em0 inet 192.168.1.10/24 up" ifconfig_em0="up"',
    );
    expect(broken?.hint).toContain("vm switch create -t manual -b bridge0 public");

    // The host after that fix and a reboot: bridge0 with em0 and the address; the manual switch on it.
    run(host, ["vm", "switch", "destroy", "public"]);
    host.inject({ kind: "address-on-bridge" });
    run(host, ["vm", "switch", "create", "-t", "manual", "-b", "bridge0", "public"]);
    const fixed = await check();
    // Only TSO is left: em0 keeps it on a bridge whose every member has it (no guest's tap yet).
    expect(severities(fixed).filter((s) => !s.startsWith("ok"))).toEqual(["warn bhyve.l2-offload"]);
    expect(find(fixed, "bhyve.l2-host-address")?.summary).toBe(
      "the host's address 192.168.1.10 is on the bridge bridge0",
    );
    expect(find(fixed, "bhyve.l2-switch-bridged")?.summary).toBe("switch public bridges bridge0 to em0");
  });

  test("a NAT switch (an address of its own, pf translating it) is named with what undoes it", async () => {
    run(host, ["zfs", "create", "-p", "zroot/vm"]);
    run(host, ["sysrc", "vm_enable=YES", "vm_dir=zfs:zroot/vm"]);
    run(host, ["vm", "init"]);
    run(host, ["vm", "switch", "create", "-a", "192.168.8.1/24", "public"]);
    run(host, ["vm", "switch", "add", "public", "em0"]);
    // The switch's own address of another network says NAT already, before any rule translates it.
    expect(find(await check(), "bhyve.l2-switch-nat")).toMatchObject({
      severity: "warn",
      summary:
        "switch public is set up for NAT (vm-public has 192.168.8.1/24, outside 192.168.1.0/24): the LAN cannot reach the nodes' addresses",
      hint: "vm switch address public none",
    });
    host.inject({ kind: "pf", nat: ["nat on em0 inet from 192.168.8.0/24 to any -> (em0) round-robin"] });
    const nat = find(await check(), "bhyve.l2-switch-nat");
    expect(nat).toMatchObject({
      severity: "warn",
      summary:
        "switch public is set up for NAT (vm-public has 192.168.8.1/24, outside 192.168.1.0/24) and pf translates its traffic: the LAN cannot reach the nodes' addresses",
      detail: "pfctl -s nat:\nnat on em0 inet from 192.168.8.0/24 to any -> (em0) round-robin",
    });
    expect(nat?.hint).toStartWith("vm switch address public none; remove those nat rules from /etc/pf.conf");
    run(host, ["vm", "switch", "address", "public", "none"]);
    expect(find(await check(), "bhyve.l2-switch-nat")).toBeUndefined();
  });

  test("a private switch is an error with `vm switch private … off`", async () => {
    host.prepareVmBhyve();
    run(host, ["vm", "switch", "private", "public", "on"]);
    const found = find(await check(), "bhyve.l2-switch-private");
    expect(found?.severity).toBe("error");
    expect(found?.hint).toStartWith("vm switch private public off");
    run(host, ["vm", "switch", "private", "public", "off"]);
    expect(find(await check(), "bhyve.l2-switch-private")).toBeUndefined();
  });

  test("pf filtering bridged traffic is named with the sysctls that stop it", async () => {
    host.prepareVmBhyve();
    host.inject({ kind: "pf" });
    const filtered = find(await check(), "bhyve.l2-filtered");
    expect(filtered?.summary).toBe(
      "pf filters the traffic bridged to the nodes (net.link.bridge.pfil_member=1, net.link.bridge.pfil_bridge=1): unless the rules pass it, the LAN does not reach the LoadBalancer addresses",
    );
    expect(filtered?.hint).toBe(
      "sysctl net.link.bridge.pfil_member=0 net.link.bridge.pfil_bridge=0 && printf 'net.link.bridge.pfil_member=0\\nnet.link.bridge.pfil_bridge=0\\n' >> /etc/sysctl.conf; or let pf pass the switch: add \"set skip on vm-public\" to /etc/pf.conf, then pfctl -f /etc/pf.conf",
    );
    run(host, ["sysctl", "net.link.bridge.pfil_member=0", "net.link.bridge.pfil_bridge=0"]);
    expect(find(await check(), "bhyve.l2-unfiltered")?.summary).toBe(
      "the packet filter does not see bridged traffic (net.link.bridge.pfil_member=0, pfil_bridge=0)",
    );
  });

  test("ipfw's layer-2 filtering of the bridge is named too", async () => {
    host.prepareVmBhyve();
    host.inject({ kind: "ipfw" });
    host.inject({ kind: "sysctl", name: "net.link.bridge.ipfw", value: "1" });
    host.inject({ kind: "sysctl", name: "net.link.bridge.pfil_member", value: "0" });
    host.inject({ kind: "sysctl", name: "net.link.bridge.pfil_bridge", value: "0" });
    expect(find(await check(), "bhyve.l2-filtered")?.summary).toStartWith(
      "ipfw filters the traffic bridged to the nodes (net.link.bridge.ipfw=1)",
    );
  });

  test("ipfw sees bridged traffic through pfil_member and pfil_bridge too, without net.link.bridge.ipfw", async () => {
    host.prepareVmBhyve();
    host.inject({ kind: "ipfw" });
    expect(find(await check(), "bhyve.l2-filtered")?.summary).toStartWith(
      "ipfw filters the traffic bridged to the nodes (net.link.bridge.pfil_member=1, net.link.bridge.pfil_bridge=1)",
    );
  });

  test("on FreeBSD 15 with member_ifaddrs=1 the address on a member is named with FreeBSD 16 ahead", async () => {
    host.inject({ kind: "freebsd-version", version: "15.0-RELEASE" });
    host.inject({ kind: "sysctl", name: "net.link.bridge.member_ifaddrs", value: "1" });
    host.prepareVmBhyve();
    expect(find(await check(), "bhyve.l2-address-on-member")?.summary).toBe(
      "the host's address 192.168.1.10 is on em0, a member of vm-public: FreeBSD 15 allows that only while net.link.bridge.member_ifaddrs=1, which FreeBSD 16 removes",
    );
  });

  test("TSO and LRO on the bridged NIC are named with the ifconfig and rc.conf lines that turn them off", async () => {
    host.prepareVmBhyve();
    run(host, ["sysrc", "ifconfig_em0=DHCP"]);
    const offload = find(await check(), "bhyve.l2-offload");
    expect(offload?.hint).toBe('ifconfig em0 -tso -lro && sysrc ifconfig_em0="DHCP -tso -lro"');
    run(host, ["ifconfig", "em0", "-tso", "-lro"]);
    run(host, ["sysrc", "ifconfig_em0=DHCP -tso -lro"]);
    expect(find(await check(), "bhyve.l2-offload")).toMatchObject({
      severity: "ok",
      summary: "em0 has neither TSO nor LRO on",
    });
  });

  test("a pfctl that fails is a read that failed, not pf switched off", async () => {
    host.prepareVmBhyve();
    host.inject({ kind: "pf" });
    host.inject({
      kind: "fail-once",
      command: "pfctl",
      code: 2,
      stderr: "pfctl: DIOCGETSTATUSNV: Device busy",
    });
    const found = await check();
    expect(find(found, "bhyve.l2-read-failed")?.summary).toBe(
      "could not read the host: pfctl -s info failed",
    );
    expect(find(found, "bhyve.l2-unfiltered")).toBeUndefined();
    expect(find(found, "bhyve.l2-filtered")).toBeUndefined();
  });

  test("the checks are a pure function of what was read", async () => {
    host.prepareVmBhyve();
    const options = parseBhyveOptions({ nic: "em0" });
    const facts = await readL2Facts(hostTarget(host), options);
    expect(l2Diagnostics(facts, options, PAYLOAD, "hv1")).toEqual(
      l2Diagnostics(facts, options, PAYLOAD, "hv1"),
    );
    expect(l2Diagnostics(facts, options, { ...PAYLOAD, subnet: "10.0.0.0/24" }, "hv1")).toContainEqual(
      expect.objectContaining({ code: "bhyve.l2-host-address", severity: "info" }),
    );
  });
});

describe("through the lb stage", () => {
  test("doctor shows the host's layer-2 findings in the lb stage's check", async () => {
    host.prepareVmBhyve();
    host.inject({ kind: "pf" });
    const reporter = memoryReporter();
    const cluster = exampleCluster({
      stages: {
        hypervisor: { plugin: "hypervisor/bhyve", options: {} },
        lb: { plugin: "lb/metallb", options: {} },
      },
    });
    await runEngine({
      command: "doctor",
      cluster,
      stages: [
        {
          slot: "hypervisor",
          plugin: bhyvePlugin,
          options: parseBhyveOptions({ nic: "em0", firmware: host.firmwarePath }),
        },
        {
          slot: "lb",
          plugin: metallb,
          options: v.parse(metallbOptions, {
            pools: [{ name: "lab", addresses: ["192.168.1.240-192.168.1.250"] }],
          }),
        },
      ],
      stateDir,
      reporter,
      targets: { host: () => hostTarget(host), node: () => hostTarget(host) },
    });
    const lb = reporter.events.filter((e) => e.type === "diagnostic" && e.stage === "lb");
    expect(lb.map((e) => (e as { code: string }).code)).toContain("bhyve.l2-filtered");
  });
});
