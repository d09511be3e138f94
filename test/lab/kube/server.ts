/**
 * The Kubernetes API test server: HTTPS on 127.0.0.1 with a per-run CA, requiring a client
 * certificate signed by it (Bun.serve tls requestCert + rejectUnauthorized: the handshake itself
 * fails without one), speaking the real REST paths, discovery (legacy and aggregated), server-side
 * apply and Status errors. Response shapes follow ../shared/oracles/kubernetes/api-samples (see its
 * README); controllers (./controllers.ts) fill in status where a real cluster's controllers would.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { type Controller, type ControllerView, defaultControllers } from "./controllers.ts";
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
import { clone, fieldsV1, isObj, mergeApplied, mergePatch, type Obj, specPart } from "./ssa.ts";

export interface StatusCause {
  reason: string;
  message: string;
  field: string;
}

/** Extra validation of an object about to be stored (schemas of later stages); causes -> 422 Invalid. */
export type Validator = (obj: Obj, resource: ServedResource) => StatusCause[];

export interface Fault {
  /** Matched against the request path (no query); default: every path. */
  path?: RegExp;
  method?: string;
  status: 429 | 500 | 503;
  /** How many matching requests fail; Infinity for all. */
  times: number;
  /** Seconds sent in Retry-After with 429 and 503 (default 1 for 429, none for 503). */
  retryAfter?: number;
  /** Answer only after this long, as an overloaded server does (for client timeouts). */
  delayMs?: number;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  query: string;
  contentType: string | null;
  accept: string | null;
  status: number;
  body?: string;
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
  /** Answer discovery in the legacy format only, as servers before aggregated discovery (v1.26) did. */
  legacyDiscoveryOnly?: boolean;
  /** Authenticate by this bearer token instead of client certificates (no client certificate is requested). */
  token?: string;
  gitVersion?: string;
  /** Fixed port (0 or unset: any free one). */
  port?: number;
  /** Delay before controllers react to a write (default 0: on the next tick). */
  reconcileDelayMs?: number;
  /** Namespaces that exist from the start; default default, kube-system, kube-public, kube-node-lease. */
  namespaces?: string[];
}

