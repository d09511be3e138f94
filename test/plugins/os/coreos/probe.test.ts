import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { totalmem } from "node:os";
import {
  isFedoraCoreos,
  parseIpAddresses,
  parseMemTotal,
  parseOsRelease,
  parseTimedatectl,
  splitProbe,
} from "../../../../plugins/os/coreos/probe.ts";
import { FCOS_OS_RELEASE, IP_ADDR, TIMEDATECTL_SHOW } from "./samples.ts";

describe("probe parsers", () => {
  test("recognises Fedora CoreOS by ID and VARIANT_ID, quotes removed", () => {
    const os = parseOsRelease(FCOS_OS_RELEASE);
    expect(os.PRETTY_NAME).toBe("Fedora CoreOS 41.20241109.3.0");
    expect(os.OSTREE_VERSION).toBe("41.20241109.3.0");
    expect(os.VERSION_CODENAME).toBe("");
    expect(isFedoraCoreos(os)).toBe(true);
  });

  test("plain Fedora and the machine running the tests are not Fedora CoreOS", () => {
    const plain = FCOS_OS_RELEASE.replace('VARIANT="CoreOS"\nVARIANT_ID=coreos\n', "");
    expect(isFedoraCoreos(parseOsRelease(plain))).toBe(false);
    expect(isFedoraCoreos(parseOsRelease(readFileSync("/etc/os-release", "utf8")))).toBe(false);
  });

  test("reads interface addresses with their prefix length", () => {
    expect(parseIpAddresses(IP_ADDR)).toEqual([
      { ifname: "lo", address: "127.0.0.1", prefix: 8 },
      { ifname: "eth0", address: "192.0.2.2", prefix: 24 },
    ]);
  });

  test("reads NTPSynchronized from timedatectl show", () => {
    expect(parseTimedatectl(TIMEDATECTL_SHOW).NTPSynchronized).toBe("yes");
    expect(
      parseTimedatectl(TIMEDATECTL_SHOW.replace("NTPSynchronized=yes", "NTPSynchronized=no")).NTPSynchronized,
    ).toBe("no");
  });

  test("reads MemTotal of this machine's /proc/meminfo as the kernel reports it", () => {
    // libuv's total memory is MemTotal of /proc/meminfo too: two readings of one fact.
    expect(parseMemTotal(readFileSync("/proc/meminfo", "utf8"))).toBe(totalmem());
    expect(parseMemTotal("MemFree: 12 kB\n")).toBeUndefined();
  });

  test("splits the probe output into its sections and ignores unknown markers", () => {
    const sections = splitProbe("@@hostname\ncp1\n@@bogus\nx\n@@meminfo\nMemTotal: 1 kB\n@@end\n");
    expect(sections).toEqual({ hostname: "cp1", meminfo: "MemTotal: 1 kB" });
  });
});
