/**
 * What the README tells a newcomer to do before the first `up`, held to the code that will judge
 * it: the host's packages are every one a finding's hint sends them to install, the memory figures
 * are the stages' own, and the dnsmasq lines it gives for the example lab, served by a real
 * dnsmasq, make each node's name resolve to its address as the os stage's verify asks.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Glob } from "bun";
import { parseBhyveOptions } from "../plugins/hypervisor/bhyve/options.ts";
import { MIN_NODE_MEMORY } from "../plugins/hypervisor/bhyve/preflight.ts";
import { builtinPlugins } from "../plugins/index.ts";
import { DAEMON_MEMORY, kubernetesMemory } from "../plugins/storage/rook/sizing.ts";
import { EXAMPLE_SOURCE, exampleText } from "../src/cli/_shared.ts";
import { parseClusterText } from "../src/core/config.ts";
import { loadPlugins } from "../src/core/plugins.ts";
import { formatSize, parseSize } from "../src/core/units.ts";
import { resolveA } from "../src/lib/dns.ts";
import { startDnsmasq } from "./lab/dnsmasq.ts";
import { have } from "./lab/prereq.ts";

const ROOT = join(import.meta.dir, "..");
const readme = readFileSync(join(ROOT, "README.md"), "utf8");
const install = readme.slice(
  readme.indexOf("## Install on FreeBSD"),
  readme.indexOf("\n## The cluster file"),
);
const before = install.slice(install.indexOf("### Before the first `up`"));
const bullet = (title: string) => {
  const start = before.indexOf(`- **${title}`);
  const end = before.indexOf("\n- **", start + 1);
  return before.slice(start, end < 0 ? undefined : end);
};

describe("the README's install and its list before the first up", () => {
  test("names every package a finding's hint would send the user to install on the host", () => {
    const line = /`pkg install ([^`]+)`/.exec(install.replace(/\s+/g, " "))?.[1]?.split(" ") ?? [];
    const hinted = new Set<string>();
    for (const file of new Glob("{src,plugins}/**/*.ts").scanSync(ROOT))
      for (const [, pkgs] of readFileSync(join(ROOT, file), "utf8").matchAll(
        /pkg install ([a-z0-9][a-z0-9 ._-]*)/g,
      ))
        for (const pkg of pkgs!.trim().split(/\s+/)) hinted.add(pkg);
    expect(hinted.size).toBeGreaterThan(3);
    expect([...hinted].filter((p) => !line.includes(p))).toEqual([]);
  });

  test("gives the memory figures the stages use", () => {
    const text = bullet("Memory.").replace(/\s+/g, " ");
    const size = (s: string) => parseSize(s.replace(/\s/g, "")) ?? Number.NaN;
    expect(size(/`memory: (\S+)` or more/.exec(text)![1]!)).toBe(MIN_NODE_MEMORY);
    expect(size(/Ceph: (\d+ \w+) per data disk/.exec(text)![1]!)).toBe(DAEMON_MEMORY.osd);
    expect(size(/(\d+ \w+) per mon/.exec(text)![1]!)).toBe(DAEMON_MEMORY.mon);
    expect(size(/(\d+ \w+) per mgr/.exec(text)![1]!)).toBe(DAEMON_MEMORY.mgr);
    const [, cp, worker] = /Kubernetes' (\d+ \w+) \(control plane\) or (\d+ \w+) \(worker\)/.exec(text)!;
    expect(size(cp!)).toBe(kubernetesMemory({ role: "control-plane" } as never));
    expect(size(worker!)).toBe(kubernetesMemory({ role: "worker" } as never));
    const reserve = /`stages\.hypervisor\.hostReserve` \((\d+ \w+)\)/.exec(text)![1]!;
    expect(formatSize(size(reserve))).toBe(formatSize(parseBhyveOptions({}).hostReserve));
  });

  test("gives dnsmasq lines that make the example lab's node names resolve, through a real dnsmasq", async () => {
    if (!have("dnsmasq", "dnsmasq-base")) return;
    const lines = /```\n\s*(host-record=[\s\S]*?)\n\s*```/
      .exec(bullet("DNS."))?.[1]
      ?.split("\n")
      .map((l) => l.trim());
    expect(lines?.length).toBeGreaterThan(0);
    // The built-ins alone: no plugin directory of this machine's is read.
    const registry = await loadPlugins(builtinPlugins, []);
    const { cluster } = parseClusterText(exampleText, EXAMPLE_SOURCE, registry);
    const dns = await startDnsmasq({ lines: lines! });
    try {
      for (const node of cluster.nodes) {
        const answer = await resolveA(dns.host, dns.port, `${node.name}.${cluster.network.domain}`);
        expect({ node: node.name, addresses: answer.addresses }).toEqual({
          node: node.name,
          addresses: [node.address],
        });
      }
    } finally {
      await dns.stop();
    }
  });
});
