import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { buildQuery, parseResponse, resolveA } from "../../../../plugins/os/coreos/dns.ts";
import { type Dnsmasq, startDnsmasq } from "../../../lab/dnsmasq.ts";
import { have } from "../../../lab/prereq.ts";

describe("DNS wire format", () => {
  test("a query for cp1.lab.home.arpa is the RFC 1035 question with recursion desired", () => {
    const q = buildQuery(0x1234, "cp1.lab.home.arpa");
    expect(Array.from(q.subarray(0, 12))).toEqual([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    expect(new TextDecoder().decode(q.subarray(12, -4))).toBe("\x03cp1\x03lab\x04home\x04arpa\x00");
    expect(Array.from(q.subarray(-4))).toEqual([0, 1, 0, 1]);
  });

  test("refuses a name with an empty label", () => {
    expect(() => buildQuery(1, "cp1..lab")).toThrow("not a valid DNS name");
  });

  test("a truncated response is an error, not an empty answer", () => {
    expect(() => parseResponse(new Uint8Array([0, 1, 0x81, 0x80]))).toThrow("shorter than its header");
  });
});

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
    expect(answer.rcode).toBe(0);
    expect(answer.addresses).toEqual(["192.168.1.21"]);
    expect(await dns.waitForLog("query[A] cp1.lab.home.arpa")).toBe(true);
  });

  test("a name dnsmasq does not know has no address", async () => {
    const answer = await resolveA(dns.host, dns.port, "w9.lab.home.arpa");
    expect(answer.addresses).toEqual([]);
  });

  test("a server that does not answer times out with its address in the message", async () => {
    await expect(resolveA("127.0.0.1", 9, "cp1.lab.home.arpa", 300)).rejects.toThrow("127.0.0.1:9");
  });
});
