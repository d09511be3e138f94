import * as v from "valibot";
import { type CoreosOptions, CoreosOptionsSchema } from "../../../../plugins/os/coreos/options.ts";
import type { Cluster, NodeSpec } from "../../../../src/core/model.ts";
import { GiB } from "../../../../src/core/units.ts";
import { ORACLES } from "../../../lab/oracles.ts";

export { ORACLES };

function node(name: string, role: NodeSpec["role"], address: string, dataDisks: number): NodeSpec {
  return {
    name,
    role,
    cpus: 2,
    memory: 4 * GiB,
    disk: 20 * GiB,
    address,
    disks: dataDisks ? [{ name: "data1", size: 50 * GiB }] : [],
  };
}

export function labCluster(overrides: Partial<Cluster> = {}): Cluster {
  return {
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
      node("cp1", "control-plane", "192.168.1.21", 0),
      node("w1", "worker", "192.168.1.22", 1),
      node("w2", "worker", "192.168.1.23", 1),
    ],
    ssh: {
      authorizedKeys: [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBp1Ixl0t7m0dG9yaWVzIGFyZSBub3Qga2V5cw user@laptop",
      ],
    },
    stages: { os: { plugin: "os/coreos", options: {} } },
    ...overrides,
  };
}

export function coreosOptions(input: Record<string, unknown> = {}): CoreosOptions {
  return v.parse(CoreosOptionsSchema, input);
}
