/**
 * The module `kubehyve` that plugins import. Inside the compiled binary it is registered as a virtual
 * module (see src/core/plugin-api-module.ts), so a drop-in plugin file needs no node_modules.
 * Everything exported here is public API, versioned by API_VERSION.
 */

/** Defaults merged the unjs way: `defu(highest, …, lowest)`, and createDefu for custom rules. */
export { createDefu, defu } from "defu";
export * as v from "valibot";
export type { TreeDigest } from "./artifacts/tree.ts";
export { TREE_DIGEST_V1, treeSha256V1 } from "./artifacts/tree.ts";
export type { ArtifactCache, ArtifactRequest, TreeRequest } from "./artifacts/types.ts";
/** The finding of a canary ctx.canary did not run, worded alike for every stage. */
export { canaryNotRun } from "./core/canary.ts";
export type { EachCheckOptions } from "./core/checks.ts";
export { checkEach, findingOfFailure } from "./core/checks.ts";
export type {
  AnyPlugin,
  Canary,
  CanaryRun,
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
  ExposeTarget,
  Hop,
  HopContext,
  HopFacts,
  HopPlace,
  HopResult,
  HopStatus,
} from "./core/expose.ts";
export { EXPOSE_HOPS_HOOK, HOP_PLACES } from "./core/expose.ts";
export { ownDirProblem, plainPathProblem, systemTreeOf } from "./core/host-paths.ts";
export type { Cidr } from "./core/ipv4.ts";
export { cidrContains, cidrSize, cidrsOverlap, formatIpv4, parseCidr, parseIpv4 } from "./core/ipv4.ts";
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
export { DiagnosticSchema, notAList } from "./core/plugin-results.ts";
export { UnreachableError } from "./core/reach.ts";
export { CommandTimeoutError } from "./core/signal-target.ts";
export { formatSize, GiB, MiB, parseSize } from "./core/units.ts";
export { parseYaml, stringifyYaml } from "./core/yaml.ts";
export type { ApplyManifestsOptions } from "./kube/apply.ts";
export { applyManifests, ManifestError, parseManifests } from "./kube/apply.ts";
export type { DiffOptions, ObjectGroup, OwnedPlan, PlannedObject } from "./kube/diff.ts";
export {
  changedFields,
  describeForeign,
  describePlan,
  describePrune,
  diffManifests,
  planOwned,
} from "./kube/diff.ts";
export type { KindRef, Owner, PruneOptions } from "./kube/ownership.ts";
export {
  CLUSTER_LABEL,
  deleteOwned,
  deletionOrder,
  findLeftovers,
  isCustomResource,
  isOwnedBy,
  kindsOf,
  listOwned,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  ownerLabels,
  ownerSelector,
  refKey,
  refOf,
  STAGE_LABEL,
  withOwner,
} from "./kube/ownership.ts";
export type { PinnedFile, PinnedFileCache, PinnedManifests } from "./kube/pinned.ts";
export { missingNote, pinnedManifests } from "./kube/pinned.ts";
export type { ObjectRef, Readiness, WaitOptions } from "./kube/readiness.ts";
export { describeRef, isReady, waitFor } from "./kube/readiness.ts";
export type {
  OwningContext,
  StageChange,
  StageFinding,
  StageGroup,
  StagePlanOptions,
} from "./kube/stage-objects.ts";
export {
  APPLIED_KINDS_KEY,
  appliedKinds,
  applyStageObjects,
  changesOrRefusal,
  checkReachable,
  destroyStageObjects,
  isStageFinding,
  planStageObjects,
  stageCluster,
  stageOwner,
} from "./kube/stage-objects.ts";
export type { ApplyConflict } from "./kube/status.ts";
export {
  isWebhookCallFailure,
  KubeApiError,
  KubeApplyConflictError,
  KubeRequestError,
  KubeTransportError,
} from "./kube/status.ts";
export type { ApplyOptions, DeleteOptions, KubeClient, KubeObject, ListOptions } from "./kube/types.ts";
export { mapLimit } from "./lib/concurrency.ts";
/** A name's A records as one DNS server answers them (the lab's dnsmasq, at any port). */
export { type DnsAnswer, resolveA } from "./lib/dns.ts";
export { CancelledError, KubehyveError } from "./lib/errors.ts";
/**
 * Writes a file through an exclusively created temporary name of its own (never through what lies
 * there), with `mode`, synced, then renamed into place; the directory is made 0700 when missing.
 */
export { writeFileAtomic } from "./lib/fsutil.ts";
export { type Pending, type PollOptions, pending, poll, sleep } from "./lib/poll.ts";
export { redact as urlWithoutCredentials } from "./lib/url.ts";
export { type HttpAnswer, type HttpGetOptions, httpGet } from "./targets/http.ts";
export { shellJoin, shellQuote } from "./targets/quote.ts";
export type { CommandKind, RunOptions, RunResult, Target } from "./targets/target.ts";
export { CommandError, readTargetFile, runOk, TIMEOUT_EXIT, writeTargetFile } from "./targets/target.ts";
