/**
 * The stage engine: opens a run, walks the command's runbook (runbooks.ts) over it, and closes it
 * whatever happens, with the journal's end line, the locks released and one last event saying how
 * the run ended. Per stage the runbook's steps go in turn; doctor's stages go side by side.
 */
import { CancelledError, ExitCode, KubehyveError } from "../lib/errors.ts";
import { ensurePrivateDir } from "../lib/fsutil.ts";
import { findingOfFailure } from "./checks.ts";
import type { Stage } from "./config.ts";
import { type Diagnostic, diag } from "./diagnostics.ts";
import { errorMessage, StageFailure, type StageOutcome } from "./phase.ts";
import { UnreachableError } from "./reach.ts";
import { memoryReporter, type Reporter } from "./reporter.ts";
import { type EngineRequest, Run } from "./run.ts";
import { RUNBOOKS, type Runbook } from "./runbooks.ts";
import { checkStateFormat, PACKAGE_BUILD, readsStateDir, recordStateFormat } from "./state-format.ts";
import { Declined, SKIP_REST, type StageRun } from "./steps.ts";

export type { StageOutcome } from "./phase.ts";
export type { Command, EngineRequest, StageSelection } from "./run.ts";
export { selectStages } from "./run.ts";

export interface EngineResult {
  runId: string;
  exitCode: number;
  outcomes: StageOutcome[];
  /** Findings of the run itself (doctor): what loading found, each machine it could not reach. */
  findings: Diagnostic[];
  logFile?: string;
}

/**
 * Doctor's stages keep going past a phase that failed: its check failing still leaves its verify to
 * say what it can. The failure is one finding: a skip when the phase needed a machine the run could
 * not reach (reported once, by the run), else an error naming the phase.
 */
function phaseFailureFinding(run: Run, stage: Stage, o: StageOutcome, error: unknown, reporter: Reporter) {
  const phase = o.failedPhase ?? "check";
  const cause = error instanceof StageFailure ? error.cause : error;
  run.phases.report(
    o,
    phase,
    [
      cause instanceof UnreachableError
        ? findingOfFailure("engine.phase-skipped", `${stage.slot} ${phase}`, cause)
        : diag.error("engine.phase-failed", `${stage.slot} ${phase} could not run`, {
            detail: errorMessage(error),
            hint:
              (cause instanceof KubehyveError && cause.hint) ||
              `kubehyve doctor --stage ${stage.slot} --verbose; the run's log in the state dir has every command`,
          }),
    ],
    reporter,
  );
}

/** A stage's steps, in turn, each named in the run's log; SKIP_REST ends them. */
async function walkStage(run: Run, runbook: Runbook, stage: Stage, o: StageOutcome, reporter: Reporter) {
  let ctx: StageRun["ctx"] | undefined;
  const s: StageRun = {
    stage,
    outcome: o,
    reporter,
    // Made when a step first needs it: an earlier step may still set how (doctor's killableStage).
    get ctx() {
      ctx ??= runbook.context(run, stage, reporter);
      return ctx;
    },
  };
  for (const step of runbook.eachStage) {
    reporter.emit({ type: "log", stage: stage.slot, level: "debug", message: `step: ${step.title}` });
    try {
      if ((await step.run(run, s)) === SKIP_REST) return;
    } catch (error) {
      // Only a phase's failure lets the next step go on; anything else (a context that cannot be
      // built, a bug between phases) ends the stage, and walkSideBySide reports it.
      if (!runbook.sideBySide || !(error instanceof StageFailure) || error.cause instanceof CancelledError)
        throw error;
      phaseFailureFinding(run, stage, o, error, reporter);
    }
  }
}

async function walkInTurn(run: Run, runbook: Runbook): Promise<void> {
  for (const stage of run.walking) await walkStage(run, runbook, stage, run.outcome(stage), run.reporter);
}

/** Side by side, each stage's lines held back and printed in stage order once all are done. */
async function walkSideBySide(run: Run, runbook: Runbook): Promise<void> {
  const buffers = await Promise.all(
    run.walking.map(async (stage) => {
      const buffer = memoryReporter();
      const o = run.outcome(stage, "ok");
      try {
        // Inside the try: a stage whose context cannot be built (a corrupt state file) is one
        // finding among the others, not the end of the run.
        await walkStage(run, runbook, stage, o, buffer);
      } catch (error) {
        if (error instanceof CancelledError) throw error;
        phaseFailureFinding(run, stage, o, error, buffer);
      }
      return buffer;
    }),
  );
  for (const buffer of buffers) for (const e of buffer.events) run.reporter.emit(e);
}

