/**
 * Applying a set of manifests: YAML documents to objects, then server-side apply in an order that
 * works on an empty cluster. Namespaces go first and CustomResourceDefinitions next, each CRD waited
 * to Established and discovery refreshed before any custom resource is sent (the order Helm's
 * kind_sorter.go InstallOrder also keeps for these kinds).
 */
import type * as Yaml from "yaml";
import { KubehyveError } from "../lib/errors.ts";
import { deletionOf, describeDeleting } from "./diff.ts";
import { FIELD_MANAGER, fieldManagers, isOwnedBy, type Owner, refOf } from "./ownership.ts";
import { describeRef, waitFor } from "./readiness.ts";
import { KubeApiError } from "./status.ts";

/** Evaluated when first used: loading the plugin API must not cost the yaml library. */
const yaml = (): typeof Yaml => require("yaml");

import { isJsonObject, type KubeClient, type KubeObject } from "./types.ts";

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
  /**
   * Whose objects these are: each is then applied with applyOwned, which never takes over one of
   * its name that someone else made.
   */
  owner?: Owner;
}

const isCreateEntry = (e: unknown) =>
  isJsonObject(e) && e.manager === FIELD_MANAGER && e.operation === "Update" && !e.subresource;

/**
 * The object created and then applied, with the create's managedFields entry dropped. The create
 * (an Update of manager kubehyve) owns every field the object had, defaults included, and an
 * apply of the same values shares them rather than taking them (structured-merge-diff
 * merge/update.go: only modified or added fields conflict): a field a later version of the
 * manifests drops would then stay, still owned by the create, instead of being pruned. The
 * entries are set by a merge patch held to the applied resourceVersion (a client may set
 * managedFields, apimachinery fieldmanager.go decodeLiveOrNew); when something wrote in between,
 * it is read and tried again.
 */
async function withoutCreateEntry(client: KubeClient, applied: KubeObject): Promise<KubeObject> {
  let current = applied;
  const ref = refOf(applied);
  for (let attempt = 1; attempt <= OWNED_ATTEMPTS; attempt++) {
    const entries = Array.isArray(current.metadata.managedFields) ? current.metadata.managedFields : [];
    const kept = entries.filter((e: unknown) => !isCreateEntry(e));
    if (kept.length === entries.length || kept.length === 0) return current;
    try {
      return await client.mergePatch(ref, {
        metadata: { resourceVersion: current.metadata.resourceVersion, managedFields: kept },
      });
    } catch (error) {
      // The object is applied already; this only tidies its record, and the next apply tries again:
      // a controller that keeps writing (a Deployment's status), or a server that refuses, does
      // not fail the apply.
      if (!(error instanceof KubeApiError)) throw error;
      if (error.httpStatus !== 409 || attempt >= OWNED_ATTEMPTS) return current;
      const again = await client.get(ref.apiVersion, ref.kind, ref.name, ref.namespace);
      if (!again || again.metadata.uid !== applied.metadata.uid) return current;
      current = again;
    }
  }
  return current;
}

/** Attempts of applyOwned when the object is removed or replaced while it works. */
const OWNED_ATTEMPTS = 3;

/**
 * Applies one of the owner's objects without ever taking over someone else's of its name. A forced
 * server-side apply creates what is not there and takes over what is, so an object made by
 * someone else between a plan and its apply (kubectl, Helm) would become ours, and prune and
 * `down` would then delete it. Here an object that is not there is created (POST, which
 * kube-apiserver answers 409 AlreadyExists when one is: pkg/registry/generic/registry/store.go
 * Create, storage's KeyExists) and then applied, and one that is there is applied only if it is
 * the owner's, holding the apply to its uid (a uid the live object does not have is refused:
 * 409 "uid mismatch" when there is none, patch.go applyPatch; 422 "metadata.uid: field is
 * immutable" when another is there, objectmeta.go ValidateObjectMetaUpdate). Returns what the
 * server stored.
 */
export async function applyOwned(client: KubeClient, obj: KubeObject, owner: Owner): Promise<KubeObject> {
  const ref = refOf(obj);
  for (let attempt = 1; ; attempt++) {
    let live = await client.get(ref.apiVersion, ref.kind, ref.name, ref.namespace);
    if (!live) {
      try {
        live = await client.create(obj);
      } catch (error) {
        // Made meanwhile (or by a retried POST of this one): looked at again, whoever made it.
        if (!(error instanceof KubeApiError && error.httpStatus === 409) || attempt >= OWNED_ATTEMPTS)
          throw error;
        continue;
      }
    }
    if (!isOwnedBy(live, owner)) {
      const { kind, name, namespace } = ref;
      throw new KubehyveError(
        `${describeRef(ref)} is there and stage ${owner.stage} of this cluster did not make it (${fieldManagers(live)}): someone made it after kubehyve looked, and kubehyve does not take over what it did not make`,
        undefined,
        `kubectl get ${kind.toLowerCase()} ${name}${namespace ? ` -n ${namespace}` : ""} -o yaml (whose is it?); delete it if it is not needed, or rename kubehyve's, then run again`,
      );
    }
    const deleting = deletionOf(live);
    if (deleting)
      throw new KubehyveError(
        `${describeRef(ref)} is being deleted (${describeDeleting(deleting)}): what is applied to it now would go with it`,
        undefined,
        "wait until it is gone, then run again; a finalizer that never clears belongs to a controller that no longer runs",
      );
    const uid = typeof live.metadata.uid === "string" ? live.metadata.uid : "";
    try {
      const applied = await client.apply({ ...obj, metadata: { ...obj.metadata, ...(uid ? { uid } : {}) } });
      // Also for one created by a run that stopped before its apply, or by a retried POST.
      return await withoutCreateEntry(client, applied);
    } catch (error) {
      // Removed, or removed and made again by someone, since it was read: looked at again.
      const replaced =
        error instanceof KubeApiError &&
        ((error.httpStatus === 409 && /uid mismatch/.test(error.apiMessage)) ||
          (error.httpStatus === 422 && error.causes.some((c) => c.field === "metadata.uid")));
      if (!replaced || attempt >= OWNED_ATTEMPTS) throw error;
    }
  }
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
    applied.push(await (opts.owner ? applyOwned(client, obj, opts.owner) : client.apply(obj)));
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
