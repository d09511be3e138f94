/**
 * What one run of a command holds: its id, journal and locks, the pool of targets, one plugin
 * context per stage, the hooks between stages, and what each stage came to. The runbooks
 * (runbooks.ts) read as steps over it; the engine (engine.ts) opens it, runs a runbook and closes it.
 */
import type { ArtifactCache } from "../artifacts/types.ts";
import type { KubeClient } from "../kube/types.ts";
import { InputError, KubehyveError } from "../lib/errors.ts";
import { describeValue, frozenCopy } from "../lib/values.ts";
import type { Stage } from "./config.ts";
import { createPluginContext, type TestablePluginContext } from "./context.ts";
import type { AnyPlugin, HookName, Hooks } from "./contract.ts";
import { type Diagnostic, ignoring } from "./diagnostics.ts";
import type { ExposeRequest } from "./expose.ts";
import { acquireHostLock, type HostLock } from "./host-lock.ts";
import { clusterIdentity } from "./identity.ts";
import { acquireLock, Journal, type Lock, type StaleLock } from "./journal.ts";
import { type Cluster, DEFAULT_TIMEOUTS } from "./model.ts";
import { orderStages } from "./order.ts";
import { errorMessage, type PhaseRunner, phaseRunner, type StageOutcome } from "./phase.ts";
import { checkedHookAnswer, PluginContractError } from "./plugin-results.ts";
import { defaultTargets, offlineTargets, type TargetFactory, TargetPool } from "./pool.ts";
import type { RenderedSlot } from "./render-output.ts";
import { type Reporter, RUN_SECTION } from "./reporter.ts";
import type { KubehyveBuild } from "./state-format.ts";

export type Command = "plan" | "up" | "verify" | "doctor" | "down" | "render" | "expose";

export interface StageSelection {
  only?: string[];
  from?: string;
  until?: string;
}

export interface EngineRequest {
  command: Command;
  cluster: Cluster;
  stages: readonly Stage[];
  stateDir: string;
  reporter: Reporter;
  /** `up --dry-run`: plan instead. */
  dryRun?: boolean;
  /** Inspect nothing: plan a fresh install (`plan --offline`); render is always offline. */
  offline?: boolean;
  select?: StageSelection;
  assumeYes?: boolean;
  /** up --upgrade: stages may move pinned releases to the newest. */
  upgrade?: boolean;
  /** up --canaries: every stage's canary runs, whatever its record of passing says. */
  canaries?: boolean;
  ask?: (question: string) => Promise<boolean>;
  /** The first Ctrl-C: the run stops between steps (see core/signal-target.ts). */
  signal?: AbortSignal;
  /** The second Ctrl-C: every running command is killed. */
  abort?: AbortSignal;
  targets?: TargetFactory;
  kube?: () => Promise<KubeClient>;
  artifacts?: ArtifactCache;
  /** For render: where the files go. */
  renderDir?: string;
  /** For render: write into a directory render did not make, and replace its own edited files. */
  renderForce?: boolean;
  /** doctor: how long one stage's check or verify may take; then the stage's commands are killed. */
  phaseTimeoutMs?: number;
  /** Shown first by doctor: config warnings, plugin load problems. */
  preflight?: Diagnostic[];
  /** The exposure walk: verify --expose, kubehyve expose, doctor (see expose-run.ts). */
  expose?: ExposeRequest;
  /** doctor --ignore: the errors of these check ids are shown as warnings, marked ignored. */
  ignore?: string[];
  /** The kubehyve running, recorded in the state dir by a run that changes it (state-format.ts). */
  kubehyve?: KubehyveBuild;
}

/** How a run treats what it reaches, from its command's runbook. */
export interface RunOptions {
  /** Look once: a machine that cannot be reached is remembered as such for the rest of the run. */
  rememberUnreachable?: boolean;
}

