/**
 * The reporters the CLI prints runs with: lines for people (consola), or NDJSON events on stdout and
 * nothing else there. Both tee every event into the run's log file, so a failure can name it.
 */
import type { ConsolaInstance } from "consola";
import { countBySeverity, type Severity } from "../core/diagnostics.ts";
import type { DoctorFinding, DoctorReport } from "../core/doctor-report.ts";
import { doctorSummaryLine } from "../core/doctor-report.ts";
import { EVENT_VERSION, type Reporter, RUN_SECTION, type RunEvent } from "../core/reporter.ts";
import { appendPrivateFile } from "../lib/fsutil.ts";
import { cursorMoves, logger, output, printable, shortened } from "./output.ts";

function tee(logFile: string | undefined, event: RunEvent): void {
  if (!logFile) return;
  try {
    appendPrivateFile(logFile, `${JSON.stringify({ ts: new Date().toISOString(), ...event })}\n`);
  } catch {
    // The log is a convenience; a full disk must not turn a successful run into a failure.
  }
}

/**
 * The event with every text in it printable and of a length to read: what a host or a cluster
 * said is shown escaped, and cut when it is long (the log keeps the event as it was).
 */
function printableEvent(event: RunEvent): RunEvent {
  const shown = (value: unknown): unknown =>
    typeof value === "string"
      ? printable(shortened(value))
      : Array.isArray(value)
        ? value.map(shown)
        : value && typeof value === "object"
          ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shown(v)]))
          : value;
  return shown(event) as RunEvent;
}

/** NDJSON on stdout: one event per line, `v` first. */
export function jsonReporter(
  logFile?: string,
  write: (line: string) => void = (l) => output().stdout(l),
): Reporter {
  return {
    logFile,
    emit(event) {
      tee(logFile, event);
      if (event.type === "log" && event.level === "debug") return;
      write(`${JSON.stringify({ v: EVENT_VERSION, ts: new Date().toISOString(), ...event })}\n`);
    },
  };
}

export const SYMBOL = { ok: "✔", info: "ℹ", warn: "⚠", error: "✖", skip: "○" } as const;
/** A hop of the exposure walk: fine, broken, broken because a later one is, not walked. */
const HOP_SYMBOL = { ok: "✔", broken: "✖", blocked: "⚠", skipped: "○" } as const;

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Lines for people. Progress of long steps is one line redrawn in place on a terminal, and on a
 * pipe a line at most every few seconds, so logs stay readable.
 */
export function humanReporter(
  opts: { verbose?: boolean; logFile?: string; consola?: ConsolaInstance } = {},
): Reporter {
  const out = opts.consola ?? logger({ verbose: opts.verbose });
  const terminal = output();
  const live = terminal.interactive && !process.env.CI && cursorMoves();
  // consola draws errors and warnings as a badge between blank lines (" ERROR  …"); a run's
  // failure lines keep the one-line, one-symbol form of every other line, and of the CLI's ✖.
  const error = (message: string) => out.error({ message, badge: false });
  const warn = (message: string) => out.warn({ message, badge: false });
  let progressShown = false;
  let lastProgressAt = 0;
  const clearProgress = () => {
    if (progressShown) {
      terminal.stderr("\r\x1b[2K");
      progressShown = false;
    }
  };
  return {
    logFile: opts.logFile,
    emit(raw) {
      tee(opts.logFile, raw);
      const event = printableEvent(raw);
      if (event.type !== "progress") clearProgress();
      switch (event.type) {
        case "run.start":
          out.info(
            `${event.command} ${event.cluster}: ${event.stages.join(" → ") || "no stages"}${event.dryRun ? " (dry run)" : ""}`,
          );
          break;
        case "phase.start":
          out.debug(`${event.stage}: ${event.phase} (${event.plugin})`);
          break;
        case "phase.end": {
          const label = `${event.stage} ${event.phase}`;
          const took = seconds(event.durationMs);
          if (event.status === "failed")
            error(`${label} failed after ${took}${event.error ? `: ${event.error}` : ""}`);
          else if (event.status === "cancelled") warn(`${label} interrupted after ${took}`);
          else if (event.status === "skipped") out.info(`${label} skipped`);
          else out.success(`${label} ${event.status === "ok" ? "done" : event.status} (${took})`);
          break;
        }
        case "change":
          out.log(
            `  + ${event.target ? `${event.target}: ` : ""}${event.summary}${event.disruptive ? " (disruptive)" : ""}`,
          );
          if (opts.verbose && event.detail) out.log(event.detail.replace(/^/gm, "      "));
          break;
        case "diagnostic": {
          if (event.severity === "ok" && !opts.verbose) break;
          const where = [event.target, event.path].filter(Boolean).join(" ");
          out.log(
            `  ${SYMBOL[event.severity]} ${event.summary}${where ? ` [${where}]` : ""} (${event.code})`,
          );
          if (event.detail && (opts.verbose || event.severity === "error"))
            out.log(event.detail.replace(/^/gm, "      "));
          if (event.hint && event.severity !== "ok")
            out.log(`      → ${event.hint.replace(/\n/g, "\n        ")}`);
          break;
        }
        case "hop": {
          out.log(
            `  ${HOP_SYMBOL[event.status]} ${event.index}. ${event.title}: ${event.summary} (${event.id})`,
          );
          const shown = event.status === "broken" || event.status === "blocked";
          if (event.detail && (opts.verbose || event.status === "broken"))
            out.log(event.detail.replace(/^/gm, "      "));
          if (event.hint && shown) out.log(`      → ${event.hint.replace(/\n/g, "\n        ")}`);
          for (const f of event.findings ?? []) {
            if (f.severity === "ok" && !opts.verbose) continue;
            out.log(`      ${SYMBOL[f.severity]} ${f.summary} (${f.code})`);
            if (f.hint && f.severity !== "ok") out.log(`        → ${f.hint.replace(/\n/g, "\n          ")}`);
          }
          break;
        }
        case "wet":
          // A dry run's mutations are its whole answer (`down --dry-run`: what would be destroyed).
          if (event.dryRun)
            out.log(`  would ${event.description}${event.target ? ` [${event.target}]` : ""}`);
          else out.info(`${event.stage}: ${event.target ? `${event.target}: ` : ""}${event.description}`);
          break;
        case "log":
          if (event.level === "warn") warn(event.stage ? `${event.stage}: ${event.message}` : event.message);
          else if (event.level === "info")
            out.info(event.stage ? `${event.stage}: ${event.message}` : event.message);
          else out.debug(event.stage ? `${event.stage}: ${event.message}` : event.message);
          break;
        case "progress": {
          // A share of a known total reads best as a percentage (bytes of a download, tasks of a run).
          const count =
            event.current === undefined
              ? ""
              : event.total
                ? ` [${Math.min(100, Math.floor((event.current / event.total) * 100))}%]`
                : ` [${event.current}]`;
          const line = `${event.stage}:${count} ${event.message}`;
          if (live) {
            terminal.stderr(`\r\x1b[2K${line.slice(0, (terminal.columns || 100) - 1)}`);
            progressShown = true;
          } else if (Date.now() - lastProgressAt > 5000) {
            lastProgressAt = Date.now();
            out.info(line);
          }
          break;
        }
        case "run.end":
          if (event.status === "ok")
            out.success(`${event.message ?? "done"} in ${seconds(event.durationMs)}`);
          else if (event.message) error(event.message);
          if (event.status !== "ok" && event.logFile) out.info(`full log: ${event.logFile}`);
          break;
      }
    },
  };
}

