/**
 * verify against real machinery: one real sshd on loopback per node stands in for the node (its
 * PATH starts with stand-ins answering like Fedora CoreOS does), and a real dnsmasq on loopback
 * serves the lab's records the way the router's dnsmasq would.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderNodeIgnition } from "../../../../plugins/os/coreos/configs.ts";
import plugin from "../../../../plugins/os/coreos/index.ts";
import { ignitionPathOf } from "../../../../plugins/os/coreos/paths.ts";
import { createPluginContext } from "../../../../src/core/context.ts";
import type { Diagnostic } from "../../../../src/core/diagnostics.ts";
import type { Cluster, NodeSpec } from "../../../../src/core/model.ts";
import { CancelledError } from "../../../../src/lib/errors.ts";
import { LocalTarget } from "../../../../src/targets/local.ts";
import { SshTarget } from "../../../../src/targets/ssh.ts";
import type { Target } from "../../../../src/targets/target.ts";
import { type Dnsmasq, startDnsmasq } from "../../../lab/dnsmasq.ts";
import { findTool, have } from "../../../lab/prereq.ts";
import { type Sshd, startSshd } from "../../../lab/sshd.ts";
import { coreosOptions, labCluster } from "./lab.ts";
import { FCOS_OS_RELEASE, TIMEDATECTL_SHOW } from "./samples.ts";

// `journalctl -t ignition -o cat` prints the bare messages. These are Ignition's own log lines:
// internal/main.go ("Ignition finished successfully"), internal/providers/qemu/qemu_fwcfg.go
// ("QEMU firmware config was not found. Ignoring..."), internal/exec/stages ("files passed").
const JOURNAL_OK =
  "Ignition 2.20.0\nStage: fetch\nfetch: fetch passed\nIgnition finished successfully\nfiles: files passed\nIgnition finished successfully\n";
const JOURNAL_NO_CONFIG =
  "Ignition 2.20.0\nStage: fetch\nQEMU firmware config was not found. Ignoring...\nfetch: fetch passed\nIgnition finished successfully\n";

/** `ip -o -4 addr show` on a node, in the iproute2 format of samples.ts IP_ADDR. */
function ipAddr(address: string, prefix = 24): string {
  return `1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: enp0s5    inet ${address}/${prefix} brd 192.168.1.255 scope global noprefixroute enp0s5\\       valid_lft forever preferred_lft forever
`;
}

/** This machine's /proc/meminfo (the real format) with MemTotal set to what the node would see. */
async function meminfo(kib: number): Promise<string> {
  return (await readFile("/proc/meminfo", "utf8")).replace(
    /^MemTotal:\s+\d+ kB$/m,
    `MemTotal:        ${kib} kB`,
  );
}

/** `ip -o link show` of iproute2 6.1, in the format captured on the test machine, with the node's MAC. */
function ipLink(mac: string): string {
  return `1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: enp0s5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\\    link/ether ${mac} brd ff:ff:ff:ff:ff:ff
`;
}

/** A machine-id(5) of the node's own: 32 hexadecimal characters. */
function machineIdOf(name: string): string {
  return new Bun.CryptoHasher("md5").update(name).digest("hex");
}

/**
 * Zincati's line as it finalizes an update (zincati src/update_agent/actor.rs), as
 * `journalctl -o short-unix` prints it: seconds since the epoch, host, identifier, message.
 */
function finalizeLine(at: string, host: string, version = "41.20241122.3.0"): string {
  const seconds = (Date.parse(at) / 1000).toFixed(6);
  return `${seconds} ${host} zincati[1187]: [INFO  zincati::update_agent::actor] staged deployment '${version}' available, proceeding to finalize it\n`;
}

interface FakeNode {
  node: NodeSpec;
  sshd: Sshd;
  root: string;
  write(path: string, content: string): Promise<void>;
}

