import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { resolveA } from "../../src/lib/dns.ts";
import { type Dnsmasq, startDnsmasq } from "../lab/dnsmasq.ts";
import { have } from "../lab/prereq.ts";

describe.skipIf(!have("dnsmasq", "dnsmasq-base"))("resolveA against a real dnsmasq", () => {
  let dns: Dnsmasq;
  beforeAll(async () => {
    dns = await startDnsmasq({
      lines: [
        "host-record=cp1.lab.home.arpa,cp1,192.168.1.21",
        "host-record=multi.lab.home.arpa,192.168.1.30",
        "address=/multi.lab.home.arpa/192.168.1.31",
      ],
    });
  });
  afterAll(async () => {
    await dns?.stop();
  });

  test("answers the address of a host-record", async () => {
    const answer = await resolveA(dns.host, dns.port, "cp1.lab.home.arpa");
    expect(answer.problem).toBeUndefined();
    expect(answer.addresses).toEqual(["192.168.1.21"]);
    expect(await dns.waitForLog("query[A] cp1.lab.home.arpa")).toBe(true);
  });

  test("a name dnsmasq does not know has no address", async () => {
    const answer = await resolveA(dns.host, dns.port, "w9.lab.home.arpa");
    expect(answer.addresses).toEqual([]);
    // dnsmasq without upstream servers refuses names it does not know.
    expect(answer.problem).toBe("refuses the query");
  });

  test("a server that does not answer is an answer too, naming the port and the wait", async () => {
    expect(await resolveA("127.0.0.1", 9, "cp1.lab.home.arpa", 300)).toEqual({
      addresses: [],
      problem: "does not answer on port 9 within 300 ms",
    });
  });
});
