import * as v from "valibot";
import { type CoreosOptions, CoreosOptionsSchema } from "../../../../plugins/os/coreos/options.ts";
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