async function fakeNode(base: string, node: NodeSpec): Promise<FakeNode> {
  const dir = await mkdtemp(join(base, `${node.name}-`));
  const bin = join(dir, "bin");
  const root = join(dir, "root");
  await mkdir(bin, { recursive: true });
  await chmod(dir, 0o755);
  const write = async (path: string, content: string) => {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), content);
  };
  const script = async (name: string, body: string) => {
    await writeFile(join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  };
  // The node's files: an absolute path that exists under root wins over this machine's own file.
  const rooted = (real: string) =>
    `root='${root}'\nfor a; do shift; if [ -e "$root$a" ]; then set -- "$@" "$root$a"; else set -- "$@" "$a"; fi; done\nexec '${real}' "$@"`;
  await script("cat", rooted(findTool("cat")!));
  await script("stat", rooted(findTool("stat")!));
  // uname -n prints the kernel's node name, which systemd sets from /etc/hostname at boot.
  await script(
    "uname",
    `if [ "$1" = -n ]; then exec '${findTool("cat")}' '${root}/etc/hostname'; fi\nexec '${findTool("uname")}' "$@"`,
  );
  // `ip -o -4 addr show` and `ip -o link show`; `journalctl -t ignition …` and `journalctl -u zincati.service …`.
  await script(
    "ip",
    `if [ "$2" = link ]; then exec '${findTool("cat")}' '${root}/ip-link.txt'; fi\nexec '${findTool("cat")}' '${root}/ip-addr.txt'`,
  );
  await script("timedatectl", `exec '${findTool("cat")}' '${root}/timedatectl.txt'`);
  await script(
    "journalctl",
    `case "$*" in *zincati.service*) exec '${findTool("cat")}' '${root}/zincati.txt';; esac\nexec '${findTool("cat")}' '${root}/journal.txt'`,
  );

  await write("etc/os-release", FCOS_OS_RELEASE);
  await write("etc/hostname", `${node.name}\n`);
  await write(
    "etc/.ignition-result.json",
    '{"provisioningBootID":"9d1f","provisioningDate":"2026-11-26T12:00:00Z"}\n',
  );
  await write("proc/meminfo", await meminfo(4005532));
  await write("ip-addr.txt", ipAddr(node.address));
  await write("timedatectl.txt", TIMEDATECTL_SHOW);
  await write("journal.txt", JOURNAL_OK);
  await write("zincati.txt", "");
  await write("etc/machine-id", `${machineIdOf(node.name)}\n`);
  await write("ip-link.txt", ipLink(node.mac));
  const sshd = await startSshd({ env: { PATH: `${bin}:/usr/local/bin:/usr/bin:/bin` } });
  return { node, sshd, root, write };
}

/** A TCP forwarder on loopback from `port` to `to`: the moment a booting node's sshd starts listening. */
function forwardTcp(port: number, to: number): { stop(): void; connections(): number } {
  let connections = 0;
  type Side = { peer?: import("bun").Socket<Side>; queued: Uint8Array[] };
  const server = Bun.listen<Side>({
    hostname: "127.0.0.1",
    port,
    socket: {
      open(client) {
        connections++;
        client.data = { queued: [] };
        void Bun.connect<Side>({
          hostname: "127.0.0.1",
          port: to,
          socket: {
            open(upstream) {
              upstream.data = { peer: client, queued: [] };
              client.data.peer = upstream;
              for (const chunk of client.data.queued) upstream.write(chunk);
            },
            data: (upstream, chunk) => void upstream.data.peer?.write(chunk),
            close: (upstream) => void upstream.data.peer?.end(),
          },
        });
      },
      data(client, chunk) {
        if (client.data.peer) client.data.peer.write(chunk);
        else client.data.queued.push(new Uint8Array(chunk));
      },
      close: (client) => void client.data.peer?.end(),
    },
  });
  return { stop: () => server.stop(true), connections: () => connections };
}

const LAB_RECORDS = [
  "host-record=cp1.lab.home.arpa,cp1,192.168.1.21",
  "host-record=w1.lab.home.arpa,w1,192.168.1.22",
  "host-record=w2.lab.home.arpa,w2,192.168.1.23",
];

