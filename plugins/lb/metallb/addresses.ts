/**
 * Address pools against the lab's network: pure functions over the cluster file and, for check,
 * what the cluster holds. A pool address is what MetalLB's ParseCIDR takes (metallb/metallb
 * internal/config/config.go at v0.16.1): a CIDR, or `start-end` with blanks allowed around the dash.
 */
import {
  type Cluster,
  type Diagnostic,
  diag,
  formatIpv4,
  type KubeObject,
  parseCidr,
  parseIpv4,
} from "kubehyve";
import { announcedPools, type MetallbOptions } from "./options.ts";

export interface Range {
  first: number;
  last: number;
}

export const showRange = (r: Range) =>
  r.first === r.last ? formatIpv4(r.first) : `${formatIpv4(r.first)}-${formatIpv4(r.last)}`;

/**
 * Go's strings.TrimSpace, which MetalLB's ParseCIDR trims each end of a range with: it trims what
 * unicode.IsSpace calls space (Unicode's White_Space: NEL and the no-break spaces, but not the byte
 * order mark that JavaScript's trim() also removes).
 */
const GO_SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const GO_TRIM = new RegExp(`^${GO_SPACE}+|${GO_SPACE}+$`, "g");
const trimSpace = (s: string) => s.replace(GO_TRIM, "");

/**
 * Go's strings.SplitN(s, "-", 2): the text before the first dash and all of the rest (JavaScript's
 * split("-", 2) drops what follows a second dash).
 */
function splitRange(text: string): [string, string] {
  const i = text.indexOf("-");
  return [text.slice(0, i), text.slice(i + 1)];
}

/** A pool address as a range, or what is wrong with it (MetalLB's messages where it has one). */
export function parsePoolAddress(text: string): Range | { error: string; hint?: string } {
  if (!text.includes("-")) {
    const m = /^([\d.]+)\/(\d{1,2})$/.exec(text);
    const ip = m ? parseIpv4(m[1]!) : undefined;
    if (!m || ip === undefined || Number(m[2]) > 32)
      return {
        error: `invalid CIDR "${text}"`,
        hint: "write a CIDR such as 192.168.1.240/28 or a range such as 192.168.1.240-192.168.1.250",
      };
    const size = 2 ** (32 - Number(m[2]));
    const first = Math.floor(ip / size) * size;
    if (first !== ip) {
      const meant = `${formatIpv4(first)}/${m[2]}`;
      return {
        error: `${text} is not the first address of its block: MetalLB would hand out all of ${meant}`,
        hint: `write ${meant}, or a range such as ${formatIpv4(ip)}-${formatIpv4(first + size - 1)}`,
      };
    }
    return { first, last: first + size - 1 };
  }
  const [a, b] = splitRange(text);
  const first = parseIpv4(trimSpace(a));
  if (first === undefined) return { error: `invalid IP range "${text}": invalid start IP "${a}"` };
  const last = parseIpv4(trimSpace(b));
  if (last === undefined) return { error: `invalid IP range "${text}": invalid end IP "${b}"` };
  if (first > last)
    return {
      error: `invalid IP range "${text}": start IP "${trimSpace(a)}" is after the end IP "${trimSpace(b)}"`,
    };
  return { first, last };
}

const overlaps = (a: Range, b: Range) => a.first <= b.last && b.first <= a.last;
const inside = (a: Range, outer: Range) => a.first >= outer.first && a.last <= outer.last;
const holds = (r: Range, ip: number | undefined) => ip !== undefined && ip >= r.first && ip <= r.last;

/** The ranges of each pool that parse, with where they are in the cluster file. */
export function poolRanges(
  options: MetallbOptions,
): { pool: string; range: Range; path: string; text: string }[] {
  const out: { pool: string; range: Range; path: string; text: string }[] = [];
  options.pools.forEach((pool, i) => {
    pool.addresses.forEach((text, j) => {
      const r = parsePoolAddress(text);
      if ("first" in r)
        out.push({ pool: pool.name, range: r, path: `stages.lb.pools[${i}].addresses[${j}]`, text });
    });
  });
  return out;
}

/**
 * The rules a cluster file alone decides: every address parses, lies in the node subnet (not its
 * network or broadcast address), and is clear of the nodes, the gateway, the DNS servers, the
 * router's DHCP range and the other pools; pool names are unique and the L2 pools exist.
 */