export interface KubeApiServer {
  url: string;
  port: number;
  /** kubeconfig text with the CA and the admin client certificate inlined (or the token). */
  kubeconfig: string;
  kubeconfigPath: string;
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
  /** The controller list; tests may add to or remove from it. */
  controllers: Controller[];
  validators: Validator[];
  /** Runs the controllers now instead of waiting for the scheduled pass. */
  reconcile(): void;
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

function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function gvOf(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.indexOf("/");
  return i < 0
    ? { group: "", version: apiVersion }
    : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

export async function startKubeApiServer(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const pki = opts.pki ?? createPki({ cn: `kubehyve-test-ca-${process.pid}-${Date.now()}` });
  const builtins = builtinResources();
  const controllers = opts.controllers ?? defaultControllers();
  const validators = opts.validators ?? [];
  const requests: RequestLogEntry[] = [];
  const faults: Fault[] = [];
  const held = new Set<string>();
  // group/resource/namespace/name -> object; one copy per group, served at every version of it.
  const store = new Map<string, Obj>();
  // The last configuration each manager applied to an object, to prune fields it dropped.
  const appliedBy = new Map<string, Obj>();
  let resourceVersion = 100;
  let reconcileTimer: ReturnType<typeof setTimeout> | undefined;

  const key = (res: ServedResource, namespace: string | undefined, name: string) =>
    `${res.group}/${res.resource}/${res.namespaced ? (namespace ?? "") : ""}/${name}`;

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

  function bump(obj: Obj): void {
    resourceVersion++;
    (obj.metadata as Obj).resourceVersion = String(resourceVersion);
  }

  function reconcile(): void {
    if (reconcileTimer) clearTimeout(reconcileTimer);
    reconcileTimer = undefined;
    // Several passes: a status one controller writes (a CRD Established) can change what another computes.
    for (let pass = 0; pass < 3; pass++) {
      let changed = false;
      for (const controller of controllers) {
        for (const owned of controller.owns) {
          for (const obj of view.list(owned)) {
            const status = controller.reconcile(obj, view);
            if (status === undefined || JSON.stringify(status) === JSON.stringify(obj.status)) continue;
            obj.status = status;
            bump(obj);
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

  function stamp(res: ServedResource, obj: Obj, previous: Obj | undefined): Obj {
    const meta = obj.metadata as Obj;
    if (previous) {
      const prevMeta = previous.metadata as Obj;
      meta.uid = prevMeta.uid;
      meta.creationTimestamp = prevMeta.creationTimestamp;
      meta.generation =
        specPart(previous) === specPart(obj) ? prevMeta.generation : Number(prevMeta.generation ?? 1) + 1;
      if (res.status) obj.status = previous.status;
    } else {
      meta.uid = crypto.randomUUID();
      meta.creationTimestamp = nowRfc3339();
      meta.generation = 1;
      if (res.status) delete obj.status;
    }
    bump(obj);
    return obj;
  }

  /** Schema problems of a custom resource; status is left out where a subresource owns it. */
  function schemaProblems(res: ServedResource, obj: Obj): SchemaProblem[] {
    if (!res.schema) return [];
    const body = clone(obj);
    if (res.status) delete body.status;
    return validateAgainstSchema(body, res.schema);
  }

  function validate(res: ServedResource, obj: Obj, name: string, strict = false): void {
    const causes: StatusCause[] = [];
    const problems = schemaProblems(res, obj);
    const unknown = problems.filter((p) => p.kind === "unknown");
    if (strict && unknown.length) {
      // fieldValidation=Strict on create/update: a BadRequest listing the fields (runtime.StrictDecodingError).
      throw badRequest(
        `strict decoding error: ${unknown.map((u) => `unknown field "${u.field}"`).join(", ")}`,
      );
    }
    for (const p of problems) {
      if (p.kind === "unknown") continue;
      causes.push({ reason: CAUSE_REASON[p.kind], message: p.message, field: p.field });
    }
    const pattern = res.kind === "Namespace" || res.kind === "Service" ? NAME_LABEL : NAME_SUBDOMAIN;
    if (!name) {
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

  function checkBody(res: ServedResource, body: unknown, namespace: string | undefined, name?: string): Obj {
    if (!isObj(body))
      throw badRequest(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
      );
    const expected = res.group ? `${res.group}/${res.version}` : res.version;
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

  function save(res: ServedResource, obj: Obj): Obj {
    const meta = obj.metadata as Obj;
    store.set(key(res, meta.namespace as string | undefined, String(meta.name)), obj);
    if (res.kind === "Namespace") obj.status ??= { phase: "Active" };
    scheduleReconcile();
    return obj;
  }

  function remove(res: ServedResource, namespace: string | undefined, name: string): Obj | undefined {
    const k = key(res, namespace, name);
    const obj = store.get(k);
    if (!obj) return undefined;
    store.delete(k);
    for (const a of [...appliedBy.keys()]) if (a.endsWith(`|${k}`)) appliedBy.delete(a);
    if (res.kind === "Namespace") {
      // The namespace controller deletes everything in a namespace before the namespace itself goes.
      for (const k2 of [...store.keys()]) if (k2.split("/")[2] === name) store.delete(k2);
    }
    if (res.kind === "CustomResourceDefinition") {
      for (const r of resourcesOfCrd(obj))
        for (const k2 of [...store.keys()]) if (k2.startsWith(`${r.group}/${r.resource}/`)) store.delete(k2);
    }
    scheduleReconcile();
    return obj;
  }

  /** An object as served at `res`'s version; built-in list items carry no kind/apiVersion on the wire. */
  function present(res: ServedResource, obj: Obj, inList = false): Obj {
    const out = clone(obj);
    out.apiVersion = res.group ? `${res.group}/${res.version}` : res.version;
    if (inList && !res.crd) {
      delete out.apiVersion;
      delete out.kind;
    }
    return out;
  }

  function applyPatch(
    res: ServedResource,
    namespace: string | undefined,
    name: string,
    text: string,
    url: URL,
    sub?: string,
  ): Response {
    const manager = url.searchParams.get("fieldManager");
    if (!manager) {
      throw new HttpError(
        422,
        statusBody(
          422,
          "Invalid",
          'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
          {
            group: "meta.k8s.io",
            kind: "PatchOptions",
            causes: [
              {
                reason: "FieldValueRequired",
                message: "Required value: is required for apply patch",
                field: "fieldManager",
              },
            ],
          },
        ),
      );
    }
    let body: unknown;
    try {
      body = parseYaml(text);
    } catch (e) {
      throw badRequest(`error decoding YAML: ${(e as Error).message.split("\n")[0]}`);
    }
    const applied = checkBody(res, body, namespace, name);
    if (res.namespaced && namespace) requireNamespace(namespace);
    const k = key(res, namespace, name);
    const live = store.get(k);
    const ak = `${manager}|${sub ?? ""}|${k}`;
    let next: Obj;
    if (sub === "status") {
      if (!live) throw notFound(res, name);
      next = clone(live);
      next.status = mergeApplied(
        live.status as Obj | undefined,
        (applied.status ?? {}) as Obj,
        appliedBy.get(ak)?.status as Obj,
      );
      bump(next);
    } else {
      const forStore = clone(applied);
      // With a status subresource, writes to the main resource leave status alone.
      if (res.status) delete forStore.status;
      const unknown = schemaProblems(res, forStore).filter((p) => p.kind === "unknown");
      if (unknown.length) throw typedPatchError(res, namespace, name, unknown);
      next = mergeApplied(live, forStore, appliedBy.get(ak));
      validate(res, next, name);
      stamp(res, next, live);
    }
    const meta = next.metadata as Obj;
    const managed = (Array.isArray(meta.managedFields) ? (meta.managedFields as Obj[]) : []).filter(
      (m) => !(m.manager === manager && m.operation === "Apply" && (m.subresource ?? "") === (sub ?? "")),
    );
    managed.push({
      manager,
      operation: "Apply",
      apiVersion: applied.apiVersion,
      time: nowRfc3339(),
      fieldsType: "FieldsV1",
      fieldsV1: fieldsV1(applied),
      ...(sub ? { subresource: sub } : {}),
    });
    meta.managedFields = managed;
    appliedBy.set(ak, clone(applied));
    save(res, next);
    return json(live ? 200 : 201, present(res, next));
  }

  function handleResource(
    req: Request,
    url: URL,
    res: ServedResource,
    namespace: string | undefined,
    name?: string,
    sub?: string,
  ): Promise<Response> | Response {
    const method = req.method;
    if (sub !== undefined && sub !== "status") throw NO_RESOURCE();
    if (sub === "status" && !res.status) throw NO_RESOURCE();
    if (url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1") {
      // Nothing in kubehyve watches; a test that starts to should fail loudly rather than get a list.
      throw new HttpError(
        405,
        statusBody(405, "MethodNotAllowed", "watch is not implemented by the test server"),
      );
    }
    if (name === undefined) {
      if (method === "GET") {
        const labels = parseSelector(url, "labelSelector", parseLabelSelector);
        const fields = parseSelector(url, "fieldSelector", parseFieldSelector);
        const items = objectsOf(res.group, res.resource, res.namespaced ? namespace : undefined)
          .filter((o) => matchesLabels(labels, (o.metadata as Obj).labels as Record<string, string>))
          .filter((o) => fields.every((f) => f(o)))
          .map((o) => present(res, o, true));
        return json(200, {
          kind: `${res.kind}List`,
          apiVersion: res.group ? `${res.group}/${res.version}` : res.version,
          metadata: { resourceVersion: String(resourceVersion) },
          items,
        });
      }
      if (method === "POST") {
        return req.text().then((text) => {
          const obj = checkBody(res, parseBody(text), namespace);
          const meta = obj.metadata as Obj;
          const objName = String(meta.name ?? "");
          if (res.namespaced && namespace) requireNamespace(namespace);
          validate(res, obj, objName, strictFields(url));
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
          return json(201, present(res, save(res, stamp(res, obj, undefined))));
        });
      }
      throw methodNotAllowed(method);
    }
    const k = key(res, namespace, name);
    if (method === "GET") {
      const obj = store.get(k);
      if (!obj) throw notFound(res, name);
      return json(200, present(res, obj));
    }
    if (method === "DELETE") {
      const obj = remove(res, namespace, name);
      if (!obj) throw notFound(res, name);
      return json(200, present(res, obj));
    }
    if (method === "PUT") {
      return req.text().then((text) => {
        const obj = checkBody(res, parseBody(text), namespace, name);
        const live = store.get(k);
        if (!live) throw notFound(res, name);
        const rv = (obj.metadata as Obj).resourceVersion;
        if (rv !== undefined && rv !== (live.metadata as Obj).resourceVersion) throw conflict(res, name);
        let next: Obj;
        if (sub === "status") {
          next = clone(live);
          next.status = obj.status;
          bump(next);
        } else {
          validate(res, obj, name, strictFields(url));
          next = stamp(res, obj, live);
          (next.metadata as Obj).managedFields = (live.metadata as Obj).managedFields;
        }
        return json(200, present(res, save(res, next)));
      });
    }
    if (method === "PATCH") {
      const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
      return req.text().then((text) => {
        if (type === "application/apply-patch+yaml") return applyPatch(res, namespace, name, text, url, sub);
        // Strategic merge differs from a JSON merge patch only for lists with patch keys; none matter here.
        if (type === "application/merge-patch+json" || type === "application/strategic-merge-patch+json") {
          const live = store.get(k);
          if (!live) throw notFound(res, name);
          const patch = parseBody(text);
          let next: Obj;
          if (sub === "status") {
            next = clone(live);
            next.status = mergePatch(live.status, isObj(patch) ? patch.status : undefined) as Obj;
            bump(next);
          } else {
            next = mergePatch(live, patch) as Obj;
            if (res.status) next.status = live.status;
            validate(res, next, name, strictFields(url));
            stamp(res, next, live);
          }
          return json(200, present(res, save(res, next)));
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

  function strictFields(url: URL): boolean {
    return url.searchParams.get("fieldValidation") === "Strict";
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
    unknown: SchemaProblem[],
  ): HttpError {
    const gvk = `${res.group}/${res.version}, Kind=${res.kind}`;
    const lines = unknown.map((u) => `.${u.field}: field not declared in schema`);
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

  function parseBody(text: string): unknown {
    try {
      return JSON.parse(text);
    } catch {
      try {
        return parseYaml(text);
      } catch (e) {
        throw badRequest(`couldn't decode the request body: ${(e as Error).message.split("\n")[0]}`);
      }
    }
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

  function route(req: Request, url: URL): Response | Promise<Response> {
    const segments = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (segments.length === 1 && segments[0] === "version") {
      // Shape of k8s.io/apimachinery/pkg/version Info.
      const gitVersion = opts.gitVersion ?? "v1.35.0";
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
      const answer = discovery(req, segments);
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
    return handleResource(req, url, res, namespace, name, sub);
  }

  async function takeFault(req: Request, url: URL): Promise<Response | undefined> {
    const fault = faults.find(
      (f) => f.times > 0 && (!f.path || f.path.test(url.pathname)) && (!f.method || f.method === req.method),
    );
    if (!fault) return undefined;
    fault.times--;
    if (fault.delayMs) await Bun.sleep(fault.delayMs);
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
    let response: Response;
    try {
      if (opts.token !== undefined && req.headers.get("authorization") !== `Bearer ${opts.token}`) {
        response = json(401, statusBody(401, "Unauthorized", "Unauthorized"));
      } else {
        if (req.method === "PATCH" || req.method === "POST" || req.method === "PUT") {
          entry.body = await req.clone().text();
        }
        response = (await takeFault(req, url)) ?? (await route(req, url));
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
    entry.status = response.status;
    return response;
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
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
  const kubeconfig = stringifyYaml({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      { name: "cluster.local", cluster: { "certificate-authority-data": b64(pki.caCert), server: url } },
    ],
    contexts: [
      {
        name: "kubernetes-admin@cluster.local",
        context: { cluster: "cluster.local", user: "kubernetes-admin" },
      },
    ],
    "current-context": "kubernetes-admin@cluster.local",
    preferences: {},
    users: [
      {
        name: "kubernetes-admin",
        user:
          opts.token !== undefined
            ? { token: opts.token }
            : { "client-certificate-data": b64(pki.clientCert), "client-key-data": b64(pki.clientKey) },
      },
    ],
  });
  const kubeconfigPath = join(pki.dir, `admin-${port}.conf`);
  writeFileSync(kubeconfigPath, kubeconfig, { mode: 0o600 });

  return {
    url,
    port,
    kubeconfig,
    kubeconfigPath,
    caCert: pki.caCert,
    pki,
    requests,
    controllers,
    validators,
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
      return clone(save(res, copy));
    },
    get(apiVersion, kind, name, namespace) {
      const res = findByKind(apiVersion, kind);
      const obj = store.get(key(res, namespace, name));
      return obj ? present(res, obj) : undefined;
    },
    list(apiVersion, kind, namespace) {
      const res = findByKind(apiVersion, kind);
      return objectsOf(res.group, res.resource, res.namespaced ? namespace : undefined).map((o) =>
        present(res, o),
      );
    },
    delete(apiVersion, kind, name, namespace) {
      return remove(findByKind(apiVersion, kind), namespace, name) !== undefined;
    },
    setNodeReady(name, ready, extra = {}) {
      const res = findByKind("v1", "Node");
      const k = key(res, undefined, name);
      const node =
        store.get(k) ??
        stamp(
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
          kubeletVersion: opts.gitVersion ?? "v1.35.0",
          operatingSystem: "linux",
          osImage: "Fedora CoreOS 43.20260101.3.0",
        },
      };
      bump(node);
      save(res, node);
      return clone(node);
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
    async stop() {
      if (reconcileTimer) clearTimeout(reconcileTimer);
      await server.stop(true);
      if (!opts.pki) pki.remove();
    },
  };
}
