/**
 * A node's MAC and SMBIOS UUID are derived once, when the cluster file is read; the hypervisor stage
 * writes them into the VM and the os stage's keyfile matches the NIC by the same MAC
 * (test/plugins/os/coreos/real-programs.test.ts checks both rendered files agree).
 */
import { describe, expect, test } from "bun:test";
import { parseClusterText } from "../../src/core/config.ts";
import { nodeMac, nodeUuid } from "../../src/core/node-identity.ts";

describe("nodeMac", () => {
  test("is 02: followed by the first five bytes of sha256(cluster/node)", () => {
    // `printf lab/cp1 | sha256sum` starts 1639b1ae9f, lab/w1 12d76a7ae6, lab/w2 bb7dc3bbc4.
    expect(nodeMac("lab", "cp1")).toBe("02:16:39:b1:ae:9f");
    expect(nodeMac("lab", "w1")).toBe("02:12:d7:6a:7a:e6");
    expect(nodeMac("lab", "w2")).toBe("02:bb:7d:c3:bb:c4");
    const digest = Bun.spawnSync(["sha256sum"], {
      stdin: new TextEncoder().encode("other/n9"),
    }).stdout.toString();
    expect(nodeMac("other", "n9")).toBe(`02:${digest.slice(0, 10).match(/../g)!.join(":")}`);
  });

  test("is locally administered and unicast, and differs per node and per cluster", () => {
    const first = Number.parseInt(nodeMac("lab", "cp1").slice(0, 2), 16);
    expect(first & 0b10).toBe(0b10);
    expect(first & 0b01).toBe(0);
    expect(new Set([nodeMac("lab", "cp1"), nodeMac("lab", "w1"), nodeMac("lab2", "cp1")]).size).toBe(3);
  });
});

describe("nodeUuid", () => {
  test("has the version 5 layout and stays the same for a node", () => {
    expect(nodeUuid("lab", "cp1")).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(nodeUuid("lab", "cp1")).toBe(nodeUuid("lab", "cp1"));
    expect(nodeUuid("lab", "cp1")).not.toBe(nodeUuid("lab", "w1"));
  });
});

test("the cluster file's nodes carry their MAC and UUID", () => {
  const { cluster } = parseClusterText(
    `name: lab
network: { gateway: 192.168.1.1, subnet: 192.168.1.0/24 }
nodes:
  - { name: cp1, role: control-plane, address: 192.168.1.21 }
stages: {}
`,
    "kubehyve.yaml",
    { find: () => undefined, searchPath: [] },
  );
  expect(cluster.nodes[0]).toMatchObject({ mac: "02:16:39:b1:ae:9f", uuid: nodeUuid("lab", "cp1") });
});
