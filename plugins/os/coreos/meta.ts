/** What kubehyve knows of this stage before its code loads (plugins/index.ts); index.ts starts from it. */
import type { Cluster } from "kubehyve";
import { type CoreosOptions, CoreosOptionsSchema, validateCoreos } from "./options.ts";

export const meta = {
  id: "os/coreos",
  title: "Fedora CoreOS on every node",
  apiVersion: 1,
  after: ["hypervisor"],
  options: CoreosOptionsSchema,
  // Its second parameter, the environment, is for tests: the stage is given the process's.
  validate: (input: { cluster: Cluster; options: CoreosOptions }) => validateCoreos(input),
};
