/**
 * The stage engine. Per stage: check → (stop on errors; "up to date" when nothing changes) → apply →
 * verify → (stop on errors). Every other command is a reading of that runbook: plan stops after
 * check, verify and doctor only read, down walks the stages backwards through destroy, render asks
 * each stage for its files and touches no host.
 */
import { join, normalize, relative } from "node:path";
import type { ArtifactCache } from "../artifacts/types.ts";
import type { KubeClient } from "../kube/types.ts";
import { CancelledError, ExitCode, InputError, KubehyveError } from "../lib/errors.ts";
import { ensurePrivateDir } from "../lib/fsutil.ts";
import { CommandError } from "../targets/target.ts";
import type { Stage } from "./config.ts";
import { createPluginContext, type TestablePluginContext } from "./context.ts";
import type { Change, Hooks } from "./contract.ts";
import { type Diagnostic, diag, hasErrors } from "./diagnostics.ts";
import { acquireHostLock, type HostLock } from "./host-lock.ts";
import { clusterIdentity } from "./identity.ts";
import { acquireLock, Journal, type Lock, type StaleLock } from "./journal.ts";
import type { Cluster } from "./model.ts";
import { orderStages } from "./order.ts";
import { defaultTargets, offlineTargets, type TargetFactory, TargetPool } from "./pool.ts";
import { type RenderedSlot, writeRenderOutput } from "./render-output.ts";
import { memoryReporter, type Phase, type PhaseStatus, type Reporter } from "./reporter.ts";

export type Command = "plan" | "up" | "verify" | "doctor" | "down" | "render";

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
}

export interface StageOutcome {
  slot: string;
  plugin: string;
  status: PhaseStatus;
  changes: Change[];
  diagnostics: Diagnostic[];
  failedPhase?: Phase;
}

export interface EngineResult {
  runId: string;
  exitCode: number;
  outcomes: StageOutcome[];
  logFile?: string;
}

/** A phase failed: the run stops here and the message says where. */
class StageFailure extends KubehyveError {
  constructor(
    readonly stage: string,
    readonly phase: Phase,
    message: string,
  ) {
    super(message, ExitCode.phaseFailed);
  }
}

