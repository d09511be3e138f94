/**
 * The steps runbooks.ts puts together: each one small, named by what it does, and the same for
 * every command that uses it.
 */
import { join, relative } from "node:path";
import { ExitCode, InputError, KubehyveError } from "../lib/errors.ts";
import type { Stage } from "./config.ts";
import type { TestablePluginContext } from "./context.ts";
import type { CheckResult } from "./contract.ts";
import type { Diagnostic } from "./diagnostics.ts";
import { diag } from "./diagnostics.ts";
import { runExposure } from "./expose-run.ts";
import { StageFailure, type StageOutcome } from "./phase.ts";
import { checkedDiagnostics, checkedNothing, checkedRendered, checkedResult } from "./plugin-results.ts";
import { writeRenderOutput } from "./render-output.ts";
import type { Reporter } from "./reporter.ts";
import type { Run } from "./run.ts";

/** What a stage's steps share: the stage, its outcome, its context, and what its check found. */
export interface StageRun {
  stage: Stage;
  outcome: StageOutcome;
  readonly ctx: TestablePluginContext;
  reporter: Reporter;
  checked?: CheckResult;
  /** verify's answer, asked for before check ran (doctor's startVerify): step.verify awaits it. */
  verifying?: Promise<Diagnostic[]>;
}

export const SKIP_REST = Symbol("skip the rest of this stage's steps");

/** A step of every stage; returning SKIP_REST ends that stage's steps (not the run). */
export interface StageStep {
  title: string;
  run(run: Run, s: StageRun): Promise<undefined | typeof SKIP_REST>;
}

/** A step before or after the stages. */
export interface RunStep {
  title: string;
  run(run: Run): Promise<void>;
}

/** The user said no to a question the run needed answered. */
export class Declined extends KubehyveError {}

const stageStep = (title: string, fn: StageStep["run"]): StageStep => ({ title, run: fn });
const runStep = (title: string, fn: RunStep["run"]): RunStep => ({ title, run: fn });
/** Doctor's limit for one phase, after which the stage's commands are killed. */
const limitOf = (run: Run, stage: Stage) =>
  run.command === "doctor"
    ? { limitMs: run.req.phaseTimeoutMs ?? 120_000, giveUp: (why: Error) => run.giveUp(stage, why) }
    : {};

