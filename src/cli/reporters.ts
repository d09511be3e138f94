/**
 * The reporters the CLI prints runs with: lines for people (consola), or NDJSON events on stdout and
 * nothing else there. Both tee every event into the run's log file, so a failure can name it.
 */
import type { ConsolaInstance } from "consola";
import { EVENT_VERSION, type Reporter, type RunEvent } from "../core/reporter.ts";
import { appendPrivateFile } from "../lib/fsutil.ts";
import { logger, output } from "./output.ts";

function tee(logFile: string | undefined, event: RunEvent): void {
  if (!logFile) return;
  try {
    appendPrivateFile(logFile, `${JSON.stringify({ ts: new Date().toISOString(), ...event })}\n`);
  } catch {
    // The log is a convenience; a full disk must not turn a successful run into a failure.
  }
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

const SYMBOL = { ok: "✔", info: "ℹ", warn: "⚠", error: "✖" } as const;

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
  const live = terminal.interactive && !process.env.CI;
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
    emit(event) {
      tee(opts.logFile, event);
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
