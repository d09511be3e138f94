/**
 * The FreeBSD side of layer-2 announcements, for the lb stage's `lb:l2-host` hook. MetalLB in
 * layer 2 mode has one node answer ARP for each LoadBalancer address; the LAN hears those answers
 * and reaches the address only through the vm-bhyve switch's bridge(4). What breaks that on the host:
 *
 * 1. the switch is not a bridge to the LAN's NIC: no physical port, or a NAT or private switch
 *    (vm.8: `switch add`, `switch address … none`, `switch private … off`);
 * 2. the host's own address sits on a member of the bridge instead of the bridge: bridge(4) wants it
 *    on the bridge, and FreeBSD 15 refuses it on a member unless net.link.bridge.member_ifaddrs=1
 *    (a sysctl FreeBSD 16 removes);
 * 3. pf or ipfw filtering bridged traffic (bridge(4) PACKET FILTERING: pfil_member, pfil_bridge and
 *    ipfw, default 1, 1 and 0);
 * 4. TSO or LRO on a member: large transfers stall while ping works.
 *
 * Everything here only reads (ifconfig -a, sysctl -i, pfctl -s, vm switch list/info, sysrc -e -i);
 * a command that failed is reported as a read that failed, never as a "no".
 */
import {
  type Cidr,
  cidrContains,
  cidrsOverlap,
  type Diagnostic,
  diag,
  type HookPayload,
  type PluginContext,
  parseCidr,
  parseIpv4,
  type RunResult,
  type Target,
} from "kubehyve";
import { failure } from "./inspect.ts";
import { answerOf } from "./marks.ts";
import type { BhyveOptions } from "./options.ts";
import {
  type IfconfigInet,
  type IfconfigInterface,
  parseIfconfig,
  parsePfctlNat,
  parsePfctlStatus,
  parseRcVars,
  parseSwitchInfo,
  parseSwitchList,
  parseSysctl,
  type SwitchEntry,
  type SwitchInfo,
} from "./parse.ts";

/** Read in one `sysctl -i` (unknown names are skipped: the bridge's exist once if_bridge is loaded). */
export const L2_SYSCTLS = [
  "kern.osreldate",
  "net.link.bridge.pfil_member",
  "net.link.bridge.pfil_bridge",
  "net.link.bridge.ipfw",
  "net.link.bridge.member_ifaddrs",
  "net.inet.ip.fw.enable",
] as const;

/** FreeBSD 15.0's __FreeBSD_version: from here on a member of a bridge may not hold an address. */
const FREEBSD_15 = 1_500_000;

export interface FailedL2Read {
  argv: string[];
  result: RunResult;
}

/** What the host says, each part undefined when its command failed or was not run. */
export interface L2Facts {
  /** `vm switch list`; undefined when vm was not asked (see vmSkipped) or failed. */
  switches?: SwitchEntry[];
  /** `vm switch info SWITCH`. */
  info?: SwitchInfo;
  /** Why vm was not asked: it loads vmm.ko for any subcommand, and a check must not change the kernel. */
  vmSkipped?: string;
  interfaces?: Map<string, IfconfigInterface>;
  sysctl?: Map<string, string>;
  /** pf: loaded and enabled, loaded and disabled, or not loaded at all (no /dev/pf). */
  pf?: "enabled" | "disabled" | "absent";
  /** `pfctl -s nat`, read while pf is enabled. */
  nat?: string[];
  /** rc.conf's vm_enable and ifconfig_NIC. */
  rc: Map<string, string>;
  failed: FailedL2Read[];
}

/** pfctl exits 1 with err(1, "/dev/pf") when pf.ko is not loaded (sbin/pfctl/pfctl.c main). */
function pfAnswer(result: RunResult): "enabled" | "disabled" | "absent" | "failed" {
  if (result.code === 127) return "absent";
  if (result.code === 1 && /\/dev\/pf: No such file or directory/.test(result.stderr)) return "absent";
  if (result.code !== 0) return "failed";
  return parsePfctlStatus(result.stdout) ?? "failed";
}

const isYes = (value: string | undefined) => /^(yes|true|on|1)$/i.test(value ?? "");

