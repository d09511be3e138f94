/**
 * Validation of custom resources against their CRD's structural schema (openAPIV3Schema), as the
 * apiextensions-apiserver does, with ajv. Objects are closed (additionalProperties: false) unless
 * the schema says `x-kubernetes-preserve-unknown-fields`, so an unknown field is caught like strict
 * field validation catches it. Not covered: CEL rules (x-kubernetes-validations), defaulting, and
 * list-type uniqueness (x-kubernetes-list-type).
 */
import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import { isObj, type Obj } from "./ssa.ts";

export interface SchemaProblem {
  /** `unknown` fields are reported apart: server-side apply refuses them differently. */
  kind: "unknown" | "required" | "type" | "enum" | "pattern" | "other";
  /** Field path as the API server writes it: `spec.addresses[0]`. */
  field: string;
  /** Cause message in the API server's wording. */
  message: string;
}

const KEPT = [
  "type",
  "enum",
  "pattern",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "uniqueItems",
  "minProperties",
  "maxProperties",
  "required",
  "multipleOf",
];

/**
 * OpenAPI v3 (as CRDs use it) to the JSON Schema ajv reads. `open` is set inside allOf/anyOf/oneOf
 * branches, which in a structural schema only add constraints to fields declared outside them.
 */
export function toJsonSchema(s: unknown, root = false, open = false): Obj {
  if (!isObj(s)) return {};
  const out: Obj = {};
  for (const k of KEPT) if (k in s) out[k] = s[k];
  // OpenAPI v3.0 writes exclusive bounds as booleans next to minimum/maximum.
  if (s.exclusiveMinimum === true && typeof s.minimum === "number") {
    out.exclusiveMinimum = s.minimum;
    delete out.minimum;
  }
  if (s.exclusiveMaximum === true && typeof s.maximum === "number") {
    out.exclusiveMaximum = s.maximum;
    delete out.maximum;
  }
  const properties: Obj = {};
  if (isObj(s.properties)) {
    for (const [k, v] of Object.entries(s.properties)) properties[k] = toJsonSchema(v, false, open);
  }
  if (root) {
    // The API server accepts these at the root of every object, declared or not.
    properties.apiVersion ??= { type: "string" };
    properties.kind ??= { type: "string" };
    properties.metadata = { type: "object" };
  }
  if (Object.keys(properties).length) out.properties = properties;
  if (s.items !== undefined) out.items = toJsonSchema(s.items, false, open);
  if (isObj(s.additionalProperties)) {
    out.additionalProperties = toJsonSchema(s.additionalProperties, false, open);
  } else if (
    !open &&
    s["x-kubernetes-preserve-unknown-fields"] !== true &&
    s.additionalProperties !== true &&
    (out.properties !== undefined || s.type === "object")
  ) {
    out.additionalProperties = false;
  }
  for (const k of ["allOf", "anyOf", "oneOf"]) {
    if (Array.isArray(s[k])) out[k] = (s[k] as unknown[]).map((b) => toJsonSchema(b, false, true));
  }
  if (s.not !== undefined) out.not = toJsonSchema(s.not, false, true);
  if (s["x-kubernetes-int-or-string"] === true) {
    delete out.type;
    const intOrString = { anyOf: [{ type: "integer" }, { type: "string" }] };
    if (out.anyOf) out.allOf = [...((out.allOf as unknown[]) ?? []), intOrString];
    else Object.assign(out, intOrString);
  }
  if (s.nullable === true) {
    if (typeof out.type === "string") out.type = [out.type, "null"];
    if (Array.isArray(out.enum)) out.enum = [...out.enum, null];
  }
  return out;
}

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
const compiled = new WeakMap<object, ValidateFunction>();

function validatorFor(schema: Obj): ValidateFunction {
  let fn = compiled.get(schema);
  if (!fn) {
    fn = ajv.compile(toJsonSchema(schema, true));
    compiled.set(schema, fn);
  }
  return fn;
}

