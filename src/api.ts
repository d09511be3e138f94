/**
 * The module `kubehyve` that plugins import. Inside the compiled binary it is registered as a virtual
 * module (see src/core/plugin-api-module.ts), so a drop-in plugin file needs no node_modules.
 * Everything exported here is public API, versioned by API_VERSION.
 */

/** Defaults merged the unjs way: `defu(highest, …, lowest)`, and createDefu for custom rules. */
export { createDefu, defu } from "defu";
export * as v from "valibot";

import type * as Yaml from "yaml";

/**
 * The yaml library, evaluated when first used rather than when a plugin is loaded: a command that
 * writes no YAML (config validate) does not pay for it.
 */
const yaml = (): typeof Yaml => require("yaml");

/** YAML for generated files (inventories, manifests): the same library that reads cluster files. */
export const parseYaml = ((...args: Parameters<typeof Yaml.parse>) =>
  yaml().parse(...args)) as typeof Yaml.parse;
export const stringifyYaml = ((...args: Parameters<typeof Yaml.stringify>) =>
  yaml().stringify(...args)) as typeof Yaml.stringify;
export type { TreeDigest } from "./artifacts/tree.ts";
export { TREE_DIGEST_V1, treeSha256V1 } from "./artifacts/tree.ts";
export type { ArtifactCache, ArtifactRequest, TreeRequest } from "./artifacts/types.ts";
export type {
  AnyPlugin,
  Change,
  CheckResult,
  HookAnswer,
  HookHandler,
  HookHandlers,
  HookName,
  HookPayload,
  Hooks,
  HookTypes,
  Logger,
  Plugin,
  PluginContext,
  RenderedFile,
  SshKey,
  StateStore,
} from "./core/contract.ts";
export { API_VERSION, definePlugin, nodesOf } from "./core/contract.ts";
export type { Diagnostic, Severity } from "./core/diagnostics.ts";
export { diag, hasErrors } from "./core/diagnostics.ts";
export type {
  Cluster,
  CommandTimeouts,
  DataDisk,
  HostSpec,
  NetworkSpec,
  NodeRole,
  NodeSpec,
  StageSpec,
} from "./core/model.ts";
export { CommandTimeoutError } from "./core/signal-target.ts";
export { formatSize, GiB, MiB, parseSize } from "./core/units.ts";
export { applyManifests, ManifestError, parseManifests } from "./kube/apply.ts";
export type { ObjectRef, Readiness, WaitOptions } from "./kube/readiness.ts";
export { describeRef, isReady, waitFor } from "./kube/readiness.ts";
export type { ApplyConflict } from "./kube/status.ts";
export { KubeApiError, KubeApplyConflictError, KubeRequestError, KubeTransportError } from "./kube/status.ts";
export type { ApplyOptions, DeleteOptions, KubeClient, KubeObject, ListOptions } from "./kube/types.ts";
export { mapLimit } from "./lib/concurrency.ts";
export { CancelledError, KubehyveError } from "./lib/errors.ts";
export { type Pending, type PollOptions, pending, poll, sleep } from "./lib/poll.ts";
export { shellJoin, shellQuote } from "./targets/quote.ts";
export type { CommandKind, RunOptions, RunResult, Target } from "./targets/target.ts";
export { CommandError, readTargetFile, runOk, TIMEOUT_EXIT, writeTargetFile } from "./targets/target.ts";