/** The stages a --only/--from/--until selection keeps, in run order. */
export function selectStages(ordered: readonly Stage[], select: StageSelection = {}): Stage[] {
  const slots = ordered.map((s) => s.slot);
  for (const slot of [...(select.only ?? []), select.from, select.until].filter((s): s is string =>
    Boolean(s),
  )) {
    if (!slots.includes(slot))
      throw new InputError(`no stage "${slot}" in this cluster file`, `stages here: ${slots.join(", ")}`);
  }
  const from = select.from ? slots.indexOf(select.from) : 0;
  const until = select.until ? slots.indexOf(select.until) : slots.length - 1;
  // A selection that selects nothing is a slip (the two swapped), never a run that does nothing
  // and says it went well. A cluster file without stages has nothing to select: from 0 "after"
  // until -1 is no swap.
  if (slots.length && from > until)
    throw new InputError(
      `--from ${select.from} comes after --until ${select.until} in the run order: no stage would run`,
      `the stages in run order: ${slots.join(", ")}`,
    );
  const chosen = ordered.filter(
    (s, i) => i >= from && i <= until && (!select.only?.length || select.only.includes(s.slot)),
  );
  if (!chosen.length && slots.length) {
    const given = [
      select.only?.length ? `--only ${select.only.join(",")}` : "",
      select.from ? `--from ${select.from}` : "",
      select.until ? `--until ${select.until}` : "",
    ].filter(Boolean);
    throw new InputError(
      `${given.join(", ")} select no stage: nothing would run`,
      `the stages in run order: ${slots.join(", ")}`,
    );
  }
  return chosen;
}

export class Run {
  readonly id: string;
  readonly started = Date.now();
  readonly command: Command;
  readonly signal: AbortSignal;
  /** Nothing is inspected: render, and `plan --offline`. */
  readonly offline: boolean;
  /** Nothing is changed: every command but `up` and `down`, and their --dry-run. */
  readonly dryRun: boolean;
  /**
   * A dry run in the user's sense, what run.start's `dryRun` says: the command would change
   * something and this run only says what (plan, which `up --dry-run` is; `down --dry-run`;
   * `expose --dry-run` and `verify --expose --dry-run`). verify, doctor and render change nothing by
   * design: they are no dry run of anything, and saying so would suggest a real run exists.
   */
  readonly dryRunAsked: boolean;
  readonly reporter: Reporter;
  readonly journal: Journal;
  /** Every stage, in run order: hooks reach them all, whichever a command selects. */
  readonly ordered: readonly Stage[];
  readonly outcomes: StageOutcome[] = [];
  readonly phases: PhaseRunner;
  readonly pool: TargetPool;
  readonly hooks: Hooks;
  /** An earlier stage still has changes pending: the later ones plan a fresh install. */
  upstreamPending: boolean;
  /** The stages the command's runbook walks, in its order. */
  walking: Stage[] = [];
  /** What render's stages gave, written out once every stage has rendered. */
  readonly rendered: RenderedSlot[] = [];
  /**
   * Findings of the run rather than of one stage (doctor): what loading found, and each machine
   * that could not be reached, once.
   */
  readonly findings: Diagnostic[] = [];
  /** What every finding goes through before it is recorded (doctor --ignore). */
  readonly adjust: (d: Diagnostic) => Diagnostic;
  exitCode = 0;
  lock?: Lock;
  hostLock?: HostLock;
  private readonly contexts = new Map<string, TestablePluginContext>();
  /** Per stage, for doctor: given up on at its phase's limit, which kills the stage's commands. */
  private readonly stageStops = new Map<string, AbortController>();

  constructor(
    readonly req: EngineRequest,
    opts: RunOptions = {},
  ) {
    this.id = `${new Date(this.started).toISOString().replace(/[:.]/g, "-")}-${process.pid}`;
    this.command = req.command;
    this.signal = req.signal ?? new AbortController().signal;
    this.offline = req.command === "render" || Boolean(req.offline);
    this.dryRun = req.command !== "up" && req.command !== "down" ? true : Boolean(req.dryRun);
    // The walk of verify and expose makes what it walks (an Ingress, the canary) unless it too is a
    // dry run; the walk of what is exposed already only looks.
    this.dryRunAsked =
      req.command === "plan" ||
      ((req.command === "up" || req.command === "down") && Boolean(req.dryRun)) ||
      Boolean(req.expose?.dryRun && req.expose.app.kind !== "exposed");
    this.upstreamPending = this.offline;
    this.reporter = req.reporter;
    this.journal = new Journal(req.stateDir);
    this.ordered = orderStages(req.stages);
    this.adjust = ignoring(req.ignore ?? []);
    this.phases = phaseRunner({
      runId: this.id,
      command: req.command,
      journal: this.journal,
      reporter: req.reporter,
      signal: this.signal,
      adjust: this.adjust,
      // doctor has a hard limit of its own for each phase, and starts verify outside its phase.
      idleLimitMs: req.command === "doctor" ? undefined : (req.cluster.timeouts ?? DEFAULT_TIMEOUTS).change,
    });
    this.pool = new TargetPool(
      this.offline ? offlineTargets : (req.targets ?? defaultTargets(req.cluster, req.stateDir)),
      { rememberUnreachable: opts.rememberUnreachable && !this.offline },
    );
    this.hooks = { call: (name, ...[payload]) => this.callHook(name, payload) };
  }