const PLURAL: Record<Severity, [string, string]> = {
  error: ["error", "errors"],
  warn: ["warning", "warnings"],
  skip: ["skipped", "skipped"],
  info: ["info", "info"],
  ok: ["ok", "ok"],
};

function stageCounts(findings: readonly DoctorFinding[]): string {
  const counts = countBySeverity(findings.map((f) => ({ code: f.id, severity: f.severity, summary: "" })));
  const parts = (["error", "warn", "skip", "info", "ok"] as const)
    .filter((s) => counts[s] > 0)
    .map((s) => `${counts[s]} ${PLURAL[s][counts[s] === 1 ? 0 : 1]}`);
  return parts.length ? parts.join(", ") : "nothing to report";
}

/**
 * doctor's report for people: a section per stage with its counts, a line per finding that is not
 * ok (every line with --verbose) with its hint under it, and the summary line last. The detail of an
 * error is shown; of anything else, with --verbose.
 */
export function formatDoctorReport(report: DoctorReport, opts: { verbose?: boolean } = {}): string {
  const out: string[] = [];
  const walked = report.stages.filter((s) => s.slot !== RUN_SECTION).map((s) => s.slot);
  out.push(
    `doctor ${report.cluster}: ${walked.join(", ") || "no stages"} (${report.checkedAt}, ${seconds(report.durationMs)})`,
  );
  for (const stage of report.stages) {
    if (stage.slot === RUN_SECTION && !stage.findings.length) continue;
    const title = stage.slot === RUN_SECTION ? stage.slot : `${stage.slot} (${stage.plugin})`;
    out.push(`${title}: ${stageCounts(stage.findings)}`);
    for (const finding of stage.findings) {
      if (finding.severity === "ok" && !opts.verbose) continue;
      const f = {
        ...finding,
        summary: shortened(finding.summary),
        detail: finding.detail && shortened(finding.detail),
        hint: finding.hint && shortened(finding.hint),
      };
      const where = [f.target, f.path].filter(Boolean).join(" ");
      out.push(
        `  ${SYMBOL[f.severity]} ${f.summary}${where ? ` [${where}]` : ""} (${f.id}${f.ignored ? ", ignored" : ""})`,
      );
      if (f.detail && (opts.verbose || f.severity === "error")) out.push(f.detail.replace(/^/gm, "      "));
      if (f.hint && f.severity !== "ok") out.push(`      → ${f.hint.replace(/\n/g, "\n        ")}`);
    }
  }
  out.push(doctorSummaryLine(report.summary));
  return printable(`${out.join("\n")}\n`);
}

/**
 * What doctor shows while it runs: nothing on stdout (the report comes at the end), warnings on
 * stderr, and on a terminal one line saying what it looks at until the report replaces it (the
 * stages run side by side and hold their lines back until all are done). Every event goes to the
 * log file.
 */
export function doctorReporter(opts: { logFile?: string; live?: boolean; verbose?: boolean }): Reporter & {
  done(): void;
} {
  const terminal = output();
  const live = Boolean(opts.live) && terminal.interactive && !process.env.CI && cursorMoves();
  let shown = false;
  const clear = () => {
    if (shown) terminal.stderr("\r\x1b[2K");
    shown = false;
  };
  return {
    logFile: opts.logFile,
    emit(event) {
      tee(opts.logFile, event);
      if (event.type === "run.start" && live) {
        const line = `doctor: looking at ${event.stages.join(", ") || "nothing"}…`;
        terminal.stderr(line.slice(0, (terminal.columns || 100) - 1));
        shown = true;
      } else if (
        event.type === "log" &&
        (event.level === "warn" || (opts.verbose && event.level === "info"))
      ) {
        clear();
        terminal.stderr(
          `${printable(
            `${event.level === "warn" ? "⚠" : "ℹ"} ${event.stage ? `${event.stage}: ` : ""}${event.message}`,
          )}\n`,
        );
      }
    },
    done: clear,
  };
}
