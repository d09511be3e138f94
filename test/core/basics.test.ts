import { describe, expect, test } from "bun:test";
import { jsonReporter } from "../../src/cli/reporters.ts";
import { cidrContains, cidrsOverlap, formatIpv4, parseCidr, parseIpv4 } from "../../src/core/ipv4.ts";
import { formatSize, GiB, MiB, parseSize } from "../../src/core/units.ts";
import { mapLimit } from "../../src/lib/concurrency.ts";

describe("sizes", () => {
  test.each([
    ["4GiB", 4 * GiB],
    ["4G", 4 * GiB],
    ["4GB", 4_000_000_000],
    ["512MiB", 512 * MiB],
    ["1.5TiB", 1.5 * 1024 * GiB],
    [" 20 GiB ", 20 * GiB],
    ["1024", 1024],
    [2048, 2048],
  ] as const)("%p is %d bytes", (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  test.each(["", "lots", "-1G", "4 GiBs", "1e9", "4XB", Number.NaN, -5])("%p is not a size", (input) => {
    expect(parseSize(input as string | number)).toBeUndefined();
  });

  test("formats in binary units", () => {
    expect(formatSize(4 * GiB)).toBe("4 GiB");
    expect(formatSize(1536 * MiB)).toBe("1.5 GiB");
    expect(formatSize(512)).toBe("512 B");
  });
});

describe("IPv4", () => {
  test("parses and formats addresses", () => {
    expect(parseIpv4("192.168.1.21")).toBe(0xc0a80115);
    expect(formatIpv4(0xc0a80115)).toBe("192.168.1.21");
    for (const bad of ["256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "a.b.c.d", ""])
      expect(parseIpv4(bad)).toBeUndefined();
  });

  test("knows containment and overlap of blocks", () => {
    const lan = parseCidr("192.168.1.0/24")!;
    expect(cidrContains(lan, parseIpv4("192.168.1.255")!)).toBe(true);
    expect(cidrContains(lan, parseIpv4("192.168.2.0")!)).toBe(false);
    expect(cidrsOverlap(lan, parseCidr("192.168.0.0/16")!)).toBe(true);
    expect(cidrsOverlap(lan, parseCidr("10.233.64.0/18")!)).toBe(false);
    expect(parseCidr("192.168.1.1/24")).toBeUndefined();
    expect(parseCidr("0.0.0.0/0")).toEqual({ network: 0, prefix: 0 });
  });
});

describe("mapLimit", () => {
  test("never runs more than the limit at once and keeps the order of results", async () => {
    let running = 0;
    let peak = 0;
    const results = await mapLimit([50, 10, 30, 20, 40, 5], 2, async (ms, i) => {
      running++;
      peak = Math.max(peak, running);
      await Bun.sleep(ms);
      running--;
      return i * 10;
    });
    expect(results).toEqual([0, 10, 20, 30, 40, 50]);
    expect(peak).toBe(2);
  });

  test("stops starting new work after a failure and rethrows it", async () => {
    const started: number[] = [];
    const promise = mapLimit([1, 2, 3, 4, 5], 1, async (n) => {
      started.push(n);
      if (n === 2) throw new Error("two failed");
      return n;
    });
    await expect(promise).rejects.toThrow("two failed");
    expect(started).toEqual([1, 2]);
  });

  test("stops when the signal is aborted", async () => {
    const controller = new AbortController();
    const done: number[] = [];
    const promise = mapLimit(
      [1, 2, 3],
      1,
      async (n) => {
        done.push(n);
        controller.abort(new Error("stop"));
        return n;
      },
      controller.signal,
    );
    await expect(promise).rejects.toThrow("stop");
    expect(done).toEqual([1]);
  });
});

describe("the JSON reporter", () => {
  test("writes one versioned object per line and leaves debug lines to the log file", () => {
    const lines: string[] = [];
    const reporter = jsonReporter(undefined, (l) => lines.push(l));
    reporter.emit({ type: "phase.start", stage: "os", plugin: "os/coreos", phase: "check" });
    reporter.emit({ type: "log", level: "debug", message: "noise" });
    reporter.emit({
      type: "diagnostic",
      stage: "os",
      code: "coreos.dns",
      severity: "error",
      summary: "w1 does not resolve",
      hint: "add it",
    });
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => l.endsWith("\n") && !l.slice(0, -1).includes("\n"))).toBe(true);
    expect(JSON.parse(lines[1]!)).toMatchObject({
      v: 1,
      type: "diagnostic",
      stage: "os",
      code: "coreos.dns",
      severity: "error",
    });
    expect(Date.parse(JSON.parse(lines[0]!).ts)).not.toBeNaN();
  });
});
