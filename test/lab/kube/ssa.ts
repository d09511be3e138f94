/**
 * Field ownership and server-side apply as kube-apiserver does them, written after
 * sigs.k8s.io/structured-merge-diff (fieldpath/set.go, serialize.go, serialize-pe.go,
 * typed/tofieldset.go, typed/merge.go, typed/compare.go, merge/update.go, merge/conflict.go) and
 * k8s.io/apimachinery pkg/util/managedfields/internal (structuredmerge.go, stripmeta.go,
 * managedfieldsupdater.go, managedfields.go, conflict.go):
 *   - a field set is a tree of path elements (`f:name`, `k:{"name":"x"}`, `v:"x"`, `i:0`), its JSON
 *     form is FieldsV1, where `.` marks an element that is itself a member;
 *   - Apply merges the configuration into the live object, makes the configuration's fields the
 *     applier's set, prunes what the applier owned before and no one owns now, and refuses with
 *     a conflict each field another manager owns and the apply changes, unless forced (which moves
 *     the field to the applier);
 *   - Update (create, PUT, merge patch) gives the writer every field it changed, taken from
 *     whoever owned it.
 * Managers are keyed like BuildManagerIdentifier: manager, operation, subresource, and for
 * updates the apiVersion.
 * Not modelled: conversion between versions (every manager is at the version served), the cap of
 * ten update managers, and the ordering subtleties of merging associative lists (items keep the
 * live order, new ones are appended).
 */
import { fieldType, itemType, resolve, type TypeNode } from "./types.ts";

export type Obj = Record<string, unknown>;

