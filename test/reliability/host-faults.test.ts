/**
 * Host commands that hang or fail once, on the simulated FreeBSD host: a hung command is killed at
 * its limit and fails the phase naming the command and the limit, leaving nothing running; a
 * command that fails once fails the phase with its own words, and the next `up` converges.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFreebsdHost, type FreebsdHost } from "../lab/freebsd/host.ts";
import { endOf, engineOn, eventually, leftovers, processesOf } from "./lab.ts";

let host: FreebsdHost;
let stateDir: string;
beforeEach(() => {
  host = createFreebsdHost({ stopDelayMs: 100 });
  stateDir = mkdtempSync(join(tmpdir(), "kubehyve-faults-"));
});
afterEach(() => {
  for (const pid of processesOf(host)) process.kill(pid, "SIGKILL");
  host.cleanup();
  rmSync(stateDir, { recursive: true, force: true });
});

const TIMEOUTS = { read: 2000, change: 3000, long: 60_000 };

describe("a hung host command", () => {
  test.each([
    [
      "kldstat",
      ["kldstat"],
      "check",
      /`kldstat -q -m vmm` did not finish within 2 s \(the limit for a query\)/,
      false,
    ],
    [
      "vm list",
      ["vm", "list"],
      "check",
      /`vm list` did not finish within 2 s \(the limit for a query\)/,
      true,
    ],
    [
      "sysrc",
      ["sysrc", "vm_enable=YES"],
      "apply",
      /`sysrc vm_enable=YES vm_dir=zfs:zroot\/vm` did not finish within 3 s \(the limit for a change\)/,
      false,
    ],
    [
      "vm create",
      ["vm", "create"],
      "apply",
      /`vm create -t kubehyve-[0-9a-f-]{36}-cp1 cp1` did not finish within 3 s \(the limit for a change\)/,
      true,
    ],
    [
      "vm start",
      ["vm", "start"],
      "apply",
      /`vm start cp1` did not finish within 3 s \(the limit for a change\)/,
      true,
    ],
  ] as const)(
    "%s is killed at its limit and fails the phase, naming it",
    async (_name, argv, phase, message, prepared) => {
      if (prepared) host.prepareVmBhyve();
      host.inject({ kind: "hang", command: argv[0], args: [...argv.slice(1)] });
      const started = Date.now();
      const run = engineOn(host, stateDir, { timeouts: TIMEOUTS });
      const result = await run.promise;
      expect(result.exitCode).toBe(1);
      expect(Date.now() - started).toBeLessThan(30_000);
      const end = endOf(run);
      expect(end.message).toStartWith(`hypervisor ${phase} failed: hv1: `);
      expect(end.message).toMatch(message);
      // Killed with what it started, and nothing of ours is left on the host.
      expect(await eventually(() => processesOf(host).length === 0)).toBe(true);
      expect(leftovers(host)).toEqual([]);
    },
    60_000,
  );
});

describe("a host command that fails once", () => {
  test("fails the phase with the command and its own words, and the next up converges", async () => {
    host.prepareVmBhyve();
    host.inject({
      kind: "fail-once",
      command: "vm",
      args: ["create"],
      code: 1,
      stderr: "/usr/local/sbin/vm: unable to create zvol zroot/vm/cp1/disk0",
    });
    const first = engineOn(host, stateDir);
    expect((await first.promise).exitCode).toBe(1);
    // The template is named after the cluster's identity, which marks what this cluster made.
    expect(endOf(first).message).toMatch(
      /^hypervisor apply failed: hv1: `vm create -t kubehyve-[0-9a-f-]{36}-cp1 cp1` exited 1: \/usr\/local\/sbin\/vm: unable to create zvol zroot\/vm\/cp1\/disk0$/,
    );
    expect(leftovers(host)).toEqual([]);
    expect(host.vm("cp1").exists).toBe(false);

    const again = engineOn(host, stateDir);
    expect((await again.promise).exitCode).toBe(0);
    expect(host.vm("cp1").running).toBe(true);
    const creates = host.log().filter((a) => a[0] === "vm" && a[1] === "create");
    expect(creates).toHaveLength(2); // the failed one and the one that worked
    expect(leftovers(host)).toEqual([]);
  }, 60_000);
});
