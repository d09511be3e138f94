/** Durations as people write them in a cluster file: `90s`, `10m`, `2h`, `500ms`, or bare seconds. */
const FACTORS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000 };

/** Milliseconds of a duration string or a number of seconds; undefined when it is not one. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === "number")
    return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined;
  const m = /^\s*(\d{1,9}(?:\.\d{1,3})?)\s*(ms|s|m|h)?\s*$/.exec(input);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * FACTORS[m[2] ?? "s"]!);
}
