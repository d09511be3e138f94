/** What kubehyve knows of this stage before its code loads (plugins/index.ts); index.ts starts from it. */
import { RookOptionsSchema, validateRook } from "./options.ts";
import { ROOK_VERSION } from "./version.ts";

export const meta = {
  id: "storage/rook",
  title: "Rook-Ceph block storage",
  apiVersion: 1,
  version: ROOK_VERSION,
  after: ["k8s", "net", "lb", "ingress"],
  options: RookOptionsSchema,
  validate: validateRook,
};
