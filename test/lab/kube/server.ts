/**
 * The Kubernetes API test server: HTTPS on 127.0.0.1 with a per-run CA, requiring a client
 * certificate signed by it (Bun.serve tls requestCert + rejectUnauthorized: the handshake itself
 * fails without one), speaking the real REST paths, discovery (legacy and aggregated), OpenAPI,
 * server-side apply with field ownership and conflicts, dry runs, field validation, watches,
 * tables, SelfSubjectAccessReview and Status errors. Response shapes follow
 * ../shared/oracles/kubernetes/api-samples (see its README); controllers (./controllers.ts) fill in
 * status where a real cluster's controllers would. Each behaviour cites the kube-apiserver code it
 * follows, in the modules named below and at the handlers here (k8s.io/apiserver
 * pkg/endpoints/handlers: create.go, update.go, patch.go, delete.go, get.go, watch.go).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify as stringifyYaml } from "yaml";
import { ADMIN, authorize, forbiddenMessage, type User, VIEWER } from "./authz.ts";
import { builtinSchemaName } from "./builtin-schemas.ts";
import {
  type Controller,
  type ControllerView,
  type ControllerWriter,
  defaultControllers,
} from "./controllers.ts";
import {
  type Directive,
  type ParsedBody,
  parseWithDuplicates,
  pruneUnknown,
  strictErrors,
  undeclaredFields,
  unknownFields,
  warningHeader,
  warningsOf,
} from "./fieldvalidation.ts";
import { discoveryDocument, groupVersionDocument, gvPath, swaggerDocument } from "./openapi.ts";
import { JsonPatchError, jsonPatch, strategicMergePatch } from "./patches.ts";
import { createPki, type Pki } from "./pki.ts";
import {
  aggregatedDiscovery,
  builtinResources,
  legacyGroupList,
  legacyResourceList,
  resourcesOfCrd,
  type ServedResource,
} from "./resources.ts";
import { type SchemaProblem, validateAgainstSchema } from "./schema.ts";
import { matchesLabels, parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import {
  ApplyConflicts,
  applyConfig,
  clone,
  conflictStatus,
  decodeManagedFields,
  deepEqual,
  encodeManagedFields,
  type FieldSet,
  ignoredFields,
  isObj,
  type ManagerSet,
  mergePatch,
  type Obj,
  specPart,
  updateObject,
} from "./ssa.ts";
import { toTable, wantsTable } from "./tables.ts";
import { BUILTIN_DEFS, crdRootSchema, type TypeNode, typeOf } from "./types.ts";
import { type EventType, WatchHub } from "./watch.ts";

export interface StatusCause {
  reason: string;
  message: string;
  field: string;
}

/** Extra validation of an object about to be stored (schemas of later stages); causes -> 422 Invalid. */
export type Validator = (obj: Obj, resource: ServedResource) => StatusCause[];

/** One admission request, as k8s.io/apiserver pkg/admission Attributes describe it. */
export interface AdmissionRequest {
  operation: "CREATE" | "UPDATE" | "DELETE";
  resource: ServedResource;
  /** The object as it would be stored (the live one for DELETE). */
  object: Obj;
  old?: Obj;
  dryRun: boolean;
}

/** Admission after validation (webhooks, see ./webhooks.ts): a Status to answer with refuses the request. */
export type Admission = (req: AdmissionRequest) => { code: number; status: Obj } | undefined;

export interface Fault {
  /** Matched against the request path (no query); default: every path. */
  path?: RegExp;
  method?: string;
  /** 200 and 409 only with `body`: an answer that is not what was asked for. */
  status: 200 | 409 | 429 | 500 | 503;
  /** How many matching requests fail; Infinity for all. */
  times: number;
  /** Seconds sent in Retry-After with 429 and 503 (default 1 for 429, none for 503). */
  retryAfter?: number;
  /** Answer only after this long, as an overloaded server does (for client timeouts). */
  delayMs?: number;
  /** This text, as application/json, instead of a Status: a broken server or something posing as one. */
  body?: string;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  query: string;
  contentType: string | null;
  accept: string | null;
  status: number;
  body?: string;
  /** Warning headers of the answer (field validation in Warn mode). */
  warnings?: string[];
}

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
}

export interface KubeApiServerOptions {
  /** Certificates to serve with (to restart a server under the same CA); default: a fresh PKI, removed on stop. */
  pki?: Pki;
  /** Status writers; default defaultControllers(). An empty list stores objects as given. */
  controllers?: Controller[];
  validators?: Validator[];
  admission?: Admission[];
  /** Answer discovery in the legacy format only, as servers before aggregated discovery (v1.26) did. */
  legacyDiscoveryOnly?: boolean;
  /** Authenticate by this bearer token instead of client certificates (no client certificate is requested). */
  token?: string;
  /** With `token`: a second token for the restricted user kubehyve-viewer (ClusterRole view). */
  viewerToken?: string;
  gitVersion?: string;
  /** Fixed port (0 or unset: any free one). */
  port?: number;
  /** Delay before controllers react to a write (default 0: on the next tick). */
  reconcileDelayMs?: number;
  /** Namespaces that exist from the start; default default, kube-system, kube-public, kube-node-lease. */
  namespaces?: string[];
  /** Watch events kept for resuming watches (default 1000); older resourceVersions are 410 Expired. */
  watchHistory?: number;
  /** How often a watch with allowWatchBookmarks gets a BOOKMARK (default 60 s, as upstream). */
  bookmarkIntervalMs?: number;
}

export interface KubeApiServer {
  url: string;
  port: number;
  /** kubeconfig text with the CA and the admin client certificate inlined (or the token). */
  kubeconfig: string;
  kubeconfigPath: string;
  /** With `viewerToken`: a kubeconfig of the restricted user. */
  viewerKubeconfig?: string;
  caCert: string;
  pki: Pki;
  /** Stores an object as given (status included), creating or replacing; runs controllers afterwards. */
  put(obj: Obj): Obj;
  get(apiVersion: string, kind: string, name: string, namespace?: string): Obj | undefined;
  list(apiVersion: string, kind: string, namespace?: string): Obj[];
  delete(apiVersion: string, kind: string, name: string, namespace?: string): boolean;
  /** Creates the Node if missing (kubelet-like status) and sets its Ready condition. */
  setNodeReady(
    name: string,
    ready: boolean,
    extra?: { labels?: Record<string, string>; address?: string },
  ): Obj;
  /** Keeps a workload (or CRD, or claim) not ready until called again with true. */
  setReady(ref: ObjectRef, ready: boolean): void;
  injectFault(fault: Fault): void;
  clearFaults(): void;
  /** Every request, in order. */
  requests: RequestLogEntry[];
  /** Called with each request before it is answered: a test's way to act between two requests. */
  onRequest: ((entry: RequestLogEntry) => void)[];
  /** The controller list; tests may add to or remove from it. */
  controllers: Controller[];
  validators: Validator[];
  /** Admission steps run on every write after validation; tests may add to it. */
  admission: Admission[];
  /** Runs the controllers now instead of waiting for the scheduled pass. */
  reconcile(): void;
  /** The resourceVersion of the last write. */
  resourceVersion(): number;
  /** Forgets the watch history, as an etcd compaction does: older resourceVersions become too old. */
  compact(): void;
  stop(): Promise<void>;
}

const NAME_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAME_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// Messages of k8s.io/apimachinery/pkg/util/validation IsDNS1123Subdomain / IsDNS1123Label.
const SUBDOMAIN_MSG =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

const CAUSE_REASON: Record<SchemaProblem["kind"], string> = {
  unknown: "FieldValueInvalid",
  required: "FieldValueRequired",
  type: "FieldValueTypeInvalid",
  enum: "FieldValueNotSupported",
  pattern: "FieldValueInvalid",
  other: "FieldValueInvalid",
};

/** Which controller writes a kind's status, as its managedFields entry names it. */
const STATUS_MANAGERS: Record<string, string> = {
  deployment: "kube-controller-manager",
  daemonset: "kube-controller-manager",
  statefulset: "kube-controller-manager",
  "pvc-binder": "kube-controller-manager",
  "crd-establishing": "kube-apiserver",
};

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly body: Obj | string,
    readonly headers: Record<string, string> = {},
  ) {
    super(typeof body === "string" ? body : String(body.message));
  }
}

