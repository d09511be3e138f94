import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  parseAggregatedDiscovery,
  parseResourceList,
  resourcePath,
  splitApiVersion,
} from "../../src/kube/discovery.ts";
import { aggregatedDiscovery, builtinResources, legacyResourceList } from "../lab/kube/resources.ts";
import { oracle } from "../lab/oracles.ts";

// biome-ignore lint/suspicious/noExplicitAny: walking JSON documents
type Json = any;

const SAMPLES = oracle("kubernetes/api-samples");
const load = (name: string) => JSON.parse(readFileSync(join(SAMPLES, name), "utf8"));

describe("parsing aggregated discovery", () => {
  const resources = parseAggregatedDiscovery(load("discovery-aggregated-v2-apis.APIGroupDiscoveryList.json"));

  test("maps apps kinds to their namespaced resources", () => {
    const apps = resources
      .filter((r) => r.group === "apps")
      .map((r) => [r.version, r.kind, r.resource, r.namespaced]);
    expect(apps).toEqual([
      ["v1", "ControllerRevision", "controllerrevisions", true],
      ["v1", "DaemonSet", "daemonsets", true],
      ["v1", "Deployment", "deployments", true],
      ["v1", "ReplicaSet", "replicasets", true],
      ["v1", "StatefulSet", "statefulsets", true],
    ]);
  });

  test("marks cluster-scoped resources and keeps every served version", () => {
    const storage = resources.filter(
      (r) => r.group === "storage.k8s.io" && r.kind === "VolumeAttributesClass",
    );
    expect(storage.map((r) => [r.version, r.namespaced])).toEqual([
      ["v1beta1", false],
      ["v1alpha1", false],
    ]);
    expect(resources.find((r) => r.kind === "CustomResourceDefinition")).toMatchObject({
      group: "apiextensions.k8s.io",
      resource: "customresourcedefinitions",
      namespaced: false,
    });
  });

  test("leaves subresources such as scale out", () => {
    expect(resources.some((r) => r.kind === "Scale" || r.resource.includes("/"))).toBe(false);
    expect(resources).toHaveLength(71);
  });

  test("rejects a document of another kind", () => {
    expect(() => parseAggregatedDiscovery(load("discovery-legacy-apis.APIGroupList.json"))).toThrow(
      'expected an APIGroupDiscoveryList, got kind "APIGroupList"',
    );
  });
});

describe("parsing legacy discovery", () => {
  test("reads the core group from /api/v1, which carries no apiVersion field", () => {
    const core = parseResourceList(load("discovery-legacy-api-v1.APIResourceList.json"));
    const byKind = Object.fromEntries(core.map((r) => [r.kind, r]));
    expect(byKind.Node).toMatchObject({ group: "", version: "v1", resource: "nodes", namespaced: false });
    expect(byKind.PersistentVolumeClaim).toMatchObject({
      resource: "persistentvolumeclaims",
      namespaced: true,
    });
    expect(core.some((r) => r.resource.includes("/"))).toBe(false);
  });

  test("reads a named group from /apis/apps/v1", () => {
    const apps = parseResourceList(load("discovery-legacy-apis-apps-v1.APIResourceList.json"));
    expect(apps.map((r) => r.resource)).toEqual([
      "controllerrevisions",
      "daemonsets",
      "deployments",
      "replicasets",
      "statefulsets",
    ]);
    expect(apps.every((r) => r.group === "apps" && r.version === "v1")).toBe(true);
  });
});

describe("paths", () => {
  test("builds core, named-group, namespaced and cluster-scoped paths", () => {
    const dep = {
      group: "apps",
      version: "v1",
      kind: "Deployment",
      resource: "deployments",
      namespaced: true,
      verbs: [],
    };
    const node = { group: "", version: "v1", kind: "Node", resource: "nodes", namespaced: false, verbs: [] };
    expect(resourcePath(dep, "kube-system", "coredns")).toBe(
      "/apis/apps/v1/namespaces/kube-system/deployments/coredns",
    );
    expect(resourcePath(dep)).toBe("/apis/apps/v1/deployments");
    expect(resourcePath(node, "ignored", "cp1")).toBe("/api/v1/nodes/cp1");
    expect(splitApiVersion("v1")).toEqual({ group: "", version: "v1" });
    expect(splitApiVersion("metallb.io/v1beta1")).toEqual({ group: "metallb.io", version: "v1beta1" });
  });
});

describe("the test server's discovery documents follow the upstream shape", () => {
  const upstream = load("discovery-aggregated-v2-apis.APIGroupDiscoveryList.json");
  const upstreamResources: Json[] = upstream.items.flatMap((i: Json) =>
    i.versions.flatMap((v: Json) => v.resources),
  );
  const upstreamKeys = new Set(upstreamResources.flatMap((r) => Object.keys(r)));
  const upstreamSubKeys = new Set(
    upstreamResources.flatMap((r) => (r.subresources ?? []).flatMap(Object.keys)),
  );

  test("aggregated: the same top-level keys, resource keys and responseKind convention", () => {
    const ours = aggregatedDiscovery(builtinResources(), false);
    expect(Object.keys(ours).sort()).toEqual(Object.keys(upstream).sort());
    const resources: Json[] = (ours.items as Json[]).flatMap((i) =>
      i.versions.flatMap((v: Json) => v.resources),
    );
    for (const r of resources) {
      for (const k of Object.keys(r)) expect(upstreamKeys).toContain(k);
      for (const s of r.subresources ?? [])
        for (const k of Object.keys(s)) expect(upstreamSubKeys).toContain(k);
      expect(r.responseKind).toMatchObject({ group: "", version: "" });
    }
    expect(parseAggregatedDiscovery(ours).map((r) => r.kind)).toContain("Deployment");
  });

  test("legacy: a resource list with the upstream keys, status subresources included", () => {
    const upstreamList = load("discovery-legacy-apis-apps-v1.APIResourceList.json");
    const ours = legacyResourceList(
      "apps/v1",
      builtinResources().filter((r) => r.group === "apps"),
    );
    // storageVersionHash is an upstream internal the client never reads.
    const keys = new Set(upstreamList.resources.flatMap((r: Json) => Object.keys(r)));
    for (const r of ours.resources as Json[]) for (const k of Object.keys(r)) expect(keys).toContain(k);
    const names = (ours.resources as Json[]).map((r) => r.name);
    expect(names).toContain("deployments/status");
    expect(parseResourceList(ours).map((r) => r.kind)).toEqual(["Deployment", "DaemonSet", "StatefulSet"]);
  });
});
