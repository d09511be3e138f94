/** What kubehyve knows of this stage before its code loads (plugins/index.ts); index.ts starts from it. */
import { TraefikOptionsSchema, validateTraefik } from "./options.ts";
import { TRAEFIK_VERSION } from "./version.ts";

export const meta = {
  id: "ingress/traefik",
  title: "Traefik ingress controller",
  apiVersion: 1,
  version: TRAEFIK_VERSION,
  after: ["k8s", "net", "lb"],
  options: TraefikOptionsSchema,
  validate: validateTraefik,
};
