/**
 * The built-in plugins, in pipeline order. This is the only file that names them: the core loads
 * them through the same contract as any drop-in plugin.
 *
 * Each comes in two parts. What every command needs (its meta.ts: id, title, options schema,
 * validate(); reading a cluster file needs them) is imported at once; the stage's code (check, apply and the rest, with
 * everything they import: the Kubernetes client, the ssh target, tar) only when a stage first runs,
 * so that a command that runs no stage (`config validate`, `plugins`) does not load it. A test holds
 * each part to the plugin its index.ts defines.
 */
import type { AnyPlugin, HookName } from "kubehyve";
import { meta as bhyve } from "./hypervisor/bhyve/meta.ts";
import { meta as traefik } from "./ingress/traefik/meta.ts";
import { meta as kubespray } from "./k8s/kubespray/meta.ts";
import { meta as metallb } from "./lb/metallb/meta.ts";
import { meta as calico } from "./net/calico/meta.ts";
import { meta as coreos } from "./os/coreos/meta.ts";
import { meta as rook } from "./storage/rook/meta.ts";

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
  let loaded: AnyPlugin | undefined;
  const full = () => {
    loading ??= load().then((m) => {
      loaded = m.default;
      return loaded;
    });
    return loading;
  };
  const { phases, hooks, ...fields } = manifest;
  const plugin: AnyPlugin = { ...fields, check: async (ctx) => (await full()).check(ctx) };
  // biome-ignore lint/suspicious/noExplicitAny: forwards whatever each phase takes and gives
  const phased = plugin as Record<LazyPhase, (...args: any[]) => Promise<any>>;
  for (const phase of phases) {
    phased[phase] = async (...args) => (await full())[phase]!(...(args as [never, never]));
  }
  // A plugin calls hooks only from its own phases, so its code is loaded by the time the core reads
  // the schemas of their answers; until then it has called none.
  Object.defineProperty(plugin, "hookAnswers", { enumerable: true, get: () => loaded?.hookAnswers });
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
      ...bhyve,
      phases: ALL_PHASES,
      hooks: ["lb:l2-host"],
    },
    () => import("./hypervisor/bhyve/index.ts"),
  ),
  lazyPlugin(
    {
      ...coreos,
      phases: ALL_PHASES,
      hooks: ["hypervisor:node-boot"],
    },
    () => import("./os/coreos/index.ts"),
  ),
  lazyPlugin(
    {
      ...kubespray,
      phases: ALL_PHASES,
    },
    () => import("./k8s/kubespray/index.ts"),
  ),
  lazyPlugin(
    {
      ...calico,
      phases: ALL_PHASES,
      hooks: ["k8s:kubespray-vars", "os:node-files"],
    },
    () => import("./net/calico/index.ts"),
  ),
  lazyPlugin(
    {
      ...metallb,
      phases: ALL_PHASES,
      hooks: ["k8s:kubespray-vars", "expose:hops"],
    },
    () => import("./lb/metallb/index.ts"),
  ),
  lazyPlugin(
    {
      ...traefik,
      phases: ALL_PHASES,
      hooks: ["expose:hops"],
    },
    () => import("./ingress/traefik/index.ts"),
  ),
  lazyPlugin(
    {
      ...rook,
      phases: ALL_PHASES,
    },
    () => import("./storage/rook/index.ts"),
  ),
];
