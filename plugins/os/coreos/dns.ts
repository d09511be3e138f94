/**
 * Asks one DNS server, at a port of our choosing, for a name's A records. The runtime's resolver
 * (c-ares, through node:dns) does the protocol; this only turns its error codes into what verify
 * reports.
 */
import { Resolver } from "node:dns/promises";
import { KubehyveError } from "kubehyve";

export interface DnsAnswer {
  addresses: string[];
  /** Why there is no address, when there is none: the server's own answer. */
  status?: "NXDOMAIN" | "no A record" | "refused";
}

/** The A records of `name` as `server:port` answers them; throws when the server does not answer. */
export async function resolveA(
  server: string,
  port: number,
  name: string,
  timeoutMs = 3000,
): Promise<DnsAnswer> {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
  resolver.setServers([server.includes(":") ? `[${server}]:${port}` : `${server}:${port}`]);
  try {
    return { addresses: await resolver.resolve4(name) };
  } catch (error) {
    switch ((error as NodeJS.ErrnoException).code) {
      case "ENOTFOUND":
        return { addresses: [], status: "NXDOMAIN" };
      case "ENODATA":
        return { addresses: [], status: "no A record" };
      case "EREFUSED":
        return { addresses: [], status: "refused" };
      case "ETIMEOUT":
        throw new KubehyveError(`no answer from ${server}:${port} within ${timeoutMs} ms`);
      default:
        throw new KubehyveError(`DNS server ${server}:${port}: ${(error as Error).message}`);
    }
  }
}
