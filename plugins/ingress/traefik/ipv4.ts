/** IPv4 arithmetic for the fixed-address rules (dotted quads only, as the cluster file writes them). */

export function parseIpv4(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text.trim());
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  if (m.slice(1).some((p) => p.length > 1 && p.startsWith("0"))) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export interface Ipv4Range {
  first: number;
  last: number;
}

/** `a.b.c.d/n` to its first and last address; undefined when malformed. */
export function parseCidr(text: string): Ipv4Range | undefined {
  const [ip, bits, extra] = text.trim().split("/");
  if (extra !== undefined || ip === undefined || bits === undefined || !/^\d{1,2}$/.test(bits))
    return undefined;
  const base = parseIpv4(ip);
  const n = Number(bits);
  if (base === undefined || n > 32) return undefined;
  const mask = n === 0 ? 0 : (0xffffffff << (32 - n)) >>> 0;
  const first = (base & mask) >>> 0;
  return { first, last: (first | (~mask >>> 0)) >>> 0 };
}

/** A MetalLB pool entry: CIDR or `first-last` (metallb.io IPAddressPool spec.addresses). */
export function parsePool(text: string): Ipv4Range | undefined {
  if (text.includes("/")) return parseCidr(text);
  const [a, b, extra] = text.split("-").map((s) => s.trim());
  if (extra !== undefined || a === undefined || b === undefined) return undefined;
  const first = parseIpv4(a);
  const last = parseIpv4(b);
  if (first === undefined || last === undefined || last < first) return undefined;
  return { first, last };
}

export function inRange(address: string, range: Ipv4Range): boolean {
  const ip = parseIpv4(address);
  return ip !== undefined && ip >= range.first && ip <= range.last;
}

export function inCidr(address: string, cidr: string): boolean {
  const range = parseCidr(cidr);
  return range !== undefined && inRange(address, range);
}
