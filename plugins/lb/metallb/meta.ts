/** What kubehyve knows of this stage before its code loads (plugins/index.ts); index.ts starts from it. */
import { optionsSchema } from "./options.ts";
import { validate } from "./validate.ts";

export const meta = {
  id: "lb/metallb",
  title: "MetalLB load balancer",
  apiVersion: 1,
  options: optionsSchema,
  validate,
};