/** A Status body (status-404-notfound-service.kubectl-edit-recorded.json and friends). */
function statusBody(code: number, reason: string, message: string, details?: Obj): Obj {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

function qualified(res: ServedResource): string {
  return res.group ? `${res.resource}.${res.group}` : res.resource;
}

function notFound(res: ServedResource, name: string): HttpError {
  return new HttpError(
    404,
    statusBody(404, "NotFound", `${qualified(res)} "${name}" not found`, {
      name,
      ...(res.group ? { group: res.group } : {}),
      kind: res.resource,
    }),
  );
}

const NO_RESOURCE = () =>
  new HttpError(404, statusBody(404, "NotFound", "the server could not find the requested resource", {}));

function badRequest(message: string): HttpError {
  return new HttpError(400, statusBody(400, "BadRequest", message));
}

function invalid(res: ServedResource, name: string, causes: StatusCause[]): HttpError {
  const kind = res.group ? `${res.kind}.${res.group}` : res.kind;
  const parts = causes.map((c) => `${c.field}: ${c.message}`);
  const summary = parts.length === 1 ? parts[0] : `[${parts.join(", ")}]`;
  return new HttpError(
    422,
    statusBody(422, "Invalid", `${kind} "${name}" is invalid: ${summary}`, {
      name,
      ...(res.group ? { group: res.group } : {}),
      kind: res.kind,
      causes,
    }),
  );
}

/** errors.NewInvalid of a request's options (CreateOptions.meta.k8s.io "" is invalid: ...). */
function invalidOptions(kind: string, causes: StatusCause[]): HttpError {
  const parts = causes.map((c) => `${c.field}: ${c.message}`);
  const summary = parts.length === 1 ? parts[0] : `[${parts.join(", ")}]`;
  return new HttpError(
    422,
    statusBody(422, "Invalid", `${kind}.meta.k8s.io "" is invalid: ${summary}`, {
      group: "meta.k8s.io",
      kind,
      causes,
    }),
  );
}

function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function gvOf(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.indexOf("/");
  return i < 0
    ? { group: "", version: apiVersion }
    : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

/** What one request carries through the handlers: who asks, and the warnings of the answer. */
interface RequestContext {
  user: User;
  warnings: string[];
  userAgent: string;
  signal: AbortSignal;
}

/** The options every write takes (CreateOptions, UpdateOptions, PatchOptions, DeleteOptions). */
interface WriteOptions {
  dryRun: boolean;
  manager: string;
  directive: Directive;
  force: boolean;
}

/** Kinds whose objects carry metadata.generation (their registry strategies set it). */
function hasGeneration(res: ServedResource): boolean {
  return !!res.crd || res.group === "apps" || res.kind === "CustomResourceDefinition" || res.kind === "Pod";
}

export async function startKubeApiServer(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const pki = opts.pki ?? createPki({ cn: `kubehyve-test-ca-${process.pid}-${Date.now()}` });
  const builtins = builtinResources();
  const controllers = opts.controllers ?? defaultControllers();
  const validators = opts.validators ?? [];
  const admission = opts.admission ?? [];
  const gitVersion = opts.gitVersion ?? "v1.35.0";
  const requests: RequestLogEntry[] = [];
  const onRequest: ((entry: RequestLogEntry) => void)[] = [];
  const faults: Fault[] = [];
  const held = new Set<string>();
  // group/resource/namespace/name -> object; one copy per group, served at every version of it.
  const store = new Map<string, Obj>();
  let resourceVersion = 100;
  const hub = new WatchHub(opts.watchHistory ?? 1000, () => resourceVersion);
  let reconcileTimer: ReturnType<typeof setTimeout> | undefined;
  const typeCache = new Map<string, { schema: unknown; type: TypeNode }>();

  const key = (res: ServedResource, namespace: string | undefined, name: string) =>
    `${res.group}/${res.resource}/${res.namespaced ? (namespace ?? "") : ""}/${name}`;
  const keyOfObj = (res: ServedResource) => (o: Obj) => {
    const m = o.metadata as Obj;
    return key(res, m.namespace as string | undefined, String(m.name));
  };

  function served(): ServedResource[] {
    const out = [...builtins];
    for (const [k, crd] of store) {
      if (!k.startsWith("apiextensions.k8s.io/customresourcedefinitions/")) continue;
      const conditions = (crd.status as { conditions?: Obj[] } | undefined)?.conditions ?? [];
      const established = conditions.some((c) => c.type === "Established" && c.status === "True");
      if (established) out.push(...resourcesOfCrd(crd));
    }
    return out;
  }

  function findByKind(apiVersion: string, kind: string): ServedResource {
    const { group, version } = gvOf(apiVersion);
    const res = served().find((r) => r.group === group && r.version === version && r.kind === kind);
    if (!res) throw new Error(`the test server serves no ${kind} in ${apiVersion}`);
    return res;
  }

  /** The structural type of a resource's objects: its built-in schema, or its CRD version's. */
  function typeFor(res: ServedResource): TypeNode {
    const k = `${res.group}/${res.version}/${res.kind}`;
    const hit = typeCache.get(k);
    if (hit && hit.schema === res.schema) return hit.type;
    let type: TypeNode;
    if (res.crd) type = typeOf(crdRootSchema(res.schema), BUILTIN_DEFS);
    else {
      const name = builtinSchemaName(res.group, res.version, res.kind);
      type = name ? typeOf({ $ref: `#/components/schemas/${name}` }, BUILTIN_DEFS) : { kind: "untyped" };
    }
    typeCache.set(k, { schema: res.schema, type });
    return type;
  }

  const refKey = (apiVersion: string, kind: string, name: string, namespace?: string) =>
    `${gvOf(apiVersion).group}/${kind}/${namespace ?? ""}/${name}`;

  function objectsOf(group: string, resource: string, namespace?: string): Obj[] {
    const prefix = `${group}/${resource}/${namespace !== undefined ? `${namespace}/` : ""}`;
    return [...store].filter(([k]) => k.startsWith(prefix)).map(([, v]) => v);
  }

  const view: ControllerView = {
    list(groupKind, namespace) {
      const [group, kind] = groupKind.split("/") as [string, string];
      const res = served().find((r) => r.group === group && r.kind === kind);
      return res ? objectsOf(res.group, res.resource, res.namespaced ? namespace : undefined) : [];
    },
    held(obj) {
      // biome-ignore lint/suspicious/noExplicitAny: stored object
      const m = obj.metadata as any;
      return held.has(refKey(String(obj.apiVersion), String(obj.kind), m.name, m.namespace));
    },
    now: nowRfc3339,
  };

  const writer: ControllerWriter = {
    ...view,
    write(obj, manager) {
      const res = findByKind(String(obj.apiVersion), String(obj.kind));
      const copy = clone(obj);
      const meta = (isObj(copy.metadata) ? copy.metadata : {}) as Obj;
      copy.metadata = meta;
      const k = key(res, meta.namespace as string | undefined, String(meta.name));
      const live = store.get(k);
      const status = copy.status;
      delete meta.managedFields;
      stamp(res, copy, live);
      if (status !== undefined) copy.status = status;
      else if (live?.status !== undefined) copy.status = live.status;
      const managers = updateObject({
        live: live ? stripForMerge(live) : undefined,
        object: copy,
        type: typeFor(res),
        managers: managersOf(live),
        manager,
        apiVersion: apiVersionOf(res),
        ignored: ignoredFor(res, copy),
        now: nowRfc3339(),
      });
      withManagedFields(copy, managers);
      if (live && deepEqual(live, copy)) return;
      save(res, copy, live);
    },
    remove(apiVersion, kind, name, namespace) {
      const { group, version } = gvOf(apiVersion);
      const res = served().find((r) => r.group === group && r.version === version && r.kind === kind);
      return res ? remove(res, namespace, name) !== undefined : false;
    },
  };

  /**
   * The one way into the store: the write gets the next resourceVersion (etcd's revision) and
   * becomes a watch event. A deleted object's event carries the deletion's resourceVersion, as
   * etcd3's watcher reports it.
   */
  function commit(res: ServedResource, type: EventType, obj: Obj, previous?: Obj): Obj {
    resourceVersion++;
    const meta = obj.metadata as Obj;
    const k = key(res, meta.namespace as string | undefined, String(meta.name));
    const stored = clone(obj);
    (stored.metadata as Obj).resourceVersion = String(resourceVersion);
    if (type === "DELETED") store.delete(k);
    else store.set(k, stored);
    hub.record({
      rv: resourceVersion,
      type,
      resourceKey: `${res.group}/${res.resource}`,
      namespace: res.namespaced ? (meta.namespace as string | undefined) : undefined,
      object: stored,
      previous,
    });
    // Controllers react to deletions too (an operator cleans up after its custom resource).
    scheduleReconcile();
    return stored;
  }

  function save(res: ServedResource, obj: Obj, previous?: Obj): Obj {
    if (res.kind === "Namespace") obj.status ??= { phase: "Active" };
    return commit(res, previous ? "MODIFIED" : "ADDED", obj, previous);
  }

  function reconcile(): void {
    if (reconcileTimer) clearTimeout(reconcileTimer);
    reconcileTimer = undefined;
    // Several passes: a status one controller writes (a CRD Established) can change what another computes.
    for (let pass = 0; pass < 3; pass++) {
      let changed = false;
      const before = resourceVersion;
      for (const controller of controllers) controller.sync?.(writer);
      if (resourceVersion !== before) changed = true;
      for (const controller of controllers) {
        for (const owned of controller.owns) {
          const [group, kind] = owned.split("/") as [string, string];
          const res = served().find((r) => r.group === group && r.kind === kind);
          if (!res) continue;
          for (const obj of view.list(owned)) {
            const status = controller.reconcile(obj, view);
            if (status === undefined || JSON.stringify(status) === JSON.stringify(obj.status)) continue;
            const next = clone(obj);
            next.status = status;
            const manager = controller.manager ?? STATUS_MANAGERS[controller.name];
            if (manager) {
              // The controller writes through the status subresource, and owns what it wrote there.
              const managers = updateObject({
                live: obj,
                object: next,
                type: typeFor(res),
                managers: decodeManagedFields((obj.metadata as Obj).managedFields),
                manager,
                apiVersion: `${res.group ? `${res.group}/` : ""}${res.version}`,
                subresource: "status",
                ignored: ignoreAllBut(next, "status"),
                now: nowRfc3339(),
              });
              (next.metadata as Obj).managedFields = encodeManagedFields(managers);
            }
            commit(res, "MODIFIED", next, obj);
            changed = true;
          }
        }
      }
      if (!changed) break;
    }
  }

  function scheduleReconcile(): void {
    if (reconcileTimer) return;
    reconcileTimer = setTimeout(reconcile, opts.reconcileDelayMs ?? 0);
  }

  /** System fields of metadata (rest.FillObjectMetaSystemFields on create, kept from the live object on update). */
  function stamp(res: ServedResource, obj: Obj, previous: Obj | undefined): Obj {
    const meta = obj.metadata as Obj;
    if (previous) {
      const prevMeta = previous.metadata as Obj;
      meta.uid = prevMeta.uid;
      meta.creationTimestamp = prevMeta.creationTimestamp;
      meta.resourceVersion = prevMeta.resourceVersion;
      if (hasGeneration(res)) {
        meta.generation =
          specPart(previous) === specPart(obj) ? prevMeta.generation : Number(prevMeta.generation ?? 1) + 1;
      } else delete meta.generation;
    } else {
      meta.uid = crypto.randomUUID();
      meta.creationTimestamp = nowRfc3339();
      if (hasGeneration(res)) meta.generation = 1;
      else delete meta.generation;
      delete meta.resourceVersion;
      if (res.status) delete obj.status;
    }
    return obj;
  }

  /** Schema problems of a custom resource; status is left out where a subresource owns it. */
  function schemaProblems(res: ServedResource, obj: Obj): SchemaProblem[] {
    if (!res.schema) return [];
    // Shallow: validation only reads it.
    const body = { ...obj };
    if (res.status) delete body.status;
    return validateAgainstSchema(body, res.schema);
  }

  /** Validation and admission: the 422 Invalid of the registry's strategy and of the validators. */
  function validate(res: ServedResource, obj: Obj, name: string): void {
    const causes: StatusCause[] = [];
    for (const p of schemaProblems(res, obj)) {
      if (p.kind === "unknown") continue;
      causes.push({ reason: CAUSE_REASON[p.kind], message: p.message, field: p.field });
    }
    const pattern = res.kind === "Namespace" || res.kind === "Service" ? NAME_LABEL : NAME_SUBDOMAIN;
    // RBAC objects are named by path segment (pkg/apis/rbac/validation ValidateRBACName:
    // apimachinery pkg/api/validation/path IsValidPathSegmentName), so "metallb-system:controller" is fine.
    const pathSegment = res.group === "rbac.authorization.k8s.io";
    const segmentProblem =
      name === "." || name === ".."
        ? `may not be '${name}'`
        : name.includes("/")
          ? "may not contain '/'"
          : name.includes("%")
            ? "may not contain '%'"
            : undefined;
    if (name && pathSegment) {
      if (segmentProblem)
        causes.push({
          reason: "FieldValueInvalid",
          message: `Invalid value: "${name}": ${segmentProblem}`,
          field: "metadata.name",
        });
    } else if (!name) {
      causes.push({
        reason: "FieldValueRequired",
        message: "Required value: name or generateName is required",
        field: "metadata.name",
      });
    } else if (!pattern.test(name) || name.length > 253) {
      causes.push({
        reason: "FieldValueInvalid",
        message: `Invalid value: "${name}": ${pattern === NAME_LABEL ? LABEL_MSG : SUBDOMAIN_MSG}`,
        field: "metadata.name",
      });
    }
    for (const v of validators) causes.push(...v(obj, res));
    if (causes.length) throw invalid(res, name, causes);
  }

  /**
   * Validating admission, after the registry's validation as in k8s.io/apiserver's handlers
   * (rest.ValidateObjectFunc runs the admission chain's Validate). Status writes are left out:
   * webhook rules name the main resource.
   */
  function admit(req: AdmissionRequest, sub?: string): void {
    if (sub) return;
    for (const step of admission) {
      const refused = step(req);
      if (refused) throw new HttpError(refused.code, refused.status);
    }
  }

  function checkBody(
    res: ServedResource,
    body: unknown,
    namespace: string | undefined,
    name?: string,
    apply = false,
  ): Obj {
    if (!isObj(body))
      throw badRequest(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
      );
    const expected = res.group ? `${res.group}/${res.version}` : res.version;
    // Create and update decode with the endpoint's group-version-kind as default (create.go
    // decoder.Decode(body, &defaultGVK, ...)); an apply configuration must name both itself.
    if (!apply) {
      body.apiVersion ??= expected;
      body.kind ??= res.kind;
    }
    if (body.apiVersion !== expected) {
      throw badRequest(
        `the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${expected})`,
      );
    }
    if (body.kind !== res.kind) {
      throw badRequest(
        `the kind in the data (${String(body.kind)}) does not match the expected kind (${res.kind})`,
      );
    }
    const meta = isObj(body.metadata) ? body.metadata : {};
    body.metadata = meta;
    if (name !== undefined && meta.name !== undefined && meta.name !== name) {
      throw badRequest(
        `the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`,
      );
    }
    if (name !== undefined) meta.name = name;
    if (res.namespaced) {
      if (meta.namespace !== undefined && meta.namespace !== namespace) {
        throw badRequest(
          "the namespace of the provided object does not match the namespace sent on the request",
        );
      }
      meta.namespace = namespace;
    } else {
      delete meta.namespace;
    }
    return body;
  }

  function requireNamespace(namespace: string): void {
    if (!store.has(`/namespaces//${namespace}`)) {
      throw new HttpError(
        404,
        statusBody(404, "NotFound", `namespaces "${namespace}" not found`, {
          name: namespace,
          kind: "namespaces",
        }),
      );
    }
  }

  function remove(res: ServedResource, namespace: string | undefined, name: string): Obj | undefined {
    const k = key(res, namespace, name);
    const obj = store.get(k);
    if (!obj) return undefined;
    commit(res, "DELETED", clone(obj), obj);
    if (res.kind === "Namespace") {
      // The namespace controller deletes everything in a namespace before the namespace itself goes.
      for (const r of served()) {
        if (!r.namespaced) continue;
        for (const o of objectsOf(r.group, r.resource, name)) commit(r, "DELETED", clone(o), o);
      }
    }
    if (res.kind === "CustomResourceDefinition") {
      for (const r of resourcesOfCrd(obj))
        for (const o of objectsOf(r.group, r.resource)) commit(r, "DELETED", clone(o), o);
    }
    return obj;
  }

  /** An object as served at `res`'s version; built-in list items carry no kind/apiVersion on the wire. */
  /**
   * The object as the API shows it. A shallow copy: every caller serializes it at once (a response,
   * a watch event), so its nested fields may be the stored object's own.
   */
  function present(res: ServedResource, obj: Obj, inList = false): Obj {
    const out = { ...obj };
    out.apiVersion = res.group ? `${res.group}/${res.version}` : res.version;
    if (inList && !res.crd) {
      delete out.apiVersion;
      delete out.kind;
    }
    return out;
  }

  /** Fields that belong to another endpoint: the status subresource owns only status. */
  function ignoreAllBut(obj: Obj, keep: string): FieldSet {
    return ignoredFields(Object.keys(obj).filter((k) => k !== keep && k !== "apiVersion" && k !== "kind"));
  }

  function ignoredFor(res: ServedResource, obj: Obj, sub?: string): FieldSet {
    if (sub === "status") return ignoreAllBut(obj, "status");
    return ignoredFields(res.status ? ["status"] : []);
  }

  /**
   * The options of a write, validated as ValidateCreateOptions / ValidateUpdateOptions /
   * ValidatePatchOptions / ValidateDeleteOptions do (apimachinery pkg/apis/meta/v1/validation).
   * Without fieldManager, the manager is the User-Agent up to its first "/" (create.go
   * managerOrUserAgent). Without fieldValidation, the directive is Warn (rest.go fieldValidation).
   */
  function writeOptions(
    url: URL,
    ctx: RequestContext,
    kind: "CreateOptions" | "UpdateOptions" | "PatchOptions" | "DeleteOptions",
    apply = false,
    bodyDryRun: unknown[] = [],
  ): WriteOptions {
    const causes: StatusCause[] = [];
    const dryRun = [...url.searchParams.getAll("dryRun"), ...bodyDryRun.map(String)];
    if (dryRun.some((d) => d !== "All")) {
      causes.push({
        reason: "FieldValueNotSupported",
        message: `Unsupported value: ${JSON.stringify(dryRun)}: supported values: "All"`,
        field: "dryRun",
      });
    }
    const manager = url.searchParams.get("fieldManager") ?? "";
    if (kind === "PatchOptions" && apply && !manager) {
      causes.push({
        reason: "FieldValueRequired",
        message: "Required value: is required for apply patch",
        field: "fieldManager",
      });
    }
    if (manager.length > 128) {
      causes.push({
        reason: "FieldValueTooLong",
        message: "Too long: may not be more than 128 bytes",
        field: "fieldManager",
      });
    }
    const force = url.searchParams.get("force");
    if (kind === "PatchOptions" && !apply && force !== null) {
      causes.push({
        reason: "FieldValueForbidden",
        message: "Forbidden: may not be specified for non-apply patch",
        field: "force",
      });
    }
    const fv = url.searchParams.get("fieldValidation") ?? "";
    if (kind !== "DeleteOptions" && !["", "Ignore", "Warn", "Strict"].includes(fv)) {
      causes.push({
        reason: "FieldValueNotSupported",
        message: `Unsupported value: ${JSON.stringify(fv)}: supported values: "", "Ignore", "Strict", "Warn"`,
        field: "fieldValidation",
      });
    }
    if (causes.length) throw invalidOptions(kind, causes);
    return {
      dryRun: dryRun.length > 0,
      manager: manager || ctx.userAgent.split("/")[0]!.slice(0, 128),
      directive: (fv || "Warn") as Directive,
      force: force === "true" || force === "1",
    };
  }

  function parseBody(text: string, contentType: string, asYaml = false): ParsedBody {
    const yaml = asYaml || contentType.includes("yaml");
    try {
      return parseWithDuplicates(text, yaml);
    } catch (e) {
      throw badRequest(
        yaml
          ? `error decoding patch: ${(e as Error).message}`
          : `couldn't decode the request body: ${(e as Error).message.split("\n")[0]}`,
      );
    }
  }

  /** Create and update bodies under the directive (create.go / update.go with the strict serializer). */
  function fieldValidated(
    res: ServedResource,
    body: ParsedBody,
    directive: Directive,
    ctx: RequestContext,
  ): unknown {
    const t = typeFor(res);
    if (directive !== "Ignore") {
      const errors = strictErrors(body, t, !!res.crd);
      if (errors.length && directive === "Strict")
        throw badRequest(`strict decoding error: ${errors.join(", ")}`);
      ctx.warnings.push(...warningsOf(errors));
    }
    return pruneUnknown(body.value, t);
  }

  function managersOf(obj: Obj | undefined): Map<string, ManagerSet> {
    return decodeManagedFields(obj ? (obj.metadata as Obj).managedFields : undefined);
  }

  /**
   * The managers an update starts from (apimachinery managedfields/internal/fieldmanager.go
   * decodeLiveOrNew): a subresource's request cannot set them, so the live ones; a request that
   * sends an empty list or one empty entry resets them (isResetManagedFields), and the server
   * keeps none but what this update itself changes; other entries it sends replace the live ones;
   * none sent, or none that decode, keep the live ones.
   */
  function requestManagers(live: Obj, sent: unknown, sub: string | undefined): Map<string, ManagerSet> {
    if (sub) return managersOf(live);
    if (Array.isArray(sent) && (sent.length === 0 || (sent.length === 1 && deepEqual(sent[0], {}))))
      return new Map();
    const decoded = decodeManagedFields(sent);
    return decoded.size ? decoded : managersOf(live);
  }

  function withManagedFields(obj: Obj, managers: Map<string, ManagerSet>): Obj {
    const entries = encodeManagedFields(managers);
    if (entries.length) (obj.metadata as Obj).managedFields = entries;
    else delete (obj.metadata as Obj).managedFields;
    return obj;
  }

  const apiVersionOf = (res: ServedResource) => (res.group ? `${res.group}/${res.version}` : res.version);

  /**
   * Persists a write, or with dryRun=All only answers with what would be stored: the
   * DryRunnableStorage of k8s.io/apiserver pkg/registry/generic/registry/dryrun.go runs validation
   * and admission, then copies the object out without writing (a created object has no
   * resourceVersion yet; an updated one keeps the live one).
   */
  function persist(res: ServedResource, next: Obj, live: Obj | undefined, dryRun: boolean): Obj {
    if (dryRun) return next;
    if (live && deepEqual(live, next)) return live;
    return save(res, next, live);
  }

  function handleApply(
    res: ServedResource,
    namespace: string | undefined,
    name: string,
    text: string,
    url: URL,
    ctx: RequestContext,
    sub?: string,
  ): Response {
    const o = writeOptions(url, ctx, "PatchOptions", true);
    const body = parseBody(text, "application/apply-patch+yaml", true);
    const config = checkBody(res, body.value, namespace, name, true);
    if (res.namespaced && namespace) requireNamespace(namespace);
    const t = typeFor(res);
    const forType = clone(config);
    // With a status subresource, the main resource ignores status and the subresource the rest.
    if (res.status && sub !== "status") delete forType.status;
    const unknown = undeclaredFields(forType, t);
    if (unknown.length) throw typedPatchError(res, namespace, name, unknown);
    const live = store.get(key(res, namespace, name));
    if (sub === "status" && !live) throw notFound(res, name);
    applyPreconditions(res, name, config, live);
    let result: ReturnType<typeof applyConfig>;
    try {
      result = applyConfig({
        live: live ? stripForMerge(live) : undefined,
        config: forType,
        type: t,
        managers: managersOf(live),
        manager: o.manager,
        apiVersion: apiVersionOf(res),
        ...(sub ? { subresource: sub } : {}),
        force: o.force,
        ignored: ignoredFor(res, forType, sub),
        now: nowRfc3339(),
      });
    } catch (error) {
      if (!(error instanceof ApplyConflicts)) throw error;
      const { message, causes } = conflictStatus(error.conflicts);
      // errors.NewApplyConflict: a Conflict with causes and no name or kind in the details.
      throw new HttpError(409, statusBody(409, "Conflict", message, { causes }));
    }
    let next: Obj;
    if (sub === "status") {
      next = clone(live!);
      next.status = result.object.status;
    } else {
      next = result.object;
      if (res.status) {
        if (live?.status !== undefined) next.status = live.status;
        else delete next.status;
      }
    }
    next.apiVersion = apiVersionOf(res);
    next.kind = res.kind;
    withManagedFields(next, result.managers);
    validate(res, next, name);
    admit(
      { operation: live ? "UPDATE" : "CREATE", resource: res, object: next, old: live, dryRun: o.dryRun },
      sub,
    );
    stamp(res, next, live);
    // patch.go applyPatcher: duplicates are looked at after the apply itself succeeded.
    if (o.directive !== "Ignore" && body.duplicates.length) {
      const err = `error converting YAML to JSON: yaml: unmarshal errors:\n  ${body.duplicates.join("\n  ")}`;
      if (o.directive === "Strict") throw badRequest(`error strict decoding patch: ${err}`);
      ctx.warnings.push(...body.duplicates);
    }
    const stored = persist(res, next, live, o.dryRun);
    return json(live ? 200 : 201, present(res, stored));
  }

  /**
   * What an applied configuration's metadata.uid and resourceVersion hold the apply to, in the
   * order kube-apiserver looks at them. No object there: a uid is the 409 of
   * k8s.io/apiserver pkg/endpoints/handlers/patch.go applyPatch ("uid mismatch: the provided object
   * specified uid %s, and no existing object was found"), and a resourceVersion is wiped with the
   * other system fields (pkg/registry/generic/registry/store.go Update, WipeObjectMetaSystemFields
   * on create-via-apply). An object there: a resourceVersion that is not its own is store.go
   * Update's optimistic-lock 409, and a uid that is not its own the 422 of apimachinery
   * pkg/api/validation/objectmeta.go ValidateObjectMetaUpdate (metadata.uid is immutable).
   */
  function applyPreconditions(res: ServedResource, name: string, config: Obj, live: Obj | undefined): void {
    const meta = isObj(config.metadata) ? config.metadata : {};
    const uid = typeof meta.uid === "string" ? meta.uid : "";
    const rv = typeof meta.resourceVersion === "string" ? meta.resourceVersion : "";
    if (!live) {
      if (uid)
        throw new HttpError(
          409,
          statusBody(
            409,
            "Conflict",
            `Operation cannot be fulfilled on ${qualified(res)} "${name}": uid mismatch: the provided object specified uid ${uid}, and no existing object was found`,
            { name, ...(res.group ? { group: res.group } : {}), kind: res.resource },
          ),
        );
      return;
    }
    const liveMeta = live.metadata as Obj;
    if (rv && rv !== liveMeta.resourceVersion) throw conflict(res, name);
    if (uid && uid !== liveMeta.uid)
      throw invalid(res, name, [
        {
          reason: "FieldValueInvalid",
          message: `Invalid value: ${JSON.stringify(uid)}: field is immutable`,
          field: "metadata.uid",
        },
      ]);
  }

  /** The live object as the merge sees it: its managedFields are bookkeeping, not content. */
  function stripForMerge(live: Obj): Obj {
    const copy = clone(live);
    delete (copy.metadata as Obj).managedFields;
    return copy;
  }

  function handleResource(
    req: Request,
    url: URL,
    res: ServedResource,
    ctx: RequestContext,
    namespace: string | undefined,
    name?: string,
    sub?: string,
  ): Promise<Response> | Response {
    const method = req.method;
    if (sub !== undefined && sub !== "status") throw NO_RESOURCE();
    if (sub === "status" && !res.status) throw NO_RESOURCE();
    const watching = url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1";
    const verb =
      method === "GET"
        ? name === undefined
          ? watching
            ? "watch"
            : "list"
          : "get"
        : (({ POST: "create", PUT: "update", PATCH: "patch", DELETE: "delete" } as Record<string, string>)[
            method
          ] ?? method.toLowerCase());
    const attrs = { verb, group: res.group, resource: res.resource, subresource: sub, namespace, name };
    if (!authorize(ctx.user, attrs).allowed) {
      throw new HttpError(
        403,
        statusBody(403, "Forbidden", forbiddenMessage(ctx.user, attrs), {
          ...(name ? { name } : {}),
          ...(res.group ? { group: res.group } : {}),
          kind: res.resource,
        }),
      );
    }
    if (res.kind === "SelfSubjectAccessReview") {
      if (method !== "POST" || name !== undefined) throw methodNotAllowed(method);
      return req.text().then((text) => selfSubjectAccessReview(res, text, ctx));
    }
    if (name === undefined) {
      if (method === "GET")
        return watching ? watch(url, res, namespace, ctx) : list(req, url, res, namespace);
      if (method === "POST") {
        return req.text().then((text) => {
          const o = writeOptions(url, ctx, "CreateOptions");
          const body = parseBody(text, req.headers.get("content-type") ?? "");
          const obj = checkBody(res, fieldValidated(res, body, o.directive, ctx), namespace);
          const meta = obj.metadata as Obj;
          const objName = String(meta.name ?? "");
          if (res.namespaced && namespace) requireNamespace(namespace);
          validate(res, obj, objName);
          admit({ operation: "CREATE", resource: res, object: obj, dryRun: o.dryRun });
          if (store.has(key(res, namespace, objName))) {
            throw new HttpError(
              409,
              statusBody(409, "AlreadyExists", `${qualified(res)} "${objName}" already exists`, {
                name: objName,
                ...(res.group ? { group: res.group } : {}),
                kind: res.resource,
              }),
            );
          }
          stamp(res, obj, undefined);
          delete meta.managedFields;
          const managers = updateObject({
            live: undefined,
            object: obj,
            type: typeFor(res),
            managers: new Map(),
            manager: o.manager,
            apiVersion: apiVersionOf(res),
            ignored: ignoredFor(res, obj),
            now: nowRfc3339(),
          });
          withManagedFields(obj, managers);
          return json(201, present(res, persist(res, obj, undefined, o.dryRun)));
        });
      }
      throw methodNotAllowed(method);
    }
    const k = key(res, namespace, name);
    if (method === "GET") {
      const obj = store.get(k);
      if (!obj) throw notFound(res, name);
      if (wantsTable(req.headers.get("accept")))
        return json(200, toTable(res, [obj], String((obj.metadata as Obj).resourceVersion)));
      return json(200, present(res, obj));
    }
    if (method === "DELETE") return req.text().then((text) => del(res, namespace, name, url, text, ctx));
    if (method === "PUT") {
      return req.text().then((text) => {
        const o = writeOptions(url, ctx, "UpdateOptions");
        const body = parseBody(text, req.headers.get("content-type") ?? "");
        const obj = checkBody(res, fieldValidated(res, body, o.directive, ctx), namespace, name);
        const live = store.get(k);
        if (!live) throw notFound(res, name);
        const rv = (obj.metadata as Obj).resourceVersion;
        if (rv !== undefined && rv !== (live.metadata as Obj).resourceVersion) throw conflict(res, name);
        let next: Obj;
        if (sub === "status") {
          next = clone(live);
          next.status = obj.status;
        } else {
          next = obj;
          if (res.status) next.status = live.status;
        }
        const managers = requestManagers(live, (obj.metadata as Obj).managedFields, sub);
        delete (next.metadata as Obj).managedFields;
        stamp(res, next, live);
        const updated = updateObject({
          live: stripForMerge(live),
          object: next,
          type: typeFor(res),
          managers,
          manager: o.manager,
          apiVersion: apiVersionOf(res),
          ...(sub ? { subresource: sub } : {}),
          ignored: ignoredFor(res, next, sub),
          now: nowRfc3339(),
        });
        withManagedFields(next, updated);
        validate(res, next, name);
        admit({ operation: "UPDATE", resource: res, object: next, old: live, dryRun: o.dryRun }, sub);
        return json(200, present(res, persist(res, next, live, o.dryRun)));
      });
    }
    if (method === "PATCH") {
      const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
      return req.text().then((text) => {
        if (type === "application/apply-patch+yaml")
          return handleApply(res, namespace, name, text, url, ctx, sub);
        const kinds = [
          "application/merge-patch+json",
          "application/strategic-merge-patch+json",
          "application/json-patch+json",
        ];
        if (kinds.includes(type)) {
          const o = writeOptions(url, ctx, "PatchOptions");
          const live = store.get(k);
          if (!live) throw notFound(res, name);
          const body = parseBody(text, "application/json");
          const patched = (() => {
            const base = stripForMerge(live);
            if (type === "application/merge-patch+json") return mergePatch(base, body.value) as Obj;
            if (type === "application/strategic-merge-patch+json")
              return strategicMergePatch(base, body.value, typeFor(res)) as Obj;
            try {
              return jsonPatch(base, body.value);
            } catch (e) {
              if (!(e instanceof JsonPatchError)) throw e;
              throw new HttpError(422, statusBody(422, "Invalid", e.message));
            }
          })();
          // A resourceVersion the patch sets holds it to that version (store.go Update: a
          // version that is not the stored one is the optimistic-lock 409).
          const patchedRv = (patched.metadata as Obj | undefined)?.resourceVersion;
          if (patchedRv !== undefined && patchedRv !== (live.metadata as Obj).resourceVersion)
            throw conflict(res, name);
          let next: Obj;
          if (sub === "status") {
            next = clone(live);
            next.status = patched.status;
          } else {
            next = patched;
            if (res.status) next.status = live.status;
          }
          // The patch is applied to the live object, managedFields and all (patch.go), so that a
          // patch that sets them is an update that sends them.
          const sent = (patched.metadata as Obj | undefined)?.managedFields;
          next = patchValidated(res, next, body, o.directive, ctx);
          delete (next.metadata as Obj).managedFields;
          stamp(res, next, live);
          const managers = updateObject({
            live: stripForMerge(live),
            object: next,
            type: typeFor(res),
            managers: requestManagers(live, sent, sub),
            manager: o.manager,
            apiVersion: apiVersionOf(res),
            ...(sub ? { subresource: sub } : {}),
            ignored: ignoredFor(res, next, sub),
            now: nowRfc3339(),
          });
          withManagedFields(next, managers);
          validate(res, next, name);
          admit({ operation: "UPDATE", resource: res, object: next, old: live, dryRun: o.dryRun }, sub);
          return json(200, present(res, persist(res, next, live, o.dryRun)));
        }
        throw new HttpError(
          415,
          statusBody(
            415,
            "UnsupportedMediaType",
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`,
          ),
        );
      });
    }
    throw methodNotAllowed(method);
  }

  /**
   * A merge patch under the directive (patch.go jsonPatcher.applyPatchToCurrentObject): the
   * patch's duplicates and the patched object's unknown fields; Strict is a 422 on field "patch".
   */
  function patchValidated(
    res: ServedResource,
    next: Obj,
    body: ParsedBody,
    directive: Directive,
    ctx: RequestContext,
  ): Obj {
    const t = typeFor(res);
    if (directive === "Ignore") return pruneUnknown(next, t) as Obj;
    const errors = [
      ...body.duplicates,
      ...unknownFields(next, t, true).map((f) => `unknown field ${JSON.stringify(f)}`),
    ];
    if (errors.length && directive === "Strict") {
      const patched = JSON.stringify(next);
      const message = `Invalid value: ${JSON.stringify(patched)}: strict decoding error: ${errors.join(", ")}`;
      throw new HttpError(
        422,
        statusBody(422, "Invalid", ` "" is invalid: patch: ${message}`, {
          causes: [{ reason: "FieldValueInvalid", message, field: "patch" }],
        }),
      );
    }
    ctx.warnings.push(...errors);
    return pruneUnknown(next, t) as Obj;
  }

  /**
   * DELETE (delete.go, registry/generic/registry/store.go Delete): dryRun answers without deleting;
   * the answer is the deleted object for kinds whose store has ReturnDeletedObject (Services, custom
   * resources) and a Success Status with the name, group, kind (the resource) and uid otherwise
   * (store.go finalizeDelete).
   */
  function del(
    res: ServedResource,
    namespace: string | undefined,
    name: string,
    url: URL,
    text: string,
    ctx: RequestContext,
  ): Response {
    let bodyDryRun: unknown[] = [];
    let preconditions: Obj = {};
    if (text.trim()) {
      const opts = parseBody(text, "application/json").value;
      if (isObj(opts) && Array.isArray(opts.dryRun)) bodyDryRun = opts.dryRun;
      if (isObj(opts) && isObj(opts.preconditions)) preconditions = opts.preconditions;
    }
    const o = writeOptions(url, ctx, "DeleteOptions", false, bodyDryRun);
    const obj = store.get(key(res, namespace, name));
    if (!obj) throw notFound(res, name);
    const failed = preconditionFailure(preconditions, obj.metadata as Obj);
    if (failed) throw preconditionConflict(res, namespace, name, failed);
    admit({ operation: "DELETE", resource: res, object: obj, old: obj, dryRun: o.dryRun });
    if (!o.dryRun) remove(res, namespace, name);
    if (res.crd || res.kind === "Service" || res.kind === "Pod") return json(200, present(res, obj));
    return json(200, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Success",
      details: {
        name,
        ...(res.group ? { group: res.group } : {}),
        kind: res.resource,
        uid: (obj.metadata as Obj).uid,
      },
    });
  }

  /**
   * LIST with the resourceVersion semantics of the API concepts ("Resource versions" in
   * kubernetes/website content/en/docs/reference/using-api/api-concepts.md; cacher.go GetList):
   * unset is the latest state, "0" any state (here the latest), N with the default
   * resourceVersionMatch=NotOlderThan at least N (504 "Too large resource version" when N is
   * ahead), and resourceVersionMatch=Exact the state at N, from the watch history, or 410 Expired.
   */
  function list(req: Request, url: URL, res: ServedResource, namespace: string | undefined): Response {
    const labels = parseSelector(url, "labelSelector", parseLabelSelector);
    const fields = parseSelector(url, "fieldSelector", parseFieldSelector);
    const rvParam = url.searchParams.get("resourceVersion") ?? "";
    const match = url.searchParams.get("resourceVersionMatch") ?? "";
    let objects = objectsOf(res.group, res.resource, res.namespaced ? namespace : undefined);
    let listRv = resourceVersion;
    if (match && !rvParam) {
      throw badRequest(`resourceVersionMatch is forbidden unless resourceVersion is provided`);
    }
    const paging = listPaging(url, res);
    if (paging.from) {
      // A continued list is the state at the first chunk's resourceVersion (etcd3 store.go
      // GetList reads at the token's revision), gone once that revision is compacted.
      const all = objectsOf(res.group, res.resource);
      const snapshot =
        paging.rv === resourceVersion
          ? all
          : hub.snapshotAt(paging.rv, all, keyOfObj(res), `${res.group}/${res.resource}`);
      if (!snapshot) throw continueExpired(res, paging.from);
      objects = snapshot.filter(
        (o) => !res.namespaced || namespace === undefined || (o.metadata as Obj).namespace === namespace,
      );
      listRv = paging.rv;
    }
    if (rvParam && rvParam !== "0") {
      const rv = Number(rvParam);
      if (!Number.isInteger(rv) || rv < 0) throw badRequest(`invalid resource version "${rvParam}"`);
      if (rv > resourceVersion) {
        // storage.NewTooLargeResourceVersionError after the watch cache did not catch up.
        throw new HttpError(
          504,
          statusBody(504, "Timeout", `Too large resource version: ${rv}, current: ${resourceVersion}`, {
            causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }],
            retryAfterSeconds: 1,
          }),
        );
      }
      if (match === "Exact") {
        const all = objectsOf(res.group, res.resource);
        const snapshot = hub.snapshotAt(rv, all, keyOfObj(res), `${res.group}/${res.resource}`);
        if (!snapshot) {
          throw new HttpError(
            410,
            statusBody(410, "Expired", `too old resource version: ${rv} (${hub.oldest()})`),
          );
        }
        objects = snapshot.filter(
          (o) => !res.namespaced || namespace === undefined || (o.metadata as Obj).namespace === namespace,
        );
        listRv = rv;
      }
    }
    const keyOf = keyOfObj(res);
    let items = objects
      .filter((o) => matchesLabels(labels, (o.metadata as Obj).labels as Record<string, string>))
      .filter((o) => fields.every((f) => f(o)))
      .filter((o) => !paging.from || keyOf(o) >= paging.from)
      .sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1));
    const listMeta: Obj = { resourceVersion: String(listRv) };
    if (paging.limit && items.length > paging.limit) {
      const rest = items.length - paging.limit;
      items = items.slice(0, paging.limit);
      // The next key after the last one returned (storage PrepareContinueToken: lastKey + "\x00").
      listMeta.continue = encodeContinue(res, `${keyOf(items.at(-1)!)}\u0000`, listRv);
      // Counted only where no selector could leave some out (etcd3 store.go GetList, pred.Empty()).
      if (!labels.length && !fields.length) listMeta.remainingItemCount = rest;
    }
    if (wantsTable(req.headers.get("accept"))) return json(200, toTable(res, items, String(listRv)));
    return json(200, {
      kind: `${res.kind}List`,
      apiVersion: apiVersionOf(res),
      metadata: listMeta,
      items: items.map((o) => present(res, o, true)),
    });
  }

  /**
   * A list's `limit` and `continue` (API concepts, "Retrieving large results sets in chunks"). The
   * token is k8s.io/apiserver pkg/storage/continue.go's: base64url of {"v":"meta.k8s.io/v1","rv":N,
   * "start":KEY}; one that does not decode is a 400, and a resourceVersion beside it too
   * (apimachinery validation: "specifying resource version is not allowed when using continue").
   */
  function listPaging(url: URL, res: ServedResource): { limit?: number; from?: string; rv: number } {
    const limitParam = url.searchParams.get("limit") ?? "";
    const limit = limitParam ? Number(limitParam) : undefined;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0))
      throw badRequest(`invalid limit ${JSON.stringify(limitParam)}`);
    const token = url.searchParams.get("continue") ?? "";
    if (!token) return { ...(limit ? { limit } : {}), rv: resourceVersion };
    const rvParam = url.searchParams.get("resourceVersion") ?? "";
    if (rvParam && rvParam !== "0")
      throw badRequest("specifying resource version is not allowed when using continue");
    let decoded: { v?: unknown; rv?: unknown; start?: unknown };
    try {
      decoded = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    } catch {
      throw badRequest("invalid continue token: continue key is not valid");
    }
    if (decoded.v !== "meta.k8s.io/v1" || typeof decoded.start !== "string" || !decoded.start)
      throw badRequest("invalid continue token: continue key is not valid");
    if (typeof decoded.rv !== "number" || decoded.rv === 0)
      throw badRequest(
        "invalid continue token: continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
      );
    const prefix = `${res.group}/${res.resource}/`;
    // -1: what the expired answer hands out, to go on at the latest state (inconsistently).
    const rv = decoded.rv === -1 ? resourceVersion : decoded.rv;
    return { ...(limit ? { limit } : {}), from: `${prefix}${decoded.start}`, rv };
  }

  function encodeContinue(res: ServedResource, key: string, rv: number): string {
    const prefix = `${res.group}/${res.resource}/`;
    return Buffer.from(
      JSON.stringify({ v: "meta.k8s.io/v1", rv, start: key.slice(prefix.length) }),
      "utf8",
    ).toString("base64url");
  }

  /**
   * A continue token whose revision is compacted: etcd3/errors.go handleCompactedErrorForPaging,
   * 410 Expired with a token to go on at the latest state, which gives an inconsistent list.
   */
  function continueExpired(res: ServedResource, from: string): HttpError {
    const body = statusBody(
      410,
      "Expired",
      "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
    ) as Obj;
    body.metadata = { continue: encodeContinue(res, from, -1) };
    return new HttpError(410, body);
  }

  /** WATCH (handlers/watch.go serveWatch over the cacher; see ./watch.ts). */
  function watch(
    url: URL,
    res: ServedResource,
    namespace: string | undefined,
    ctx: RequestContext,
  ): Response {
    const labels = parseSelector(url, "labelSelector", parseLabelSelector);
    const fields = parseSelector(url, "fieldSelector", parseFieldSelector);
    const matches = (o: Obj) =>
      matchesLabels(labels, (o.metadata as Obj).labels as Record<string, string>) &&
      fields.every((f) => f(o));
    const timeoutSeconds = Number(url.searchParams.get("timeoutSeconds") ?? "");
    // Without timeoutSeconds the server picks one between minRequestTimeout (30 min) and twice that.
    const timeoutMs =
      Number.isFinite(timeoutSeconds) && timeoutSeconds > 0 ? timeoutSeconds * 1000 : 1800_000;
    const ns = res.namespaced ? namespace : undefined;
    return hub.open({
      filter: {
        resourceKey: `${res.group}/${res.resource}`,
        namespace: ns,
        matches,
        present: (o) => ({ ...present(res, o), kind: res.kind }),
      },
      resourceVersion: url.searchParams.get("resourceVersion") ?? undefined,
      initial: objectsOf(res.group, res.resource, ns).filter(matches),
      allowBookmarks: url.searchParams.get("allowWatchBookmarks") === "true",
      bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000,
      timeoutMs,
      signal: ctx.signal,
      bookmarkObject: () => ({
        kind: res.kind,
        apiVersion: apiVersionOf(res),
        metadata: { resourceVersion: String(resourceVersion) },
      }),
    });
  }

  /**
   * POST selfsubjectaccessreviews (pkg/registry/authorization/selfsubjectaccessreview in
   * kubernetes/kubernetes): the spec comes back with status.allowed (and denied, reason) as the
   * authorizer decides for the requesting user.
   */
  function selfSubjectAccessReview(res: ServedResource, text: string, ctx: RequestContext): Response {
    const body = checkBody(res, parseBody(text, "application/json").value, undefined);
    // biome-ignore lint/suspicious/noExplicitAny: request body
    const spec = (body.spec ?? {}) as any;
    const ra = spec.resourceAttributes;
    const na = spec.nonResourceAttributes;
    if (!ra && !na) {
      throw invalid(res, "", [
        {
          reason: "FieldValueRequired",
          message:
            "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
          field: "spec.resourceAttributes",
        },
      ]);
    }
    const decision = ra
      ? authorize(ctx.user, {
          verb: ra.verb ?? "",
          group: ra.group ?? "",
          resource: ra.resource ?? "",
          subresource: ra.subresource || undefined,
          namespace: ra.namespace || undefined,
          name: ra.name || undefined,
        })
      : authorize(ctx.user, { verb: na.verb ?? "", group: "", resource: "" });
    return json(201, {
      kind: "SelfSubjectAccessReview",
      apiVersion: "authorization.k8s.io/v1",
      metadata: {},
      spec,
      status: { allowed: decision.allowed, ...(decision.reason ? { reason: decision.reason } : {}) },
    });
  }

  /**
   * Server-side apply of a field the schema does not declare. The field manager fails to type the
   * patch with a plain error, which the API server answers as a 500 without a reason
   * (apimachinery managedfields structuredmerge.go, "failed to create typed patch object").
   */
  function typedPatchError(
    res: ServedResource,
    namespace: string | undefined,
    name: string,
    unknown: string[],
  ): HttpError {
    const gvk = `${res.group}/${res.version}, Kind=${res.kind}`;
    const lines = unknown.map((u) => `${u}: field not declared in schema`);
    const detail = lines.length === 1 ? lines[0] : `errors:\n  ${lines.join("\n  ")}`;
    return new HttpError(500, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `failed to create typed patch object (${res.namespaced ? (namespace ?? "") : ""}/${name}; ${gvk}): ${detail}`,
      code: 500,
    });
  }

  /**
   * DeleteOptions.preconditions against the stored object, as storage.Preconditions.Check words it
   * (k8s.io/apiserver pkg/storage/interfaces.go; the etcd3 store's checkPreconditions): the UID
   * first, then the resourceVersion.
   */
  function preconditionFailure(pre: Obj, meta: Obj): string | undefined {
    if (typeof pre.uid === "string" && pre.uid !== meta.uid)
      return `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${meta.uid ?? ""}`;
    if (typeof pre.resourceVersion === "string" && pre.resourceVersion !== meta.resourceVersion)
      return `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${meta.resourceVersion ?? ""}`;
    return undefined;
  }

  /**
   * A failed precondition: the store's InvalidObjError, which the registry turns into a 409
   * Conflict (apiserver pkg/storage/errors.go NewInvalidObjError, interpretStorageError), its
   * message naming the etcd key (/registry/[group/]resource/[namespace/]name).
   */
  function preconditionConflict(
    res: ServedResource,
    namespace: string | undefined,
    name: string,
    failure: string,
  ): HttpError {
    const etcdKey = [
      "/registry",
      ...(res.group ? [res.group] : []),
      res.resource,
      ...(namespace ? [namespace] : []),
      name,
    ].join("/");
    return new HttpError(
      409,
      statusBody(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${qualified(res)} "${name}": StorageError: invalid object, Code: 4, Key: ${etcdKey}, ResourceVersion: 0, AdditionalErrorMsg: ${failure}`,
        { name, ...(res.group ? { group: res.group } : {}), kind: res.resource },
      ),
    );
  }

  function conflict(res: ServedResource, name: string): HttpError {
    return new HttpError(
      409,
      statusBody(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${qualified(res)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        { name, ...(res.group ? { group: res.group } : {}), kind: res.resource },
      ),
    );
  }

  function methodNotAllowed(method: string): HttpError {
    return new HttpError(
      405,
      statusBody(
        405,
        "MethodNotAllowed",
        `the server does not allow this method on the requested resource (${method})`,
      ),
    );
  }

  function parseSelector<T>(url: URL, param: string, parse: (s: string) => T[]): T[] {
    const text = url.searchParams.get(param);
    if (!text) return [];
    try {
      return parse(text);
    } catch (e) {
      throw badRequest(`unable to parse requirement: ${(e as Error).message}`);
    }
  }

  function json(code: number, body: unknown, headers: Record<string, string> = {}): Response {
    return new Response(JSON.stringify(body), {
      status: code,
      headers: { "Content-Type": "application/json", "Cache-Control": "no-cache, private", ...headers },
    });
  }

  function discovery(req: Request, segments: string[]): Response | undefined {
    const accept = req.headers.get("accept") ?? "";
    const wantsAggregated = !opts.legacyDiscoveryOnly && accept.includes("as=APIGroupDiscoveryList");
    const all = served();
    if (segments.length === 1 && segments[0] === "api") {
      if (wantsAggregated) return aggregated(aggregatedDiscovery(all, true));
      // Shape of discovery-legacy-api.APIVersions.json.
      return json(200, {
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: `127.0.0.1:${port}` }],
      });
    }
    if (segments.length === 1 && segments[0] === "apis") {
      return wantsAggregated ? aggregated(aggregatedDiscovery(all, false)) : json(200, legacyGroupList(all));
    }
    const gv =
      segments[0] === "api" && segments.length === 2
        ? { group: "", version: segments[1]! }
        : segments[0] === "apis" && segments.length === 3
          ? { group: segments[1]!, version: segments[2]! }
          : undefined;
    if (!gv) return undefined;
    const list = all.filter((r) => r.group === gv.group && r.version === gv.version);
    if (!list.length) throw NO_RESOURCE();
    return json(200, legacyResourceList(gv.group ? `${gv.group}/${gv.version}` : gv.version, list));
  }

  function aggregated(body: Obj): Response {
    return json(200, body, {
      "Content-Type": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    });
  }

  /** /openapi/v2, /openapi/v3 and /openapi/v3/<group-version> (see ./openapi.ts). */
  function openapi(segments: string[]): Response | undefined {
    if (segments[0] !== "openapi") return undefined;
    const all = served();
    if (segments.length === 2 && segments[1] === "v2") return json(200, swaggerDocument(all, gitVersion));
    if (segments[1] !== "v3") throw NO_RESOURCE();
    if (segments.length === 2) return json(200, discoveryDocument(all, gitVersion));
    const gv = segments.slice(2).join("/");
    const list = all.filter((r) => gvPath(r.group, r.version) === gv);
    if (!list.length) throw NO_RESOURCE();
    return json(200, groupVersionDocument(list, gitVersion));
  }

  function route(req: Request, url: URL, ctx: RequestContext): Response | Promise<Response> {
    const segments = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (segments.length === 1 && segments[0] === "version") {
      // Shape of k8s.io/apimachinery/pkg/version Info.
      const [major, minor] = gitVersion.replace(/^v/, "").split(".");
      return json(200, {
        major,
        minor,
        gitVersion,
        gitCommit: "0000000000000000000000000000000000000000",
        gitTreeState: "clean",
        buildDate: "2026-01-01T00:00:00Z",
        goVersion: "go1.25.0",
        compiler: "gc",
        platform: "linux/amd64",
      });
    }
    if (req.method === "GET") {
      const answer = openapi(segments) ?? discovery(req, segments);
      if (answer) return answer;
    }
    let group: string;
    let version: string;
    let rest: string[];
    if (segments[0] === "api" && segments.length >= 3) {
      group = "";
      version = segments[1]!;
      rest = segments.slice(2);
    } else if (segments[0] === "apis" && segments.length >= 4) {
      group = segments[1]!;
      version = segments[2]!;
      rest = segments.slice(3);
    } else {
      throw NO_RESOURCE();
    }
    let namespace: string | undefined;
    // /namespaces/NS/RESOURCE/... is a namespaced path; /namespaces/NAME[/status] is the Namespace itself.
    if (rest[0] === "namespaces" && rest.length >= 3 && rest[2] !== "status" && rest[2] !== "finalize") {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [resource, name, sub, ...extra] = rest;
    if (extra.length) throw NO_RESOURCE();
    const res = served().find((r) => r.group === group && r.version === version && r.resource === resource);
    if (!res) throw NO_RESOURCE();
    if (namespace !== undefined && !res.namespaced) throw NO_RESOURCE();
    if (res.namespaced && namespace === undefined && name !== undefined) throw NO_RESOURCE();
    return handleResource(req, url, res, ctx, namespace, name, sub);
  }

  async function takeFault(req: Request, url: URL): Promise<Response | undefined> {
    const fault = faults.find(
      (f) => f.times > 0 && (!f.path || f.path.test(url.pathname)) && (!f.method || f.method === req.method),
    );
    if (!fault) return undefined;
    fault.times--;
    if (fault.delayMs) await Bun.sleep(fault.delayMs);
    if (fault.body !== undefined)
      return new Response(fault.body, {
        status: fault.status,
        headers: { "Content-Type": "application/json" },
      });
    if (fault.status === 429) {
      // API Priority and Fairness rejects with Go's http.Error, a text body rather than a Status
      // (k8s.io/apiserver pkg/server/filters/priority-and-fairness.go tooManyRequests).
      return new Response("Too many requests, please try again later.\n", {
        status: 429,
        headers: {
          "Content-Type": "text/plain; charset=utf-8",
          "X-Content-Type-Options": "nosniff",
          "Retry-After": String(fault.retryAfter ?? 1),
        },
      });
    }
    if (fault.status === 503) {
      return json(
        503,
        statusBody(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        {
          ...(fault.retryAfter !== undefined ? { "Retry-After": String(fault.retryAfter) } : {}),
        },
      );
    }
    return json(
      500,
      statusBody(500, "InternalError", "Internal error occurred: injected fault", {
        causes: [{ message: "injected fault" }],
      }),
    );
  }

  /** The requesting user: the admin by client certificate or token, the viewer by its token. */
  function authenticate(req: Request): User | undefined {
    if (opts.token === undefined) return ADMIN;
    const auth = req.headers.get("authorization");
    if (auth === `Bearer ${opts.token}`) return ADMIN;
    if (opts.viewerToken !== undefined && auth === `Bearer ${opts.viewerToken}`) return VIEWER;
    return undefined;
  }

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const entry: RequestLogEntry = {
      method: req.method,
      path: url.pathname,
      query: url.search,
      contentType: req.headers.get("content-type"),
      accept: req.headers.get("accept"),
      status: 0,
    };
    requests.push(entry);
    for (const hook of onRequest) hook(entry);
    let response: Response;
    const user = authenticate(req);
    const ctx: RequestContext = {
      user: user ?? ADMIN,
      warnings: [],
      userAgent: req.headers.get("user-agent") ?? "",
      signal: req.signal,
    };
    try {
      if (!user) {
        response = json(401, statusBody(401, "Unauthorized", "Unauthorized"));
      } else {
        if (req.method === "PATCH" || req.method === "POST" || req.method === "PUT") {
          entry.body = await req.clone().text();
        }
        response = (await takeFault(req, url)) ?? (await route(req, url, ctx));
      }
    } catch (error) {
      if (error instanceof HttpError) {
        response =
          typeof error.body === "string"
            ? new Response(error.body, { status: error.code })
            : json(error.code, error.body, error.headers);
      } else {
        response = json(
          500,
          statusBody(500, "InternalError", `Internal error occurred: ${(error as Error).message}`),
        );
      }
    }
    // The warning recorder deduplicates (k8s.io/apiserver pkg/endpoints/filters/warning.go).
    const warnings = [...new Set(ctx.warnings)];
    for (const w of warnings) response.headers.append("Warning", warningHeader(w));
    if (warnings.length) entry.warnings = warnings;
    entry.status = response.status;
    return response;
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
    // Watches stay open far longer than Bun's default idle timeout of 10 s.
    idleTimeout: 0,
    tls: {
      cert: pki.serverCert,
      key: pki.serverKey,
      ca: pki.caCert,
      requestCert: opts.token === undefined,
      rejectUnauthorized: opts.token === undefined,
    },
    fetch: handle,
  });
  const port = server.port as number;
  const url = `https://127.0.0.1:${port}`;

  for (const ns of opts.namespaces ?? ["default", "kube-system", "kube-public", "kube-node-lease"]) {
    const res = builtins[0]!;
    save(res, stamp(res, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }, undefined));
  }

  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const kubeconfigFor = (userName: string, user: Obj) =>
    stringifyYaml({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "cluster.local", cluster: { "certificate-authority-data": b64(pki.caCert), server: url } },
      ],
      contexts: [
        { name: `${userName}@cluster.local`, context: { cluster: "cluster.local", user: userName } },
      ],
      "current-context": `${userName}@cluster.local`,
      preferences: {},
      users: [{ name: userName, user }],
    });
  const kubeconfig = kubeconfigFor(
    "kubernetes-admin",
    opts.token !== undefined
      ? { token: opts.token }
      : { "client-certificate-data": b64(pki.clientCert), "client-key-data": b64(pki.clientKey) },
  );
  const viewerKubeconfig =
    opts.token !== undefined && opts.viewerToken !== undefined
      ? kubeconfigFor(VIEWER.name, { token: opts.viewerToken })
      : undefined;
  const kubeconfigPath = join(pki.dir, `admin-${port}.conf`);
  writeFileSync(kubeconfigPath, kubeconfig, { mode: 0o600 });

  return {
    url,
    port,
    kubeconfig,
    kubeconfigPath,
    ...(viewerKubeconfig ? { viewerKubeconfig } : {}),
    caCert: pki.caCert,
    pki,
    requests,
    onRequest,
    controllers,
    validators,
    admission,
    put(obj) {
      const res = findByKind(String(obj.apiVersion), String(obj.kind));
      const copy = clone(obj);
      const meta = (isObj(copy.metadata) ? copy.metadata : {}) as Obj;
      copy.metadata = meta;
      const k = key(res, meta.namespace as string | undefined, String(meta.name));
      const live = store.get(k);
      const status = copy.status;
      stamp(res, copy, live);
      if (status !== undefined) copy.status = status;
      return clone(save(res, copy, live));
    },
    get(apiVersion, kind, name, namespace) {
      const res = findByKind(apiVersion, kind);
      const obj = store.get(key(res, namespace, name));
      // A test may change what it is handed: a copy of its own, not the stored object.
      return obj ? clone(present(res, obj)) : undefined;
    },
    list(apiVersion, kind, namespace) {
      const res = findByKind(apiVersion, kind);
      return objectsOf(res.group, res.resource, res.namespaced ? namespace : undefined).map((o) =>
        clone(present(res, o)),
      );
    },
    delete(apiVersion, kind, name, namespace) {
      return remove(findByKind(apiVersion, kind), namespace, name) !== undefined;
    },
    setNodeReady(name, ready, extra = {}) {
      const res = findByKind("v1", "Node");
      const k = key(res, undefined, name);
      const live = store.get(k);
      const node = live
        ? clone(live)
        : stamp(
            res,
            {
              apiVersion: "v1",
              kind: "Node",
              metadata: {
                name,
                labels: {
                  "kubernetes.io/arch": "amd64",
                  "kubernetes.io/hostname": name,
                  "kubernetes.io/os": "linux",
                  ...extra.labels,
                },
              },
              spec: {},
            },
            undefined,
          );
      const now = nowRfc3339();
      // Condition texts of the kubelet, as in node-v1.23.3-kube-worker-1.website-debug-cluster-excerpt.yaml.
      const readyCondition = ready
        ? {
            type: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "kubelet is posting ready status",
          }
        : {
            type: "Ready",
            status: "False",
            reason: "KubeletNotReady",
            message:
              "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
          };
      // biome-ignore lint/suspicious/noExplicitAny: node status
      const status = (node.status ?? {}) as any;
      node.status = {
        ...status,
        addresses: extra.address
          ? [
              { address: extra.address, type: "InternalIP" },
              { address: name, type: "Hostname" },
            ]
          : (status.addresses ?? [{ address: name, type: "Hostname" }]),
        conditions: [
          ...(status.conditions ?? []).filter((c: Obj) => c.type !== "Ready"),
          { ...readyCondition, lastHeartbeatTime: now, lastTransitionTime: now },
        ],
        nodeInfo: status.nodeInfo ?? {
          architecture: "amd64",
          containerRuntimeVersion: "containerd://2.1.4",
          kubeletVersion: gitVersion,
          operatingSystem: "linux",
          osImage: "Fedora CoreOS 43.20260101.3.0",
        },
      };
      return clone(save(res, node, live));
    },
    setReady(ref, ready) {
      const k = refKey(ref.apiVersion, ref.kind, ref.name, ref.namespace);
      if (ready) held.delete(k);
      else held.add(k);
      scheduleReconcile();
    },
    injectFault(fault) {
      faults.push({ ...fault });
    },
    clearFaults() {
      faults.length = 0;
    },
    reconcile,
    resourceVersion: () => resourceVersion,
    compact: () => hub.compact(),
    async stop() {
      if (reconcileTimer) clearTimeout(reconcileTimer);
      hub.closeAll();
      await server.stop(true);
      if (!opts.pki) pki.remove();
    },
  };
}
