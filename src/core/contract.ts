/**
 * The plugin contract: the public, versioned API that built-in and drop-in plugins share. A plugin is
 * a plain object; `definePlugin` only carries its types. Nothing a built-in can do is out of reach of
 * a drop-in: both get exactly this context.
 */
import type { GenericSchema, InferOutput } from "valibot";
import type { ArtifactCache } from "../artifacts/types.ts";
import type { KubeClient } from "../kube/types.ts";
import type { Target } from "../targets/target.ts";
import type { Diagnostic } from "./diagnostics.ts";
import type { Cluster, NodeSpec } from "./model.ts";

/** The plugin API version this binary speaks. A plugin declaring another one is not loaded. */
export const API_VERSION = 1;

/** One intended mutation found by `check`; the list of changes is the plan. */
export interface Change {
  /** Human line: "create VM cp1: 2 vCPU, 4 GiB, 20 GiB disk". */
  summary: string;
  /** The host or node it happens on. */
  target?: string;
  /** Machine-readable kind, for apply to dispatch on: `vm.create`, `vm.restart`. */
  kind?: string;
  /** Extra lines shown with --verbose (a config diff). */
  detail?: string;
  /** Disruptive (restarts a VM, reinstalls): apply asks unless --yes. */
  disruptive?: boolean;
  /** Whatever apply needs to carry out this change. */
  data?: unknown;
}

export interface CheckResult {
  changes: Change[];
  diagnostics: Diagnostic[];
}

/** A file a stage generates, written by `render -o DIR` to `DIR/<slot>/<path>`. */
export interface RenderedFile {
  path: string;
  content: string | Uint8Array;
  /** Octal permission bits; secrets are 0o600. */
  mode?: number;
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  /** Long steps: "task 12 of ~540: download images" — shown as progress, not a log line each time. */
  progress(message: string, current?: number, total?: number): void;
}

/** Small persisted key/value store of one plugin, in the state dir. */
export interface StateStore {
  get<T = unknown>(key: string): T | undefined;
  /** Persisted at once; in a dry run kept in memory only, so a plan never changes state. */
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
}

/**
 * The hooks stages offer one another: for each name, the payload a caller passes and what each
 * handler answers. The stage that calls a hook declares it, where its callers and answerers can
 * both see it, by augmenting this interface (as nuxt's modules augment `NuxtHooks`):
 *
 *   declare module "kubehyve" {
 *     interface HookTypes {
 *       "os:node-files": { payload: { node: NodeSpec }; answer: { files?: NodeFile[] } };
 *     }
 *   }
 *
 * Names are `slot:what`, the slot being the caller's. Answers still come from another stage's code,
 * so the caller checks them at run time too; the types catch a misspelt name or payload.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled in by each hook's declaring stage
export interface HookTypes {}

export type HookName = keyof HookTypes & string;
/** What a caller of hook `N` passes. */
export type HookPayload<N extends HookName> = HookTypes[N] extends { payload: infer P } ? P : never;
/** What one handler of hook `N` answers. */
export type HookAnswer<N extends HookName> = HookTypes[N] extends { answer: infer A } ? A : never;

export interface Hooks {
  /**
   * Calls every loaded plugin's handler of `name` (with that plugin's own context) and returns
   * their answers in stage order. No handler: an empty list.
   */
  call<N extends HookName>(
    name: N,
    ...payload: undefined extends HookPayload<N> ? [payload?: HookPayload<N>] : [payload: HookPayload<N>]
  ): Promise<HookAnswer<N>[]>;
}

/**
 * A canary of `verify`: objects it creates to prove that the data path works (a pod reaching a pod
 * on another node, a claim written and read back), removed again before it returns.
 */
export interface Canary<T> {
  /** Stable within the stage: the record of its last pass is kept in the stage's state under it. */
  name: string;
  /** What it creates, as a ctx.wet line (a read-only run lists it). */
  description: string;
  /** The result proves the path, and everything the canary made is gone again. */
  passed(result: T): boolean;
}

/** What ctx.canary did: ran it, or why not. */
export type CanaryRun<T> =
  | { ran: true; result: T }
  /** A run that changes nothing (verify, doctor, a dry run). */
  | { ran: false; why: "read-only" }
  /** It passed at `passedAt` (ISO 8601) and nothing that could break the path changed since. */
  | { ran: false; why: "proven"; passedAt: string };

export interface SshKey {
  privateKeyPath: string;
  publicKey: string;
}

