/**
 * Server-side field validation (KEP-2885; kubernetes/enhancements
 * keps/sig-api-machinery/2885-server-side-unknown-field-validation): unknown and duplicate fields of a
 * request body, reported in kube-apiserver's words. The messages and their order follow the cases of
 * kubernetes/kubernetes test/integration/apiserver/field_validation_test.go:
 *   - JSON bodies of built-in kinds are decoded strictly in one pass (sigs.k8s.io/json), so
 *     `duplicate field "a.b"` and `unknown field "a.c"` come in document order, and a field both
 *     unknown and duplicated is named once, as unknown;
 *   - JSON bodies of custom resources name the duplicates first, then the fields pruning removed;
 *   - YAML bodies are converted to JSON first (sigs.k8s.io/yaml): duplicates are goyaml's
 *     `line N: key "k" already set in map` under `yaml: unmarshal errors:`, and unknown fields follow
 *     in the order of the converted document, whose keys are sorted;
 *   - apply bodies are only checked for duplicates (the typed conversion already refuses unknown
 *     fields), as `error strict decoding patch: error converting YAML to JSON: ...`
 *     (k8s.io/apiserver pkg/endpoints/handlers/patch.go applyPatcher).
 * The directive defaults to Warn (handlers/rest.go fieldValidation); Warn turns each problem into a
 * Warning header (handlers/rest.go addStrictDecodingWarnings, parseYAMLWarnings).
 */
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { isObj, itemPathElement, type Obj, pathString } from "./ssa.ts";
import { fieldType, itemType, type TypeNode } from "./types.ts";

export type Directive = "Strict" | "Warn" | "Ignore";

export interface ParsedBody {
  value: unknown;
  /** `duplicate field "path"` for JSON, `line N: key "k" already set in map` for YAML. */
  duplicates: string[];
  /** The body was YAML (also every apply body): duplicates are goyaml's line messages. */
  yaml: boolean;
}

function looksLikeJson(text: string): boolean {
  return /^\s*[{[]/.test(text);
}

/** The body's value and its duplicate keys; throws on a syntax error with the parser's message. */
export function parseWithDuplicates(text: string, asYaml: boolean): ParsedBody {
  const yaml = asYaml || !looksLikeJson(text);
  // JSON text (what clients send, apply bodies included) is read as JSON: the same value the YAML
  // reading gives, at a fraction of the cost of the yaml library on megabytes of CRDs.
  if (looksLikeJson(text)) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    if (value !== undefined) return { value, duplicates: jsonDuplicates(text, yaml), yaml };
  }
  return parseWithYamlLibrary(text, yaml);
}

/** parseWithDuplicates by the yaml library's document tree, whatever the text. */
export function parseWithYamlLibrary(text: string, yaml: boolean): ParsedBody {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { uniqueKeys: false, lineCounter });
  if (doc.errors.length) throw new Error(doc.errors[0]!.message.split("\n")[0]);
  const duplicates: string[] = [];
  const walk = (node: Node | null | undefined, path: string) => {
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const child = path ? `${path}.${key}` : key;
        if (seen.has(key)) {
          if (yaml) {
            const offset = (pair.key as Node | null)?.range?.[0] ?? 0;
            duplicates.push(
              `line ${lineCounter.linePos(offset).line}: key ${JSON.stringify(key)} already set in map`,
            );
          } else duplicates.push(`duplicate field ${JSON.stringify(child)}`);
        }
        seen.add(key);
        walk(pair.value as Node, child);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        walk(item as Node, `${path}[${i}]`);
      });
    }
  };
  walk(doc.contents as Node, "");
  return { value: doc.toJS({ maxAliasCount: 100 }), duplicates, yaml };
}

/**
 * The duplicate keys of valid JSON text, in document order, in the words of the walk below: the
 * line of the key for a body read as YAML, the field's path for one read as JSON.
 */
export function jsonDuplicates(text: string, yaml: boolean): string[] {
  type Frame = { keys: Set<string>; path: string; key: string } | { index: number; path: string };
  const out: string[] = [];
  const stack: Frame[] = [];
  let line = 1;
  let expectKey = false;
  const valuePath = () => {
    const top = stack.at(-1);
    if (!top) return "";
    if ("keys" in top) return top.path ? `${top.path}.${top.key}` : top.key;
    return `${top.path}[${top.index}]`;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\n") line++;
    else if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === "\\") i++;
      const top = stack.at(-1);
      if (expectKey && top && "keys" in top) {
        const key = JSON.parse(text.slice(start, i + 1)) as string;
        const path = top.path ? `${top.path}.${key}` : key;
        if (top.keys.has(key))
          out.push(
            yaml
              ? `line ${line}: key ${JSON.stringify(key)} already set in map`
              : `duplicate field ${JSON.stringify(path)}`,
          );
        top.keys.add(key);
        top.key = key;
        expectKey = false;
      }
    } else if (c === "{") {
      stack.push({ keys: new Set(), path: valuePath(), key: "" });
      expectKey = true;
    } else if (c === "[") stack.push({ index: 0, path: valuePath() });
    else if (c === "}" || c === "]") stack.pop();
    else if (c === ",") {
      const top = stack.at(-1);
      if (top && "keys" in top) expectKey = true;
      else if (top) top.index++;
    }
  }
  return out;
}

