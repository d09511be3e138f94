/** What kubehyve knows of this stage before its code loads (plugins/index.ts); index.ts starts from it. */
import { optionsSchema } from "./options.ts";
import { validateStage } from "./validate.ts";

export const meta = {
  id: "k8s/kubespray",
  title: "Kubernetes by Kubespray",
  apiVersion: 1,
  options: optionsSchema,
  validate: validateStage,
};
