/**
 * Is an answer of the API an object of the shape KubeObject promises? What callers read without
 * looking (metadata's strings and maps, managedFields, status.conditions) must be what its type
 * says: a broken server or something posing as one that sends `metadata: "x"` or
 * `conditions: {}` would otherwise end as a TypeError deep in a reader, reported as a bug in
 * kubehyve. The types are those of k8s.io/apimachinery pkg/apis/meta/v1 types.go (ObjectMeta,
 * ManagedFieldsEntry, Condition); a field Go omits or encodes as null is absent.
 */
import { isJsonObject } from "./types.ts";

const STRING_META = [
  "name",
  "generateName",
  "namespace",
  "uid",
  "resourceVersion",
  "creationTimestamp",
  "deletionTimestamp",
] as const;
const STRING_MAPS = ["labels", "annotations"] as const;
const STRING_MANAGED = ["manager", "operation", "apiVersion", "time", "fieldsType", "subresource"] as const;
const STRING_CONDITION = ["type", "status", "reason", "message", "lastTransitionTime"] as const;

const present = (value: unknown) => value !== undefined && value !== null;

/**
 * Lists of objects in built-in kinds that kubehyve's code walks (Services' ports and load balancer
 * addresses, a pod's containers and their statuses, a node's addresses, an Ingress's rules), by
 * group/kind; their types are those of k8s.io/api core/v1 and networking/v1 types.go.
 */
const OBJECT_LISTS: Record<string, readonly string[]> = {
  "/Service": ["spec.ports", "status.loadBalancer.ingress"],
  "/Pod": [
    "spec.containers",
    "spec.initContainers",
    "status.containerStatuses",
    "status.initContainerStatuses",
  ],
  "/Node": ["status.addresses"],
  "networking.k8s.io/Ingress": ["spec.rules"],
};

/** Where the list at `path` (dotted) is not a list of objects, or undefined; absent is fine. */
function objectListProblem(value: Record<string, unknown>, path: string): string | undefined {
  const keys = path.split(".");
  let at: unknown = value;
  for (const [i, key] of keys.entries()) {
    if (!isJsonObject(at)) return `${keys.slice(0, i).join(".")} is not an object`;
    at = at[key];
    if (!present(at)) return undefined;
  }
  if (!Array.isArray(at)) return `${path} is not a list`;
  const bad = at.findIndex((item) => !isJsonObject(item));
  return bad < 0 ? undefined : `${path}[${bad}] is not an object`;
}

/**
 * Where `value`, asked for as `kind` of `apiVersion`, breaks the shape of a KubeObject
 * ("metadata.labels.app is not a string"), or undefined when it holds. Fields it does not know are
 * not looked at.
 */
export function objectShapeProblem(value: unknown, apiVersion = "", kind = ""): string | undefined {
  if (!isJsonObject(value)) return "it is not an object";
  for (const key of ["apiVersion", "kind"] as const)
    if (present(value[key]) && typeof value[key] !== "string") return `${key} is not a string`;
  const meta = value.metadata;
  if (!isJsonObject(meta)) return "metadata is not an object";
  for (const key of STRING_META)
    if (present(meta[key]) && typeof meta[key] !== "string") return `metadata.${key} is not a string`;
  if (present(meta.generation) && typeof meta.generation !== "number")
    return "metadata.generation is not a number";
  for (const key of STRING_MAPS) {
    const map = meta[key];
    if (!present(map)) continue;
    if (!isJsonObject(map)) return `metadata.${key} is not a map`;
    for (const [k, v] of Object.entries(map))
      if (typeof v !== "string") return `metadata.${key}.${k} is not a string`;
  }
  for (const key of ["managedFields", "ownerReferences", "finalizers"] as const)
    if (present(meta[key]) && !Array.isArray(meta[key])) return `metadata.${key} is not a list`;
  const managed = (meta.managedFields ?? []) as unknown[];
  for (const [i, entry] of managed.entries()) {
    const at = `metadata.managedFields[${i}]`;
    if (!isJsonObject(entry)) return `${at} is not an object`;
    for (const key of STRING_MANAGED)
      if (present(entry[key]) && typeof entry[key] !== "string") return `${at}.${key} is not a string`;
    if (present(entry.fieldsV1)) {
      const problem = fieldSetProblem(entry.fieldsV1);
      if (problem) return `${at}.fieldsV1${problem}`;
    }
  }
  for (const [i, ref] of ((meta.ownerReferences ?? []) as unknown[]).entries())
    if (!isJsonObject(ref)) return `metadata.ownerReferences[${i}] is not an object`;
  for (const key of ["spec", "status"] as const)
    if (present(value[key]) && !isJsonObject(value[key])) return `${key} is not an object`;
  const conditions = isJsonObject(value.status) ? value.status.conditions : undefined;
  if (present(conditions)) {
    if (!Array.isArray(conditions)) return "status.conditions is not a list";
    for (const [i, c] of conditions.entries()) {
      const at = `status.conditions[${i}]`;
      if (!isJsonObject(c)) return `${at} is not an object`;
      for (const key of STRING_CONDITION)
        if (present(c[key]) && typeof c[key] !== "string") return `${at}.${key} is not a string`;
    }
  }
  const group = apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.indexOf("/")) : "";
  for (const path of OBJECT_LISTS[`${group}/${kind}`] ?? []) {
    const problem = objectListProblem(value, path);
    if (problem) return problem;
  }
  return undefined;
}

/**
 * Where a FieldsV1 set breaks its format (sigs.k8s.io/structured-merge-diff fieldpath/serialize.go:
 * a tree of objects keyed `f:name`, `k:{json object}`, `v:json`, `i:n` or `.`), as a path suffix.
 * The `k:` and `v:` keys are parsed when a plan compares fields: one that is no JSON would throw there.
 */
function fieldSetProblem(set: unknown, path = ""): string | undefined {
  if (!isJsonObject(set)) return `${path} is not an object`;
  for (const [key, sub] of Object.entries(set)) {
    const at = `${path}[${JSON.stringify(key)}]`;
    const kind = key.slice(0, 2);
    if (kind === "k:" || kind === "v:") {
      let parsed: unknown;
      try {
        parsed = JSON.parse(key.slice(2));
      } catch {
        return `${at} is not a key of JSON`;
      }
      if (kind === "k:" && !isJsonObject(parsed)) return `${at} is not a key of a JSON object`;
    }
    const problem = fieldSetProblem(sub, at);
    if (problem) return problem;
  }
  return undefined;
}