/** The user said no to a question the run needed answered. */
class Declined extends KubehyveError {}

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
  return ordered.filter(
    (s, i) => i >= from && i <= until && (!select.only?.length || select.only.includes(s.slot)),
  );
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Rejects after `ms`, and calls `giveUp` then: what the promise started must not run on unowned. */
function withTimeout<T>(
  promise: Promise<T>,
  ms: number | undefined,
  what: string,
  giveUp?: (error: Error) => void,
): Promise<T> {
  if (!ms) return promise;
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new KubehyveError(
        `${what} did not finish within ${ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}`,
      );
      giveUp?.(error);
      reject(error);
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Refuses paths that would leave the stage's directory: a plugin renders inside its own folder. */
function safeRenderPath(slot: string, path: string): string {
  const clean = normalize(path);
  if (clean.startsWith("..") || clean.startsWith("/") || clean === ".") {
    throw new KubehyveError(`stage ${slot} rendered a file outside its directory: ${path}`);
  }
  return clean;
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

export async function runEngine(req: EngineRequest): Promise<EngineResult> {
  const started = Date.now();
  const runId = `${new Date(started).toISOString().replace(/[:.]/g, "-")}-${process.pid}`;
  const signal = req.signal ?? new AbortController().signal;
  const offline = req.command === "render" || Boolean(req.offline);
  const dryRun = req.command !== "up" && req.command !== "down" ? true : Boolean(req.dryRun);
  const reporter = req.reporter;
  const ordered = orderStages(req.stages);
  const selected =
    req.command === "doctor" || req.command === "render" ? ordered : selectStages(ordered, req.select);

  await ensurePrivateDir(req.stateDir);
  const journal = new Journal(req.stateDir);
  let lock: Lock | undefined;
  if (!dryRun) {
    lock = acquireLock(req.stateDir, req.command, runId);
    if (lock.takenOver) recordTakeover(journal, runId, req.command, lock.takenOver);
    if (lock.tookOverFrom !== undefined) {
      reporter.emit({
        type: "log",
        level: "warn",
        message: `took over the lock left by a run that is gone (pid ${lock.tookOverFrom})`,
      });
    }
  }

  // Made and kept by the first real `up`; every other command reads it (or gets a throwaway one).
  const clusterId = clusterIdentity(req.stateDir, req.command === "up" && !dryRun);
  const pool = new TargetPool(
    offline ? offlineTargets : (req.targets ?? defaultTargets(req.cluster, req.stateDir)),
  );
  const contexts = new Map<string, TestablePluginContext>();
  const hooks: Hooks = {
    async call(name, ...[payload]) {
      const answers = [];
      for (const stage of ordered) {
        const handler = stage.plugin.hooks?.[name];
        if (handler) answers.push(await handler(contextOf(stage), payload as never));
      }
      return answers;
    },
  };
  const abort = req.abort;
  /** Per stage, for doctor: given up on at its phase's limit, which kills the stage's commands. */
  const stageStops = new Map<string, AbortController>();
  const contextOf = (stage: Stage, upstreamPending = offline, stageReporter: Reporter = reporter) => {
    const key = `${stage.slot}:${upstreamPending}:${stageReporter === reporter}`;
    let ctx = contexts.get(key);
    if (!ctx) {
      const stop = stageStops.get(stage.slot)?.signal;
      ctx = createPluginContext({
        cluster: req.cluster,
        plugin: stage.plugin,
        options: stage.options,
        stateDir: req.stateDir,
        dryRun,
        clusterId,
        upstreamPending,
        assumeYes: req.assumeYes,
        upgrade: req.upgrade,
        signal: stop ? AbortSignal.any([signal, stop]) : signal,
        abort: stop ? (abort ? AbortSignal.any([abort, stop]) : stop) : abort,
        pool,
        hooks,
        kube: offline
          ? async () => {
              throw new KubehyveError("offline: no Kubernetes API is reached");
            }
          : req.kube,
        artifacts: req.artifacts,
        reporter: stageReporter,
        ask: req.ask,
      });
      contexts.set(key, ctx);
    }
    return ctx;
  };

  const outcomes: StageOutcome[] = [];
  const record = (o: StageOutcome, phase: Phase, durationMs: number, error?: string) => {
    journal.record({
      run: runId,
      command: req.command,
      stage: o.slot,
      phase,
      status: o.status,
      durationMs,
      changes: o.changes.length,
      errors: o.diagnostics.filter((d) => d.severity === "error").length,
      message: error,
    });
  };

  /** Runs one phase with its events and journal line; a thrown error becomes a StageFailure. */
  const runPhase = async <T>(
    o: StageOutcome,
    phase: Phase,
    fn: () => Promise<T>,
    statusOf: (result: T) => PhaseStatus,
    rep: Reporter = reporter,
  ): Promise<T> => {
    if (signal.aborted) throw new CancelledError(`interrupted before ${o.slot} ${phase}`);
    rep.emit({ type: "phase.start", stage: o.slot, plugin: o.plugin, phase });
    const t0 = Date.now();
    const end = (error?: string) => {
      const durationMs = Date.now() - t0;
      rep.emit({
        type: "phase.end",
        stage: o.slot,
        plugin: o.plugin,
        phase,
        status: o.status,
        durationMs,
        ...(error === undefined ? {} : { error: error.split("\n")[0] }),
      });
      record(o, phase, durationMs, error);
    };
    try {
      const result = await withTimeout(
        fn(),
        req.command === "doctor" ? (req.phaseTimeoutMs ?? 120_000) : undefined,
        `${o.slot} ${phase}`,
        (error) => stageStops.get(o.slot)?.abort(error),
      );
      o.status = statusOf(result);
      end();
      return result;
    } catch (error) {
      const cancelled = error instanceof CancelledError || signal.aborted;
      o.status = cancelled ? "cancelled" : "failed";
      o.failedPhase = phase;
      const message = errorMessage(error);
      if (error instanceof Error && !(error instanceof KubehyveError) && !(error instanceof CommandError)) {
        // Not an expected failure: keep the stack in the run's log for the bug report.
        rep.emit({ type: "log", stage: o.slot, level: "debug", message: error.stack ?? message });
      }
      end(message);
      if (cancelled)
        throw error instanceof CancelledError
          ? error
          : new CancelledError(`interrupted during ${o.slot} ${phase}`);
      throw new StageFailure(o.slot, phase, message);
    }
  };

  const emitDiagnostics = (
    o: StageOutcome,
    phase: Phase,
    diagnostics: Diagnostic[],
    rep: Reporter = reporter,
  ) => {
    o.diagnostics.push(...diagnostics);
    for (const d of diagnostics) rep.emit({ type: "diagnostic", stage: o.slot, phase, ...d });
  };
  const failIfErrors = (o: StageOutcome, phase: Phase) => {
    if (hasErrors(o.diagnostics)) {
      o.status = "failed";
      o.failedPhase = phase;
      const first = o.diagnostics.find((d) => d.severity === "error")!;
      throw new StageFailure(o.slot, phase, `${first.target ? `${first.target}: ` : ""}${first.summary}`);
    }
  };
  const newOutcome = (stage: Stage): StageOutcome => {
    const o: StageOutcome = {
      slot: stage.slot,
      plugin: stage.plugin.id,
      status: "skipped",
      changes: [],
      diagnostics: [],
    };
    outcomes.push(o);
    return o;
  };

  reporter.emit({
    type: "run.start",
    command: req.command,
    cluster: req.cluster.name,
    stages: selected.map((s) => s.slot),
    dryRun,
  });
  journal.record({ run: runId, command: req.command, status: "started" });

  // Leaving at once (a second Ctrl-C exits the process) skips the finally below: the journal still
  // gets its end line and the state dir's lock is freed. The host lock cannot be (that takes a
  // command): the next run finds its holder gone and takes it over.
  let finished = false;
  const onExit = () => {
    if (finished) return;
    try {
      journal.record({
        run: runId,
        command: req.command,
        status: "killed",
        durationMs: Date.now() - started,
        message:
          "kubehyve left before the run finished (a second interrupt); the commands still running were killed",
      });
    } catch {}
    lock?.release();
  };
  process.on("exit", onExit);

  let exitCode: number = ExitCode.ok;
  let endMessage: string | undefined;
  let hostLock: HostLock | undefined;
  try {
    if (!dryRun && (req.command === "up" || req.command === "down") && pool.hostLock) {
      if (!pool.hostLock.startsWith("/"))
        throw new InputError(`the host lock ${JSON.stringify(pool.hostLock)} is not an absolute path`);
      hostLock = await acquireHostLock(pool.host(), pool.hostLock, {
        run: runId,
        command: req.command,
        cluster: req.cluster.name,
        stateDir: req.stateDir,
      });
      if (hostLock.takenOver) {
        journal.record({
          run: runId,
          command: req.command,
          status: "lock-taken-over",
          message: `took over the host lock ${hostLock.path} of ${hostLock.takenOver.holder}: ${hostLock.takenOver.why}`,
        });
        reporter.emit({
          type: "log",
          level: "warn",
          message: `took over the host lock ${hostLock.path} left by a run that is gone (${hostLock.takenOver.why})`,
        });
      }
    }
    switch (req.command) {
      case "plan":
      case "up": {
        let pending = offline;
        for (const stage of selected) {
          const o = newOutcome(stage);
          const ctx = contextOf(stage, pending);
          const checked = await runPhase(
            o,
            "check",
            async () => {
              const r = await stage.plugin.check(ctx);
              // Set before the phase's journal line is written, which counts them.
              o.changes = r.changes;
              return r;
            },
            (r) => (r.changes.length ? "changes" : "up-to-date"),
          );
          for (const c of checked.changes)
            reporter.emit({
              type: "change",
              stage: stage.slot,
              summary: c.summary,
              target: c.target,
              kind: c.kind,
              detail: c.detail,
              disruptive: c.disruptive,
            });
          emitDiagnostics(o, "check", checked.diagnostics);
          failIfErrors(o, "check");
          if (dryRun) {
            pending ||= checked.changes.length > 0;
            continue;
          }
          if (checked.changes.length) {
            const disruptive = checked.changes.filter((c) => c.disruptive);
            if (disruptive.length && !req.assumeYes) {
              const list = disruptive.map((c) => `${c.target ? `${c.target}: ` : ""}${c.summary}`).join("; ");
              const ok = req.ask ? await req.ask(`${stage.slot}: ${list}. Go ahead?`) : false;
              if (!ok)
                throw new StageFailure(
                  stage.slot,
                  "apply",
                  `not confirmed: ${list} (run again with --yes to allow it)`,
                );
            }
            if (stage.plugin.apply)
              await runPhase(
                o,
                "apply",
                () => stage.plugin.apply!(ctx, checked.changes),
                () => "ok",
              );
          }
          if (stage.plugin.verify) {
            const diagnostics = await runPhase(
              o,
              "verify",
              () => stage.plugin.verify!(ctx),
              () => "ok",
            );
            emitDiagnostics(o, "verify", diagnostics);
            failIfErrors(o, "verify");
          }
        }
        const pendingChanges = outcomes.reduce((n, o) => n + o.changes.length, 0);
        endMessage = dryRun
          ? `plan: ${pendingChanges} change${pendingChanges === 1 ? "" : "s"}`
          : "cluster is up";
        break;
      }
      case "verify": {
        for (const stage of selected) {
          const o = newOutcome(stage);
          if (!stage.plugin.verify) continue;
          const diagnostics = await runPhase(
            o,
            "verify",
            () => stage.plugin.verify!(contextOf(stage)),
            () => "ok",
          );
          emitDiagnostics(o, "verify", diagnostics);
          failIfErrors(o, "verify");
        }
        endMessage = "every stage verified";
        break;
      }
      case "doctor": {
        // Stages are inspected side by side; each one's lines are held back and printed in order.
        const buffers = await Promise.all(
          selected.map(async (stage) => {
            stageStops.set(stage.slot, new AbortController());
            const buffer = memoryReporter();
            const o: StageOutcome = {
              slot: stage.slot,
              plugin: stage.plugin.id,
              status: "ok",
              changes: [],
              diagnostics: [],
            };
            try {
              // Inside the try: a stage whose context cannot be built (a corrupt state file) is one
              // finding among the others, not the end of doctor.
              const ctx = contextOf(stage, false, buffer);
              const checked = await runPhase(
                o,
                "check",
                async () => {
                  const r = await stage.plugin.check(ctx);
                  o.changes = r.changes;
                  return r;
                },
                (r) => (r.changes.length ? "changes" : "up-to-date"),
                buffer,
              );
              emitDiagnostics(o, "check", checked.diagnostics, buffer);
              if (checked.changes.length) {
                emitDiagnostics(
                  o,
                  "check",
                  [
                    diag.info(
                      "engine.changes-pending",
                      `${checked.changes.length} change${checked.changes.length === 1 ? "" : "s"} pending: ${checked.changes
                        .map((c) => c.summary)
                        .slice(0, 3)
                        .join("; ")}${checked.changes.length > 3 ? "; …" : ""}`,
                      {
                        hint: `kubehyve up --only ${stage.slot}`,
                      },
                    ),
                  ],
                  buffer,
                );
              }
              if (stage.plugin.verify) {
                const diagnostics = await runPhase(
                  o,
                  "verify",
                  () => stage.plugin.verify!(ctx),
                  () => "ok",
                  buffer,
                );
                emitDiagnostics(o, "verify", diagnostics, buffer);
              }
            } catch (error) {
              if (error instanceof CancelledError) throw error;
              emitDiagnostics(
                o,
                o.failedPhase ?? "check",
                [
                  diag.error(
                    "engine.phase-failed",
                    `${stage.slot} ${o.failedPhase ?? "check"} could not run`,
                    { detail: (error as Error).message },
                  ),
                ],
                buffer,
              );
            }
            return { o, buffer };
          }),
        );
        for (const d of req.preflight ?? []) reporter.emit({ type: "diagnostic", stage: "kubehyve", ...d });
        for (const { o, buffer } of buffers) {
          outcomes.push(o);
          for (const e of buffer.events) reporter.emit(e);
        }
        const all = [...(req.preflight ?? []), ...outcomes.flatMap((o) => o.diagnostics)];
        const errors = all.filter((d) => d.severity === "error").length;
        const warnings = all.filter((d) => d.severity === "warn").length;
        endMessage = `doctor: ${errors} error${errors === 1 ? "" : "s"}, ${warnings} warning${warnings === 1 ? "" : "s"}, ${all.length - errors - warnings} fine`;
        if (errors) {
          exitCode = ExitCode.phaseFailed;
        }
        break;
      }
      case "down": {
        const reversed = [...selected].reverse().filter((s) => s.plugin.destroy);
        if (!dryRun && !req.assumeYes) {
          const ok = req.ask
            ? await req.ask(
                `Tear down cluster ${req.cluster.name} (${reversed.map((s) => s.slot).join(", ")}; nodes ${req.cluster.nodes.map((n) => n.name).join(", ")})?`,
              )
            : false;
          if (!ok)
            throw new Declined("not confirmed: nothing was changed (run again with --yes to tear down)");
        }
        for (const stage of reversed) {
          const o = newOutcome(stage);
          await runPhase(
            o,
            "destroy",
            () => stage.plugin.destroy!(contextOf(stage)),
            () => "ok",
          );
        }
        endMessage = dryRun ? "down: dry run, nothing changed" : `cluster ${req.cluster.name} is down`;
        break;
      }
      case "render": {
        if (!req.renderDir) throw new InputError("render needs an output directory: -o DIR");
        const rendered: RenderedSlot[] = [];
        for (const stage of selected) {
          const o = newOutcome(stage);
          if (!stage.plugin.render) continue;
          const files = await runPhase(
            o,
            "render",
            async () => {
              const files = await stage.plugin.render!(contextOf(stage, true));
              for (const file of files) safeRenderPath(stage.slot, file.path);
              return files;
            },
            () => "ok",
          );
          rendered.push({ slot: stage.slot, files });
        }
        // Everything is rendered before anything is written; the output directory gets only
        // files render itself wrote, and a failure leaves it as it was.
        const written = writeRenderOutput(req.renderDir, rendered, { force: req.renderForce });
        for (const rel of written)
          reporter.emit({
            type: "log",
            stage: rel.split("/")[0]!,
            level: "info",
            message: `wrote ${relative(process.cwd(), join(req.renderDir, rel)) || rel}`,
          });
        endMessage = `rendered ${rendered.reduce((n, r) => n + r.files.length, 0)} files into ${req.renderDir}`;
        break;
      }
    }
  } catch (error) {
    if (error instanceof CancelledError) {
      exitCode = ExitCode.interrupted;
      endMessage = error.message;
    } else if (error instanceof Declined) {
      exitCode = ExitCode.phaseFailed;
      endMessage = error.message;
    } else if (error instanceof StageFailure) {
      exitCode = ExitCode.phaseFailed;
      endMessage = `${error.stage} ${error.phase} failed: ${error.message.split("\n")[0]}`;
    } else {
      // Not a phase's failure (a corrupt state file, a bug): the journal must not call the run ok.
      exitCode = error instanceof KubehyveError ? error.exitCode : ExitCode.phaseFailed;
      endMessage = errorMessage(error);
      throw error;
    }
  } finally {
    try {
      for (const ctx of contexts.values()) await ctx.runCleanups();
      if (hostLock) {
        await hostLock.release().catch((error: unknown) =>
          reporter.emit({
            type: "log",
            level: "warn",
            message: `could not release the host lock ${hostLock!.path}: ${errorMessage(error)}`,
          }),
        );
      }
      await pool.closeAll();
      journal.record({
        run: runId,
        command: req.command,
        status: exitCode === 0 ? "ok" : exitCode === ExitCode.interrupted ? "cancelled" : "failed",
        durationMs: Date.now() - started,
        message: endMessage,
      });
    } finally {
      finished = true;
      process.off("exit", onExit);
      // A journal that cannot be written (full disk) must not leave the lock held.
      lock?.release();
    }
  }
  reporter.emit({
    type: "run.end",
    status: exitCode === 0 ? "ok" : exitCode === ExitCode.interrupted ? "cancelled" : "failed",
    exitCode,
    durationMs: Date.now() - started,
    logFile: reporter.logFile,
    message: endMessage,
  });
  return { runId, exitCode, outcomes, logFile: reporter.logFile };
}
