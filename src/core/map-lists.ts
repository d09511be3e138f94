/**
 * Lists where a schema wants a map. valibot's object schemas and record() take an array, because an
 * array is an object: `timeouts: []` passed as no timeouts at all, and `zincati: []` was said to
 * lack its `strategy`, which sends the user looking for a missing key instead of at the brackets.
 * This walks a value along its schema and names every such list, for the core's schema and the
 * stages' option schemas alike (plugins build theirs with the same valibot).
 */
import type * as v from "valibot";

type PathKey = string | number;

/** A schema as valibot builds it, with the fields of the kinds walked here. */
interface SchemaNode {
  kind?: string;
  type?: string;
  entries?: Record<string, SchemaNode>;
  item?: SchemaNode;
  value?: SchemaNode;
  wrapped?: SchemaNode;
  options?: SchemaNode[];
  key?: string;
  pipe?: SchemaNode[];
  getter?: (input: unknown) => SchemaNode;
}

const MAPS = new Set(["object", "strict_object", "loose_object", "object_with_rest", "record"]);
const LISTS_OR_ANY = new Set([
  "array",
  "tuple",
  "loose_tuple",
  "strict_tuple",
  "tuple_with_rest",
  "unknown",
  "any",
  "custom",
  "lazy",
]);
const WRAPPERS = new Set([
  "optional",
  "exact_optional",
  "nullable",
  "nullish",
  "non_optional",
  "non_nullable",
  "non_nullish",
  "undefinedable",
]);

/** The issue of one list in the place of a map, in valibot's shape, so the core reports it as any other. */
export type ListIssue = v.BaseIssue<unknown>;

/** Every list in `input` where `schema` wants a map, outermost first; nothing below such a list. */
export function mapsGivenAsLists(schema: v.GenericSchema, input: unknown): ListIssue[] {
  const found: ListIssue[] = [];
  walk(schema as SchemaNode, input, [], found, 0);
  return found;
}

/** The schema a value is checked against: wrappers and a pipe's leading `unknown()` seen through. */
function unwrap(node: SchemaNode | undefined, input: unknown, depth: number): SchemaNode | undefined {
  for (let i = 0; node && i < 32 - depth; i++) {
    if (node.type && WRAPPERS.has(node.type)) node = node.wrapped;
    else if (node.type === "lazy" && node.getter) node = node.getter(input);
    else if (node.type === "unknown" && node.pipe)
      node = node.pipe.find((p, at) => at > 0 && p.kind === "schema");
    else return node;
  }
  return node;
}

function walk(schema: SchemaNode, input: unknown, path: PathKey[], found: ListIssue[], depth: number): void {
  if (depth > 64 || input === undefined || input === null) return;
  const node = unwrap(schema, input, depth);
  if (!node?.type) return;
  if (MAPS.has(node.type)) {
    if (Array.isArray(input)) {
      found.push(issue(path, input));
      return;
    }
    if (typeof input !== "object") return;
    const record = input as Record<string, unknown>;
    if (node.type === "record" && node.value) {
      for (const key of Object.keys(record)) walk(node.value, record[key], [...path, key], found, depth + 1);
      return;
    }
    for (const [key, entry] of Object.entries(node.entries ?? {}))
      if (Object.hasOwn(record, key)) walk(entry, record[key], [...path, key], found, depth + 1);
    return;
  }
  if (node.type === "array" && node.item && Array.isArray(input)) {
    for (const [index, item] of input.entries()) walk(node.item, item, [...path, index], found, depth + 1);
    return;
  }
  if ((node.type === "union" || node.type === "variant") && node.options) {
    const choices = node.options.map((o) => unwrap(o, input, depth + 1));
    const maps = choices.filter((c) => c?.type && MAPS.has(c.type));
    // A list is wrong only where no choice takes one; a map goes on down the one choice it can be.
    if (Array.isArray(input)) {
      const takesList = choices.some((c) => !c?.type || LISTS_OR_ANY.has(c.type));
      if (maps.length && !takesList)
        found.push(issue(path, input, maps.length < choices.length ? ownMessage(node) : undefined));
      return;
    }
    if (typeof input !== "object") return;
    const picked =
      node.type === "variant" && node.key
        ? maps.filter((m) =>
            isLiteralMatch(m?.entries?.[node.key!], (input as Record<string, unknown>)[node.key!]),
          )
        : maps;
    if (picked.length === 1) walk(picked[0]!, input, path, found, depth + 1);
  }
}

/** A choice's own words ("a size, or { name, size }"), where its author gave some. */
function ownMessage(node: SchemaNode): string | undefined {
  const message = (node as { message?: unknown }).message;
  if (typeof message !== "string" || !message) return undefined;
  return `${message.startsWith("must ") ? message : `must be ${message}`}, not a list`;
}

function isLiteralMatch(schema: SchemaNode | undefined, value: unknown): boolean {
  return (schema as { literal?: unknown } | undefined)?.literal === value;
}

function issue(
  path: PathKey[],
  input: unknown[],
  message = "must be a map (key: value), not a list",
): ListIssue {
  return {
    kind: "schema",
    type: "object",
    input,
    expected: "Object",
    received: "Array",
    message,
    path: path.map((key) => ({ type: "object", origin: "value", input: undefined, key, value: undefined })),
  } as unknown as ListIssue;
}
