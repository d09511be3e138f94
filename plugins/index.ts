/**
 * The built-in plugins, in pipeline order. This is the only file that names them: the core loads
 * them through the same contract as any drop-in plugin.
 *
 * Each comes in two parts. What every command needs (id, title, options schema, validate(): reading
 * a cluster file needs them) is imported at once; the stage's code (check, apply and the rest, with
 * everything they import: the Kubernetes client, the ssh target, tar) only when a stage first runs,
 * so that a command that runs no stage (`config validate`, `plugins`) does not load it. A test holds
 * each part to the plugin its index.ts defines.
 */
import type { AnyPlugin, HookName } from "kubehyve";
import { bhyveOptionsSchema } from "./hypervisor/bhyve/options.ts";
import { validateCluster } from "./hypervisor/bhyve/validate.ts";
import { TraefikOptionsSchema, validateTraefik } from "./ingress/traefik/options.ts";
import { TRAEFIK_VERSION } from "./ingress/traefik/version.ts";
import { optionsSchema as kubesprayOptionsSchema } from "./k8s/kubespray/options.ts";
import { validateStage as validateKubespray } from "./k8s/kubespray/validate.ts";
import { optionsSchema as metallbOptionsSchema } from "./lb/metallb/options.ts";
import { validate as validateMetallb } from "./lb/metallb/validate.ts";
import { optionsSchema as calicoOptionsSchema } from "./net/calico/options.ts";
import { validateStage as validateCalico } from "./net/calico/validate.ts";
import { CoreosOptionsSchema, validateCoreos } from "./os/coreos/options.ts";
import { RookOptionsSchema, validateRook } from "./storage/rook/options.ts";
import { ROOK_VERSION } from "./storage/rook/version.ts";

export type LazyPhase = "apply" | "verify" | "render" | "destroy";

/** What a built-in declares up front: everything but its code, and which phases and hooks it has. */
export interface BuiltinManifest
  extends Pick<AnyPlugin, "id" | "title" | "apiVersion" | "version" | "after" | "options" | "validate"> {
  phases: LazyPhase[];
  hooks?: HookName[];
}

/** A plugin whose phases and hooks load `load()`'s plugin when first called, and call it. */
export function lazyPlugin(
  manifest: BuiltinManifest,
  load: () => Promise<{ default: AnyPlugin }>,
): AnyPlugin {
  let loading: Promise<AnyPlugin> | undefined;
  const full = () => {
    loading ??= load().then((m) => m.default);
    return loading;
  };
  const { phases, hooks, ...fields } = manifest;
  const plugin: AnyPlugin = { ...fields, check: async (ctx) => (await full()).check(ctx) };
  // biome-ignore lint/suspicious/noExplicitAny: forwards whatever each phase takes and gives
  const phased = plugin as Record<LazyPhase, (...args: any[]) => Promise<any>>;
  for (const phase of phases) {
    phased[phase] = async (...args) => (await full())[phase]!(...(args as [never, never]));
  }
  if (hooks?.length) {
    plugin.hooks = Object.fromEntries(
      hooks.map((name) => [
        name,
        async (ctx: never, payload: never) => (await full()).hooks![name]!(ctx, payload),
      ]),
    );
  }
  return plugin;
}

const ALL_PHASES: LazyPhase[] = ["apply", "verify", "render", "destroy"];

export const builtinPlugins: readonly AnyPlugin[] = [
  lazyPlugin(
    {
      id: "hypervisor/bhyve",
      title: "bhyve VMs through vm-bhyve",
      apiVersion: 1,
      options: bhyveOptionsSchema,
      validate: validateCluster,
      phases: ALL_PHASES,
      hooks: ["lb:l2-host"],
    },
    () => import("./hypervisor/bhyve/index.ts"),
  ),
  lazyPlugin(
    {
      id: "os/coreos",
      title: "Fedora CoreOS on every node",
      apiVersion: 1,
      after: ["hypervisor"],
      options: CoreosOptionsSchema,
      validate: (input) => validateCoreos(input),
      phases: ALL_PHASES,
      hooks: ["hypervisor:node-boot"],
    },
    () => import("./os/coreos/index.ts"),
  ),
  lazyPlugin(
    {
      id: "k8s/kubespray",
      title: "Kubernetes by Kubespray",
      apiVersion: 1,
      options: kubesprayOptionsSchema,
      validate: validateKubespray,
      phases: ALL_PHASES,
    },
    () => import("./k8s/kubespray/index.ts"),
  ),
  lazyPlugin(
    {
      id: "net/calico",
      title: "Calico pod network",
      apiVersion: 1,
      options: calicoOptionsSchema,
      validate: validateCalico,
      phases: ALL_PHASES,
      hooks: ["k8s:kubespray-vars", "os:node-files"],
    },
    () => import("./net/calico/index.ts"),
  ),
  lazyPlugin(
    {
      id: "lb/metallb",
      title: "MetalLB load balancer",
      apiVersion: 1,
      options: metallbOptionsSchema,
      validate: validateMetallb,
      phases: ALL_PHASES,
      hooks: ["k8s:kubespray-vars", "expose:hops"],
    },
    () => import("./lb/metallb/index.ts"),
  ),
  lazyPlugin(
    {
      id: "ingress/traefik",
      title: "Traefik ingress controller",
      apiVersion: 1,
      version: TRAEFIK_VERSION,
      after: ["k8s", "net", "lb"],
      options: TraefikOptionsSchema,
      validate: (input) => validateTraefik(input),
      phases: ALL_PHASES,
      hooks: ["expose:hops"],
    },
    () => import("./ingress/traefik/index.ts"),
  ),
  lazyPlugin(
    {
      id: "storage/rook",
      title: "Rook-Ceph block storage",
      apiVersion: 1,
      version: ROOK_VERSION,
      after: ["k8s", "net", "lb", "ingress"],
      options: RookOptionsSchema,
      validate: (input) => validateRook(input),
      phases: ALL_PHASES,
    },
    () => import("./storage/rook/index.ts"),
  ),
];
