/**
 * The two patch formats besides apply and JSON merge patch (RFC 7386, ssa.ts mergePatch):
 *   - strategic merge patch (k8s.io/apimachinery pkg/util/strategicpatch patch.go): a merge patch
 *     whose lists with a patch merge key (here: x-kubernetes-list-type map, from the schema) merge
 *     item by item, with the `$patch: delete` / `$patch: replace` directives; other lists and
 *     unknown types replace as in a merge patch. `$setElementOrder`, `$retainKeys` and
 *     `$deleteFromPrimitiveList` are not served;
 *   - JSON patch (RFC 6902, as evanphx/json-patch applies it in handlers/patch.go jsonPatcher):
 *     add, remove, replace, move, copy and test, refused with 422 when a path does not resolve.
 */
import { clone, isObj, itemPathElement, type Obj } from "./ssa.ts";
import { fieldType, itemType, type TypeNode } from "./types.ts";

export function strategicMergePatch(target: unknown, patch: unknown, t: TypeNode): unknown {
  if (!isObj(patch)) return clone(patch);
  if (patch.$patch === "replace") {
    const { $patch: _p, ...rest } = patch;
    return clone(rest);
  }
  const result: Obj = isObj(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key === "$patch") continue;
    const ft = fieldType(t, key) ?? { kind: "untyped" as const };
    if (value === null) delete result[key];
    else if (
      Array.isArray(value) &&
      ft.kind === "list" &&
      ft.listType === "map" &&
      Array.isArray(result[key])
    ) {
      result[key] = mergeList(result[key] as unknown[], value, ft);
    } else result[key] = strategicMergePatch(result[key], value, ft);
  }
  return result;
}

function mergeList(live: unknown[], patch: unknown[], t: TypeNode): unknown[] {
  const it = itemType(t);
  const out = live.map((item) => clone(item));
  const keyOf = (item: unknown, i: number) => itemPathElement(t, item, i);
  for (const [i, item] of patch.entries()) {
    const k = keyOf(item, i);
    const at = out.findIndex((o, j) => keyOf(o, j) === k);
    if (isObj(item) && item.$patch === "delete") {
      if (at >= 0) out.splice(at, 1);
    } else if (at >= 0) out[at] = strategicMergePatch(out[at], item, it);
    else out.push(strategicMergePatch(undefined, item, it));
  }
  return out;
}

export class JsonPatchError extends Error {}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw new JsonPatchError(`invalid JSON pointer ${JSON.stringify(path)}`);
  return path
    .slice(1)
    .split("/")
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function parentOf(doc: unknown, parts: string[], path: string): { parent: unknown; key: string } {
  let cur = doc;
  for (const p of parts.slice(0, -1)) {
    cur = Array.isArray(cur) ? cur[Number(p)] : isObj(cur) ? cur[p] : undefined;
    if (cur === undefined) throw new JsonPatchError(`doc is missing path: "${path}": missing value`);
  }
  return { parent: cur, key: parts[parts.length - 1]! };
}

function get(doc: unknown, path: string): unknown {
  let cur = doc;
  for (const p of pointer(path)) {
    cur = Array.isArray(cur) ? cur[Number(p)] : isObj(cur) ? cur[p] : undefined;
    if (cur === undefined) throw new JsonPatchError(`doc is missing path: "${path}": missing value`);
  }
  return cur;
}

function put(doc: unknown, path: string, value: unknown, replace: boolean): void {
  const { parent, key } = parentOf(doc, pointer(path), path);
  if (Array.isArray(parent)) {
    const i = key === "-" ? parent.length : Number(key);
    if (!Number.isInteger(i) || i < 0 || i > parent.length)
      throw new JsonPatchError(`index out of bounds in ${path}`);
    if (replace) parent[i] = value;
    else parent.splice(i, 0, value);
  } else if (isObj(parent)) {
    if (replace && !(key in parent)) throw new JsonPatchError(`doc is missing key: ${path}: missing value`);
    parent[key] = value;
  } else throw new JsonPatchError(`doc is missing path: "${path}": missing value`);
}

function del(doc: unknown, path: string): void {
  const { parent, key } = parentOf(doc, pointer(path), path);
  if (Array.isArray(parent) && Number(key) < parent.length) parent.splice(Number(key), 1);
  else if (isObj(parent) && key in parent) delete parent[key];
  else throw new JsonPatchError(`doc is missing path: "${path}": missing value`);
}

export function jsonPatch(target: Obj, ops: unknown): Obj {
  if (!Array.isArray(ops)) throw new JsonPatchError("a JSON patch is a list of operations");
  const doc = clone(target);
  for (const op of ops) {
    if (!isObj(op) || typeof op.path !== "string") throw new JsonPatchError("an operation needs op and path");
    switch (op.op) {
      case "add":
        put(doc, op.path, clone(op.value), false);
        break;
      case "replace":
        put(doc, op.path, clone(op.value), true);
        break;
      case "remove":
        del(doc, op.path);
        break;
      case "move": {
        const v = get(doc, String(op.from));
        del(doc, String(op.from));
        put(doc, op.path, v, false);
        break;
      }
      case "copy":
        put(doc, op.path, clone(get(doc, String(op.from))), false);
        break;
      case "test":
        if (JSON.stringify(get(doc, op.path)) !== JSON.stringify(op.value))
          throw new JsonPatchError(`testing value ${op.path} failed: test failed`);
        break;
      default:
        throw new JsonPatchError(`Unexpected kind: ${String(op.op)}`);
    }
  }
  return doc;
}