  /**
   * Every stage's answer to hook `name`, in stage order, each handler with its own stage's context;
   * `caller`'s schema of the answer (Plugin.hookAnswers), when it declares one, holds each answer.
   */
  private async callHook(name: HookName, payload: unknown, caller?: AnyPlugin): Promise<never> {
    const declared = { id: caller?.id ?? "kubehyve", schema: caller?.hookAnswers?.[name] };
    const answers: unknown[] = [];
    for (const stage of this.ordered) {
      const handler = stage.plugin.hooks?.[name];
      if (handler === undefined) continue;
      if (typeof handler !== "function")
        throw new PluginContractError(
          stage.plugin.id,
          `plugin ${stage.plugin.id}'s handler of hook ${name} is ${describeValue(handler)}, not a function`,
        );
      // Each its own read-only copy: a handler that changed the payload would change it for the
      // handlers after it and for the caller.
      const answer = await handler(this.contextOf(stage), frozenCopy(payload) as never);
      answers.push(checkedHookAnswer(stage.plugin.id, name, declared, answer));
    }
    return answers as never;
  }

  private id_?: string;
  /**
   * The cluster's identity: made and kept by the first real `up` (under the state dir's lock, so two
   * first runs cannot both make one); every other command reads it, or gets a throwaway one.
   */
  get clusterId(): string {
    this.id_ ??= clusterIdentity(this.req.stateDir, this.command === "up" && !this.dryRun);
    return this.id_;
  }

  /**
   * The stage's context; one per stage, kind of inspection, reporter and dry-run mode, made on first
   * use. A run that is a dry run for the stages may still change what one step makes of its own
   * (verify --expose deploys its canary): that step asks for a context that is not a dry run.
   */
  contextOf(
    stage: Stage,
    upstreamPending = this.offline,
    reporter = this.reporter,
    dryRun = this.dryRun,
  ): TestablePluginContext {
    const key = `${stage.slot}:${upstreamPending}:${reporter === this.reporter}:${dryRun}`;
    let ctx = this.contexts.get(key);
    if (!ctx) {
      const stop = this.stageStops.get(stage.slot)?.signal;
      const abort = this.req.abort;
      ctx = createPluginContext({
        cluster: this.req.cluster,
        plugin: stage.plugin,
        options: stage.options,
        stateDir: this.req.stateDir,
        dryRun,
        clusterId: this.clusterId,
        upstreamPending,
        assumeYes: this.req.assumeYes,
        upgrade: this.req.upgrade,
        canaries: this.req.canaries,
        upstreamChanged: () => this.changedBefore(stage),
        signal: stop ? AbortSignal.any([this.signal, stop]) : this.signal,
        abort: stop ? (abort ? AbortSignal.any([abort, stop]) : stop) : abort,
        pool: this.pool,
        // Each stage's own: its calls are held to the answers it declares.
        hooks: { call: (name, ...[payload]) => this.callHook(name, payload, stage.plugin) },
        kube: this.offline
          ? async () => {
              throw new KubehyveError("offline: no Kubernetes API is reached");
            }
          : this.req.kube,
        artifacts: this.req.artifacts,
        reporter,
        ask: this.req.ask,
      });
      this.contexts.set(key, ctx);
    }
    return ctx;
  }

  /** A stage before this one changed something in this run: what this one proved may not hold. */
  private changedBefore(stage: Stage): boolean {
    const at = this.ordered.findIndex((s) => s.slot === stage.slot);
    const earlier = new Set(this.ordered.slice(0, at).map((s) => s.slot));
    return [...this.contexts].some(([key, ctx]) => ctx.changed && earlier.has(key.split(":")[0]!));
  }

  /** A stage whose commands are killed when doctor gives up on it (see `giveUp`). */
  stoppable(stage: Stage): void {
    this.stageStops.set(stage.slot, new AbortController());
  }

