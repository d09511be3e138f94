/**
 * The shape check of API answers: every object upstream samples hold (answers recorded from real
 * clusters, and kube-apiserver's round-trip fixtures with every field filled) passes it, so that
 * the client refuses only what no API server sends.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { objectShapeProblem } from "../../src/kube/shape.ts";
import { isJsonObject } from "../../src/kube/types.ts";
import { oracle } from "../lab/oracles.ts";

const KUBERNETES = oracle("kubernetes");

/** The objects (with metadata) of the sample files that are JSON or YAML, lists flattened. */
function samples(dir: string): [string, Record<string, unknown>][] {
  const out: [string, Record<string, unknown>][] = [];
  for (const file of readdirSync(join(KUBERNETES, dir)).sort()) {
    if (!/\.(json|ya?ml)$/.test(file)) continue;
    const doc: unknown = parse(readFileSync(join(KUBERNETES, dir, file), "utf8"));
    const items = isJsonObject(doc) && Array.isArray(doc.items) ? doc.items : [doc];
    for (const item of items)
      if (isJsonObject(item) && isJsonObject(item.metadata) && item.kind !== "Status") out.push([file, item]);
  }
  return out;
}

describe("the shape of an object from the API", () => {
  test("every object of the upstream samples and round-trip fixtures has it", () => {
    const all = [...samples("api-samples"), ...samples("roundtrip-fixtures")];
    expect(all.length).toBeGreaterThanOrEqual(15);
    for (const [file, obj] of all)
      expect([file, objectShapeProblem(obj, String(obj.apiVersion), String(obj.kind))]).toEqual([
        file,
        undefined,
      ]);
  });

  test("a field of the wrong type is named by its path", () => {
    const [, node] = samples("roundtrip-fixtures").find(([f]) => f === "core.v1.Node.json")!;
    const broken = structuredClone(node) as { status: { addresses: unknown[] } };
    broken.status.addresses[0] = "10.0.0.1";
    expect(objectShapeProblem(broken, "v1", "Node")).toBe("status.addresses[0] is not an object");
    // Only the kind it is asked for says which lists it has.
    expect(objectShapeProblem(broken, "v1", "ConfigMap")).toBeUndefined();
    expect(objectShapeProblem({ metadata: { name: "x", generation: "1" } })).toBe(
      "metadata.generation is not a number",
    );
    expect(
      objectShapeProblem({ metadata: { name: "x", labels: null, managedFields: null } }),
    ).toBeUndefined();
  });
});