export function validatePools(cluster: Cluster, options: MetallbOptions): Diagnostic[] {
  const found: Diagnostic[] = [];
  const net = cluster.network;
  const subnet = parseCidr(net.subnet);
  const subnetRange = subnet && {
    first: subnet.network,
    last: subnet.network + 2 ** (32 - subnet.prefix) - 1,
  };
  const names = new Set<string>();
  options.pools.forEach((pool, i) => {
    if (names.has(pool.name))
      found.push(
        diag.error("metallb.pool-name-duplicate", `two pools are named ${pool.name}`, {
          hint: "give every pool its own name",
          path: `stages.lb.pools[${i}].name`,
        }),
      );
    names.add(pool.name);
    pool.addresses.forEach((text, j) => {
      const r = parsePoolAddress(text);
      if (!("first" in r))
        found.push(
          diag.error("metallb.pool-address-invalid", `pool ${pool.name}: ${r.error}`, {
            hint: r.hint,
            path: `stages.lb.pools[${i}].addresses[${j}]`,
          }),
        );
    });
  });
  const ranges = poolRanges(options);
  const dhcp = net.dhcpRange && {
    first: parseIpv4(net.dhcpRange.start)!,
    last: parseIpv4(net.dhcpRange.end)!,
  };
  for (const { pool, range, path, text } of ranges) {
    const at = `pool ${pool}: ${text}`;
    if (subnetRange && !inside(range, subnetRange)) {
      found.push(
        diag.error("metallb.pool-outside-subnet", `${at} lies outside the node subnet ${net.subnet}`, {
          detail:
            "In layer 2 mode a speaker answers ARP for an address on the nodes' own LAN; an address of another network is assigned but nobody can reach it.",
          hint: `use free addresses of ${net.subnet}`,
          path,
        }),
      );
      continue;
    }
    if (subnetRange && (holds(range, subnetRange.first) || holds(range, subnetRange.last)))
      found.push(
        diag.error(
          "metallb.pool-subnet-edge",
          `${at} holds the network or broadcast address of ${net.subnet}`,
          {
            hint: `keep the pool within ${formatIpv4(subnetRange.first + 1)}-${formatIpv4(subnetRange.last - 1)}`,
            path,
          },
        ),
      );
    for (const node of cluster.nodes)
      if (holds(range, parseIpv4(node.address)))
        found.push(
          diag.error(
            "metallb.pool-overlaps-node",
            `${at} holds ${node.address}, the address of node ${node.name}`,
            {
              hint: "move the pool to addresses no machine on the LAN uses",
              path,
            },
          ),
        );
    if (holds(range, parseIpv4(net.gateway)))
      found.push(
        diag.error("metallb.pool-overlaps-gateway", `${at} holds ${net.gateway}, the gateway`, {
          hint: "move the pool off the router's address",
          path,
        }),
      );
    for (const dns of net.dns)
      if (holds(range, parseIpv4(dns)))
        found.push(
          diag.error("metallb.pool-overlaps-dns", `${at} holds ${dns}, a DNS server of the network`, {
            hint: "move the pool off the DNS server's address",
            path,
          }),
        );
    if (dhcp && overlaps(range, dhcp))
      found.push(
        diag.error(
          "metallb.pool-overlaps-dhcp",
          `${at} overlaps the router's DHCP range ${net.dhcpRange!.start}-${net.dhcpRange!.end}`,
          {
            detail:
              "The router would lease the same addresses to other machines, and two devices would answer ARP for one address.",
            hint: "move the pool outside the DHCP range, or shrink that range on the router",
            path,
          },
        ),
      );
  }
  ranges.forEach((a, i) => {
    for (const b of ranges.slice(i + 1))
      if (overlaps(a.range, b.range))
        found.push(
          diag.error(
            "metallb.pools-overlap",
            `${a.text} (pool ${a.pool}) and ${b.text} (pool ${b.pool}) overlap`,
            {
              detail: "MetalLB refuses a configuration whose pools overlap, all of it.",
              hint: "make the ranges disjoint",
              path: b.path,
            },
          ),
        );
  });
  if (!net.dhcpRange)
    found.push(
      diag.warn(
        "metallb.dhcp-range-unknown",
        "the cluster file does not say which addresses the router's DHCP server hands out",
        {
          hint: "set network.dhcpRange, so that the pools are checked against it",
          path: "network.dhcpRange",
        },
      ),
    );
  (options.l2.pools ?? []).forEach((p, k) => {
    if (!names.has(p))
      found.push(
        diag.error(
          "metallb.l2-unknown-pool",
          `the L2 advertisement names pool ${p}, which is not among the pools`,
          {
            hint: `pools here: ${[...names].join(", ")}`,
            path: `stages.lb.l2.pools[${k}]`,
          },
        ),
      );
  });
  return found;
}

function selects(
  selector: {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: string; values?: string[] }[];
  },
  labels: Record<string, string> | undefined,
): boolean {
  const l = labels ?? {};
  return (
    Object.entries(selector.matchLabels ?? {}).every(([k, v]) => l[k] === v) &&
    (selector.matchExpressions ?? []).every((e) => {
      const v = l[e.key];
      switch (e.operator) {
        case "In":
          return v !== undefined && (e.values ?? []).includes(v);
        case "NotIn":
          return v === undefined || !(e.values ?? []).includes(v);
        case "Exists":
          return v !== undefined;
        case "DoesNotExist":
          return v === undefined;
        default:
          return false;
      }
    })
  );
}

