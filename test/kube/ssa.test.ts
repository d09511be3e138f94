import { describe, expect, test } from "bun:test";
import { builtinSchemaName } from "../lab/kube/builtin-schemas.ts";
import {
  ApplyConflicts,
  applyConfig,
  decodeManagedFields,
  encodeManagedFields,
  FieldSet,
  ignoredFields,
  type ManagerSet,
  type Obj,
  pathString,
  toFieldSet,
  updateObject,
} from "../lab/kube/ssa.ts";
import { BUILTIN_DEFS, crdRootSchema, typeOf } from "../lab/kube/types.ts";

// biome-ignore lint/suspicious/noExplicitAny: objects under test
type Json = any;

const typeOfKind = (group: string, kind: string) =>
  typeOf({ $ref: `#/components/schemas/${builtinSchemaName(group, "v1", kind)}` }, BUILTIN_DEFS);
const DEPLOYMENT = typeOfKind("apps", "Deployment");
const CONFIGMAP = typeOfKind("", "ConfigMap");
const NOW = "2026-01-01T00:00:00Z";

function apply(
  live: Obj | undefined,
  config: Obj,
  managers: Map<string, ManagerSet>,
  manager: string,
  force = false,
) {
  return applyConfig({
    live,
    config,
    type: config.kind === "Deployment" ? DEPLOYMENT : CONFIGMAP,
    managers,
    manager,
    apiVersion: String(config.apiVersion),
    force,
    ignored: ignoredFields(["status"]),
    now: NOW,
  });
}

const cm = (data: Record<string, string>, extra: Obj = {}) => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name: "c", namespace: "default", ...extra },
  data,
});

describe("field ownership of server-side apply", () => {
  test("a field the applier drops is removed, unless another manager also owns it", () => {
    let r = apply(undefined, cm({ a: "1", b: "2" }), new Map(), "one");
    r = apply(r.object, cm({ b: "2" }), r.managers, "two");
    r = apply(r.object, cm({}), r.managers, "one");
    expect(r.object.data).toEqual({ b: "2" });
    const entries = encodeManagedFields(r.managers);
    expect(entries.map((e) => [e.manager, e.fieldsV1])).toEqual([["two", { "f:data": { "f:b": {} } }]]);
  });

  test("applying the value another manager already set is shared ownership, not a conflict", () => {
    let r = apply(undefined, cm({ a: "1" }), new Map(), "one");
    r = apply(r.object, cm({ a: "1" }), r.managers, "two");
    expect([...r.managers.values()].map((m) => m.manager).sort()).toEqual(["one", "two"]);
  });

  test("conflicts list every field with its owner and leave the object alone", () => {
    const r = apply(undefined, cm({ a: "1", b: "1" }), new Map(), "one");
    const error = (() => {
      try {
        apply(r.object, cm({ a: "2", b: "2" }), r.managers, "two");
      } catch (e) {
        return e as ApplyConflicts;
      }
    })();
    expect(error).toBeInstanceOf(ApplyConflicts);
    expect(error!.conflicts.map((c) => [c.manager.manager, pathString(c.path)])).toEqual([
      ["one", ".data.a"],
      ["one", ".data.b"],
    ]);
  });

  test("finalizers are a set: each value is its own field", () => {
    const r = apply(undefined, cm({}, { finalizers: ["a/x", "b/y"] }), new Map(), "one");
    expect(encodeManagedFields(r.managers)[0]!.fieldsV1).toEqual({
      "f:metadata": { "f:finalizers": { 'v:"a/x"': {}, 'v:"b/y"': {} } },
    });
  });

  test("an update that adds a map or list owns it as a whole too, as compare.go records it", () => {
    const m = updateObject({
      live: undefined,
      object: cm({ a: "1" }, { finalizers: ["a/x"] }),
      type: CONFIGMAP,
      managers: new Map(),
      manager: "kubectl-create",
      apiVersion: "v1",
      ignored: ignoredFields([]),
      now: NOW,
    });
    expect(encodeManagedFields(m)[0]!.fieldsV1).toEqual({
      "f:data": { ".": {}, "f:a": {} },
      "f:metadata": { "f:finalizers": { ".": {}, 'v:"a/x"': {} } },
    });
  });

  test("an update takes the fields it changes from their owner and keeps its entry's time when nothing changes", () => {
    const r = apply(undefined, cm({ a: "1", b: "1" }), new Map(), "one");
    const edited = { ...r.object, data: { a: "2", b: "1" } };
    const m = updateObject({
      live: r.object,
      object: edited,
      type: CONFIGMAP,
      managers: r.managers,
      manager: "kubectl-edit",
      apiVersion: "v1",
      ignored: ignoredFields([]),
      now: NOW,
    });
    const byName = Object.fromEntries(
      encodeManagedFields(m).map((e) => [`${e.manager}/${e.operation}`, e.fieldsV1]),
    );
    expect(byName).toEqual({
      "one/Apply": { "f:data": { "f:b": {} } },
      "kubectl-edit/Update": { "f:data": { "f:a": {} } },
    });
  });

  test("FieldsV1 survives decoding and encoding unchanged", () => {
    const config = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "d", namespace: "x", labels: { app: "d" } },
      spec: {
        selector: { matchLabels: { app: "d" } },
        template: {
          spec: { containers: [{ name: "c", image: "i", ports: [{ containerPort: 53, protocol: "UDP" }] }] },
        },
      },
    };
    const r = apply(undefined, config, new Map(), "m");
    const encoded = encodeManagedFields(r.managers);
    expect(encodeManagedFields(decodeManagedFields(encoded))).toEqual(encoded);
    const set = toFieldSet(config, DEPLOYMENT);
    expect(set.has(["f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"c"}'])).toBe(true);
    expect(FieldSet.fromJSON(set.toJSON()).paths()).toEqual(set.paths());
  });

  test("a custom resource's lists follow x-kubernetes-list-type, and are atomic without it", () => {
    const t = typeOf(
      crdRootSchema({
        type: "object",
        properties: {
          spec: {
            type: "object",
            properties: {
              peers: {
                type: "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                items: { type: "object", properties: { name: { type: "string" } } },
              },
              addresses: { type: "array", items: { type: "string" } },
            },
          },
        },
      }),
      BUILTIN_DEFS,
    );
    const fields = toFieldSet(
      { spec: { peers: [{ name: "a" }], addresses: ["10.0.0.0/8"] } },
      t,
    ).toJSON() as Json;
    expect(fields).toEqual({
      "f:spec": { "f:addresses": {}, "f:peers": { 'k:{"name":"a"}': { ".": {}, "f:name": {} } } },
    });
  });
});
