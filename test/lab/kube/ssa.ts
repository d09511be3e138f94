/**
 * Server-side apply as the test server plays it (KEP-555; k8s.io/apimachinery's managedfields and
 * sigs.k8s.io/structured-merge-diff). Kept to what a single field manager observes: the applied
 * object is merged into the live one (maps field by field, lists and scalars replaced whole, as for
 * atomic lists), and a field this manager applied before but leaves out now is removed. Lists keyed
 * by `name` (containers, ports) are merged whole rather than per key: there is no schema here to
 * say which lists are maps.
 */

export type Obj = Record<string, unknown>;

export function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function clone<T>(value: T): T {
  return structuredClone(value);
}

/** Removes from `live` what `before` set and `after` no longer sets. */
function prune(live: Obj, before: Obj, after: Obj): void {
  for (const [key, old] of Object.entries(before)) {
    if (!(key in after)) {
      delete live[key];
    } else if (isObj(old) && isObj(after[key]) && isObj(live[key])) {
      prune(live[key] as Obj, old, after[key] as Obj);
    }
  }
}

function merge(live: Obj, applied: Obj): void {
  for (const [key, value] of Object.entries(applied)) {
    if (isObj(value) && isObj(live[key])) merge(live[key] as Obj, value);
    else live[key] = clone(value);
  }
}

/**
 * The object after `applied` is applied over `live` (undefined: create) by a manager whose previous
 * applied configuration was `previous`.
 */
export function mergeApplied(live: Obj | undefined, applied: Obj, previous: Obj | undefined): Obj {
  const result = clone(live ?? {});
  if (previous) prune(result, previous, applied);
  merge(result, applied);
  return result;
}

/** FieldsV1 of an applied configuration: `f:<field>` per map key, leaves and lists as `{}`. */
export function fieldsV1(applied: Obj, top = true): Obj {
  const out: Obj = {};
  for (const [key, value] of Object.entries(applied)) {
    if (top && (key === "apiVersion" || key === "kind")) continue;
    if (top && key === "metadata" && isObj(value)) {
      const { name: _n, namespace: _ns, ...rest } = value;
      if (Object.keys(rest).length) out["f:metadata"] = fieldsV1(rest, false);
      continue;
    }
    out[`f:${key}`] = isObj(value) ? fieldsV1(value, false) : {};
  }
  return out;
}

/** JSON merge patch (RFC 7386): null deletes, maps merge, everything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch);
  const result: Obj = isObj(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/** Everything but metadata and status: a change here bumps metadata.generation. */
export function specPart(obj: Obj): string {
  const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = obj;
  return JSON.stringify(rest);
}
