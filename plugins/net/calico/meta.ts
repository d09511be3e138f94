/** What kubehyve knows of this stage before its code loads (plugins/index.ts); index.ts starts from it. */
import { optionsSchema } from "./options.ts";
import { validateStage } from "./validate.ts";

export const meta = {
  id: "net/calico",
  title: "Calico pod network",
  apiVersion: 1,
  options: optionsSchema,
  validate: validateStage,
};
