import type { ResourceInfo } from "./discovery.ts";

/** The Kubernetes client as plugins see it (ctx.kube()). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    generation?: number;
    resourceVersion?: string;
    [key: string]: unknown;
  };
  // biome-ignore lint/suspicious/noExplicitAny: arbitrary API objects
  spec?: any;
  // biome-ignore lint/suspicious/noExplicitAny: arbitrary API objects
  status?: any;
  [key: string]: unknown;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export interface ApplyOptions {
  /**
   * dryRun=All: the server validates and admits the object and answers with what it would store,
   * but stores nothing (for `plan`).
   */
  dryRun?: boolean;
  /**
   * Take over fields other field managers own (default true: kubehyve's manifests are the truth for
   * the fields they set). With false, such a field is a KubeApplyConflictError naming it and its owner.
   */
  force?: boolean;
}

export interface DeleteOptions {
  /** dryRun=All: the server checks the deletion and answers, but deletes nothing. */
  dryRun?: boolean;
  /**
   * DeleteOptions.preconditions: the server deletes only the object of this UID (and
   * resourceVersion), and answers 409 Conflict for another one of the same name.
   */
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface KubeClient {
  /** The API server URL from the kubeconfig. */
  readonly server: string;
  /** GET one object; undefined on 404. */
  get<T extends KubeObject = KubeObject>(
    apiVersion: string,
    kind: string,
    name: string,
    namespace?: string,
  ): Promise<T | undefined>;
  list<T extends KubeObject = KubeObject>(apiVersion: string, kind: string, opts?: ListOptions): Promise<T[]>;
  /**
   * Creates one object (POST, fieldManager kubehyve): a KubeApiError 409 AlreadyExists when one of
   * its name is there, which is never changed. What apply cannot say: "only if it is new".
   */
  create<T extends KubeObject = KubeObject>(obj: KubeObject, opts?: { dryRun?: boolean }): Promise<T>;
  /**
   * A JSON merge patch (RFC 7386) of one object, fieldManager kubehyve; a metadata.resourceVersion
   * in it holds the patch to that version (409 Conflict for another). Returns what the server stored.
   */
  mergePatch<T extends KubeObject = KubeObject>(
    ref: { apiVersion: string; kind: string; name: string; namespace?: string },
    patch: Record<string, unknown>,
  ): Promise<T>;
  /** Server-side apply of one object (fieldManager kubehyve, forced unless `force: false`). */
  apply<T extends KubeObject = KubeObject>(obj: KubeObject, opts?: ApplyOptions): Promise<T>;
  /** Deletes one object; false when it was not there. */
  delete(
    apiVersion: string,
    kind: string,
    name: string,
    namespace?: string,
    opts?: DeleteOptions,
  ): Promise<boolean>;
  /** Server version (`/version`), e.g. { gitVersion: "v1.35.0" }. */
  version(): Promise<{ gitVersion: string; major?: string; minor?: string }>;
  /**
   * Forgets the cached discovery, so kinds of CRDs applied since are found. Optional for
   * compatibility with other implementations; the kubehyve client always has it.
   */
  refreshDiscovery?(): Promise<void>;
  /**
   * Every resource discovery lists now, asked again: what may be in a namespace. Optional like
   * refreshDiscovery; without it `down` cannot tell what a namespace holds, and keeps it.
   */
  servedResources?(): Promise<ResourceInfo[]>;
}

/** A JSON object: not null, not an array. What the API and kubeconfigs hold is checked with it. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
