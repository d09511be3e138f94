/**
 * All output of a run flows through one reporter as events; the core only emits them and never
 * prints. The CLI's reporters (src/cli/reporters.ts) draw them for people or write them as NDJSON,
 * and tee them into the run's log file, so a failure can name it.
 *
 * Event shape, version 1 (`v: 1`), documented in the README; fields are only ever added.
 */
import type { Change } from "./contract.ts";
import type { Diagnostic } from "./diagnostics.ts";
import type { HopReport } from "./expose.ts";

export const EVENT_VERSION = 1;

/** The report's section of findings that belong to no stage (the run's own: a host unreachable, a lock). */
export const RUN_SECTION = "kubehyve";

export type Phase = "check" | "apply" | "verify" | "render" | "destroy";
export type PhaseStatus = "ok" | "changes" | "up-to-date" | "failed" | "skipped" | "cancelled";

export type RunEvent =
  | { type: "run.start"; command: string; cluster: string; stages: string[]; dryRun: boolean }
  | { type: "phase.start"; stage: string; plugin: string; phase: Phase }
  | {
      type: "phase.end";
      stage: string;
      plugin: string;
      phase: Phase;
      status: PhaseStatus;
      durationMs: number;
      error?: string;
    }
  | ({ type: "change"; stage: string } & Omit<Change, "data">)
  | ({ type: "diagnostic"; stage: string; phase?: Phase } & Diagnostic)
  | { type: "wet"; stage: string; description: string; target?: string; dryRun: boolean }
  | { type: "log"; stage?: string; level: "debug" | "info" | "warn"; message: string }
  | { type: "progress"; stage: string; message: string; current?: number; total?: number }
  /** One hop of the exposure walk, as soon as it is walked. */
  | ({ type: "hop"; stage: string } & HopReport)
  | {
      type: "run.end";
      status: "ok" | "failed" | "cancelled";
      exitCode: number;
      durationMs: number;
      logFile?: string;
      message?: string;
    };

export interface Reporter {
  emit(event: RunEvent): void;
  /** The run's full log, written as it goes. */
  logFile?: string;
}

/** Collects events; for tests and for commands that summarise at the end. */
export function memoryReporter(): Reporter & { events: RunEvent[] } {
  const events: RunEvent[] = [];
  return { events, emit: (e) => events.push(e) };
}