export interface PluginContext<O = Record<string, unknown>> {
  readonly cluster: Cluster;
  readonly options: O;
  /** This plugin's id and the slot it fills. */
  readonly plugin: { id: string; slot: string };
  /** The hypervisor host: local, or over ssh when the cluster file names an `ssh://` host. */
  readonly host: Target;
  /** A node, over ssh as `core` with the cluster key. */
  node(name: string): Target;
  /**
   * The machine kubehyve itself runs on, for tools that run beside it (Ansible). The same as
   * `host` when the host is local; refused, like every target, when nothing may be inspected.
   */
  readonly local: Target;
  /** The Kubernetes client over the admin kubeconfig (`kubeconfigPath`). Throws until it exists. */
  kube(): Promise<KubeClient>;
  readonly kubeconfigPath: string;
  readonly artifacts: ArtifactCache;
  readonly log: Logger;
  readonly state: StateStore;
  /** This plugin's private directory in the state dir (mode 0700), for generated files. */
  readonly dir: string;
  /** The cluster's own SSH key pair, generated once into the state dir. */
  clusterKey(): Promise<SshKey>;
  /**
   * This cluster's identity (a UUID), made at its first `up` and kept in the state dir. Everything
   * a stage creates on a host carries it (a vm-bhyve config variable, a ZFS user property, a marker
   * file), and a stage changes or destroys only what carries it: a name alone is not ownership.
   * Before the first `up` a plan gets a fresh id that nothing on any host carries yet.
   */
  readonly clusterId: string;
  readonly dryRun: boolean;
  /** An earlier stage still has pending changes, so this one cannot be inspected yet. */
  readonly upstreamPending: boolean;
  /**
   * Aborts at the first Ctrl-C: stop between steps. ctx.wet starts no new mutation after it, and
   * the targets do not kill a running command for it unless the command was run with
   * `{ cancellable: true }`. A second Ctrl-C kills every command.
   */
  readonly signal: AbortSignal;
  /** --yes was given: disruptive changes and destruction go ahead without asking. */
  readonly assumeYes: boolean;
  /**
   * --upgrade was given: a stage may move what it pinned on the first run (an OS image release) to
   * the newest. Without it, re-runs reproduce the pinned releases and a newer one is only reported.
   */
  readonly upgrade: boolean;
  /** Asks the user; true under --yes, false when nobody can answer (no terminal, --json). */
  confirm(question: string): Promise<boolean>;
  /**
   * Every mutation goes through here. In a dry run it records `description` and returns undefined
   * without calling `fn`, so the plan is honest by construction. Commands `fn` runs are changes:
   * they get the cluster file's `timeouts.change` unless given a kind or a limit of their own.
   */
  wet<T>(description: string, fn: () => Promise<T>, opts?: { target?: string }): Promise<T | undefined>;
  /**
   * Runs on the way out, also after a failure or Ctrl-C (last registered, first run), with working
   * targets: after Ctrl-C its commands and ctx.wet steps still run.
   */
  onCleanup(fn: () => Promise<void> | void): void;
  /**
   * Runs a canary (`fn`) as a ctx.wet step, when it is due: a read-only run never runs one, and
   * `up` runs it when this stage or an earlier one changed something in this run (a ctx.wet step
   * ran), when asked to (`up --canaries`), or when the stage's state holds no record of this canary
   * passing since the stage last changed. The first change of a run deletes the stage's records
   * before it starts, so an `up` stopped between apply and verify is proven by the next one; a
   * record is written only once `passed` says the canary passed and cleaned up. The records are the
   * state key `kubehyve.canaries` (canary name → when it passed), the core's, not the plugin's. A
   * no-op `up` thus creates nothing, and says when the path was last proven.
   */
  canary<T>(canary: Canary<T>, fn: () => Promise<T>): Promise<CanaryRun<T>>;
  readonly hooks: Hooks;
}

export type HookHandler<O, N extends HookName = HookName> = (
  ctx: PluginContext<O>,
  payload: HookPayload<N>,
) => HookAnswer<N> | Promise<HookAnswer<N>>;

/** A plugin's handlers, each typed by the hook it answers. */
export type HookHandlers<O> = { [N in HookName]?: HookHandler<O, N> };

export interface Plugin<S extends GenericSchema = GenericSchema, O = InferOutput<S>> {
  /** `slot/name`, e.g. `lb/metallb`. */
  id: string;
  title: string;
  apiVersion: number;
  version?: string;
  /** Slots this one runs after; built-in slots keep their order, a third-party slot needs this. */
  after?: string[];
  /** valibot schema of this stage's options in the cluster file (defaults included). */
  options?: S;
  /**
   * Checks of the whole cluster file that only this stage knows (vm-bhyve's name rules, the
   * Kubernetes versions a Kubespray release installs), run by every command that reads the file,
   * after the core schema and this stage's options passed. It changes nothing and starts no program
   * (it may read a local path an option names); it touches no host. Each
   * diagnostic's `path` is a cluster-file path (`nodes[1].name`, `stages.k8s.version`); errors make
   * the file invalid (exit 2), warnings are shown and the run goes on.
   */
  validate?(input: { cluster: Cluster; options: O }): Diagnostic[];
  check(ctx: PluginContext<O>): Promise<CheckResult>;
  apply?(ctx: PluginContext<O>, changes: Change[]): Promise<void>;
  verify?(ctx: PluginContext<O>): Promise<Diagnostic[]>;
  render?(ctx: PluginContext<O>): Promise<RenderedFile[]>;
  destroy?(ctx: PluginContext<O>): Promise<void>;
  hooks?: HookHandlers<O>;
  /**
   * valibot schemas of one answer of each hook this plugin calls. The core checks every answer to
   * its ctx.hooks.call against it (checked, not transformed: the caller gets the answer as given),
   * and a mismatch fails the caller's phase naming the plugin that answered. A hook without one
   * gets its answers unchecked.
   */
  hookAnswers?: { [N in HookName]?: GenericSchema<unknown, HookAnswer<N>> };
}

// biome-ignore lint/suspicious/noExplicitAny: the registry holds plugins of every options type
export type AnyPlugin = Plugin<any, any>;

/** Identity function that only carries types. */
export function definePlugin<S extends GenericSchema, O = InferOutput<S>>(plugin: Plugin<S, O>): Plugin<S, O>;
export function definePlugin<O = Record<string, unknown>>(
  plugin: Plugin<GenericSchema, O>,
): Plugin<GenericSchema, O>;
export function definePlugin(plugin: AnyPlugin): AnyPlugin {
  return plugin;
}

/** The nodes of a role, in file order. */
export function nodesOf(cluster: Cluster, role: NodeSpec["role"]): NodeSpec[] {
  return cluster.nodes.filter((n) => n.role === role);
}
