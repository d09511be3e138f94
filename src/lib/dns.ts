/**
 * Asks one DNS server, at a port of our choosing, for a name's A records. The runtime's resolver
 * (c-ares, through node:dns) does the protocol; this only turns its error codes into words a
 * finding can use. It never throws: a server that does not answer is an answer too.
 */
import { Resolver } from "node:dns/promises";

export interface DnsAnswer {
  addresses: string[];
  /** Why there is no address: the server's own answer, or none at all ("answers NXDOMAIN"). */
  problem?: string;
}

/** The A records of `name` as `server:port` answers them. */
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
    const code = (error as NodeJS.ErrnoException).code;
    const problem =
      code === "ENOTFOUND"
        ? "answers NXDOMAIN"
        : code === "ENODATA"
          ? "has no A record for it"
          : code === "EREFUSED"
            ? "refuses the query"
            : code === "ETIMEOUT" || code === "ECONNREFUSED"
              ? `does not answer on port ${port} within ${timeoutMs} ms`
              : `fails: ${(error as Error).message}`;
    return { addresses: [], problem };
  }
}
