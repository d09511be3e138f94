/**
 * Applying a set of manifests: YAML documents to objects, then server-side apply in an order that
 * works on an empty cluster. Namespaces go first and CustomResourceDefinitions next, each CRD waited
 * to Established and discovery refreshed before any custom resource is sent (the order Helm's
 * kind_sorter.go InstallOrder also keeps for these kinds).
 */
import type * as Yaml from "yaml";
import { KubehyveError } from "../lib/errors.ts";
import { waitFor } from "./readiness.ts";

/** Evaluated when first used: loading the plugin API must not cost the yaml library. */
const yaml = (): typeof Yaml => require("yaml");

import type { KubeClient, KubeObject } from "./types.ts";

export class ManifestError extends KubehyveError {
  constructor(source: string, problem: string) {
    super(`manifest ${source}: ${problem}`);
    this.name = "ManifestError";
  }
}

/** The objects of a multi-document YAML text; `kind: List` documents are flattened, empty ones skipped. */
export function parseManifests(text: string, source: string): KubeObject[] {
  const values = yaml()
    .parseAllDocuments(text)
    .map((doc, index) => {
      if ("errors" in doc && doc.errors.length) {
        const first = doc.errors[0]!;
        const pos = first.linePos?.[0];
        throw new ManifestError(
          source,
          `${pos ? `line ${pos.line}, column ${pos.col}` : `document ${index + 1}`}: ${first.message.split("\n")[0]}`,
        );
      }
      return doc.toJS() as unknown;
    });
  return manifestObjects(values, source);
}

/** The objects of parsed YAML documents, each checked for what applying it needs. */
export function manifestObjects(documents: readonly unknown[], source: string): KubeObject[] {
  const out: KubeObject[] = [];
  documents.forEach((value, index) => {
    const where = `document ${index + 1}`;
    if (value === null || value === undefined) return;
    const items =
      typeof value === "object" && (value as { kind?: unknown }).kind === "List"
        ? ((value as { items?: unknown[] }).items ?? [])
        : [value];
    items.forEach((item, i) => {
      const at = items.length > 1 || item !== value ? `${where}, item ${i + 1}` : where;
      if (typeof item !== "object" || item === null || Array.isArray(item))
        throw new ManifestError(source, `${at}: not an object`);
      const obj = item as KubeObject;
      if (typeof obj.apiVersion !== "string" || !obj.apiVersion)
        throw new ManifestError(source, `${at}: apiVersion is missing`);
      if (typeof obj.kind !== "string" || !obj.kind)
        throw new ManifestError(source, `${at}: kind is missing`);
      if (typeof obj.metadata?.name !== "string" || !obj.metadata.name) {
        throw new ManifestError(source, `${at} (${obj.kind}): metadata.name is missing`);
      }
      out.push(obj);
    });
  });
  return out;
}

const isCrd = (o: KubeObject) =>
  o.kind === "CustomResourceDefinition" && o.apiVersion.startsWith("apiextensions.k8s.io/");
const isNamespace = (o: KubeObject) => o.kind === "Namespace" && o.apiVersion === "v1";

export interface ApplyManifestsOptions {
  /** How long one CRD may take to become Established (default 60 s). */
  crdTimeoutMs?: number;
  intervalMs?: number;
  signal?: AbortSignal;
  /** Called after each object is applied, e.g. for progress output. */
  onApplied?: (obj: KubeObject, index: number, total: number) => void;
}

/** Applies every object (one request each) and returns what the server stored, in the order applied. */
export async function applyManifests(
  client: KubeClient,
  objects: KubeObject[],
  opts: ApplyManifestsOptions = {},
): Promise<KubeObject[]> {
  const namespaces = objects.filter(isNamespace);
  const crds = objects.filter(isCrd);
  const rest = objects.filter((o) => !isNamespace(o) && !isCrd(o));
  const applied: KubeObject[] = [];
  const total = objects.length;
  const one = async (obj: KubeObject) => {
    applied.push(await client.apply(obj));
    opts.onApplied?.(obj, applied.length, total);
  };
  for (const obj of [...namespaces, ...crds]) await one(obj);
  for (const crd of crds) {
    await waitFor(
      client,
      { apiVersion: crd.apiVersion, kind: crd.kind, name: crd.metadata.name },
      {
        timeoutMs: opts.crdTimeoutMs ?? 60_000,
        intervalMs: opts.intervalMs ?? 500,
        signal: opts.signal,
        condition: "to be Established",
      },
    );
  }
  if (crds.length) await client.refreshDiscovery?.();
  for (const obj of rest) await one(obj);
  return applied;
}
