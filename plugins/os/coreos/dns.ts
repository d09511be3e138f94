/**
 * A minimal DNS client (RFC 1035 over UDP, A records only) so verify can ask the lab's DNS server
 * directly, on any port: the records live on the router's dnsmasq, and asking it names exactly the
 * line that is missing there.
 */
import { createSocket } from "node:dgram";

export const TYPE_A = 1;
const CLASS_IN = 1;

export function buildQuery(id: number, name: string): Uint8Array {
  const labels = name.replace(/\.$/, "").split(".");
  const parts: number[] = [id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
  for (const label of labels) {
    const bytes = new TextEncoder().encode(label);
    if (bytes.length === 0 || bytes.length > 63) throw new Error(`${name} is not a valid DNS name`);
    parts.push(bytes.length, ...bytes);
  }
  parts.push(0, 0, TYPE_A, 0, CLASS_IN);
  return Uint8Array.from(parts);
}

export interface DnsAnswer {
  id: number;
  /** RCODE: 0 no error, 3 NXDOMAIN, … */
  rcode: number;
  addresses: string[];
}

function skipName(buf: Uint8Array, offset: number): number {
  let at = offset;
  for (let guard = 0; guard < 128; guard++) {
    const len = buf[at];
    if (len === undefined) throw new Error("truncated DNS name");
    if (len === 0) return at + 1;
    if ((len & 0xc0) === 0xc0) return at + 2;
    at += len + 1;
  }
  throw new Error("DNS name too long");
}

export function parseResponse(buf: Uint8Array): DnsAnswer {
  if (buf.length < 12) throw new Error("DNS response shorter than its header");
  const u16 = (at: number) => {
    if (at + 1 >= buf.length) throw new Error("truncated DNS response");
    return (buf[at]! << 8) | buf[at + 1]!;
  };
  const id = u16(0);
  const rcode = buf[3]! & 0x0f;
  const qd = u16(4);
  const an = u16(6);
  let at = 12;
  for (let i = 0; i < qd; i++) at = skipName(buf, at) + 4;
  const addresses: string[] = [];
  for (let i = 0; i < an; i++) {
    at = skipName(buf, at);
    const type = u16(at);
    const klass = u16(at + 2);
    const rdlength = u16(at + 8);
    at += 10;
    if (at + rdlength > buf.length) throw new Error("truncated DNS record");
    if (type === TYPE_A && klass === CLASS_IN && rdlength === 4)
      addresses.push(Array.from(buf.subarray(at, at + 4)).join("."));
    at += rdlength;
  }
  return { id, rcode, addresses };
}

/** The A records of `name` as `server:port` answers them; throws on timeout or a malformed answer. */
export async function resolveA(
  server: string,
  port: number,
  name: string,
  timeoutMs = 3000,
): Promise<DnsAnswer> {
  const id = Math.floor(Math.random() * 0x10000);
  const query = buildQuery(id, name);
  const socket = createSocket(server.includes(":") ? "udp6" : "udp4");
  try {
    return await new Promise<DnsAnswer>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no answer from ${server}:${port} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      socket.on("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`DNS server ${server}:${port}: ${error.message}`));
      });
      socket.on("message", (msg) => {
        try {
          const answer = parseResponse(msg);
          // Not ours (a late answer to an earlier query): keep waiting.
          if (answer.id !== id) return;
          clearTimeout(timer);
          resolve(answer);
        } catch (error) {
          clearTimeout(timer);
          reject(new Error(`DNS server ${server}:${port}: ${(error as Error).message}`));
        }
      });
      socket.send(query, port, server);
    });
  } finally {
    socket.close();
  }
}
