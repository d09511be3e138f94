import * as v from "valibot";
import {
  NODE_FILES_HOOK,
  type NodeFile,
  type NodeFilesAnswer,
  type NodeFilesPayload,
} from "../../../../plugins/os/coreos/node-files.ts";
import { type CoreosOptions, CoreosOptionsSchema } from "../../../../plugins/os/coreos/options.ts";
import { definePlugin } from "../../../../src/core/contract.ts";
import type { Cluster } from "../../../../src/core/model.ts";
import { labCluster as exampleLab } from "../../../lab/cluster.ts";
import { ORACLES } from "../../../lab/oracles.ts";

export { ORACLES };

/** The example lab with the os stage and one authorized key of the user's own. */
export function labCluster(overrides: Partial<Cluster> = {}): Cluster {
  return exampleLab({
    ssh: {
      authorizedKeys: [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBp1Ixl0t7m0dG9yaWVzIGFyZSBub3Qga2V5cw user@laptop",
      ],
    },
    stages: { os: { plugin: "os/coreos", options: {} } },
    ...overrides,
  });
}

export function coreosOptions(input: Record<string, unknown> = {}): CoreosOptions {
  return v.parse(CoreosOptionsSchema, input);
}

/**
 * A stage that asks the os stage for files the way a net/calico plugin will: Kubespray's
 * docs/operating_systems/fcos.md sysctl for Calico, and Calico's NetworkManager drop-in that leaves
 * its interfaces alone (Calico docs, "Configure NetworkManager").
 */
export const nodeFilesFixture = definePlugin({
  id: "net/node-files-fixture",
  title: "asks for node files like a network plugin",
  apiVersion: 1,
  async check() {
    return { changes: [], diagnostics: [] };
  },
  hooks: {
    [NODE_FILES_HOOK]: (_ctx, payload): NodeFilesAnswer => {
      const { node } = payload as NodeFilesPayload;
      if (!node?.name) throw new Error("os:node-files was called without the node");
      return { files: [...FIXTURE_NODE_FILES] };
    },
  },
});

export const FIXTURE_NODE_FILES: readonly NodeFile[] = [
  { path: "/etc/sysctl.d/reverse-path-filter.conf", contents: "net.ipv4.conf.all.rp_filter=1\n" },
  {
    path: "/etc/NetworkManager/conf.d/calico.conf",
    contents:
      "[keyfile]\nunmanaged-devices=interface-name:cali*;interface-name:tunl*;interface-name:vxlan.calico;interface-name:vxlan-v6.calico;interface-name:wireguard.cali;interface-name:wg-v6.cali\n",
    mode: 0o644,
  },
];
