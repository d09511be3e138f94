/**
 * The example lab of src/example/kubehyve.yaml as a validated Cluster, for tests that need one
 * without parsing the file. Every node has 4 GiB of memory (the example gives workers 6 GiB): the
 * stages' expected VM sizes and memory budgets are written for that.
 */
import type { Cluster, DataDisk, NodeSpec } from "../../src/core/model.ts";
import { nodeMac, nodeUuid } from "../../src/core/node-identity.ts";
import { GiB } from "../../src/core/units.ts";

/** The example's extra worker disk, as the config parser names it. */
export const DATA_DISK: DataDisk = { name: "data1", size: 50 * GiB };

export function labNode(
  name: string,
  role: NodeSpec["role"],
  address: string,
  extra: Partial<Omit<NodeSpec, "name" | "role" | "address" | "mac" | "uuid">> = {},
): NodeSpec {
  return {
    name,
    role,
    cpus: 2,
    memory: 4 * GiB,
    disk: 20 * GiB,
    address,
    disks: [],
    ...extra,
    // As the config parser derives them for a cluster named "lab"; labCluster derives them for its name.
    mac: nodeMac("lab", name),
    uuid: nodeUuid("lab", name),
  };
}

/** cp1 and workers w1/w2 with one data disk each on 192.168.1.0/24, no stages unless given. */
export function labCluster(overrides: Partial<Cluster> = {}): Cluster {
  const cluster: Cluster = {
    name: "lab",
    host: { kind: "local" },
    network: {
      domain: "lab.home.arpa",
      gateway: "192.168.1.1",
      dns: ["192.168.1.1"],
      subnet: "192.168.1.0/24",
      podCidr: "10.233.64.0/18",
      serviceCidr: "10.233.0.0/18",
    },
    nodes: [
      labNode("cp1", "control-plane", "192.168.1.21"),
      labNode("w1", "worker", "192.168.1.22", { disks: [{ ...DATA_DISK }] }),
      labNode("w2", "worker", "192.168.1.23", { disks: [{ ...DATA_DISK }] }),
    ],
    ssh: { authorizedKeys: [] },
    stages: {},
    ...overrides,
  };
  const name = cluster.name;
  return {
    ...cluster,
    nodes: cluster.nodes.map((n) => ({ ...n, mac: nodeMac(name, n.name), uuid: nodeUuid(name, n.name) })),
  };
}
