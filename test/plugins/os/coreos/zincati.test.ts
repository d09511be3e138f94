import { describe, expect, test } from "bun:test";
import { insideWindow, parseFinalizations, zincatiReboots } from "../../../../plugins/os/coreos/zincati.ts";
import { labCluster } from "./lab.ts";

const node = labCluster().nodes[0]!;
const sunday = {
  strategy: "periodic" as const,
  days: ["Sun" as const],
  startTime: "23:30",
  lengthMinutes: 60,
};

describe("Zincati's update window", () => {
  test("a window runs past midnight and past Sunday into Monday", () => {
    expect(insideWindow(Date.parse("2026-11-29T23:45:00Z"), sunday, "UTC")).toBe(true);
    expect(insideWindow(Date.parse("2026-11-30T00:15:00Z"), sunday, "UTC")).toBe(true);
    expect(insideWindow(Date.parse("2026-11-30T00:30:00Z"), sunday, "UTC")).toBe(false);
    expect(insideWindow(Date.parse("2026-11-29T23:29:00Z"), sunday, "UTC")).toBe(false);
  });

  test("is counted on the wall clock of its time zone", () => {
    // 22:45 UTC on Sunday is 23:45 in Berlin (CET, UTC+1, in November).
    expect(insideWindow(Date.parse("2026-11-29T22:45:00Z"), sunday, "Europe/Berlin")).toBe(true);
    expect(insideWindow(Date.parse("2026-11-29T22:45:00Z"), sunday, "UTC")).toBe(false);
  });

  test("reads only Zincati's finalizing lines, with their times", () => {
    const journal = [
      "1764460800.000000 cp1 zincati[1187]: [INFO  zincati::update_agent::actor] new release '41.2' selected, proceeding to stage it",
      "1764460860.250000 cp1 zincati[1187]: [INFO  zincati::update_agent::actor] staged deployment '41.2' available, proceeding to finalize it",
    ].join("\n");
    expect(parseFinalizations(journal)).toEqual([{ at: 1764460860250, version: "41.2" }]);
  });

  test("with updates off any finalization is a warning; with the immediate strategy none is", () => {
    const journal =
      "1764460860.250000 cp1 zincati[1187]: [INFO  zincati::update_agent::actor] staged deployment '41.2' available, proceeding to finalize it\n";
    expect(zincatiReboots(node, { strategy: "off" }, journal, undefined)?.summary).toStartWith(
      "Zincati rebooted cp1 to finalize an update although updates are off",
    );
    expect(zincatiReboots(node, { strategy: "immediate" }, journal, undefined)).toBeUndefined();
    // localtime: the node's own zone, from timedatectl.
    const berlin = { ...sunday, timeZone: "localtime" };
    const at = (Date.parse("2026-11-29T22:45:00Z") / 1000).toFixed(6);
    const line = `${at} cp1 zincati[1]: [INFO  zincati::update_agent::actor] staged deployment '41.3' available, proceeding to finalize it\n`;
    expect(zincatiReboots(node, berlin, line, "Europe/Berlin")).toBeUndefined();
    expect(zincatiReboots(node, berlin, line, "UTC")?.code).toBe("coreos.zincati-reboot-outside-window");
  });
});
