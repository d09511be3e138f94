/** Values as messages name them, when they are not what was expected. */

const isPlainData = (value: object) => {
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
};

/**
 * `value` and the plain data reachable from it (objects and arrays) made read-only, in place. What
 * else is reachable (a Map, bytes, a class's instance) is left as it is: freezing bytes throws.
 */
export function deepFreeze<T>(value: T): T {
  if (!value || typeof value !== "object" || Object.isFrozen(value) || !isPlainData(value)) return value;
  Object.freeze(value);
  for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<string | symbol, unknown>)[key]);
  return value;
}

/**
 * A read-only copy of the plain data in `value` (objects and arrays, copied; anything else shared),
 * for handing one party's value to another without either seeing the other's changes.
 */
export function frozenCopy<T>(value: T, seen = new Map<object, unknown>()): T {
  if (!value || typeof value !== "object" || !isPlainData(value)) return value;
  if (Object.isFrozen(value)) return value;
  const done = seen.get(value);
  if (done) return done as T;
  const copy: Record<string | symbol, unknown> = Array.isArray(value)
    ? []
    : Object.create(Object.getPrototypeOf(value));
  seen.set(value, copy);
  for (const key of Reflect.ownKeys(value)) {
    const d = Object.getOwnPropertyDescriptor(value, key)!;
    // A getter is read once; what it answers is copied like the rest.
    copy[key] = frozenCopy("value" in d ? d.value : (value as Record<string | symbol, unknown>)[key], seen);
  }
  return Object.freeze(copy) as T;
}

/**
 * What a thrown value says, for a message: an Error's message, a string as itself, anything else
 * as String() has it. Whatever a plugin throws ends up here: a value whose toString throws, or a
 * Proxy whose every read does, is named by its kind instead of breaking the message about it.
 */
export function thrownText(error: unknown): string {
  try {
    if (error instanceof Error && typeof error.message === "string") return error.message;
    const text = typeof error === "string" ? error : String(error);
    if (typeof text === "string") return text;
  } catch {}
  let kind = "an object";
  try {
    kind = describeValue(error);
  } catch {}
  return `${kind} that cannot be shown`;
}

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