function fieldOf(instancePath: string): string {
  return instancePath
    .split("/")
    .filter(Boolean)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), "");
}

function valueAt(obj: unknown, instancePath: string): unknown {
  let cur = obj;
  for (const p of instancePath.split("/").filter(Boolean)) {
    cur = (cur as Record<string, unknown> | undefined)?.[p.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return cur;
}

/** How kube-openapi's validation shows a value: JSON for scalars, the type name for the rest. */
function shown(value: unknown): string {
  if (Array.isArray(value)) return '"array"';
  if (isObj(value)) return '"object"';
  return JSON.stringify(value);
}

function problemOf(error: ErrorObject, obj: unknown): SchemaProblem | undefined {
  const field = fieldOf(error.instancePath);
  const value = valueAt(obj, error.instancePath);
  const join = (name: string) => (field ? `${field}.${name}` : name);
  switch (error.keyword) {
    case "additionalProperties": {
      const name = String((error.params as { additionalProperty: string }).additionalProperty);
      return { kind: "unknown", field: join(name), message: "field not declared in schema" };
    }
    case "required": {
      const name = String((error.params as { missingProperty: string }).missingProperty);
      return { kind: "required", field: join(name), message: "Required value" };
    }
    case "type": {
      const type = String((error.params as { type: string | string[] }).type).split(",")[0];
      return {
        kind: "type",
        field,
        message: `Invalid value: ${shown(value)}: ${field} in body must be of type ${type}: ${shown(value)}`,
      };
    }
    case "enum": {
      const allowed = (error.params as { allowedValues: unknown[] }).allowedValues.filter((v) => v !== null);
      return {
        kind: "enum",
        field,
        message: `Unsupported value: ${shown(value)}: supported values: ${allowed.map((v) => JSON.stringify(v)).join(", ")}`,
      };
    }
    case "pattern":
      return {
        kind: "pattern",
        field,
        message: `Invalid value: ${shown(value)}: ${field} in body should match '${(error.params as { pattern: string }).pattern}'`,
      };
    default:
      // Inner errors of anyOf/oneOf repeat what the combinator reports once.
      if (/\/(anyOf|oneOf)\/\d+\//.test(error.schemaPath)) return undefined;
      return {
        kind: "other",
        field,
        message: `Invalid value: ${shown(value)}: ${field} in body ${error.message ?? "is invalid"}`,
      };
  }
}

/**
 * Drops null values of fields that are not nullable, as the apiextensions-apiserver prunes them
 * before validation ("Defaulting and Nullable" in the CRD documentation). A YAML key with only
 * comments under it (Rook's cluster.yaml `cephfs:`) is such a null.
 */
export function pruneNulls(value: unknown, schema: unknown): unknown {
  if (!isObj(schema)) return value;
  if (Array.isArray(value)) return value.map((item) => pruneNulls(item, schema.items));
  if (!isObj(value)) return value;
  const out: Obj = {};
  for (const [k, v] of Object.entries(value)) {
    const sub = isObj(schema.properties) ? schema.properties[k] : schema.additionalProperties;
    if (v === null && !(isObj(sub) && sub.nullable === true)) continue;
    out[k] = pruneNulls(v, sub);
  }
  return out;
}

/** Problems of `obj` under a CRD version's openAPIV3Schema; empty when it conforms. */
export function validateAgainstSchema(input: unknown, schema: Obj): SchemaProblem[] {
  const fn = validatorFor(schema);
  const obj = pruneNulls(input, schema);
  if (fn(obj)) return [];
  const seen = new Set<string>();
  const out: SchemaProblem[] = [];
  for (const error of fn.errors ?? []) {
    const problem = problemOf(error, obj);
    if (!problem) continue;
    const key = `${problem.kind}|${problem.field}|${problem.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(problem);
  }
  return out;
}