export async function readL2Facts(host: Target, options: BhyveOptions): Promise<L2Facts> {
  const failed: FailedL2Read[] = [];
  const read = async (argv: string[], ok: (r: RunResult) => boolean = (r) => r.code === 0) => {
    const result = await host.run(argv);
    if (!ok(result)) failed.push({ argv, result });
    return result;
  };
  const sysrcArgv = ["sysrc", "-e", "-i", "vm_enable", ...(options.nic ? [`ifconfig_${options.nic}`] : [])];
  const [kldstat, sysrc, ifconfig, sysctl, pfInfo] = await Promise.all([
    read(["kldstat", "-q", "-m", "vmm"], (r) => answerOf(r) !== "failed"),
    read(sysrcArgv),
    read(["ifconfig", "-a"]),
    read(["sysctl", "-i", ...L2_SYSCTLS]),
    read(["pfctl", "-s", "info"], (r) => pfAnswer(r) !== "failed"),
  ]);
  const rc = sysrc.code === 0 ? parseRcVars(sysrc.stdout) : new Map<string, string>();
  const vmm = answerOf(kldstat);
  const vmSkipped =
    vmm === "failed"
      ? "whether vmm is loaded could not be read"
      : vmm === "no"
        ? "vmm is not loaded"
        : sysrc.code !== 0
          ? "rc.conf could not be read"
          : !isYes(rc.get("vm_enable"))
            ? "vm-bhyve is not enabled (vm_enable)"
            : undefined;
  const [list, info] = vmSkipped
    ? [undefined, undefined]
    : await Promise.all([read(["vm", "switch", "list"]), read(["vm", "switch", "info", options.switch])]);
  const pf = pfAnswer(pfInfo);
  const nat = pf === "enabled" ? await read(["pfctl", "-s", "nat"]) : undefined;
  return {
    switches: list?.code === 0 ? parseSwitchList(list.stdout) : undefined,
    info: info?.code === 0 ? parseSwitchInfo(info.stdout).find((s) => s.name === options.switch) : undefined,
    vmSkipped,
    interfaces: ifconfig.code === 0 ? parseIfconfig(ifconfig.stdout) : undefined,
    sysctl: sysctl.code === 0 ? parseSysctl(sysctl.stdout) : undefined,
    pf: pf === "failed" ? undefined : pf,
    nat: nat?.code === 0 ? parsePfctlNat(nat.stdout) : undefined,
    rc,
    failed,
  };
}

/** A guest's or a tunnel's port on the bridge, as opposed to a NIC of the host. */
function isVirtualPort(name: string, interfaces: Map<string, IfconfigInterface>): boolean {
  const groups = interfaces.get(name)?.groups ?? [];
  return /^(tap|vmnet|epair|bridge|vm-)/.test(name) || groups.includes("tap") || groups.includes("epair");
}

const OFFLOADS = ["TSO4", "TSO6", "LRO"];

interface Where {
  subnet: Cidr;
  sw: string;
  target: string;
}

/** The first bridgeN that does not exist yet, for a bridge of the host's own making. */
function freeBridgeName(interfaces: Map<string, IfconfigInterface> | undefined): string {
  let n = 0;
  while (interfaces?.has(`bridge${n}`)) n++;
  return `bridge${n}`;
}

/**
 * The fix of bridge(4) EXAMPLES and vm.8 `switch create -t manual -b`: rc.conf makes the bridge with
 * the NIC as a member and the host's address on the bridge, and vm-bhyve attaches guests to it.
 */
function moveAddressFix(
  facts: L2Facts,
  where: Where,
  nic: string,
  address: IfconfigInet | undefined,
  existing: boolean,
): string {
  const bridge = freeBridgeName(facts.interfaces);
  const configured = facts.rc.get(`ifconfig_${nic}`) ?? "";
  const inet = /\bDHCP\b/i.test(configured)
    ? "DHCP"
    : address
      ? `inet ${address.address}/${address.prefix}`
      : "inet ADDRESS/PREFIX";
  return [
    `from the host's console (its address moves to the bridge): sysrc cloned_interfaces+=${bridge} ifconfig_${bridge}="addm ${nic} ${inet} up" ifconfig_${nic}="up"`,
    ...(existing ? [`vm switch destroy ${where.sw}`] : []),
    "service netif restart && service routing restart",
    `vm switch create -t manual -b ${bridge} ${where.sw}`,
    "then stop and start the nodes, so that their ports join the new bridge",
  ].join("; ");
}

