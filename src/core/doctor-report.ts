/**
 * doctor's answer as one document: the versioned JSON of `doctor --json` (documented in the
 * README, fields only ever added within a version), and the node_exporter textfile of
 * `doctor --format prometheus`, both made from the same findings. Pure functions of a run's result.
 */
import { countBySeverity, type Diagnostic, SEVERITIES, type Severity } from "./diagnostics.ts";
import type { StageOutcome } from "./phase.ts";
import { RUN_SECTION } from "./reporter.ts";

export const DOCTOR_REPORT_VERSION = 1;

export interface DoctorFinding {
  /** The check's stable id (a diagnostic's code). */
  id: string;
  severity: Severity;
  summary: string;
  detail?: string;
  hint?: string;
  target?: string;
  path?: string;
  /** An error turned into a warning by --ignore. */
  ignored?: true;
}

export interface DoctorStage {
  /** The stage's slot; `kubehyve` for what belongs to no stage (loading, unreachable machines). */
  slot: string;
  plugin: string;
  findings: DoctorFinding[];
}

export interface DoctorReport {
  v: typeof DOCTOR_REPORT_VERSION;
  cluster: string;
  /** When the round finished, ISO 8601 in UTC. */
  checkedAt: string;
  durationMs: number;
  /** 0 without errors, 1 with. */
  exitCode: number;
  summary: Record<Severity, number>;
  stages: DoctorStage[];
}

function finding(d: Diagnostic): DoctorFinding {
  const f: DoctorFinding = { id: d.code, severity: d.severity, summary: d.summary };
  if (d.detail !== undefined) f.detail = d.detail;
  if (d.hint !== undefined) f.hint = d.hint;
  if (d.target !== undefined) f.target = d.target;
  if (d.path !== undefined) f.path = d.path;
  if (d.ignored) f.ignored = true;
  return f;
}

export function doctorReport(input: {
  cluster: string;
  outcomes: readonly StageOutcome[];
  findings: readonly Diagnostic[];
  exitCode: number;
  finishedAt: Date;
  durationMs: number;
}): DoctorReport {
  const stages: DoctorStage[] = [
    { slot: RUN_SECTION, plugin: RUN_SECTION, findings: input.findings.map(finding) },
    ...input.outcomes.map((o) => ({ slot: o.slot, plugin: o.plugin, findings: o.diagnostics.map(finding) })),
  ];
  return {
    v: DOCTOR_REPORT_VERSION,
    cluster: input.cluster,
    checkedAt: input.finishedAt.toISOString(),
    durationMs: input.durationMs,
    exitCode: input.exitCode,
    summary: countBySeverity([...input.findings, ...input.outcomes.flatMap((o) => o.diagnostics)]),
    stages,
  };
}

/**
 * kubehyve_check_status's values: higher is worse, so `== 4` alerts on errors and `>= 3` on
 * warnings too. A skip (could not run) sits below a warning: its cause is reported as an error of
 * its own. An error turned into a warning by --ignore is a 3.
 */
export const STATUS_VALUE: Record<Severity, number> = { ok: 0, info: 1, skip: 2, warn: 3, error: 4 };

/** A label value of the text exposition format: backslash, double quote and newline escaped. */
function labelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(pairs: Record<string, string>): string {
  return `{${Object.entries(pairs)
    .map(([k, v]) => `${k}="${labelValue(v)}"`)
    .join(",")}}`;
}

/**
 * The node_exporter textfile collector's format (Prometheus text exposition format 0.0.4): HELP
 * and TYPE once per metric, before its samples. One series per stage, check id and target: a check
 * that found several things on one target (two disks of a node) gives its worst, since a series may
 * appear only once.
 */
export function prometheusText(report: DoctorReport): string {
  const worst = new Map<string, { stage: string; id: string; target: string; value: number }>();
  for (const stage of report.stages) {
    for (const f of stage.findings) {
      const target = f.target ?? "";
      const key = JSON.stringify([stage.slot, f.id, target]);
      const value = STATUS_VALUE[f.severity];
      const seen = worst.get(key);
      if (!seen || value > seen.value) worst.set(key, { stage: stage.slot, id: f.id, target, value });
    }
  }
  const cluster = report.cluster;
  const lines = [
    "# HELP kubehyve_check_status Result of one kubehyve doctor check: 0 ok, 1 info, 2 skipped (could not run), 3 warning, 4 error.",
    "# TYPE kubehyve_check_status gauge",
    ...[...worst.values()].map(
      (s) =>
        `kubehyve_check_status${labels({ cluster, stage: s.stage, id: s.id, target: s.target })} ${s.value}`,
    ),
    "# HELP kubehyve_doctor_findings Findings of the last kubehyve doctor run, by severity.",
    "# TYPE kubehyve_doctor_findings gauge",
    ...SEVERITIES.map(
      (sev) => `kubehyve_doctor_findings${labels({ cluster, severity: sev })} ${report.summary[sev]}`,
    ),
    "# HELP kubehyve_doctor_last_run_timestamp_seconds When the last kubehyve doctor run finished, in seconds since the epoch.",
    "# TYPE kubehyve_doctor_last_run_timestamp_seconds gauge",
    `kubehyve_doctor_last_run_timestamp_seconds${labels({ cluster })} ${Date.parse(report.checkedAt) / 1000}`,
  ];
  return `${lines.join("\n")}\n`;
}

/** `doctor: 1 error, 2 warnings, 1 skipped, 0 info, 31 ok`: every severity, always in this order. */
export function doctorSummaryLine(counts: Record<Severity, number>): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  return `doctor: ${plural(counts.error, "error")}, ${plural(counts.warn, "warning")}, ${counts.skip} skipped, ${counts.info} info, ${counts.ok} ok`;
}