/** Fields a struct of the schema does not declare, as `a.b[0].c`, depth first in the order given. */
export function unknownFields(value: unknown, t: TypeNode, sorted: boolean, path = ""): string[] {
  const out: string[] = [];
  if (Array.isArray(value)) {
    if (t.kind !== "list") return out;
    const it = itemType(t);
    value.forEach((item, i) => {
      out.push(...unknownFields(item, it, sorted, `${path}[${i}]`));
    });
    return out;
  }
  if (!isObj(value) || (t.kind !== "struct" && t.kind !== "map")) return out;
  const keys = Object.keys(value);
  if (sorted) keys.sort();
  for (const k of keys) {
    const child = path ? `${path}.${k}` : k;
    const ft = fieldType(t, k);
    if (!ft) out.push(child);
    else out.push(...unknownFields(value[k], ft, sorted, child));
  }
  return out;
}

/** The value without fields the schema does not declare (decoding into Go types, or CRD pruning). */
export function pruneUnknown(value: unknown, t: TypeNode): unknown {
  if (Array.isArray(value)) {
    if (t.kind !== "list") return value;
    const it = itemType(t);
    return value.map((item) => pruneUnknown(item, it));
  }
  if (!isObj(value) || (t.kind !== "struct" && t.kind !== "map")) return value;
  const out: Obj = {};
  for (const [k, v] of Object.entries(value)) {
    const ft = fieldType(t, k);
    if (ft) out[k] = pruneUnknown(v, ft);
  }
  return out;
}

/** The strict decoding errors of a create or update body, in the order the API server lists them. */
export function strictErrors(body: ParsedBody, t: TypeNode, crd: boolean): string[] {
  const unknown = unknownFields(body.value, t, body.yaml || crd).map(
    (f) => `unknown field ${JSON.stringify(f)}`,
  );
  if (body.yaml) {
    const yamlErr = body.duplicates.length
      ? [`yaml: unmarshal errors:\n  ${body.duplicates.join("\n  ")}`]
      : [];
    return [...yamlErr, ...unknown];
  }
  if (crd) return [...body.duplicates, ...unknown];
  // One pass in document order; a duplicated unknown field is reported as unknown only.
  return documentOrder(body, t);
}

function documentOrder(body: ParsedBody, t: TypeNode): string[] {
  const dupPaths = new Set(
    body.duplicates.map((d) => JSON.parse(d.slice("duplicate field ".length)) as string),
  );
  const unknown = new Set(unknownFields(body.value, t, false));
  const out: string[] = [];
  const seen = new Set<string>();
  // Walk the unknown fields and duplicates by their first appearance in the text's key order.
  const order = [...new Set([...unknownFields(body.value, t, false), ...dupPaths])];
  const position = (p: string) => orderIndex(body.value, p);
  order.sort((a, b) => position(a) - position(b));
  for (const p of order) {
    if (seen.has(p)) continue;
    seen.add(p);
    if (unknown.has(p)) out.push(`unknown field ${JSON.stringify(p)}`);
    else out.push(`duplicate field ${JSON.stringify(p)}`);
  }
  return out;
}

/** Depth-first index of a path among the value's keys (insertion order keeps the first occurrence). */
function orderIndex(value: unknown, target: string): number {
  let i = 0;
  let found = -1;
  const walk = (v: unknown, path: string) => {
    if (found >= 0) return;
    if (Array.isArray(v)) {
      v.forEach((item, n) => {
        walk(item, `${path}[${n}]`);
      });
      return;
    }
    if (!isObj(v)) return;
    for (const [k, x] of Object.entries(v)) {
      const p = path ? `${path}.${k}` : k;
      i++;
      if (p === target) {
        found = i;
        return;
      }
      walk(x, p);
    }
  };
  walk(value, "");
  return found < 0 ? Number.MAX_SAFE_INTEGER : found;
}

/** Warning texts of problems (parseYAMLWarnings splits goyaml's block into its lines). */
export function warningsOf(errors: string[]): string[] {
  const out: string[] = [];
  for (const e of errors) {
    if (e.startsWith("yaml: unmarshal errors:\n")) {
      out.push(
        ...e
          .split("\n")
          .slice(1)
          .map((l) => l.trim()),
      );
    } else out.push(e);
  }
  return out;
}

/** A Warning header value (apimachinery util/net NewWarningHeader: code 299, agent "-"). */
export function warningHeader(text: string): string {
  return `299 - "${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * Undeclared fields of an apply body as the typed conversion names them: field paths of
 * structured-merge-diff, list items by key (`.spec.containers[name="web"].imagePolicy`).
 */
export function undeclaredFields(value: unknown, t: TypeNode, path: string[] = []): string[] {
  const out: string[] = [];
  if (Array.isArray(value)) {
    if (t.kind !== "list") return out;
    const it = itemType(t);
    value.forEach((item, i) => {
      out.push(...undeclaredFields(item, it, [...path, itemPathElement(t, item, i)]));
    });
    return out;
  }
  if (!isObj(value) || (t.kind !== "struct" && t.kind !== "map")) return out;
  for (const k of Object.keys(value)) {
    const ft = fieldType(t, k);
    if (!ft) out.push(pathString([...path, `f:${k}`]));
    else out.push(...undeclaredFields(value[k], ft, [...path, `f:${k}`]));
  }
  return out;
}