/** The source of a pf rule covers the lab's subnet or the bridge's own network, or names the bridge. */
function natRuleHits(rule: string, bridge: string | undefined, nets: Cidr[]): boolean {
  if (bridge && new RegExp(`\\b${bridge.replace(/[.-]/g, "\\$&")}\\b`).test(rule)) return true;
  const from = /\bfrom (?:! )?(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?/.exec(rule);
  const cidr = from ? networkOf({ address: from[1]!, prefix: Number(from[2] ?? 32) }) : undefined;
  return cidr !== undefined && nets.some((n) => cidrsOverlap(n, cidr));
}

/** The network an address of an interface lies in (its address with the host bits cleared). */
function networkOf(inet: IfconfigInet): Cidr | undefined {
  const ip = parseIpv4(inet.address);
  if (ip === undefined) return undefined;
  const size = 2 ** (32 - inet.prefix);
  return { network: Math.floor(ip / size) * size, prefix: inet.prefix };
}

function inSubnet(subnet: Cidr, inet: IfconfigInet): boolean {
  const ip = parseIpv4(inet.address);
  return ip !== undefined && cidrContains(subnet, ip);
}

/**
 * The checks, a pure function of what the host said. `payload.subnet` is the node subnet the
 * addresses are announced on.
 */
export function l2Diagnostics(
  facts: L2Facts,
  options: BhyveOptions,
  payload: HookPayload<"lb:l2-host">,
  target: string,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = { target };
  const subnet = parseCidr(payload.subnet);
  if (!subnet) return out;
  const where: Where = { subnet, sw: options.switch, target };
  const sw = options.switch;

  for (const { argv, result } of facts.failed) {
    out.push(
      diag.warn("bhyve.l2-read-failed", `could not read the host: ${argv.join(" ")} failed`, {
        ...at,
        detail: `${failure(argv, result)}\nThe layer-2 checks that need it were not made.`,
        hint: "the command failed rather than answered; run it on the host to see why, then: kubehyve doctor",
      }),
    );
  }
  if (facts.vmSkipped)
    out.push(
      diag.info("bhyve.l2-switch-unknown", `switch ${sw} was not inspected: ${facts.vmSkipped}`, {
        ...at,
        hint: "the host preflight (kubehyve plan) says what to do first",
      }),
    );

  const entry = facts.switches?.find((s) => s.name === sw);
  if (facts.switches && !entry) {
    out.push(
      diag.error("bhyve.l2-switch-missing", `vm-bhyve has no switch ${sw}: the nodes have no network`, {
        ...at,
        path: "stages.hypervisor.switch",
        hint: "kubehyve up --only hypervisor (the stage creates the switch)",
      }),
    );
  }
  const type = facts.info?.type ?? entry?.type;
  if (entry && type && type !== "standard" && type !== "manual") {
    out.push(
      diag.error(
        "bhyve.l2-switch-type",
        `switch ${sw} is a ${type} switch, not a bridge(4): MetalLB's layer-2 answers do not reach the LAN through it`,
        {
          ...at,
          hint: `vm switch destroy ${sw} && vm switch create ${sw}${options.nic ? ` && vm switch add ${sw} ${options.nic}` : ""}`,
        },
      ),
    );
    return out;
  }

  const interfaces = facts.interfaces;
  const bridgeName = facts.info?.ident ?? entry?.iface ?? (type === "manual" ? undefined : `vm-${sw}`);
  const bridge = bridgeName ? interfaces?.get(bridgeName) : undefined;
  const osreldate = Number(facts.sysctl?.get("kern.osreldate") ?? 0);
  const freebsd15 = osreldate >= FREEBSD_15;
  const memberAddresses = facts.sysctl?.get("net.link.bridge.member_ifaddrs") === "1";

  // The host's own address on the lab's LAN, and where it sits.
  const holders = [...(interfaces?.values() ?? [])].filter((i) => i.inet.some((a) => inSubnet(subnet, a)));
  const hostIf = holders.find((i) => i.name === bridgeName) ?? holders[0];
  const hostAddress = hostIf?.inet.find((a) => inSubnet(subnet, a));
  const physical = (bridge?.members ?? []).filter((m) => interfaces && !isVirtualPort(m, interfaces));
  const nic =
    options.nic ??
    (hostIf && interfaces && !isVirtualPort(hostIf.name, interfaces) ? hostIf.name : undefined) ??
    physical[0];
  const onSwitch = (name: string) =>
    (bridge?.members ?? []).some((m) => m === name || m.startsWith(`${name}.`));

  if (interfaces && entry && !bridge) {
    out.push(
      diag.error(
        "bhyve.l2-switch-not-loaded",
        `switch ${sw} has no bridge on the host${bridgeName ? ` (${bridgeName} does not exist)` : ""}`,
        { ...at, hint: "vm init   # makes every switch's bridge, as the vm service does at boot" },
      ),
    );
  }

  // 1. A bridge to the LAN's NIC, neither NAT nor private.
  if (bridge) {
    if (nic && !onSwitch(nic)) {
      const refused = freebsd15 && !memberAddresses && (interfaces?.get(nic)?.inet.length ?? 0) > 0;
      out.push(
        diag[options.nic ? "error" : "warn"](
          "bhyve.l2-switch-not-bridged",
          `switch ${sw} (${bridge.name}) is not bridged to ${nic}: MetalLB's addresses answer only inside the host`,
          {
            ...at,
            path: options.nic ? "stages.hypervisor.nic" : undefined,
            detail: refused
              ? `FreeBSD 15 refuses to add ${nic} to a bridge while ${nic} holds an address (bridge(4); net.link.bridge.member_ifaddrs=0): the address moves to the bridge first.`
              : `members of ${bridge.name}: ${bridge.members.join(" ") || "none"}`,
            hint: refused
              ? moveAddressFix(facts, where, nic, hostIf?.name === nic ? hostAddress : undefined, true)
              : `vm switch add ${sw} ${nic}`,
          },
        ),
      );
    } else if (!nic) {
      out.push(
        diag.warn(
          "bhyve.l2-switch-not-bridged",
          `switch ${sw} (${bridge.name}) has no physical port: the nodes and their LoadBalancer addresses are reachable only from the host`,
          {
            ...at,
            path: "stages.hypervisor.nic",
            hint: `set stages.hypervisor.nic to the host's NIC on the LAN (ifconfig -l lists them), then: vm switch add ${sw} NIC`,
          },
        ),
      );
    } else {
      out.push(
        diag.ok("bhyve.l2-switch-bridged", `switch ${sw} bridges ${bridge.name} to ${nic}`, {
          ...at,
          detail: `members: ${bridge.members.join(" ")}`,
        }),
      );
    }
    if (entry?.private) {
      out.push(
        diag.error(
          "bhyve.l2-switch-private",
          `switch ${sw} is private: the nodes cannot reach one another, only the physical port`,
          {
            ...at,
            hint: `vm switch private ${sw} off, then stop and start the nodes (the setting applies from a guest's cold boot, vm.8)`,
          },
        ),
      );
    }
    const own = bridge.inet.filter((a) => !inSubnet(subnet, a));
    const ownNets = own.map(networkOf).filter((n): n is Cidr => n !== undefined);
    const natRules = (facts.nat ?? []).filter((r) => natRuleHits(r, bridge.name, [subnet, ...ownNets]));
    if (own.length || natRules.length) {
      out.push(
        diag.warn(
          "bhyve.l2-switch-nat",
          `switch ${sw} is set up for NAT${own.length ? ` (${bridge.name} has ${own.map((a) => `${a.address}/${a.prefix}`).join(", ")}, outside ${payload.subnet})` : ""}${natRules.length ? `${own.length ? " and" : ""} pf translates its traffic` : ""}: the LAN cannot reach the nodes' addresses`,
          {
            ...at,
            detail: natRules.length ? `pfctl -s nat:\n${natRules.join("\n")}` : undefined,
            hint: [
              ...(entry?.address || own.length ? [`vm switch address ${sw} none`] : []),
              ...(natRules.length
                ? ["remove those nat rules from /etc/pf.conf, then: pfctl -f /etc/pf.conf"]
                : []),
            ].join("; "),
          },
        ),
      );
    }
  }

  // 2. The host's address on the bridge, not on a member.
  if (interfaces) {
    if (!hostIf || !hostAddress) {
      out.push(
        diag.info(
          "bhyve.l2-host-address",
          `the host has no address in ${payload.subnet}: it reaches the LoadBalancer addresses through a router`,
          at,
        ),
      );
    } else if (bridge && hostIf.name === bridge.name) {
      out.push(
        diag.ok(
          "bhyve.l2-host-address",
          `the host's address ${hostAddress.address} is on the bridge ${bridge.name}`,
          at,
        ),
      );
    } else if (bridge && onSwitch(hostIf.name)) {
      out.push(
        diag.warn(
          "bhyve.l2-address-on-member",
          freebsd15
            ? `the host's address ${hostAddress.address} is on ${hostIf.name}, a member of ${bridge.name}: FreeBSD 15 allows that only while net.link.bridge.member_ifaddrs=1, which FreeBSD 16 removes`
            : `the host's address ${hostAddress.address} is on ${hostIf.name}, a member of ${bridge.name}, not on the bridge: bridge(4) wants it on the bridge, and FreeBSD 15 refuses it on a member`,
          { ...at, hint: moveAddressFix(facts, where, hostIf.name, hostAddress, Boolean(entry)) },
        ),
      );
    } else {
      out.push(
        diag.ok(
          "bhyve.l2-host-address",
          `the host's address ${hostAddress.address} is on ${hostIf.name}, which is not a member of switch ${sw}`,
          at,
        ),
      );
    }
  }

  // 3. No packet filter on the bridged traffic.
  const sysctl = facts.sysctl;
  if (sysctl?.has("net.link.bridge.pfil_member")) {
    const on = (name: string) => sysctl.get(name) === "1";
    const pfil = ["net.link.bridge.pfil_member", "net.link.bridge.pfil_bridge"].filter(on);
    const ipfw = on("net.inet.ip.fw.enable");
    const filters: string[] = [];
    if (facts.pf === "enabled" && pfil.length) filters.push("pf");
    if (ipfw && (pfil.length || on("net.link.bridge.ipfw"))) filters.push("ipfw");
    if (filters.length) {
      const settings = [...pfil, ...(ipfw && on("net.link.bridge.ipfw") ? ["net.link.bridge.ipfw"] : [])];
      const off = settings.map((s) => `${s}=0`);
      out.push(
        diag.warn(
          "bhyve.l2-filtered",
          `${filters.join(" and ")} ${filters.length > 1 ? "filter" : "filters"} the traffic bridged to the nodes (${settings.map((s) => `${s}=1`).join(", ")}): unless the rules pass it, the LAN does not reach the LoadBalancer addresses`,
          {
            ...at,
            detail:
              "bridge(4) PACKET FILTERING: bridged packets pass the filter inbound on the member they arrive on, on the bridge and outbound on the member they leave by.",
            hint: `sysctl ${off.join(" ")} && printf '${off.join("\\n")}\\n' >> /etc/sysctl.conf${filters.includes("pf") && bridgeName ? `; or let pf pass the switch: add "set skip on ${bridgeName}" to /etc/pf.conf, then pfctl -f /etc/pf.conf` : ""}`,
          },
        ),
      );
    } else if (facts.pf !== undefined) {
      // Whether pf is on is not known when pfctl failed: no finding is made of it either way.
      out.push(
        diag.ok(
          "bhyve.l2-unfiltered",
          facts.pf === "enabled" || ipfw
            ? "the packet filter does not see bridged traffic (net.link.bridge.pfil_member=0, pfil_bridge=0)"
            : "no packet filter is enabled on the host",
          at,
        ),
      );
    }
  }

  // 4. No TSO or LRO on the bridge's NICs.
  for (const member of bridge ? physical : []) {
    const caps = (interfaces?.get(member)?.options ?? []).filter((c) => OFFLOADS.includes(c));
    if (caps.length) {
      const configured = facts.rc.get(`ifconfig_${member}`);
      const keep = configured && !/-tso|-lro/.test(configured) ? `${configured} ` : "up ";
      out.push(
        diag.warn(
          "bhyve.l2-offload",
          `${member}, on switch ${sw}, has ${caps.join(", ")} on: large transfers through the bridge stall while ping works`,
          {
            ...at,
            hint: `ifconfig ${member} -tso -lro && sysrc ifconfig_${member}="${keep}-tso -lro"`,
          },
        ),
      );
    } else if (interfaces?.has(member)) {
      out.push(diag.ok("bhyve.l2-offload", `${member} has neither TSO nor LRO on`, at));
    }
  }
  return out;
}

export async function l2HostCheck(
  ctx: PluginContext<BhyveOptions>,
  payload: HookPayload<"lb:l2-host">,
): Promise<Diagnostic[]> {
  const facts = await readL2Facts(ctx.host, ctx.options);
  return l2Diagnostics(facts, ctx.options, payload, ctx.host.name);
}
