/**
 * The shape of an object as server-side apply and field validation see it: OpenAPI v3 schemas
 * (built-in ones from ./builtin-schemas.ts, a CRD version's openAPIV3Schema) turned into the type
 * kinds of sigs.k8s.io/structured-merge-diff schema/elements.go: structs (named fields), maps
 * (additionalProperties), lists that are atomic, sets or maps keyed by some of their items' fields
 * (x-kubernetes-list-type / x-kubernetes-list-map-keys), scalars, and the "deduced" type of
 * x-kubernetes-preserve-unknown-fields, whose maps are granular and lists atomic
 * (structured-merge-diff typed/deduced.go). The conversion follows k8s.io/kube-openapi
 * pkg/schemaconv/openapi.go: lists without a list type are atomic; `x-kubernetes-map-type: atomic`
 * makes a struct or map one field.
 */
import { BUILTIN_SCHEMAS, type Schema } from "./builtin-schemas.ts";

export type TypeNode =
  | { kind: "struct"; fields: Map<string, Schema>; atomic: boolean; open: boolean; defs: Defs }
  | { kind: "map"; values: Schema; atomic: boolean; defs: Defs }
  | { kind: "list"; items: Schema; listType: "atomic" | "set" | "map"; keys: string[]; defs: Defs }
  | { kind: "scalar" }
  | { kind: "untyped" };

export type Defs = Record<string, Schema>;

function isObj(v: unknown): v is Schema {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A schema with `$ref` and single-branch `allOf: [{$ref}]` folded in, as kube-openapi resolves them. */
export function resolve(schema: Schema, defs: Defs): Schema {
  let s = schema;
  for (let depth = 0; depth < 20; depth++) {
    if (typeof s.$ref === "string") {
      const target = defs[s.$ref.replace(/^#\/(components\/schemas|definitions)\//, "")];
      const { $ref: _r, ...rest } = s;
      s = { ...(target ?? {}), ...rest };
      continue;
    }
    if (Array.isArray(s.allOf) && s.allOf.length === 1 && isObj(s.allOf[0]) && "$ref" in s.allOf[0]) {
      const { allOf, ...rest } = s;
      s = { ...(allOf as Schema[])[0]!, ...rest };
      continue;
    }
    return s;
  }
  return s;
}

export function typeOf(schema: Schema | undefined, defs: Defs): TypeNode {
  if (!schema) return { kind: "untyped" };
  const s = resolve(schema, defs);
  const props = isObj(s.properties) ? (s.properties as Record<string, Schema>) : undefined;
  const preserve = s["x-kubernetes-preserve-unknown-fields"] === true;
  if (s.type === "array") {
    const listType = (s["x-kubernetes-list-type"] as "atomic" | "set" | "map" | undefined) ?? "atomic";
    const keys = Array.isArray(s["x-kubernetes-list-map-keys"])
      ? (s["x-kubernetes-list-map-keys"] as string[])
      : [];
    return { kind: "list", items: isObj(s.items) ? s.items : {}, listType, keys, defs };
  }
  if (s.type === "object" || props || preserve || isObj(s.additionalProperties)) {
    const atomic = s["x-kubernetes-map-type"] === "atomic";
    if (props || (!preserve && !isObj(s.additionalProperties))) {
      return { kind: "struct", fields: new Map(Object.entries(props ?? {})), atomic, open: preserve, defs };
    }
    if (isObj(s.additionalProperties)) return { kind: "map", values: s.additionalProperties, atomic, defs };
    return { kind: "untyped" };
  }
  return { kind: "scalar" };
}

/** The type of a field of a struct or map; undefined when a struct does not declare it. */
export function fieldType(t: TypeNode, name: string): TypeNode | undefined {
  if (t.kind === "struct") {
    const f = t.fields.get(name);
    if (f) return typeOf(f, t.defs);
    return t.open ? { kind: "untyped" } : undefined;
  }
  if (t.kind === "map") return typeOf(t.values, t.defs);
  return { kind: "untyped" };
}

export function itemType(t: TypeNode): TypeNode {
  return t.kind === "list" ? typeOf(t.items, t.defs) : { kind: "untyped" };
}

/** The built-in components, for resolving references of built-in kinds. */
export const BUILTIN_DEFS: Defs = BUILTIN_SCHEMAS;

/**
 * A CRD version's schema as a root type: apiVersion, kind and metadata are declared whatever the
 * schema says (apiextensions-apiserver treats metadata as ObjectMeta; only name and generateName may
 * be constrained there).
 */
export function crdRootSchema(openAPIV3Schema: Schema | undefined): Schema {
  const s = openAPIV3Schema ?? { type: "object", "x-kubernetes-preserve-unknown-fields": true };
  const props = isObj(s.properties) ? (s.properties as Record<string, Schema>) : {};
  return {
    ...s,
    type: "object",
    properties: {
      ...props,
      apiVersion: { type: "string" },
      kind: { type: "string" },
      metadata: { $ref: "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" },
    },
  };
}
