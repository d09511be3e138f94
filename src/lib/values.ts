/** Values as messages name them, when they are not what was expected. */

/** The value as a person would name its kind, for "… is not a list (a string)". */
export function describeValue(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (value instanceof Uint8Array) return "bytes";
  switch (typeof value) {
    case "string":
      return value.length > 40
        ? `a string, ${JSON.stringify(`${value.slice(0, 40)}…`)}`
        : JSON.stringify(value);
    case "number":
    case "bigint":
      return `${String(value)}, a number`;
    case "boolean":
      return String(value);
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    default:
      return "an object";
  }
}

/** `150 ms`, `90 s`, `61.2 s`, `10 min`, `2 h`: a duration in a message. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms % 3600_000 === 0) return `${ms / 3600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Math.round(ms / 100) / 10} s`;
}