describe.skipIf(!have("sshd", "openssh-server") || !have("dnsmasq", "dnsmasq-base"))(
  "os/coreos verify",
  () => {
    let tmp: string;
    let nodes: FakeNode[];
    let dns: Dnsmasq;
    let dnsWithoutW2: Dnsmasq;
    const targets: Target[] = [];

    beforeAll(async () => {
      tmp = await mkdtemp(join(tmpdir(), "kubehyve-verify-"));
      await chmod(tmp, 0o755);
      nodes = await Promise.all(labCluster().nodes.map((n) => fakeNode(tmp, n)));
      dns = await startDnsmasq({ lines: LAB_RECORDS });
      dnsWithoutW2 = await startDnsmasq({ lines: LAB_RECORDS.slice(0, 2) });
    });
    afterAll(async () => {
      await Promise.all(targets.map((t) => t.close()));
      await Promise.all((nodes ?? []).map((n) => n.sshd.stop()));
      await dns?.stop();
      await dnsWithoutW2?.stop();
      await rm(tmp, { recursive: true, force: true });
    });

    async function verify(
      server: Dnsmasq,
      cluster: Cluster = labCluster({ network: { ...labCluster().network, dns: ["127.0.0.1"] } }),
    ) {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const ctx = createPluginContext({
        cluster,
        plugin,
        options: coreosOptions({ dnsPort: server.port }),
        stateDir,
        targets: {
          host: new LocalTarget(),
          node: (node) => {
            const fake = nodes.find((n) => n.node.name === node.name)!;
            const target = new SshTarget({
              user: fake.sshd.user,
              host: fake.sshd.host,
              port: fake.sshd.port,
              identityFile: fake.sshd.identityFile,
              stateDir,
              name: `core@${node.name}`,
            });
            targets.push(target);
            return target;
          },
        },
      });
      // `up` wrote every node's Ignition config on the host (here: this machine).
      for (const node of cluster.nodes) {
        const path = ignitionPathOf(ctx as never, node);
        await mkdir(join(path, ".."), { recursive: true });
        await writeFile(path, await renderNodeIgnition(ctx as never, node), { mode: 0o600 });
      }
      return plugin.verify!(ctx as never);
    }

    const problems = (diagnostics: Diagnostic[]) => diagnostics.filter((d) => d.severity !== "ok");

    test("passes when every node answers like Fedora CoreOS and every record is there", async () => {
      const diagnostics = await verify(dns);
      expect(problems(diagnostics)).toEqual([]);
      expect(diagnostics.map((d) => [d.code, d.target])).toEqual([
        ["coreos.node", "cp1"],
        ["coreos.node", "w1"],
        ["coreos.node", "w2"],
        ["coreos.dns", undefined],
      ]);
      expect(diagnostics[0]!.summary).toBe("cp1: Fedora CoreOS 41.20241109.3.0, 192.168.1.21, 3.8 GiB");
      for (const name of ["cp1", "w1", "w2"]) {
        expect(await dns.waitForLog(`query[A] ${name}.lab.home.arpa from 127.0.0.1`)).toBe(true);
      }
    });

    test("names the node whose record is missing and gives the dnsmasq line to add", async () => {
      const diagnostics = await verify(dnsWithoutW2);
      const errors = diagnostics.filter((d) => d.severity === "error");
      expect(errors).toHaveLength(1);
      expect(errors[0]!.code).toBe("coreos.dns-missing");
      expect(errors[0]!.target).toBe("w2");
      expect(errors[0]!.summary).toStartWith(
        `w2.lab.home.arpa does not resolve to 192.168.1.23 through 127.0.0.1:${dnsWithoutW2.port}`,
      );
      expect(errors[0]!.hint).toContain("host-record=w2.lab.home.arpa,w2,192.168.1.23");
      expect(errors[0]!.hint).not.toContain("host-record=w1");
    });

    test("asks every server of network.dns, and names the one that lacks a record", async () => {
      // A second resolver on another loopback address, on the port the first one answers on.
      const full = await startDnsmasq({ lines: LAB_RECORDS, address: "127.0.0.2", port: dnsWithoutW2.port });
      try {
        const cluster = labCluster({ network: { ...labCluster().network, dns: ["127.0.0.2", "127.0.0.1"] } });
        const errors = (await verify(dnsWithoutW2, cluster)).filter((d) => d.severity === "error");
        expect(errors.map((d) => [d.code, d.target])).toEqual([["coreos.dns-missing", "w2"]]);
        expect(errors[0]!.summary).toStartWith(
          `w2.lab.home.arpa does not resolve to 192.168.1.23 through 127.0.0.1:${dnsWithoutW2.port}`,
        );
      } finally {
        await full.stop();
      }
    });

    test("reports a config that never reached the guest, with the bhyve options to check", async () => {
      const w1 = nodes[1]!;
      await w1.write("journal.txt", JOURNAL_NO_CONFIG);
      try {
        const errors = (await verify(dns)).filter((d) => d.severity === "error");
        expect(errors.map((d) => [d.code, d.target])).toEqual([["coreos.ignition-no-config", "w1"]]);
        expect(errors[0]!.hint).toContain("-o lpc.fwcfg=qemu -f name=opt/com.coreos/config,file=");
        expect(errors[0]!.hint).toContain("w1.ign");
      } finally {
        await w1.write("journal.txt", JOURNAL_OK);
      }
    });

    test("finds a wrong system, hostname, address and memory, and an unsynchronised clock", async () => {
      const cp1 = nodes[0]!;
      await cp1.write(
        "etc/os-release",
        FCOS_OS_RELEASE.replace("VARIANT_ID=coreos\n", "VARIANT_ID=server\n"),
      );
      await cp1.write("etc/hostname", "localhost\n");
      await cp1.write("ip-addr.txt", ipAddr("192.168.1.99"));
      await cp1.write("proc/meminfo", await meminfo(1_000_000));
      await cp1.write(
        "timedatectl.txt",
        TIMEDATECTL_SHOW.replace("NTPSynchronized=yes", "NTPSynchronized=no"),
      );
      await rm(join(cp1.root, "etc/.ignition-result.json"));
      try {
        const all = problems(await verify(dns));
        const found = all.map((d) => [d.code, d.severity, d.target]);
        expect(all.find((d) => d.code === "coreos.time")!.hint).toBe("ssh core@192.168.1.21 chronyc sources");
        expect(found).toEqual([
          ["coreos.not-coreos", "error", "cp1"],
          ["coreos.hostname", "error", "cp1"],
          ["coreos.address", "error", "cp1"],
          ["coreos.time", "warn", "cp1"],
          ["coreos.memory", "error", "cp1"],
          ["coreos.ignition-unknown", "warn", "cp1"],
        ]);
      } finally {
        await cp1.write("etc/os-release", FCOS_OS_RELEASE);
        await cp1.write("etc/hostname", "cp1\n");
        await cp1.write("ip-addr.txt", ipAddr("192.168.1.21"));
        await cp1.write("proc/meminfo", await meminfo(4005532));
        await cp1.write("timedatectl.txt", TIMEDATECTL_SHOW);
        await cp1.write("etc/.ignition-result.json", "{}\n");
      }
    });

    test("check waits for the node that does not answer over SSH, and only for it", async () => {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
      const closedPort = probe.port!;
      await probe.stop(true);
      const ctx = createPluginContext({
        cluster: labCluster(),
        plugin,
        // No stream to read: check still looks at every node, and says what it could not read.
        options: coreosOptions({ streamUrl: `http://127.0.0.1:${closedPort}/streams/stable.json` }),
        stateDir,
        targets: {
          host: new LocalTarget(),
          node: (node) => {
            const fake = nodes.find((n) => n.node.name === node.name)!;
            const port = node.name === "w2" ? closedPort : fake.sshd.port;
            const target = new SshTarget({
              user: fake.sshd.user,
              host: "127.0.0.1",
              port,
              identityFile: fake.sshd.identityFile,
              stateDir,
            });
            targets.push(target);
            return target;
          },
        },
      });
      const { changes, diagnostics } = await plugin.check(ctx as never);
      expect(changes.filter((c) => c.kind === "ssh.wait").map((c) => c.target)).toEqual(["w2"]);
      expect(diagnostics.filter((d) => d.severity === "error").map((d) => d.code)).toEqual(["coreos.stream"]);
    });

    test("apply waits for a node until it answers over SSH, and Ctrl-C ends the wait as an interruption", async () => {
      const w2 = nodes.find((n) => n.node.name === "w2")!;
      const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
      const port = probe.port!;
      await probe.stop(true);
      const ctxFor = (stateDir: string, signal?: AbortSignal) =>
        createPluginContext({
          cluster: labCluster(),
          plugin,
          options: coreosOptions(),
          stateDir,
          signal,
          targets: {
            host: new LocalTarget(),
            node: () => {
              const target = new SshTarget({
                user: w2.sshd.user,
                host: "127.0.0.1",
                port,
                identityFile: w2.sshd.identityFile,
                stateDir,
              });
              targets.push(target);
              return target;
            },
          },
        });
      const wait = [{ kind: "ssh.wait", target: "w2", summary: "wait for w2", data: { node: "w2" } }];

      // A VM just booted: nothing listens on its port yet, then its sshd comes up.
      let sshd: ReturnType<typeof forwardTcp> | undefined;
      const comesUp = setTimeout(() => {
        sshd = forwardTcp(port, w2.sshd.port);
      }, 1500);
      try {
        await plugin.apply!(ctxFor(await mkdtemp(join(tmp, "state-"))) as never, wait as never);
        expect(sshd?.connections()).toBeGreaterThan(0);
      } finally {
        clearTimeout(comesUp);
        sshd?.stop();
      }

      // Gone again: Ctrl-C during the wait is the run's interruption, not a failure to explain.
      const controller = new AbortController();
      setTimeout(() => controller.abort(new CancelledError("interrupted")), 500);
      const again = ctxFor(await mkdtemp(join(tmp, "state-")), controller.signal);
      const error = await plugin.apply!(again as never, wait as never).catch((e) => e);
      expect(error).toBeInstanceOf(CancelledError);
      expect(String(error.message)).not.toContain("vm console");
    }, 60_000);

    test("a node that cannot be reached over SSH is an error naming it", async () => {
      const cluster = labCluster({ network: { ...labCluster().network, dns: ["127.0.0.1"] } });
      const stateDir = await mkdtemp(join(tmp, "state-"));
      const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
      const closedPort = probe.port!;
      await probe.stop(true);
      const ctx = createPluginContext({
        cluster,
        plugin,
        options: coreosOptions({ dnsPort: dns.port }),
        stateDir,
        targets: {
          host: new LocalTarget(),
          node: (node) =>
            new SshTarget({
              user: "core",
              host: "127.0.0.1",
              port: closedPort,
              stateDir,
              name: `core@${node.name}`,
            }),
        },
      });
      const errors = (await plugin.verify!(ctx as never)).filter((d) => d.code === "coreos.ssh");
      expect(errors.map((d) => d.target)).toEqual(["cp1", "w1", "w2"]);
      expect(errors[0]!.summary).toBe("cannot run commands on cp1 (192.168.1.21) over SSH as core");
    });

    test("nodes sharing a machine-id or a MAC are errors naming each of them", async () => {
      const [cp1, w1] = nodes as [FakeNode, FakeNode];
      await w1.write("etc/machine-id", `${machineIdOf("cp1")}\n`);
      await w1.write("ip-link.txt", ipLink(cp1.node.mac));
      try {
        const all = problems(await verify(dns));
        const found = all.map((d) => [d.code, d.target, d.summary]);
        expect(found).toEqual([
          ["coreos.machine-id-duplicate", "cp1", `cp1 has the machine-id of w1 (${machineIdOf("cp1")})`],
          ["coreos.machine-id-duplicate", "w1", `w1 has the machine-id of cp1 (${machineIdOf("cp1")})`],
          ["coreos.mac-duplicate", "cp1", `cp1's NIC has the MAC ${cp1.node.mac} of w1`],
          ["coreos.mac-duplicate", "w1", `w1's NIC has the MAC ${cp1.node.mac} of cp1`],
        ]);
        const hints = all.map((d) => d.hint);
        expect(hints[0]).toContain(
          "ssh core@192.168.1.21 'sudo rm /etc/machine-id && sudo systemd-machine-id-setup && sudo systemctl reboot'",
        );
        expect(hints[2]).toContain("compare network0_mac in `vm configure cp1` and `vm configure w1`");
      } finally {
        await w1.write("etc/machine-id", `${machineIdOf("w1")}\n`);
        await w1.write("ip-link.txt", ipLink(w1.node.mac));
      }
    });

    test("a Zincati reboot outside the update window is a warning naming the node and the time", async () => {
      const cp1 = nodes[0]!;
      // The default window: Sat and Sun from 02:00 UTC for 240 minutes.
      await cp1.write(
        "zincati.txt",
        finalizeLine("2026-11-28T03:10:00Z", "cp1") +
          finalizeLine("2026-11-25T14:00:00Z", "cp1", "41.20241201.3.0"),
      );
      try {
        const found = problems(await verify(dns));
        expect(found.map((d) => [d.code, d.severity, d.target])).toEqual([
          ["coreos.zincati-reboot-outside-window", "warn", "cp1"],
        ]);
        expect(found[0]!.summary).toBe(
          "Zincati rebooted cp1 outside its update window Sat, Sun from 02:00 for 240 minutes (UTC): 2026-11-25T14:00:00.000Z (to 41.20241201.3.0)",
        );
        expect(found[0]!.hint).toContain("ls /etc/zincati/config.d /usr/lib/zincati/config.d");
      } finally {
        await cp1.write("zincati.txt", "");
      }
    });
  },
);
