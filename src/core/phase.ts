/**
 * The mechanics of one phase of one stage, written once for every runbook: its start and end events,
 * its journal line, the limit doctor gives it, and what a failure becomes (the run stops, naming the
 * stage and phase; an interruption stays an interruption; a bug keeps its stack in the log).
 */
import { Activity, withActivity } from "../lib/activity.ts";
import { CancelledError, ExitCode, KubehyveError } from "../lib/errors.ts";
import { formatDuration, thrownText } from "../lib/values.ts";
import { CommandError } from "../targets/target.ts";
import type { Change } from "./contract.ts";
import { type Diagnostic, hasErrors } from "./diagnostics.ts";
import type { Journal } from "./journal.ts";
import type { Phase, PhaseStatus, Reporter } from "./reporter.ts";

/** What a run found and did for one stage. */
export interface StageOutcome {
  slot: string;
  plugin: string;
  status: PhaseStatus;
  changes: Change[];
  diagnostics: Diagnostic[];
  failedPhase?: Phase;
}

/** A phase failed: the run stops here and the message says where. */
export class StageFailure extends KubehyveError {
  constructor(
    readonly stage: string,
    readonly phase: Phase,
    message: string,
    /** What the phase threw, when it threw (doctor tells an unreachable machine from the rest). */
    override readonly cause?: unknown,
  ) {
    super(message, ExitCode.phaseFailed);
  }
}

export function errorMessage(error: unknown): string {
  return thrownText(error);
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

/**
 * Runs `fn` and fails once it has had nothing in flight (activity.ts) for `ms`: a phase that runs no
 * command, makes no request, downloads, waits or asks nothing for that long is stuck in its plugin's
 * own code (an `await` of a promise nobody settles), and without this would hold the run, and the
 * host's lock, until someone pressed Ctrl-C twice.
 */
function withIdleLimit<T>(
  fn: () => Promise<T>,
  ms: number | undefined,
  what: string,
  plugin: string,
): Promise<T> {
  if (!ms) return fn();
  const activity = new Activity();
  let timer: Timer | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setInterval(
      () => {
        if (activity.idleMs() < ms) return;
        reject(
          new KubehyveError(
            `${what} did nothing for ${formatDuration(ms)}: no command, request, download, wait or question in flight, so ${plugin} is stuck in its own code`,
            ExitCode.phaseFailed,
            `a bug of ${plugin} (kubehyve plugins shows where it comes from): report it with the run's log; if the plugin truly works that long between commands, raise timeouts.change in the cluster file`,
          ),
        );
      },
      Math.max(10, Math.min(ms / 4, 15_000)),
    );
  });
  // Inside an async function, a phase that throws before its first await rejects too: the timer is
  // cleared either way.
  const work = withActivity(activity, async () => fn());
  return Promise.race([work, stuck]).finally(() => clearInterval(timer));
}

export interface PhaseRunner {
  /**
   * Runs one phase: its events, its journal line, and the limit (doctor's) after which `giveUp` is
   * called with the reason and the phase fails. A thrown error becomes a StageFailure; Ctrl-C stays
   * a CancelledError.
   */
  run<T>(
    o: StageOutcome,
    phase: Phase,
    fn: () => Promise<T>,
    statusOf: (result: T) => PhaseStatus,
    opts?: { reporter?: Reporter; limitMs?: number; giveUp?: (error: Error) => void },
  ): Promise<T>;
  /** Records and reports a phase's findings. */
  report(o: StageOutcome, phase: Phase, diagnostics: Diagnostic[], reporter?: Reporter): void;
  /** Stops the run at this stage when its findings hold an error. */
  stopOnErrors(o: StageOutcome, phase: Phase): void;
}

export function phaseRunner(args: {
  runId: string;
  command: string;
  journal: Journal;
  reporter: Reporter;
  signal: AbortSignal;
  /** What every finding goes through before it is recorded (doctor --ignore). */
  adjust?: (d: Diagnostic) => Diagnostic;
  /** How long a phase may have nothing in flight before it fails as stuck (withIdleLimit). */
  idleLimitMs?: number;
}): PhaseRunner {
  const { runId, command, journal, signal } = args;
  const adjust = args.adjust ?? ((d: Diagnostic) => d);
  const record = (o: StageOutcome, phase: Phase, durationMs: number, error?: string) =>
    journal.record({
      run: runId,
      command,
      stage: o.slot,
      phase,
      status: o.status,
      durationMs,
      changes: o.changes.length,
      errors: o.diagnostics.filter((d) => d.severity === "error").length,
      message: error,
    });

  return {
    async run(o, phase, fn, statusOf, opts = {}) {
      const rep = opts.reporter ?? args.reporter;
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
        const what = `${o.slot} ${phase}`;
        const result = await withTimeout(
          withIdleLimit(fn, args.idleLimitMs, what, o.plugin),
          opts.limitMs,
          what,
          opts.giveUp,
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
        throw new StageFailure(o.slot, phase, message, error);
      }
    },

    report(o, phase, found, reporter = args.reporter) {
      const diagnostics = found.map(adjust);
      o.diagnostics.push(...diagnostics);
      for (const d of diagnostics) reporter.emit({ type: "diagnostic", stage: o.slot, phase, ...d });
    },

    stopOnErrors(o, phase) {
      if (!hasErrors(o.diagnostics)) return;
      o.status = "failed";
      o.failedPhase = phase;
      const first = o.diagnostics.find((d) => d.severity === "error")!;
      throw new StageFailure(o.slot, phase, `${first.target ? `${first.target}: ` : ""}${first.summary}`);
    },
  };
}
