/**
 * What each command does, in order: one short list per command, the way k0sctl's action/apply.go
 * lists its phases, so "which step printed last" is where debugging starts (each step's title is in
 * the run's log). A runbook names the stages it walks, the steps each stage goes through, and what
 * comes before and after; the steps themselves are small named functions in steps.ts. Every
 * mutation still goes through ctx.wet, so a dry run of any runbook is honest by construction.
 */
import type { Stage } from "./config.ts";
import type { TestablePluginContext } from "./context.ts";
import { countBySeverity } from "./diagnostics.ts";
import { doctorSummaryLine } from "./doctor-report.ts";
import type { Reporter } from "./reporter.ts";
import { type Command, type Run, selectStages } from "./run.ts";
import { type RunStep, type StageStep, step } from "./steps.ts";

export interface Runbook {
  /** Takes the state dir's and the host's locks, and may change hosts (unless a dry run). */
  changesHosts: boolean;
  /** The stages it walks, in the order it walks them. */
  stages(run: Run): Stage[];
  /** The context a stage's steps get. */
  context(run: Run, stage: Stage, reporter: Reporter): TestablePluginContext;
  /**
   * Stages side by side, each one's lines held back and printed in stage order (doctor). A stage
   * that cannot be inspected is then one finding among the others, not the end of the run.
   */
  sideBySide?: boolean;
  /**
   * Looks once: a machine that cannot be reached is one finding of the run, and every check that
   * needed it a skip (core/reach.ts), instead of each check waiting for its own connect timeout.
   */
  looksOnce?: boolean;
  before?: RunStep[];
  eachStage: StageStep[];
  after?: RunStep[];
  /** The run's last line. */
  summary(run: Run): string;
}

const selected = (run: Run) => selectStages(run.ordered, run.req.select);

export const RUNBOOKS: Record<Command, Runbook> = {
  plan: {
    changesHosts: false,
    stages: selected,
    context: (run, stage) => run.contextOf(stage, run.upstreamPending),
    eachStage: [step.check, step.stopOnErrors("check"), step.holdLaterStages],
    summary: planSummary,
  },
  up: {
    changesHosts: true,
    stages: selected,
    context: (run, stage) => run.contextOf(stage, run.upstreamPending),
    eachStage: [
      step.check,
      step.stopOnErrors("check"),
      // up --dry-run is a plan: the rest would change what it only shows.
      step.holdLaterStages,
      step.confirmDisruptive,
      step.apply,
      step.verify,
      step.stopOnErrors("verify"),
    ],
    summary: (run) => (run.dryRun ? planSummary(run) : "cluster is up"),
  },
  verify: {
    changesHosts: false,
    stages: selected,
    context: (run, stage) => run.contextOf(stage),
    eachStage: [step.verify, step.failOrWalkOn],
    // --expose: then the whoami canary is deployed, walked from the host and removed.
    after: [step.walkExposure],
    summary: (run) => (run.req.expose ? exposeSummary(run, verified(run)) : "every stage verified"),
  },
  expose: {
    changesHosts: false,
    // No stage's phases run; the stages take part through their `expose:hops` answers.
    stages: () => [],
    context: (run, stage) => run.contextOf(stage),
    eachStage: [],
    after: [step.walkExposure],
    summary: (run) => exposeSummary(run),
  },
  doctor: {
    changesHosts: false,
    stages: selected,
    context: (run, stage, reporter) => run.contextOf(stage, false, reporter),
    sideBySide: true,
    looksOnce: true,
    before: [step.showPreflight],
    eachStage: [step.killableStage, step.startVerify, step.check, step.notePendingChanges, step.verify],
    after: [step.reportUnreachable, step.walkExposed, step.failOnAnyError],
    summary: doctorSummary,
  },
  down: {
    changesHosts: true,
    // Last stage first: what a later stage made runs on what an earlier one made.
    stages: (run) => [...selected(run)].reverse().filter((s) => s.plugin.destroy),
    context: (run, stage) => run.contextOf(stage),
    before: [step.confirmTeardown],
    eachStage: [step.destroy],
    summary: (run) =>
      run.dryRun ? "down: dry run, nothing changed" : `cluster ${run.req.cluster.name} is down`,
  },
  render: {
    changesHosts: false,
    stages: (run) => [...run.ordered],
    context: (run, stage) => run.contextOf(stage, true),
    before: [step.needOutputDir],
    eachStage: [step.render],
    // Everything is rendered before anything is written; a failure leaves the directory as it was.
    after: [step.writeRendered],
    summary: (run) =>
      `rendered ${run.rendered.reduce((n, r) => n + r.files.length, 0)} files into ${run.req.renderDir}`,
  },
};

function planSummary(run: Run): string {
  const n = run.outcomes.reduce((sum, o) => sum + o.changes.length, 0);
  return `plan: ${n} change${n === 1 ? "" : "s"}`;
}

/** What verify found before the walk: every stage fine, or which ones failed. */
function verified(run: Run): string {
  const failed = run.outcomes.filter((o) => o.status === "failed" && o.slot !== "expose").map((o) => o.slot);
  return failed.length ? `verify failed in ${failed.join(", ")}` : "every stage verified";
}

/** The walk's verdict, after what went before. */
function exposeSummary(run: Run, before?: string): string {
  const verdicts = run.outcomes
    .filter((o) => o.slot === "expose")
    .flatMap((o) => o.diagnostics)
    .filter((d) => d.code === "expose.ok" || d.code === "expose.broken" || d.code === "expose.dry-run")
    .map((d) => (d.code === "expose.dry-run" ? `dry run, ${d.summary}` : d.summary));
  if (!verdicts.length) return before ?? "nothing walked";
  return before ? `${before}; the walk: ${verdicts.join("; ")}` : verdicts.join("; ");
}

function doctorSummary(run: Run): string {
  return doctorSummaryLine(countBySeverity([...run.findings, ...run.outcomes.flatMap((o) => o.diagnostics)]));
}