export async function runEngine(req: EngineRequest): Promise<EngineResult> {
  const runbook = RUNBOOKS[req.command];
  await ensurePrivateDir(req.stateDir);
  const running = req.kubehyve ?? PACKAGE_BUILD;
  // Read before anything else of the state dir is: the stages' state and the journal of a newer
  // format are not this kubehyve's to read.
  if (readsStateDir(req.command, req.offline)) checkStateFormat(req.stateDir, running);
  const run = new Run(req, { rememberUnreachable: runbook.looksOnce });
  run.walking = runbook.stages(run);
  const changesHosts = runbook.changesHosts && !run.dryRun;
  if (changesHosts) {
    run.lockStateDir();
    try {
      // Again under the lock: a newer kubehyve's up may have finished since the first look.
      recordStateFormat(req.stateDir, running, checkStateFormat(req.stateDir, running));
    } catch (error) {
      run.lock?.release();
      throw error;
    }
  }
  const { reporter, journal } = run;

  reporter.emit({
    type: "run.start",
    command: req.command,
    cluster: req.cluster.name,
    stages: run.walking.map((s) => s.slot),
    dryRun: run.dryRunAsked,
  });
  try {
    journal.record({ run: run.id, command: req.command, status: "started" });
  } catch (error) {
    // Nothing ran yet and nothing will: a journal that takes no line (a full disk, a directory in
    // its place) must not leave the lock held for the next run to take over as a dead one's.
    run.lock?.release();
    throw error;
  }

  // Leaving at once (a second Ctrl-C exits the process) skips the finally below: the journal still
  // gets its end line and the state dir's lock is freed. The host lock cannot be (that takes a
  // command): the next run finds its holder gone and takes it over.
  let finished = false;
  const onExit = () => {
    if (finished) return;
    try {
      journal.record({
        run: run.id,
        command: req.command,
        status: "killed",
        durationMs: Date.now() - run.started,
        message:
          "kubehyve left before the run finished (a second interrupt); the commands still running were killed",
      });
    } catch {}
    run.lock?.release();
  };
  process.on("exit", onExit);

  let endMessage: string | undefined;
  try {
    if (changesHosts) await run.lockHost();
    for (const step of runbook.before ?? []) await step.run(run);
    await (runbook.sideBySide ? walkSideBySide(run, runbook) : walkInTurn(run, runbook));
    for (const step of runbook.after ?? []) await step.run(run);
    endMessage = runbook.summary(run);
  } catch (error) {
    if (error instanceof CancelledError) {
      run.exitCode = ExitCode.interrupted;
      endMessage = error.message;
    } else if (error instanceof Declined) {
      run.exitCode = ExitCode.phaseFailed;
      endMessage = error.message;
    } else if (error instanceof StageFailure) {
      run.exitCode = ExitCode.phaseFailed;
      endMessage = `${error.stage} ${error.phase} failed: ${error.message.split("\n")[0]}`;
    } else {
      // Not a phase's failure (a corrupt state file, a bug): the journal must not call the run ok.
      run.exitCode = error instanceof KubehyveError ? error.exitCode : ExitCode.phaseFailed;
      endMessage = errorMessage(error);
      throw error;
    }
  } finally {
    try {
      await run.close();
      journal.record({
        run: run.id,
        command: req.command,
        status: statusOf(run.exitCode),
        durationMs: Date.now() - run.started,
        message: endMessage,
      });
    } finally {
      finished = true;
      process.off("exit", onExit);
      // A journal that cannot be written (full disk) must not leave the lock held.
      run.lock?.release();
    }
  }
  reporter.emit({
    type: "run.end",
    status: statusOf(run.exitCode),
    exitCode: run.exitCode,
    durationMs: Date.now() - run.started,
    logFile: reporter.logFile,
    message: endMessage,
  });
  return {
    runId: run.id,
    exitCode: run.exitCode,
    outcomes: run.outcomes,
    findings: run.findings,
    logFile: reporter.logFile,
  };
}

function statusOf(exitCode: number): "ok" | "cancelled" | "failed" {
  return exitCode === 0 ? "ok" : exitCode === ExitCode.interrupted ? "cancelled" : "failed";
}