  /** Kills what a stage still runs: doctor's limit for one of its phases has passed. */
  giveUp(stage: Stage, why: Error): void {
    this.stageStops.get(stage.slot)?.abort(why);
  }

  /** A new outcome for the stage, in the run's list. */
  outcome(stage: Stage, status: StageOutcome["status"] = "skipped"): StageOutcome {
    const o: StageOutcome = {
      slot: stage.slot,
      plugin: stage.plugin.id,
      status,
      changes: [],
      diagnostics: [],
    };
    this.outcomes.push(o);
    return o;
  }

  /** A finding of the run itself, shown in the `kubehyve` section. */
  note(found: Diagnostic): void {
    const d = this.adjust(found);
    this.findings.push(d);
    this.reporter.emit({ type: "diagnostic", stage: RUN_SECTION, ...d });
  }

  log(level: "info" | "warn", message: string, stage?: string): void {
    this.reporter.emit({ type: "log", level, message, ...(stage ? { stage } : {}) });
  }

  /** The state dir's lock: one run of a cluster at a time. A stale one is taken over and journaled. */
  lockStateDir(): void {
    this.lock = acquireLock(this.req.stateDir, this.command, this.id);
    if (this.lock.takenOver) recordTakeover(this.journal, this.id, this.command, this.lock.takenOver);
    if (this.lock.tookOverFrom !== undefined)
      this.log("warn", `took over the lock left by a run that is gone (pid ${this.lock.tookOverFrom})`);
  }

  /** The host's lock: one cluster (or state dir) changing the hypervisor host at a time. */
  async lockHost(): Promise<void> {
    const path = this.pool.hostLock;
    if (!path) return;
    if (!path.startsWith("/"))
      throw new InputError(`the host lock ${JSON.stringify(path)} is not an absolute path`);
    this.hostLock = await acquireHostLock(this.pool.host(), path, {
      run: this.id,
      command: this.command,
      cluster: this.req.cluster.name,
      stateDir: this.req.stateDir,
    });
    const taken = this.hostLock.takenOver;
    if (!taken) return;
    this.journal.record({
      run: this.id,
      command: this.command,
      status: "lock-taken-over",
      message: `took over the host lock ${this.hostLock.path} of ${taken.holder}: ${taken.why}`,
    });
    this.log(
      "warn",
      `took over the host lock ${this.hostLock.path} left by a run that is gone (${taken.why})`,
    );
  }

  /** On the way out, also after a failure or Ctrl-C: each stage's cleanups, the host lock, the targets. */
  async close(): Promise<void> {
    for (const ctx of this.contexts.values()) await ctx.runCleanups();
    if (this.hostLock) {
      const hostLock = this.hostLock;
      await hostLock
        .release()
        .catch((error: unknown) =>
          this.log("warn", `could not release the host lock ${hostLock.path}: ${errorMessage(error)}`),
        );
    }
    await this.pool.closeAll();
  }
}

/**
 * A lock taken over is journaled twice: the run that held it gets the end line it never wrote
 * (killed, or its machine went down), and this run says that it took over, from whom and why.
 */
function recordTakeover(journal: Journal, runId: string, command: string, stale: StaleLock): void {
  const entries = journal.read();
  const ended = new Set(entries.filter((e) => !e.stage && e.status !== "started").map((e) => e.run));
  // A lock of an older version names no run: its runs' ids end with the holder's pid.
  const candidates = stale.run
    ? [stale.run]
    : entries
        .filter((e) => e.status === "started" && stale.pid !== undefined && e.run.endsWith(`-${stale.pid}`))
        .map((e) => e.run)
        .slice(-1);
  for (const run of candidates) {
    if (ended.has(run)) continue;
    const started = entries.find((e) => e.run === run && e.status === "started");
    journal.record({
      run,
      command: started?.command ?? stale.command ?? "unknown",
      status: "killed",
      message: `the run ended without finishing (${stale.why}); found by run ${runId}, which took over its lock`,
    });
  }
  journal.record({
    run: runId,
    command,
    status: "lock-taken-over",
    message: `took over the lock of ${stale.pid ? `pid ${stale.pid}` : "a run"}${stale.run ? ` (run ${stale.run})` : ""}: ${stale.why}`,
  });
}