export const step = {
  check: stageStep("check: what is wrong, what would change", async (run, s) => {
    const o = s.outcome;
    s.checked = await run.phases.run(
      o,
      "check",
      async () => {
        // A malformed plan stops here, before anything reads it: apply never runs on it.
        const r = checkedResult(s.stage.plugin.id, await s.stage.plugin.check(s.ctx));
        // Set before the phase's journal line is written, which counts them.
        o.changes = r.changes;
        return r;
      },
      (r) => (r.changes.length ? "changes" : "up-to-date"),
      { reporter: s.reporter, ...limitOf(run, s.stage) },
    );
    // Doctor turns pending changes into a finding of its own (notePendingChanges).
    if (run.command !== "doctor")
      for (const c of s.checked.changes)
        s.reporter.emit({
          type: "change",
          stage: s.stage.slot,
          summary: c.summary,
          target: c.target,
          kind: c.kind,
          detail: c.detail,
          disruptive: c.disruptive,
        });
    run.phases.report(o, "check", s.checked.diagnostics, s.reporter);
    return undefined;
  }),

  stopOnErrors: (phase: "check" | "verify") =>
    stageStep(`stop on errors of ${phase}`, async (run, s) => {
      run.phases.stopOnErrors(s.outcome, phase);
      return undefined;
    }),

  /**
   * verify --expose: a stage's failed verify does not stop the run, because the walk that follows
   * names the first broken hop of the path, which is what the stage's error is a symptom of.
   */
  failOrWalkOn: stageStep("stop on errors of verify, unless the exposure walk follows", async (run, s) => {
    if (!run.req.expose) {
      run.phases.stopOnErrors(s.outcome, "verify");
      return undefined;
    }
    if (s.outcome.diagnostics.some((d) => d.severity === "error")) {
      s.outcome.status = "failed";
      s.outcome.failedPhase = "verify";
      run.exitCode = ExitCode.phaseFailed;
    }
    return undefined;
  }),

  holdLaterStages: stageStep("in a dry run: later stages plan a fresh install", async (run, s) => {
    if (!run.dryRun) return undefined;
    run.upstreamPending ||= (s.checked?.changes.length ?? 0) > 0;
    return SKIP_REST;
  }),

  confirmDisruptive: stageStep("ask before disruptive changes", async (run, s) => {
    const disruptive = (s.checked?.changes ?? []).filter((c) => c.disruptive);
    if (!disruptive.length || run.req.assumeYes) return undefined;
    const list = disruptive.map((c) => `${c.target ? `${c.target}: ` : ""}${c.summary}`).join("; ");
    const ok = run.req.ask ? await run.req.ask(`${s.stage.slot}: ${list}. Go ahead?`) : false;
    if (!ok)
      throw new StageFailure(
        s.stage.slot,
        "apply",
        `not confirmed: ${list} (run again with --yes to allow it)`,
      );
    return undefined;
  }),

  apply: stageStep("apply: make it so", async (run, s) => {
    const changes = s.checked?.changes ?? [];
    const apply = s.stage.plugin.apply;
    if (changes.length && apply)
      await run.phases.run(
        s.outcome,
        "apply",
        async () => checkedNothing(s.stage.plugin.id, "apply", await apply(s.ctx, changes)),
        () => "ok",
      );
    return undefined;
  }),

  verify: stageStep("verify: does it work", async (run, s) => {
    const verify = s.stage.plugin.verify;
    if (!verify) return undefined;
    const diagnostics = await run.phases.run(
      s.outcome,
      "verify",
      async () => checkedDiagnostics(s.stage.plugin.id, "verify", await (s.verifying ?? verify(s.ctx))),
      () => "ok",
      { reporter: s.reporter, ...limitOf(run, s.stage) },
    );
    run.phases.report(s.outcome, "verify", diagnostics, s.reporter);
    return undefined;
  }),

  /**
   * doctor: verify is asked at once, beside check, since both only look; its answer is taken, and
   * reported, after check's (step.verify), so that the stage's lines read as they would in turn.
   */
  startVerify: stageStep("verify starts beside check: both only look", async (_run, s) => {
    const verify = s.stage.plugin.verify;
    if (!verify) return undefined;
    const ctx = s.ctx;
    // A throw of verify's own is its phase's failure, as it would be in turn.
    s.verifying = (async () => verify(ctx))();
    // Awaited by step.verify; until then a failure must not count as unhandled.
    s.verifying.catch(() => {});
    return undefined;
  }),

  killableStage: stageStep("doctor may kill what a stage runs past its limit", async (run, s) => {
    run.stoppable(s.stage);
    return undefined;
  }),

  notePendingChanges: stageStep("pending changes are a finding", async (run, s) => {
    const changes = s.checked?.changes ?? [];
    if (!changes.length) return undefined;
    const shown = changes.map((c) => c.summary).slice(0, 3);
    run.phases.report(
      s.outcome,
      "check",
      [
        diag.info(
          "engine.changes-pending",
          `${changes.length} change${changes.length === 1 ? "" : "s"} pending: ${shown.join("; ")}${changes.length > 3 ? "; …" : ""}`,
          { hint: `kubehyve up --only ${s.stage.slot}` },
        ),
      ],
      s.reporter,
    );
    return undefined;
  }),

  destroy: stageStep("destroy what the stage made", async (run, s) => {
    const destroy = s.stage.plugin.destroy!;
    await run.phases.run(
      s.outcome,
      "destroy",
      async () => checkedNothing(s.stage.plugin.id, "destroy", await destroy(s.ctx)),
      () => "ok",
    );
    return undefined;
  }),

  render: stageStep("render the stage's files", async (run, s) => {
    const render = s.stage.plugin.render;
    if (!render) return undefined;
    const files = await run.phases.run(
      s.outcome,
      "render",
      async () => checkedRendered(s.stage.plugin.id, await render(s.ctx)),
      () => "ok",
    );
    run.rendered.push({ slot: s.stage.slot, files });
    return undefined;
  }),

  walkExposure: runStep("walk the path from the host to an application, when asked to", (run) =>
    runExposure(run, run.req.expose),
  ),

  walkExposed: runStep("walk, read-only, what kubehyve expose made", (run) =>
    runExposure(run, run.req.expose ?? { app: { kind: "exposed" } }),
  ),

  showPreflight: runStep("show what loading found: config warnings, plugin problems", async (run) => {
    for (const d of run.req.preflight ?? []) run.note(d);
  }),

  reportUnreachable: runStep("each machine that could not be reached, once", async (run) => {
    // In a fixed order (the host, then the nodes as the cluster file lists them), not the order the
    // stages running side by side happened to meet them.
    const order = [run.pool.hostName, ...run.req.cluster.nodes.map((n) => n.name)];
    // The Kubernetes API, not a machine of the list, comes after them.
    const rank = (machine: string) => (order.includes(machine) ? order.indexOf(machine) : order.length);
    const found = [...run.pool.unreachable()].sort((a, b) => rank(a.machine) - rank(b.machine));
    for (const error of found)
      run.note(
        diag.error(error.id, `${error.machine} cannot be reached: the checks that need it are skipped`, {
          target: error.machine,
          detail: error.message,
          hint: error.hint ?? `check that ${error.machine} is up and answers ssh`,
        }),
      );
  }),

  failOnAnyError: runStep("fail when anything is an error", async (run) => {
    const all = [...run.findings, ...run.outcomes.flatMap((o) => o.diagnostics)];
    if (all.some((d) => d.severity === "error")) run.exitCode = ExitCode.phaseFailed;
  }),

  confirmTeardown: runStep("ask before tearing down", async (run) => {
    if (run.dryRun || run.req.assumeYes) return;
    const stages = run.walking;
    const nodes = run.req.cluster.nodes.map((n) => n.name).join(", ");
    const question = `Tear down cluster ${run.req.cluster.name} (${stages.map((s) => s.slot).join(", ")}; nodes ${nodes})?`;
    const ok = run.req.ask ? await run.req.ask(question) : false;
    if (!ok) throw new Declined("not confirmed: nothing was changed (run again with --yes to tear down)");
  }),

  needOutputDir: runStep("render needs an output directory", async (run) => {
    if (!run.req.renderDir) throw new InputError("render needs an output directory: -o DIR");
  }),

  writeRendered: runStep("write the rendered files", async (run) => {
    const dir = run.req.renderDir!;
    const written = writeRenderOutput(dir, run.rendered, { force: run.req.renderForce });
    for (const rel of written)
      run.log("info", `wrote ${relative(process.cwd(), join(dir, rel)) || rel}`, rel.split("/")[0]!);
  }),
};