export function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function clone<T>(value: T): T {
  return structuredClone(value);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObj(a) && isObj(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

/** A set of field paths (fieldpath.Set): members are paths in the set, children lead deeper. */
export class FieldSet {
  members = new Set<string>();
  children = new Map<string, FieldSet>();

  static fromJSON(json: unknown): FieldSet {
    const s = new FieldSet();
    if (!isObj(json)) return s;
    for (const [pe, sub] of Object.entries(json)) {
      if (pe === ".") continue;
      const child = isObj(sub) ? FieldSet.fromJSON(sub) : new FieldSet();
      if (isObj(sub) && "." in sub) s.members.add(pe);
      if (child.empty()) s.members.add(pe);
      else s.children.set(pe, child);
    }
    return s;
  }

  empty(): boolean {
    return this.members.size === 0 && [...this.children.values()].every((c) => c.empty());
  }

  insert(path: string[]): void {
    let s: FieldSet = this;
    for (let i = 0; i < path.length - 1; i++) {
      const pe = path[i]!;
      let c = s.children.get(pe);
      if (!c) {
        c = new FieldSet();
        s.children.set(pe, c);
      }
      s = c;
    }
    if (path.length) s.members.add(path[path.length - 1]!);
  }

  has(path: string[]): boolean {
    let s: FieldSet | undefined = this;
    for (let i = 0; i < path.length - 1; i++) s = s?.children.get(path[i]!);
    return !!s && path.length > 0 && s.members.has(path[path.length - 1]!);
  }

  union(o: FieldSet): FieldSet {
    const r = new FieldSet();
    for (const m of [...this.members, ...o.members]) r.members.add(m);
    for (const pe of new Set([...this.children.keys(), ...o.children.keys()])) {
      const a = this.children.get(pe);
      const b = o.children.get(pe);
      r.children.set(pe, a && b ? a.union(b) : (a ?? b)!.union(new FieldSet()));
    }
    return r.pruned();
  }

  intersection(o: FieldSet): FieldSet {
    const r = new FieldSet();
    for (const m of this.members) if (o.members.has(m)) r.members.add(m);
    for (const [pe, a] of this.children) {
      const b = o.children.get(pe);
      if (b) r.children.set(pe, a.intersection(b));
    }
    return r.pruned();
  }

  difference(o: FieldSet): FieldSet {
    const r = new FieldSet();
    for (const m of this.members) if (!o.members.has(m)) r.members.add(m);
    for (const [pe, a] of this.children) {
      const b = o.children.get(pe);
      r.children.set(pe, b ? a.difference(b) : a.union(new FieldSet()));
    }
    return r.pruned();
  }

  private pruned(): FieldSet {
    for (const [pe, c] of [...this.children]) if (c.empty()) this.children.delete(pe);
    return this;
  }

  /** Every member path, in serialization order. */
  paths(prefix: string[] = []): string[][] {
    const out: string[][] = [];
    for (const pe of sortPathElements(new Set([...this.members, ...this.children.keys()]))) {
      if (this.members.has(pe)) out.push([...prefix, pe]);
      const c = this.children.get(pe);
      if (c) out.push(...c.paths([...prefix, pe]));
    }
    return out;
  }

  /** FieldsV1 (fieldpath/serialize.go emitContentsV1): children sorted, `.` for members with children. */
  toJSON(includeSelf = false): Obj {
    const out: Obj = {};
    if (includeSelf) out["."] = {};
    for (const pe of sortPathElements(new Set([...this.members, ...this.children.keys()]))) {
      const c = this.children.get(pe);
      out[pe] = c && !c.empty() ? c.toJSON(this.members.has(pe)) : {};
    }
    return out;
  }
}

const PE_ORDER: Record<string, number> = { f: 0, k: 1, v: 2, i: 3 };

/** PathElement.Compare: field names before keys before values before indices, each in order. */
function sortPathElements(pes: Set<string>): string[] {
  return [...pes].sort((a, b) => {
    const ta = PE_ORDER[a[0]!] ?? 9;
    const tb = PE_ORDER[b[0]!] ?? 9;
    if (ta !== tb) return ta - tb;
    if (a[0] === "i") return Number(a.slice(2)) - Number(b.slice(2));
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

/** fieldpath.Path String(): `.spec.containers[name="web"].image`. */
export function pathString(path: string[]): string {
  return path
    .map((pe) => {
      const body = pe.slice(2);
      if (pe.startsWith("f:")) return `.${body}`;
      if (pe.startsWith("i:")) return `[${body}]`;
      if (pe.startsWith("v:")) return `[=${valueString(JSON.parse(body))}]`;
      const key = JSON.parse(body) as Obj;
      return `[${Object.entries(key)
        .map(([k, v]) => `${k}=${valueString(v)}`)
        .join(",")}]`;
    })
    .join("");
}

/** value.ToString: strings quoted Go-style, other scalars as they print. */
function valueString(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(valueString).join(",")}]`;
  if (isObj(v))
    return Object.entries(v)
      .map(([k, x]) => `${k}=${valueString(x)}`)
      .join("");
  return String(v);
}

/**
 * The path element of a list item (typed/helpers.go listItemToPathElement). A key field the item
 * leaves out takes its schema default, as protocol: TCP of a container port does
 * (keyedAssociativeListItemToPathElement; ssa-dryrun-response-deployment.managedFields sample).
 */
export function itemPathElement(t: TypeNode, item: unknown, index: number): string {
  if (t.kind === "list" && t.listType === "map" && isObj(item)) {
    const it = itemType(t);
    // Key fields sorted by name, as fieldpath.KeyByFields / FieldList.Sort leave them.
    const key: Obj = {};
    for (const k of [...t.keys].sort()) {
      if (item[k] !== undefined) key[k] = item[k];
      else if (it.kind === "struct" && it.fields.has(k)) {
        const d = resolve(it.fields.get(k)!, it.defs).default;
        if (d !== undefined) key[k] = d;
      }
    }
    return `k:${JSON.stringify(key)}`;
  }
  if (t.kind === "list" && t.listType === "set") return `v:${JSON.stringify(item)}`;
  return `i:${index}`;
}

function isLeaf(t: TypeNode, value: unknown): boolean {
  switch (t.kind) {
    case "scalar":
      return true;
    case "list":
      return t.listType === "atomic" || !Array.isArray(value);
    case "struct":
    case "map":
      return t.atomic || !isObj(value);
    case "untyped":
      return !isObj(value);
  }
}

/** The fields a value sets (typed/tofieldset.go): leaves, and list items of sets and maps. */
export function toFieldSet(value: unknown, t: TypeNode, set = new FieldSet(), path: string[] = []): FieldSet {
  if (value === undefined) return set;
  if (isLeaf(t, value)) {
    if (path.length) set.insert(path);
    return set;
  }
  if (Array.isArray(value)) {
    const it = itemType(t);
    value.forEach((item, i) => {
      const p = [...path, itemPathElement(t, item, i)];
      toFieldSet(item, it, set, p);
      set.insert(p);
    });
    return set;
  }
  for (const [k, v] of Object.entries(value as Obj)) {
    toFieldSet(v, fieldType(t, k) ?? { kind: "untyped" }, set, [...path, `f:${k}`]);
  }
  return set;
}

/** Marks every named struct field that has children as a member too (Set.EnsureNamedFieldsAreMembers). */
function ensureNamedFieldsAreMembers(set: FieldSet, t: TypeNode): FieldSet {
  const r = set.union(new FieldSet());
  const walk = (s: FieldSet, type: TypeNode) => {
    for (const [pe, c] of s.children) {
      const childType = pe.startsWith("f:")
        ? (fieldType(type, pe.slice(2)) ?? { kind: "untyped" })
        : itemType(type);
      if (pe.startsWith("f:") && type.kind === "struct") s.members.add(pe);
      walk(c, childType);
    }
  };
  walk(r, t);
  return r;
}

function indexItems(t: TypeNode, list: unknown[]): Map<string, unknown> {
  const m = new Map<string, unknown>();
  list.forEach((item, i) => {
    m.set(itemPathElement(t, item, i), item);
  });
  return m;
}

/** lhs with rhs merged in (typed/merge.go): structs and maps by field, sets and map-lists by item. */
export function merge(lhs: unknown, rhs: unknown, t: TypeNode): unknown {
  if (rhs === undefined) return clone(lhs);
  if (lhs === undefined || isLeaf(t, rhs) || isLeaf(t, lhs)) return clone(rhs);
  if (Array.isArray(rhs) && Array.isArray(lhs)) {
    const it = itemType(t);
    const right = indexItems(t, rhs);
    const out: unknown[] = [];
    const used = new Set<string>();
    lhs.forEach((item, i) => {
      const pe = itemPathElement(t, item, i);
      if (right.has(pe)) {
        out.push(merge(item, right.get(pe), it));
        used.add(pe);
      } else out.push(clone(item));
    });
    rhs.forEach((item, i) => {
      if (!used.has(itemPathElement(t, item, i))) out.push(clone(item));
    });
    return out;
  }
  const out = clone(lhs as Obj);
  for (const [k, v] of Object.entries(rhs as Obj)) {
    out[k] = merge((lhs as Obj)[k], v, fieldType(t, k) ?? { kind: "untyped" });
  }
  return out;
}

/**
 * The fields of a subtree that appears or goes: its leaves and, as compareWalker.compare inserts
 * every node missing on one side, its maps and lists themselves, which is why Update entries carry
 * "." on new labels, data, finalizers and conditions. Structs are left out: the empty object a
 * create starts from (the Go zero value) already holds the non-pointer ones, and which structs are
 * pointers the schema does not say.
 */
function wholeSubtree(value: unknown, t: TypeNode, set: FieldSet, path: string[]): void {
  if (isLeaf(t, value)) {
    if (path.length) set.insert(path);
    return;
  }
  if (Array.isArray(value)) {
    const it = itemType(t);
    value.forEach((item, i) => {
      const p = [...path, itemPathElement(t, item, i)];
      wholeSubtree(item, it, set, p);
      set.insert(p);
    });
    if (path.length) set.insert(path);
    return;
  }
  for (const [k, v] of Object.entries(value as Obj))
    wholeSubtree(v, fieldType(t, k) ?? { kind: "untyped" }, set, [...path, `f:${k}`]);
  if (path.length && t.kind !== "struct") set.insert(path);
}

export interface Comparison {
  added: FieldSet;
  modified: FieldSet;
  removed: FieldSet;
}

/** What changed between two values (typed/compare.go): leaves modified, subtrees added or removed. */
export function compare(
  old: unknown,
  neu: unknown,
  t: TypeNode,
  out: Comparison = { added: new FieldSet(), modified: new FieldSet(), removed: new FieldSet() },
  path: string[] = [],
): Comparison {
  if (old === undefined && neu === undefined) return out;
  if (old === undefined) {
    wholeSubtree(neu, t, out.added, path);
    return out;
  }
  if (neu === undefined) {
    wholeSubtree(old, t, out.removed, path);
    return out;
  }
  if (isLeaf(t, old) || isLeaf(t, neu) || Array.isArray(old) !== Array.isArray(neu)) {
    if (!deepEqual(old, neu) && path.length) out.modified.insert(path);
    return out;
  }
  if (Array.isArray(old) && Array.isArray(neu)) {
    const it = itemType(t);
    const a = indexItems(t, old);
    const b = indexItems(t, neu);
    for (const pe of new Set([...a.keys(), ...b.keys()])) {
      const p = [...path, pe];
      if (!a.has(pe)) {
        wholeSubtree(b.get(pe), it, out.added, p);
        out.added.insert(p);
      } else if (!b.has(pe)) {
        wholeSubtree(a.get(pe), it, out.removed, p);
        out.removed.insert(p);
      } else compare(a.get(pe), b.get(pe), it, out, p);
    }
    return out;
  }
  for (const k of new Set([...Object.keys(old as Obj), ...Object.keys(neu as Obj)])) {
    compare((old as Obj)[k], (neu as Obj)[k], fieldType(t, k) ?? { kind: "untyped" }, out, [
      ...path,
      `f:${k}`,
    ]);
  }
  return out;
}

/** The value without the members of `set` (typed/remove.go RemoveItems). */
export function removeItems(value: unknown, set: FieldSet, t: TypeNode): unknown {
  if (set.empty() || value === undefined || isLeaf(t, value)) return clone(value);
  if (Array.isArray(value)) {
    const it = itemType(t);
    const out: unknown[] = [];
    value.forEach((item, i) => {
      const pe = itemPathElement(t, item, i);
      if (set.members.has(pe)) return;
      const c = set.children.get(pe);
      out.push(c ? removeItems(item, c, it) : clone(item));
    });
    return out;
  }
  const out: Obj = {};
  for (const [k, v] of Object.entries(value as Obj)) {
    const pe = `f:${k}`;
    if (set.members.has(pe)) continue;
    const c = set.children.get(pe);
    out[k] = c ? removeItems(v, c, fieldType(t, k) ?? { kind: "untyped" }) : clone(v);
  }
  return out;
}

/** One manager's fields (fieldpath.VersionedSet), as decoded from a managedFields entry. */
export interface ManagerSet {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  subresource?: string;
  time?: string;
  set: FieldSet;
}

/** BuildManagerIdentifier: appliers are one manager whatever the apiVersion they applied at. */
export function managerKey(
  m: Pick<ManagerSet, "manager" | "operation" | "apiVersion" | "subresource">,
): string {
  return JSON.stringify([
    m.manager,
    m.operation,
    m.operation === "Apply" ? "" : m.apiVersion,
    m.subresource ?? "",
  ]);
}

export function decodeManagedFields(entries: unknown): Map<string, ManagerSet> {
  const out = new Map<string, ManagerSet>();
  if (!Array.isArray(entries)) return out;
  for (const e of entries) {
    if (!isObj(e) || typeof e.manager !== "string") continue;
    const m: ManagerSet = {
      manager: e.manager,
      operation: e.operation === "Apply" ? "Apply" : "Update",
      apiVersion: String(e.apiVersion ?? ""),
      ...(typeof e.subresource === "string" && e.subresource ? { subresource: e.subresource } : {}),
      ...(typeof e.time === "string" ? { time: e.time } : {}),
      set: FieldSet.fromJSON(e.fieldsV1),
    };
    out.set(managerKey(m), m);
  }
  return out;
}

/** managedFields as managedfields.go encodes and sortEncodedManagedFields orders them. */
export function encodeManagedFields(managers: Map<string, ManagerSet>): Obj[] {
  const list = [...managers.values()].filter((m) => !m.set.empty());
  list.sort((p, q) => {
    if (p.operation !== q.operation) return p.operation < q.operation ? -1 : 1;
    const pt = p.time ? Date.parse(p.time) : 0;
    const qt = q.time ? Date.parse(q.time) : 0;
    if (pt !== qt) return pt - qt;
    if (p.manager !== q.manager) return p.manager < q.manager ? -1 : 1;
    if (p.apiVersion !== q.apiVersion) return p.apiVersion < q.apiVersion ? -1 : 1;
    return (p.subresource ?? "") < (q.subresource ?? "") ? -1 : 1;
  });
  return list.map((m) => ({
    manager: m.manager,
    operation: m.operation,
    apiVersion: m.apiVersion,
    ...(m.time ? { time: m.time } : {}),
    fieldsType: "FieldsV1",
    fieldsV1: m.set.toJSON(),
    ...(m.subresource ? { subresource: m.subresource } : {}),
  }));
}

/** Fields no manager is credited with, stripped after each operation (stripmeta.go stripSet). */
function stripSet(): FieldSet {
  const s = new FieldSet();
  for (const p of ["apiVersion", "kind", "metadata"]) s.insert([`f:${p}`]);
  for (const p of [
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
  ])
    s.insert(["f:metadata", `f:${p}`]);
  return s;
}
const STRIP = stripSet();

/** Top-level fields another endpoint owns (the registry strategies' reset fields: status, or all but status). */
export function ignoredFields(ignoreTopLevel: string[]): FieldSet {
  const s = new FieldSet();
  for (const p of ignoreTopLevel) s.insert([`f:${p}`]);
  return s;
}

/** Drops from `set` whatever lies at or under an ignored member. */
function withoutIgnored(set: FieldSet, ignored: FieldSet): FieldSet {
  const r = new FieldSet();
  for (const m of set.members) if (!ignored.members.has(m)) r.members.add(m);
  for (const [pe, c] of set.children) {
    const ig = ignored.children.get(pe);
    if (ignored.members.has(pe) && !ig) continue;
    r.children.set(pe, ig ? withoutIgnored(c, ig) : c.union(new FieldSet()));
  }
  for (const [pe, c] of [...r.children]) if (c.empty()) r.children.delete(pe);
  return r;
}

export interface Conflict {
  manager: ManagerSet;
  path: string[];
}

export class ApplyConflicts extends Error {
  constructor(readonly conflicts: Conflict[]) {
    super("apply conflicts");
  }
}

/** merge/update.go Updater.update: conflicts with other managers, and ownership taken or dropped. */
function update(
  live: unknown,
  neu: unknown,
  t: TypeNode,
  managers: Map<string, ManagerSet>,
  self: string,
  force: boolean,
  ignored: FieldSet,
): Comparison {
  const raw = compare(live, neu, t);
  const cmp: Comparison = {
    added: withoutIgnored(raw.added, ignored),
    modified: withoutIgnored(raw.modified, ignored),
    removed: withoutIgnored(raw.removed, ignored),
  };
  const changed = cmp.modified.union(cmp.added);
  const conflicts: Conflict[] = [];
  const taken = new Map<string, FieldSet>();
  for (const [key, m] of managers) {
    if (key === self) continue;
    const c = m.set.intersection(changed);
    if (!c.empty()) {
      taken.set(key, c);
      for (const path of c.paths()) conflicts.push({ manager: m, path });
    }
  }
  if (!force && conflicts.length) throw new ApplyConflicts(conflicts);
  for (const [key, m] of managers) {
    if (key === self) continue;
    let set = m.set;
    const c = taken.get(key);
    if (c) set = set.difference(c);
    if (!cmp.removed.empty()) set = set.difference(cmp.removed);
    m.set = set;
  }
  for (const [key, m] of [...managers]) if (m.set.empty()) managers.delete(key);
  return cmp;
}

export interface ApplyResult {
  object: Obj;
  managers: Map<string, ManagerSet>;
}

/** merge/update.go Updater.Apply, with the pruning of fields the applier no longer sets. */
export function applyConfig(opts: {
  live: Obj | undefined;
  config: Obj;
  type: TypeNode;
  managers: Map<string, ManagerSet>;
  manager: string;
  apiVersion: string;
  subresource?: string;
  force: boolean;
  ignored: FieldSet;
  now: string;
}): ApplyResult {
  const { type: t, ignored } = opts;
  const managers = new Map([...opts.managers].map(([k, m]) => [k, { ...m }]));
  const live = opts.live ?? {};
  const merged = merge(live, opts.config, t) as Obj;
  const me: ManagerSet = {
    manager: opts.manager,
    operation: "Apply",
    apiVersion: opts.apiVersion,
    ...(opts.subresource ? { subresource: opts.subresource } : {}),
    set: withoutIgnored(toFieldSet(opts.config, t), ignored),
  };
  const key = managerKey(me);
  const last = managers.get(key)?.set;
  managers.set(key, me);
  let result = merged;
  if (last && !last.empty()) {
    // Updater.prune: remove what the applier owned before, then add back whatever someone owns.
    const lastM = ensureNamedFieldsAreMembers(last, t);
    const pruned = removeItems(merged, lastM, t) as Obj;
    let managed = new FieldSet();
    for (const m of managers.values()) managed = managed.union(m.set);
    const mergedSet = ensureNamedFieldsAreMembers(toFieldSet(merged, t), t);
    const prunedSet = ensureNamedFieldsAreMembers(toFieldSet(pruned, t), t);
    const ownedBack = removeItems(
      merged,
      mergedSet.difference(prunedSet.union(ensureNamedFieldsAreMembers(managed, t))),
      t,
    ) as Obj;
    const backSet = ensureNamedFieldsAreMembers(toFieldSet(ownedBack, t), t);
    result = removeItems(merged, mergedSet.difference(backSet).intersection(lastM), t) as Obj;
  }
  update(live, result, t, managers, key, opts.force, ignored);
  me.set = withoutIgnored(me.set, STRIP);
  if (me.set.empty()) managers.delete(key);
  if (!deepEqual(withoutMeta(live), withoutMeta(result))) me.time = opts.now;
  else me.time = opts.managers.get(key)?.time ?? opts.now;
  return { object: result, managers };
}

/** merge/update.go Updater.Update: the writer owns every field it changed. */
export function updateObject(opts: {
  live: Obj | undefined;
  object: Obj;
  type: TypeNode;
  managers: Map<string, ManagerSet>;
  manager: string;
  apiVersion: string;
  subresource?: string;
  ignored: FieldSet;
  now: string;
}): Map<string, ManagerSet> {
  const managers = new Map([...opts.managers].map(([k, m]) => [k, { ...m }]));
  const probe: ManagerSet = {
    manager: opts.manager,
    operation: "Update",
    apiVersion: opts.apiVersion,
    ...(opts.subresource ? { subresource: opts.subresource } : {}),
    set: new FieldSet(),
  };
  const key = managerKey(probe);
  // A create compares against the empty object the registry starts from (New()).
  const cmp = update(opts.live ?? {}, opts.object, opts.type, managers, key, true, opts.ignored);
  const previous = managers.get(key)?.set ?? new FieldSet();
  const set = withoutIgnored(previous.difference(cmp.removed).union(cmp.modified).union(cmp.added), STRIP);
  if (set.empty()) managers.delete(key);
  else if (cmp.modified.empty() && cmp.added.empty() && cmp.removed.empty() && managers.has(key)) {
    // Nothing changed: the entry and its time stay as they were.
  } else managers.set(key, { ...probe, set, time: opts.now });
  return managers;
}

function withoutMeta(o: Obj): Obj {
  const { metadata, ...rest } = o;
  if (!isObj(metadata)) return rest;
  const { managedFields: _m, resourceVersion: _r, ...m } = metadata;
  return { ...rest, metadata: m };
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

/** The apply conflict message and causes (managedfields/internal/conflict.go NewConflictError). */
export function conflictStatus(conflicts: Conflict[]): { message: string; causes: Obj[] } {
  const who = (m: ManagerSet) => {
    const base = `${JSON.stringify(m.manager)}${m.subresource ? ` with subresource ${JSON.stringify(m.subresource)}` : ""}`;
    if (m.operation !== "Update") return base;
    return m.time ? `${base} using ${m.apiVersion} at ${m.time}` : `${base} using ${m.apiVersion}`;
  };
  const causes = conflicts.map((c) => ({
    reason: "FieldManagerConflict",
    message: `conflict with ${who(c.manager)}`,
    field: pathString(c.path),
  }));
  if (conflicts.length === 1) {
    const c = conflicts[0]!;
    return {
      message: `Apply failed with 1 conflict: conflict with ${who(c.manager)}: ${pathString(c.path)}`,
      causes,
    };
  }
  const byManager = new Map<string, { m: ManagerSet; paths: string[][] }>();
  for (const c of conflicts) {
    const k = who(c.manager);
    const e = byManager.get(k) ?? { m: c.manager, paths: [] };
    e.paths.push(c.path);
    byManager.set(k, e);
  }
  const lines: string[] = [];
  // Sorted by the manager identifier; here the printed name orders the same way for plain names.
  for (const [k, e] of [...byManager].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    lines.push(`conflicts with ${k}:`);
    for (const p of e.paths) lines.push(`- ${pathString(p)}`);
  }
  return { message: `Apply failed with ${conflicts.length} conflicts: ${lines.join("\n")}`, causes };
}
