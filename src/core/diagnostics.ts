/**
 * Findings of check, verify and doctor. Diagnostics are collected and returned, never thrown:
 * the caller decides with `hasErrors` whether a run stops.
 */

/**
 * `skip`: the check could not run because what it needs is missing or unreachable (a node that does
 * not answer, an API that is down); it says so and names why, and is never silently dropped.
 */
export type Severity = "ok" | "info" | "warn" | "error" | "skip";

export const SEVERITIES: readonly Severity[] = ["ok", "info", "warn", "error", "skip"];

export interface Diagnostic {
  /** Stable, dotted identifier, e.g. `bhyve.vmm-not-loaded`. Tests and users grep for it. */
  code: string;
  severity: Severity;
  /** One line saying what was found. */
  summary: string;
  /** Longer explanation, evidence (command output, file excerpt). */
  detail?: string;
  /** The fix, as a command where possible. */
  hint?: string;
  /** Dot path in the cluster file this concerns, e.g. `nodes[1].memory`. */
  path?: string;
  /** The host or node this concerns. */
  target?: string;
  /** doctor --ignore: an error shown as a warning, because the user asked; never hidden. */
  ignored?: boolean;
}

type Extra = Partial<Omit<Diagnostic, "code" | "severity" | "summary">>;

function make(severity: Severity) {
  return (code: string, summary: string, extra: Extra = {}): Diagnostic => ({
    code,
    severity,
    summary,
    ...extra,
  });
}

export const diag = {
  ok: make("ok"),
  info: make("info"),
  warn: make("warn"),
  error: make("error"),
  skip: make("skip"),
};

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === "error");
}

export function countBySeverity(diagnostics: readonly Diagnostic[]): Record<Severity, number> {
  const counts: Record<Severity, number> = { ok: 0, info: 0, warn: 0, error: 0, skip: 0 };
  for (const d of diagnostics) counts[d.severity]++;
  return counts;
}

/**
 * doctor --ignore: an error of one of these check ids becomes a warning marked `ignored`. Only
 * errors move: a warning or a skip of an ignored id stays as it is, so nothing is hidden.
 */
export function ignoring(ids: readonly string[]): (d: Diagnostic) => Diagnostic {
  const set = new Set(ids);
  return (d) => (d.severity === "error" && set.has(d.code) ? { ...d, severity: "warn", ignored: true } : d);
}
