/**
 * The os stage beside the hypervisor stage, through the engine, on the simulated FreeBSD host:
 * bhyve reads each node's Ignition config at every start of its VM (bhyve(8) -f: the file is opened
 * when bhyve starts), so no run may leave a VM that exists without it. The image comes from a small
 * qcow2.xz served on loopback through the cache's mirror, built with the real xz and qemu-img.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bhyvePlugin } from "../../../../plugins/hypervisor/bhyve/index.ts";
import { parseBhyveOptions } from "../../../../plugins/hypervisor/bhyve/options.ts";
import coreos from "../../../../plugins/os/coreos/index.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";
import type { AnyPlugin } from "../../../../src/core/contract.ts";
import { type EngineRequest, runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import type { Target } from "../../../../src/targets/target.ts";
import { createFreebsdHost, type FreebsdHost, hostTarget } from "../../../lab/freebsd/host.ts";
import { type FileServer, serveFiles } from "../../../lab/http.ts";
import { have } from "../../../lab/prereq.ts";
import { coreosOptions, labCluster, ORACLES } from "./lab.ts";

const sha256 = (data: Uint8Array | string) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

function run(argv: string[]) {
  const proc = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${proc.stderr.toString()}`);
}

describe.skipIf(!have("qemu-img", "qemu-utils") || !have("xz", "xz-utils"))(
  "os/coreos beside hypervisor/bhyve on the simulated host",
  () => {
    let tmp: string;
    let server: FileServer;
    let host: FreebsdHost;
    let stateDir: string;
    /** For every `vm start`, `vm stop`, `vm poweroff` and `vm destroy`: which Ignition configs existed then. */
    let seenAtVmCommands: { argv: string[]; present: string[] }[];

    beforeAll(async () => {
      tmp = mkdtempSync(join(tmpdir(), "kubehyve-coreos-life-"));
      await Bun.write(join(tmp, "src.raw"), new Uint8Array(1024 * 1024).fill(7));
      run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", join(tmp, "src.raw"), join(tmp, "disk.qcow2")]);
      run(["xz", "-k", join(tmp, "disk.qcow2")]);
      const xz = await Bun.file(join(tmp, "disk.qcow2.xz")).bytes();
      const doc = JSON.parse(
        readFileSync(join(ORACLES, "releases/fcos/fedora-coreos-streams/streams/stable.json"), "utf8"),
      );
      const disk = doc.architectures.x86_64.artifacts.qemu.formats["qcow2.xz"].disk;
      disk.sha256 = sha256(xz);
      server = serveFiles({
        "/streams/stable.json": JSON.stringify(doc),
        [new URL(disk.location).pathname]: xz,
      });
    });
    afterAll(async () => {
      await server?.stop();
      rmSync(tmp, { recursive: true, force: true });
    });
    beforeEach(() => {
      host = createFreebsdHost({ stopDelayMs: 50 });
      stateDir = mkdtempSync(join(tmpdir(), "kubehyve-coreos-life-state-"));
      seenAtVmCommands = [];
    });
    afterEach(() => {
      host.cleanup();
      rmSync(stateDir, { recursive: true, force: true });
    });

    /** Each test brings a lab up and down on the simulated host: a few seconds on a busy machine. */
    const TEST_TIMEOUT_MS = 60_000;
    const ignitionOf = (node: string) => join(stateDir, "os", "ignition", `${node}.ign`);
    const nodes = labCluster().nodes.map((n) => n.name);

    /** The simulated host, noting which Ignition configs exist whenever a VM is stopped or destroyed. */
    function watchedHost(): Target {
      const inner = hostTarget(host);
      return {
        name: inner.name,
        close: () => inner.close(),
        async run(argv, opts) {
          if (argv[0] === "vm" && ["start", "stop", "poweroff", "destroy"].includes(argv[1]!))
            seenAtVmCommands.push({
              argv: [...argv],
              present: nodes.filter((n) => existsSync(ignitionOf(n))),
            });
          return inner.run(argv, opts);
        },
      };
    }

    const engine = (command: EngineRequest["command"], extra: Partial<EngineRequest> = {}) => {
      const reporter = memoryReporter();
      return runEngine({
        command,
        cluster: labCluster(),
        stages: [
          {
            slot: "hypervisor",
            plugin: bhyvePlugin as AnyPlugin,
            // A directory datastore: the golden image is a file the hypervisor copies into each disk.
            options: parseBhyveOptions({
              nic: "em0",
              firmware: host.firmwarePath,
              vmDir: join(host.root, "vm"),
              stopTimeoutSec: 5,
            }),
          },
          { slot: "os", plugin: coreos as AnyPlugin, options: coreosOptions() },
        ],
        stateDir,
        reporter,
        assumeYes: true,
        targets: { host: watchedHost, node: () => hostTarget(host) },
        artifacts: new DownloadCache({ dir: join(stateDir, "cache"), mirror: server.url }),
        ...extra,
      }).then((result) => ({ ...result, reporter }));
    };

    /** `up` of the hypervisor stage: it creates and starts the VMs, asking the os stage for their boot. */
    async function upVms() {
      const result = await engine("up", { select: { only: ["hypervisor"] } });
      expect(result.exitCode).toBe(0);
      for (const node of nodes) {
        expect(host.vm(node).running).toBe(true);
        expect(host.vm(node).config.bhyve_options).toBe(
          `-o lpc.fwcfg=qemu -f name=opt/com.coreos/config,file=${ignitionOf(node)}`,
        );
        expect(existsSync(ignitionOf(node))).toBe(true);
      }
    }

    test(
      "down stops and destroys every VM while its Ignition config is there, and removes the configs after",
      async () => {
        await upVms();
        const result = await engine("down");
        expect(result.exitCode).toBe(0);
        const vmCommands = seenAtVmCommands.map((seen) => seen.argv.slice(0, 2).join(" "));
        expect(vmCommands.filter((c) => c === "vm destroy")).toHaveLength(nodes.length);
        for (const seen of seenAtVmCommands) expect(seen.present).toEqual(nodes);
        for (const node of nodes) {
          expect(host.vm(node).exists).toBe(false);
          expect(existsSync(ignitionOf(node))).toBe(false);
        }
        expect(existsSync(join(stateDir, "os", "ignition"))).toBe(false);
        expect(existsSync(join(stateDir, "os", "images"))).toBe(false);
      },
      TEST_TIMEOUT_MS,
    );

    test(
      "down of the os stage alone keeps the configs of the VMs that still exist, and says so",
      async () => {
        await upVms();
        const result = await engine("down", { select: { only: ["os"] } });
        expect(result.exitCode).toBe(0);
        for (const node of nodes) expect(existsSync(ignitionOf(node))).toBe(true);
        const warnings = result.reporter.events
          .filter((e) => e.type === "log" && (e as { level: string }).level === "warn")
          .map((e) => (e as { message: string }).message);
        for (const node of nodes)
          expect(warnings).toContain(
            `kept ${ignitionOf(node)}: VM ${node} still exists, and bhyve reads the file at every start of it; \`kubehyve down\` removes it once the VM is gone`,
          );
        // The VMs can still start: a later full down removes everything.
        expect((await engine("down")).exitCode).toBe(0);
        for (const node of nodes) expect(existsSync(ignitionOf(node))).toBe(false);
      },
      TEST_TIMEOUT_MS,
    );

    test(
      "down --dry-run lists the configs' removal and removes nothing",
      async () => {
        await upVms();
        const result = await engine("down", { dryRun: true });
        expect(result.exitCode).toBe(0);
        const wet = result.reporter.events
          .filter((e) => e.type === "wet")
          .map((e) => (e as { description: string }).description);
        expect(wet).toContain(
          `remove the Ignition configs of cp1, w1, w2 in ${join(stateDir, "os", "ignition")} once their VMs are destroyed`,
        );
        for (const node of nodes) expect(existsSync(ignitionOf(node))).toBe(true);
      },
      TEST_TIMEOUT_MS,
    );

    test(
      "a missing Ignition config is an error naming it, and up writes it again before any VM starts",
      async () => {
        await upVms();
        rmSync(ignitionOf("w1"));
        host.clearLog();
        const doctor = await engine("doctor");
        const missing = doctor.reporter.events.filter(
          (e) => e.type === "diagnostic" && (e as { code: string }).code === "coreos.ignition-missing",
        ) as unknown as { severity: string; summary: string; hint: string; target: string }[];
        expect(missing).toEqual([
          expect.objectContaining({
            severity: "error",
            target: "w1",
            summary: `the Ignition config of w1 is missing: hv1:${ignitionOf("w1")}`,
            hint: "kubehyve up writes it again",
          }),
        ]);
        expect(existsSync(ignitionOf("w1"))).toBe(false);

        // Someone stops the VM: its next start needs the config, and up writes it before that start.
        const stop = Bun.spawnSync(["vm", "stop", "w1"], { env: { ...process.env, ...host.env } });
        expect(stop.exitCode).toBe(0);
        for (let i = 0; i < 50 && host.vm("w1").running; i++) await Bun.sleep(50);
        expect(host.vm("w1").running).toBe(false);
        seenAtVmCommands = [];
        const up = await engine("up", { select: { only: ["hypervisor"] } });
        expect(up.exitCode).toBe(0);
        expect(host.vm("w1").running).toBe(true);
        expect(seenAtVmCommands).toEqual([{ argv: ["vm", "start", "w1"], present: nodes }]);
        expect(JSON.parse(readFileSync(ignitionOf("w1"), "utf8")).ignition.version).toBe("3.3.0");
      },
      TEST_TIMEOUT_MS,
    );
  },
);
