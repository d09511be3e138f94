/**
 * The node checks as a list, on the programs' verbatim output (samples.ts): a node answering like
 * Fedora CoreOS passes every one, and each check that fails reports under its own id.
 */
import { describe, expect, test } from "bun:test";
import { NODE_CHECKS, type NodeFacts } from "../../../../plugins/os/coreos/health.ts";
import plugin from "../../../../plugins/os/coreos/index.ts";
import { parseOsRelease } from "../../../../plugins/os/coreos/probe.ts";
import { createPluginContext } from "../../../../src/core/context.ts";
import { coreosOptions, labCluster } from "./lab.ts";
import { FCOS_OS_RELEASE, TIMEDATECTL_SHOW } from "./samples.ts";

const cluster = labCluster();
const node = cluster.nodes[0]!;
const ctx = createPluginContext({ cluster, plugin, options: coreosOptions(), stateDir: "/nonexistent" });

function facts(overrides: Partial<NodeFacts["sections"]> = {}, memory = node.memory): NodeFacts {
  const sections = {
    "os-release": FCOS_OS_RELEASE,
    hostname: "cp1\n",
    addresses: "2: enp0s5    inet 192.168.1.21/24 brd 192.168.1.255 scope global enp0s5\\",
    time: TIMEDATECTL_SHOW,
    "ignition-result": "142\n",
    "ignition-journal": "Ignition finished successfully\n",
    ...overrides,
  };
  return { ctx: ctx as never, node, sections, osRelease: parseOsRelease(sections["os-release"]), memory };
}

describe("NODE_CHECKS", () => {
  test("names each check once, and a Fedora CoreOS node that answers as it should passes them all", () => {
    const ids = NODE_CHECKS.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(NODE_CHECKS.flatMap((c) => c.check(facts()) ?? [])).toEqual([]);
  });

  test.each([
    [
      "coreos.not-coreos",
      facts({ "os-release": FCOS_OS_RELEASE.replace("VARIANT_ID=coreos", "VARIANT_ID=server") }),
    ],
    ["coreos.hostname", facts({ hostname: "localhost\n" })],
    ["coreos.address", facts({ addresses: "" })],
    ["coreos.time", facts({ time: TIMEDATECTL_SHOW.replace("NTPSynchronized=yes", "NTPSynchronized=no") })],
    ["coreos.memory", facts({}, 1024 ** 3)],
    ["coreos.ignition", facts({ "ignition-journal": "QEMU firmware config was not found. Ignoring...\n" })],
  ])("%s reports under its id, and only it fails", (id, failing) => {
    const found = NODE_CHECKS.flatMap((c) => {
      const d = c.check(failing);
      return d ? [{ id: c.id, code: d.code }] : [];
    });
    expect(found).toHaveLength(1);
    expect(found[0]!.id).toBe(id);
    expect(found[0]!.code.startsWith(id)).toBe(true);
  });
});