/**
 * Whether an L2Advertisement selects a pool: by name in ipAddressPools, by label in
 * ipAddressPoolSelectors, or, with neither, every pool (config.go setL2AdvertisementsToPools).
 */
export function advertisementSelects(ad: KubeObject, pool: KubeObject): boolean {
  const names: unknown = ad.spec?.ipAddressPools ?? [];
  const selectors: unknown = ad.spec?.ipAddressPoolSelectors ?? [];
  // MetalLB's CRD schema makes both lists; one that is not (a cluster without the schema) is read
  // as selecting nothing, so that a pool it was meant for is reported as unannounced, not hidden.
  if (!isList(names, (n) => typeof n === "string") || !isList(selectors, isRecord)) return false;
  if (names.length === 0 && selectors.length === 0) return true;
  return (
    names.includes(pool.metadata.name) ||
    selectors.some((s) => selects(s as Parameters<typeof selects>[0], pool.metadata.labels))
  );
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isList<T>(x: unknown, item: (y: unknown) => y is T): x is T[];
function isList(x: unknown, item: (y: unknown) => boolean): x is unknown[];
function isList(x: unknown, item: (y: unknown) => boolean): boolean {
  return Array.isArray(x) && x.every(item);
}

export const EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers";

/**
 * The rules that need the cluster: pools of others that overlap ours, a node address in a pool,
 * a pool no L2Advertisement (ours or another) selects, and nodes MetalLB will not announce from.
 */
export function checkAgainstCluster(input: {
  options: MetallbOptions;
  kubeconfigPath: string;
  ours: { pools: KubeObject[]; advertisement: KubeObject };
  livePools: KubeObject[];
  liveAdvertisements: KubeObject[];
  nodes: KubeObject[];
  isOurs: (o: KubeObject) => boolean;
}): Diagnostic[] {
  const found: Diagnostic[] = [];
  const ours = poolRanges(input.options);
  for (const live of input.livePools.filter((p) => !input.isOurs(p))) {
    const addresses: unknown = live.spec?.addresses ?? [];
    for (const text of Array.isArray(addresses) ? addresses.filter((a) => typeof a === "string") : []) {
      const r = parsePoolAddress(text);
      if (!("first" in r)) continue;
      for (const o of ours.filter((x) => overlaps(x.range, r)))
        found.push(
          diag.error(
            "metallb.pool-overlaps-foreign",
            `pool ${o.pool} (${o.text}) overlaps ${text} of IPAddressPool ${live.metadata.namespace}/${live.metadata.name}, which is not this stage's`,
            {
              detail: "MetalLB would refuse its whole configuration.",
              hint: "make the ranges disjoint",
              path: o.path,
            },
          ),
        );
    }
  }
  for (const node of input.nodes) {
    for (const a of (node.status?.addresses ?? []) as { type?: string; address?: string }[]) {
      if (a.type !== "InternalIP" && a.type !== "ExternalIP") continue;
      for (const o of ours.filter((x) => holds(x.range, parseIpv4(a.address ?? ""))))
        found.push(
          diag.error(
            "metallb.pool-overlaps-node",
            `pool ${o.pool} (${o.text}) holds ${a.address}, an address of node ${node.metadata.name}`,
            {
              hint: "move the pool to addresses no machine on the LAN uses",
              path: o.path,
            },
          ),
        );
    }
  }
  const ads = [input.ours.advertisement, ...input.liveAdvertisements.filter((a) => !input.isOurs(a))];
  input.ours.pools.forEach((pool) => {
    if (ads.some((ad) => advertisementSelects(ad, pool))) return;
    found.push(
      diag.error(
        "metallb.pool-not-announced",
        `pool ${pool.metadata.name} would hand out addresses that are never announced: no L2Advertisement selects it`,
        {
          hint: announcedPools(input.options).length
            ? `add ${pool.metadata.name} to stages.lb.l2.pools, or leave l2.pools out to announce every pool`
            : "leave stages.lb.l2.pools out to announce every pool",
          path: "stages.lb.l2.pools",
        },
      ),
    );
  });
  const excluded = input.nodes.filter((n) => n.metadata.labels?.[EXCLUDE_LABEL] !== undefined);
  if (input.nodes.length && excluded.length === input.nodes.length) {
    found.push(
      diag.warn(
        "metallb.all-nodes-excluded",
        `every node carries ${EXCLUDE_LABEL}: MetalLB announces from none of them, so no LoadBalancer address answers`,
        {
          detail:
            "kubeadm puts the label on control planes; a lab of control planes only has no node left to announce from (MetalLB's troubleshooting guide).",
          hint: `kubectl --kubeconfig ${input.kubeconfigPath} label node ${excluded.map((n) => n.metadata.name).join(" ")} ${EXCLUDE_LABEL}-   (or add a worker node)`,
        },
      ),
    );
  }
  return found;
}
