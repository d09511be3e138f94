/** What kubehyve knows of this stage before its code loads (plugins/index.ts); index.ts starts from it. */
import { bhyveOptionsSchema } from "./options.ts";
import { validateCluster } from "./validate.ts";

export const meta = {
  id: "hypervisor/bhyve",
  title: "bhyve VMs through vm-bhyve",
  apiVersion: 1,
  options: bhyveOptionsSchema,
  validate: validateCluster,
};
