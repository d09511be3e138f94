/**
 * The built-in plugins, in pipeline order. This is the only file that names them: the core loads
 * them through the same contract as any drop-in plugin.
 */
import type { AnyPlugin } from "kubehyve";
import bhyve from "./hypervisor/bhyve/index.ts";
import traefik from "./ingress/traefik/index.ts";
import kubespray from "./k8s/kubespray/index.ts";
import metallb from "./lb/metallb/index.ts";
import calico from "./net/calico/index.ts";
import coreos from "./os/coreos/index.ts";
import rook from "./storage/rook/index.ts";

export const builtinPlugins: readonly AnyPlugin[] = [
  bhyve as AnyPlugin,
  coreos as AnyPlugin,
  kubespray as AnyPlugin,
  calico as AnyPlugin,
  metallb as AnyPlugin,
  traefik as AnyPlugin,
  rook as AnyPlugin,
];
