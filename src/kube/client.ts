/**
 * The Kubernetes client: REST over ofetch (Bun's fetch underneath, whose `tls` option ofetch passes
 * through), TLS always verified against the kubeconfig's CA, client certificate or bearer token.
 * kind -> resource comes from discovery; writes are server-side apply, one object per request.
 */
import { ofetch } from "ofetch";
import { sleep } from "../lib/concurrency.ts";
import { CancelledError } from "../lib/errors.ts";
import { formatDuration } from "../lib/values.ts";
import {
  AGGREGATED_DISCOVERY_ACCEPT,
  parseAggregatedDiscovery,
  parseResourceList,
  type ResourceInfo,
  resourceKey,
  resourcePath,
  splitApiVersion,
} from "./discovery.ts";
import { type KubeCredentials, loadKubeconfig } from "./kubeconfig.ts";
import { FIELD_MANAGER } from "./ownership.ts";
import { objectShapeProblem } from "./shape.ts";
import {
  isWebhookCallFailure,
  KubeApiError,
  KubeApplyConflictError,
  KubeNotServedError,
  KubeRequestError,
  KubeTransportError,
} from "./status.ts";
import {
  type ApplyOptions,
  type DeleteOptions,
  isJsonObject,
  type KubeClient,
  type KubeObject,
  type ListOptions,
} from "./types.ts";

export interface KubeClientOptions {
  /** Context to use instead of current-context. */
  context?: string;
  /**
   * Retries after the first attempt on 429, 5xx and refused connections (default 5). A request the
   * server never answered (timeoutMs passed) is retried once at most, whatever this says.
   */
  retries?: number;
  /** First backoff delay; doubled per retry up to maxDelayMs (defaults 200 ms and 5 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Longest Retry-After the client waits for (default 30 s); a longer one is cut to this. */
  maxRetryAfterMs?: number;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /**
   * How long a write refused because an admission webhook could not be called is retried (default
   * 2 min), whatever `retries` says: right after an add-on's install its webhook refuses for a while
   * (see isWebhookCallFailure), and waiting it out is the only fix.
   */
  webhookRetryMs?: number;
  /** Cancels every request and backoff wait of this client. */
  signal?: AbortSignal;
  /** The field manager of every write (default kubehyve); the server records who owns which field by it. */
  fieldManager?: string;
  /** Called with the text of each Warning header the server sends (deprecations, unknown fields under Warn). */
  onWarning?: (text: string) => void;
  /**
   * Most bytes of one answer (default MAX_RESPONSE_BYTES): a longer one is stopped there and is an
   * error, not read into memory until the timeout.
   */
  maxResponseBytes?: number;
  /** Objects asked for per chunk of a list (`limit`, default 500 as client-go's pager asks). */
  listPageSize?: number;
}

/**
 * Most chunks of one list: a server that hands out continue tokens without end is not followed
 * forever (500 000 objects at the default page size).
 */
const MAX_LIST_PAGES = 1000;

/**
 * The longest answer read by default. What kubehyve asks for is one object or a stage's objects of
 * one kind by label (its largest: Calico's CRDs, a few MiB as JSON); a server that sends more is
 * broken or hostile, and at loopback speed a whole timeout of it is gigabytes.
 */
export const MAX_RESPONSE_BYTES = 128 * 1024 * 1024;

export interface KubeClientImpl extends KubeClient {
  readonly credentials: KubeCredentials;
  /** Forgets what discovery found; the next call asks the server again (after applying CRDs). */
  refreshDiscovery(): Promise<void>;
  /** The resource serving apiVersion+kind, from discovery. */
  resourceFor(apiVersion: string, kind: string): Promise<ResourceInfo>;
  servedResources(): Promise<ResourceInfo[]>;
}

const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRY_TRANSPORT = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ConnectionRefused"]);
/**
 * Attempts of one request that may go unanswered. A 503 or a refused connection is over at once and
 * says the server is (re)starting, so waiting for it is cheap and often works; a server that took
 * the connection and said nothing for a whole timeout is hung or overloaded, and six such waits of
 * 30 s each would keep a command silent for three minutes. One more try covers a connection lost
 * on the way; a second silence is the answer.
 */
const UNANSWERED_ATTEMPTS = 2;
const TLS_CODES: Record<string, string> = {
  SELF_SIGNED_CERT_IN_CHAIN: "the server certificate is not signed by the kubeconfig's certificate authority",
  DEPTH_ZERO_SELF_SIGNED_CERT:
    "the server certificate is self-signed and not the kubeconfig's certificate authority",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    "the server certificate is not signed by the kubeconfig's certificate authority",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    "the server certificate is not signed by the kubeconfig's certificate authority",
  ERR_TLS_CERT_ALTNAME_INVALID: "the server certificate does not name this host or address",
  CERT_HAS_EXPIRED: "the server certificate has expired",
  EPROTO: "the server may have refused the client certificate",
};

interface Response<T> {
  status: number;
  data: T;
  headers: Headers;
}

/** The error and its causes: ofetch wraps fetch's error, which may wrap the system one. */
function causes(error: unknown): { code?: unknown; name?: unknown; cause?: unknown }[] {
  const out = [];
  let e: unknown = error;
  for (let depth = 0; depth < 5 && typeof e === "object" && e !== null; depth++) {
    out.push(e as { code?: unknown; name?: unknown; cause?: unknown });
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

function errorCode(error: unknown): string {
  for (const e of causes(error)) {
    if (e.name === "TimeoutError") return "TimeoutError";
    if (typeof e.code === "string" && e.code) return e.code;
  }
  return "";
}

function errorText(error: unknown): string {
  const cause = (error as { cause?: { message?: string } }).cause;
  return cause?.message ?? (error as Error).message ?? String(error);
}

/**
 * A 5xx that will fail the same way every time. Server-side apply of a field the schema lacks is
 * answered 500 "failed to create typed patch object" (apimachinery managedfields), not a 4xx.
 */
function isPermanent(status: number, body: string): boolean {
  return status === 500 && body.includes("failed to create typed patch object");
}

/** The texts of a Warning header (`299 - "text", 299 - "other"`, RFC 7234 quoted strings). */
export function parseWarnings(header: string | null): string[] {
  if (!header) return [];
  const out: string[] = [];
  const re = /\d{3} \S+ "((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(header); m; m = re.exec(header)) out.push(m[1]!.replace(/\\(.)/g, "$1"));
  return out;
}

/** Seconds of a Retry-After header (delta-seconds or an HTTP date), undefined when absent or bad. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}

/** An answer of the right status and the wrong shape, shown with its start. */
function badAnswer(path: string, status: number, what: string, data: unknown, method = "GET"): KubeApiError {
  const text = typeof data === "string" ? data : (JSON.stringify(data) ?? String(data));
  return new KubeApiError(
    method,
    path,
    status,
    "BadResponse",
    `${what}: ${text.length > 200 ? `${text.slice(0, 200)}…` : text}`,
  );
}

/**
 * The object an answer holds, when it is the one asked for and of the shape KubeObject promises.
 * What callers decide on (whose object it is, what it holds) must be that object: an empty or
 * foreign answer taken for it reads as "not ours" or "has no port", and a field of the wrong type
 * as a TypeError in the code that reads it. A kind or apiVersion the answer leaves out is the one
 * asked for, as list items' are.
 */
function theObject<T>(
  method: string,
  path: string,
  res: Response<unknown>,
  apiVersion: string,
  kind: string,
  name: string,
  ns: string | undefined,
): T {
  const data = res.data;
  const shown = `${kind} ${ns ? `${ns}/` : ""}${name}`;
  if (
    !isJsonObject(data) ||
    !isJsonObject(data.metadata) ||
    data.metadata.name !== name ||
    (data.kind !== undefined && data.kind !== kind)
  )
    throw badAnswer(path, res.status, `the answer is not ${shown}`, data, method);
  const problem = objectShapeProblem(data, apiVersion, kind);
  if (problem)
    throw badAnswer(path, res.status, `the answer for ${shown} is malformed: ${problem}`, data, method);
  return { ...data, apiVersion: data.apiVersion ?? apiVersion, kind } as T;
}

/** 1 KiB, 128 MiB: the bound in a message. */
function shownBytes(n: number): string {
  for (const [unit, size] of [
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const)
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  return `${n} bytes`;
}

/** Thrown while reading an answer's body: the answer is longer than the client reads. */
class TooLong extends Error {}

/**
 * The body of an answer as text, at most `max` bytes: a Content-Length over it is refused before
 * reading, and a body that goes on past it is cancelled there. The request's signal still bounds
 * the time (a body that trickles in is a timeout).
 */
async function boundedText(
  body: ReadableStream<Uint8Array> | null | undefined,
  headers: Headers,
  max: number,
) {
  const declared = Number(headers.get("content-length"));
  if (Number.isFinite(declared) && declared > max) {
    await body?.cancel().catch(() => {});
    throw new TooLong();
  }
  if (!body) return "";
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.byteLength;
    if (length > max) {
      await reader.cancel().catch(() => {});
      throw new TooLong();
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** "a ConfigMapList", "an IngressList". */
const listOf = (kind: string) => `${/^[AEIOU]/.test(kind) ? "an" : "a"} ${kind}List`;

/**
 * The items of one list answer, each with its kind and apiVersion, or an error when the answer is
 * no list of that kind.
 */
function listItems<T extends KubeObject>(
  res: Response<unknown>,
  path: string,
  info: ResourceInfo,
  apiVersion: string,
  kind: string,
): T[] {
  // Go encodes an empty list's items as null or []; anything else is no list, and taken for an
  // empty one it would hide what is there (another Ingress routing the same host).
  const items = isJsonObject(res.data) ? res.data.items : undefined;
  if (
    (items !== null && !Array.isArray(items)) ||
    items?.some((item) => !isJsonObject(item) || !isJsonObject(item.metadata))
  )
    throw badAnswer(path, res.status, `the answer is not ${listOf(kind)}`, res.data);
  // A list of another kind or version is not this one, whatever its items look like (a SecretList
  // taken for ConfigMaps). A CRD may name its list kind (spec.names.listKind); built-in kinds'
  // lists are the kind and "List" (apimachinery's List types).
  const listed: Record<string, unknown> = isJsonObject(res.data) ? res.data : {};
  const builtIn = !info.group.includes(".") || info.group.endsWith(".k8s.io");
  if (
    (listed.apiVersion !== undefined && listed.apiVersion !== apiVersion) ||
    (builtIn && listed.kind !== undefined && listed.kind !== `${kind}List`)
  )
    throw badAnswer(path, res.status, `the answer is not ${listOf(kind)} of ${apiVersion}`, res.data);
  for (const [i, item] of (items ?? []).entries()) {
    // Pruning and down delete by what a list names: an item must name one object.
    const problem =
      objectShapeProblem(item, apiVersion, kind) ??
      (typeof item.metadata.name !== "string" || !item.metadata.name
        ? "metadata.name is missing"
        : undefined);
    if (problem)
      throw badAnswer(path, res.status, `item ${i + 1} of ${listOf(kind)} is malformed: ${problem}`, item);
  }
  // List items carry no kind/apiVersion on the wire (see list-serviceaccounts.client-go-golden.http).
  return (items ?? []).map((item) => ({ ...item, apiVersion, kind }));
}

/**
 * A client for the cluster in a kubeconfig file (path) or already resolved credentials.
 */
export async function createKubeClient(
  kubeconfig: string | KubeCredentials,
  opts: KubeClientOptions = {},
): Promise<KubeClientImpl> {
  const creds =
    typeof kubeconfig === "string" ? await loadKubeconfig(kubeconfig, { context: opts.context }) : kubeconfig;
  const retries = opts.retries ?? 5;
  const webhookRetryMs = opts.webhookRetryMs ?? 120_000;
  const baseDelay = opts.baseDelayMs ?? 200;
  const maxDelay = opts.maxDelayMs ?? 5000;
  const fieldManager = opts.fieldManager ?? FIELD_MANAGER;
  const maxResponseBytes = opts.maxResponseBytes ?? MAX_RESPONSE_BYTES;
  const maxRetryAfter = opts.maxRetryAfterMs ?? 30_000;
  const listPageSize = opts.listPageSize ?? 500;
  const tls = { ca: creds.ca, cert: creds.cert, key: creds.key, rejectUnauthorized: true };
  const authHeaders: Record<string, string> = creds.token ? { Authorization: `Bearer ${creds.token}` } : {};
  const http = ofetch.create({ baseURL: creds.server, retry: 0, ignoreResponseError: true });

  async function request<T = unknown>(
    method: string,
    path: string,
    init: {
      query?: Record<string, string | undefined>;
      body?: string;
      contentType?: string;
      accept?: string;
    } = {},
  ): Promise<Response<T>> {
    const query = Object.fromEntries(
      Object.entries(init.query ?? {}).filter(([, v]) => v !== undefined && v !== ""),
    );
    const shown = Object.keys(query).length
      ? `${path}?${new URLSearchParams(query as Record<string, string>)}`
      : path;
    // When a webhook first refused this request: its retries are bounded by time, not by count.
    let webhookSince: number | undefined;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const started = Date.now();
    let unanswered = 0;
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw new CancelledError();
      const signals = [AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])];
      let wait: number;
      try {
        const res = await http.raw(path, {
          method,
          query,
          body: init.body,
          headers: {
            Accept: init.accept ?? "application/json",
            "User-Agent": "kubehyve",
            ...(init.contentType ? { "Content-Type": init.contentType } : {}),
            ...authHeaders,
          },
          // Bun-specific fetch option; ofetch hands its options to fetch unchanged.
          tls,
          signal: AbortSignal.any(signals),
          responseType: "stream",
          // kube-apiserver answers its REST paths itself and never sends a client elsewhere; a
          // redirect followed would take the credentials and the question to another host, and
          // its answer for the cluster's.
          redirect: "manual",
        } as Parameters<typeof http.raw>[1]);
        let text: string;
        try {
          text = await boundedText(
            res._data as ReadableStream<Uint8Array> | undefined,
            res.headers,
            maxResponseBytes,
          );
        } catch (error) {
          if (!(error instanceof TooLong)) throw error;
          throw new KubeApiError(
            method,
            shown,
            res.status,
            "BadResponse",
            `the answer is longer than ${shownBytes(maxResponseBytes)}, the most this client reads; it stopped there`,
          );
        }
        if (res.status >= 300 && res.status < 400) {
          const location = res.headers.get("location");
          throw new KubeApiError(
            method,
            shown,
            res.status,
            "Redirect",
            `the API server ${creds.server} ${location ? `redirects to ${location}` : "answers with a redirect"}; an API server answers itself, so it is not followed`,
          );
        }
        if (opts.onWarning) for (const w of parseWarnings(res.headers.get("warning"))) opts.onWarning(w);
        if (res.status < 400) {
          let data: unknown = text;
          if (text && (res.headers.get("content-type") ?? "").includes("json")) {
            try {
              data = JSON.parse(text);
            } catch {
              throw badAnswer(shown, res.status, "the answer says it is JSON and is not", text, method);
            }
          }
          return { status: res.status, data: data as T, headers: res.headers };
        }
        if (isWebhookCallFailure(res.status, text)) {
          webhookSince ??= Date.now();
          if (Date.now() - webhookSince >= webhookRetryMs) {
            const e = KubeApiError.fromResponse(method, shown, res.status, text, attempt);
            e.message = `${e.message}; the webhook has refused for ${Math.round((Date.now() - webhookSince) / 1000)} s`;
            throw e;
          }
        } else if (!RETRY_STATUS.has(res.status) || attempt > retries || isPermanent(res.status, text)) {
          const e = KubeApiError.fromResponse(method, shown, res.status, text, attempt);
          // Waited a fraction of what was asked: the user hears how long the server wanted.
          const asked = RETRY_STATUS.has(res.status)
            ? parseRetryAfter(res.headers.get("retry-after"))
            : undefined;
          if (asked !== undefined && asked * 1000 > maxRetryAfter) {
            const note = `the server asked to retry after ${formatDuration(asked * 1000)}, and the client waits at most ${formatDuration(maxRetryAfter)}`;
            e.message = attempt > 1 ? `${e.message.slice(0, -1)}; ${note})` : `${e.message} (${note})`;
          }
          throw e;
        }
        const retryAfter = parseRetryAfter(res.headers.get("retry-after"));
        wait =
          retryAfter !== undefined
            ? Math.min(Math.max(retryAfter * 1000, backoff(attempt)), maxRetryAfter)
            : backoff(attempt);
      } catch (error) {
        if (error instanceof KubeApiError || error instanceof CancelledError) throw error;
        if (opts.signal?.aborted) throw new CancelledError();
        const code = errorCode(error);
        const url = `${creds.server}${shown}`;
        if (code in TLS_CODES || code.startsWith("ERR_TLS") || code.includes("CERT")) {
          throw new KubeTransportError(
            method,
            url,
            code,
            `${code === "EPROTO" ? "TLS handshake failed" : "TLS verification failed"} (${code}): ${TLS_CODES[code] ?? errorText(error)} (kubeconfig ${creds.source})`,
          );
        }
        // ETIMEDOUT is the system's own connect timeout: no answer either.
        if (code === "TimeoutError" || code === "ETIMEDOUT") {
          if (++unanswered >= UNANSWERED_ATTEMPTS || attempt > retries) {
            const within =
              code === "ETIMEDOUT" ? "(the connection timed out)" : `within ${formatDuration(timeoutMs)}`;
            const detail = `no answer from the API server ${creds.server} ${within}; waited ${formatDuration(Date.now() - started)} in all`;
            throw new KubeTransportError(method, url, "timeout", detail, attempt);
          }
          wait = backoff(attempt);
        } else if (RETRY_TRANSPORT.has(code)) {
          if (attempt > retries) {
            throw new KubeTransportError(
              method,
              url,
              code,
              code === "ECONNRESET"
                ? "connection reset by the server (a server also does this when it rejects the client certificate)"
                : `cannot connect (${code}): ${errorText(error)}`,
              attempt,
            );
          }
          wait = backoff(attempt);
        } else {
          throw new KubeTransportError(method, url, code || "unknown", errorText(error), attempt);
        }
      }
      await sleep(wait, opts.signal);
    }
  }

  function backoff(attempt: number): number {
    const exp = Math.min(maxDelay, baseDelay * 2 ** (attempt - 1));
    // Jitter keeps several clients from retrying in lockstep against a recovering server.
    return Math.round(exp * (0.8 + Math.random() * 0.4));
  }

  let resources = new Map<string, ResourceInfo>();
  let aggregated: Promise<boolean> | undefined;
  const legacyFetched = new Map<string, Promise<void>>();

  function remember(list: ResourceInfo[]): void {
    for (const r of list) resources.set(resourceKey(r.group, r.version, r.kind), r);
  }

  /** Aggregated discovery from /api and /apis; false when the server answers in the legacy format. */
  async function loadAggregated(): Promise<boolean> {
    for (const path of ["/api", "/apis"]) {
      const res = await request<Record<string, unknown>>("GET", path, {
        accept: AGGREGATED_DISCOVERY_ACCEPT,
      });
      if (typeof res.data !== "object" || res.data?.kind !== "APIGroupDiscoveryList") return false;
      remember(parseAggregatedDiscovery(res.data));
    }
    return true;
  }

  /** Legacy discovery of one group version (`/api/v1`, `/apis/apps/v1`); a 404 means it is not served. */
  async function loadLegacy(group: string, version: string): Promise<void> {
    const path = group ? `/apis/${group}/${version}` : `/api/${version}`;
    try {
      const res = await request("GET", path);
      let list: ResourceInfo[];
      try {
        list = parseResourceList(res.data);
      } catch {
        throw badAnswer(path, res.status, "the answer is not an APIResourceList", res.data);
      }
      remember(list);
    } catch (error) {
      if (error instanceof KubeApiError && error.httpStatus === 404) return;
      throw error;
    }
  }

  async function lookup(apiVersion: string, kind: string): Promise<ResourceInfo | undefined> {
    const { group, version } = splitApiVersion(apiVersion);
    const key = resourceKey(group, version, kind);
    const hit = resources.get(key);
    if (hit) return hit;
    aggregated ??= loadAggregated().catch((error) => {
      aggregated = undefined;
      throw error;
    });
    if (!(await aggregated)) {
      const gv = `${group}/${version}`;
      let pending = legacyFetched.get(gv);
      if (!pending) {
        pending = loadLegacy(group, version).catch((error) => {
          legacyFetched.delete(gv);
          throw error;
        });
        legacyFetched.set(gv, pending);
      }
      await pending;
    }
    return resources.get(key);
  }

  async function resourceFor(apiVersion: string, kind: string): Promise<ResourceInfo> {
    if (!apiVersion || !kind) {
      throw new KubeRequestError(
        `an object needs apiVersion and kind (got ${JSON.stringify({ apiVersion, kind })})`,
      );
    }
    let info = await lookup(apiVersion, kind);
    if (!info) {
      // A kind unknown to a cached discovery may have appeared since (a CRD applied by another run).
      await refreshDiscovery();
      info = await lookup(apiVersion, kind);
    }
    if (!info) {
      throw new KubeNotServedError(
        `the server at ${creds.server} serves no ${kind} in ${apiVersion}`,
        "if a CustomResourceDefinition defines it, apply it and wait until it is Established",
      );
    }
    return info;
  }

  /**
   * Every resource the server serves now, discovery asked again (a CRD applied or deleted since
   * counts): aggregated discovery, or the legacy lists of `/api`'s versions and of each group's
   * preferred version (APIVersions, APIGroupList: k8s.io/apimachinery pkg/apis/meta/v1 types.go).
   */
  async function servedResources(): Promise<ResourceInfo[]> {
    await refreshDiscovery();
    const loaded = loadAggregated();
    aggregated = loaded.catch(() => false);
    if (!(await loaded)) {
      const core = await request<Record<string, unknown>>("GET", "/api");
      const apis = await request<Record<string, unknown>>("GET", "/apis");
      const versions = Array.isArray(core.data?.versions) ? core.data.versions : [];
      const groups = Array.isArray(apis.data?.groups) ? apis.data.groups : [];
      const gvs: string[] = [
        ...versions.filter((v): v is string => typeof v === "string"),
        ...groups
          .map((g: unknown) =>
            isJsonObject(g) && isJsonObject(g.preferredVersion) ? g.preferredVersion.groupVersion : undefined,
          )
          .filter((gv): gv is string => typeof gv === "string"),
      ];
      for (const gv of gvs) {
        const { group, version } = splitApiVersion(gv);
        const pending = loadLegacy(group, version);
        legacyFetched.set(`${group}/${version}`, pending);
        await pending;
      }
    }
    return [...resources.values()];
  }

  async function refreshDiscovery(): Promise<void> {
    resources = new Map();
    aggregated = undefined;
    legacyFetched.clear();
  }

  /**
   * A name or namespace put in a request's path. "." and ".." are no object's name, nor is one
   * with "/" or "%" in it (k8s.io/apimachinery pkg/api/validate/content path.go IsPathSegmentName),
   * and a URL resolves them: DELETE …/namespaces/victim/configmaps/.. is a DELETE of the namespace
   * victim, and kube-apiserver reads an encoded "/" (%2F) in a path as a separator, so the name
   * "../../x" would reach another resource.
   */
  function pathSegment(method: string, kind: string, what: "name" | "namespace", value: string | undefined) {
    if (value === "." || value === ".." || (value !== undefined && /[/%]/.test(value)))
      throw new KubeRequestError(
        `${method} ${kind}: the ${what} ${JSON.stringify(value)} cannot be in a request path: no object is called that`,
      );
  }

  function needNamespace(
    method: string,
    info: ResourceInfo,
    kind: string,
    name: string,
    namespace?: string,
  ): string | undefined {
    pathSegment(method, kind, "name", name);
    if (!info.namespaced) return undefined;
    pathSegment(method, kind, "namespace", namespace);
    if (!namespace) {
      throw new KubeRequestError(
        `${method} ${kind} ${name}: ${info.resource} are namespaced, so a namespace is required`,
      );
    }
    return namespace;
  }

  const client: KubeClientImpl = {
    server: creds.server,
    credentials: creds,
    refreshDiscovery,
    resourceFor,
    servedResources,

    async get<T extends KubeObject = KubeObject>(
      apiVersion: string,
      kind: string,
      name: string,
      namespace?: string,
    ) {
      const info = await resourceFor(apiVersion, kind);
      const ns = needNamespace("GET", info, kind, name, namespace);
      const path = resourcePath(info, ns, name);
      let res: Response<unknown>;
      try {
        res = await request("GET", path);
      } catch (error) {
        if (error instanceof KubeApiError && error.httpStatus === 404) return undefined;
        throw error;
      }
      return theObject<T>("GET", path, res, apiVersion, kind, name, ns);
    },

    async list<T extends KubeObject = KubeObject>(
      apiVersion: string,
      kind: string,
      listOpts: ListOptions = {},
    ) {
      const info = await resourceFor(apiVersion, kind);
      pathSegment("GET", `${kind}List`, "namespace", listOpts.namespace);
      const path = resourcePath(info, listOpts.namespace);
      const selectors = { labelSelector: listOpts.labelSelector, fieldSelector: listOpts.fieldSelector };
      // In chunks, as client-go's pager reads (tools/pager/pager.go): what pruning and down decide on
      // must be the whole list, never the first chunk of it. A token the server no longer honours
      // (410 Expired, its revision compacted) is not followed with the "inconsistent" token the
      // answer offers: the list is read again whole, in one answer (FullListIfExpired).
      const out: T[] = [];
      let token: string | undefined;
      const seen = new Set<string>();
      for (let page = 1; ; page++) {
        let res: Response<unknown>;
        try {
          res = await request("GET", path, {
            query: { ...selectors, limit: String(listPageSize), continue: token },
          });
        } catch (error) {
          if (!(token && error instanceof KubeApiError && error.httpStatus === 410)) throw error;
          const whole = await request("GET", path, { query: selectors });
          return listItems<T>(whole, path, info, apiVersion, kind);
        }
        out.push(...listItems<T>(res, path, info, apiVersion, kind));
        const meta = isJsonObject(res.data) && isJsonObject(res.data.metadata) ? res.data.metadata : {};
        const next = meta.continue;
        if (next === undefined || next === "") return out;
        if (typeof next !== "string")
          throw badAnswer(path, res.status, `the answer's metadata.continue is not a string`, res.data);
        if (seen.has(next) || page >= MAX_LIST_PAGES)
          throw badAnswer(
            path,
            res.status,
            seen.has(next)
              ? "the server hands out a continue token it gave before: the list would never end"
              : `the list goes on past ${MAX_LIST_PAGES} chunks of ${listPageSize}`,
            next,
          );
        seen.add(next);
        token = next;
      }
    },

    async apply<T extends KubeObject = KubeObject>(obj: KubeObject, applyOpts: ApplyOptions = {}) {
      const name = obj?.metadata?.name;
      if (!name) throw new KubeRequestError(`cannot apply ${obj?.kind ?? "an object"} without metadata.name`);
      const info = await resourceFor(obj.apiVersion, obj.kind);
      const ns = needNamespace("PATCH", info, obj.kind, name, obj.metadata.namespace);
      const force = applyOpts.force ?? true;
      const path = resourcePath(info, ns, name);
      let res: Response<unknown>;
      try {
        res = await request("PATCH", path, {
          // Strict, as kubectl sends it: a duplicate key in the manifest is an error, not a silent pick.
          query: {
            ...(applyOpts.dryRun ? { dryRun: "All" } : {}),
            fieldManager,
            ...(force ? { force: "true" } : {}),
            fieldValidation: "Strict",
          },
          // JSON is YAML, and exact: kubectl apply --server-side sends the object as JSON under this
          // content type too. YAML written by the yaml library can fold a deeply indented
          // multi-line string into a different one (Calico's CRDs' descriptions).
          body: JSON.stringify(obj),
          contentType: "application/apply-patch+yaml",
        });
      } catch (error) {
        const conflicts =
          error instanceof KubeApiError ? KubeApplyConflictError.conflictsOf(error) : undefined;
        if (!conflicts) throw error;
        const e = error as KubeApiError;
        throw new KubeApplyConflictError(
          e.method,
          e.path,
          e.apiMessage,
          `${obj.kind} ${ns ? `${ns}/` : ""}${name}`,
          conflicts,
        );
      }
      // What the server stored (or, in a dry run, would store) is what a plan compares and a stage
      // reads back: it must be the object applied.
      return theObject<T>("PATCH", path, res, obj.apiVersion, obj.kind, name, ns);
    },

    async create<T extends KubeObject = KubeObject>(obj: KubeObject, createOpts: { dryRun?: boolean } = {}) {
      const name = obj?.metadata?.name;
      if (!name)
        throw new KubeRequestError(`cannot create ${obj?.kind ?? "an object"} without metadata.name`);
      const info = await resourceFor(obj.apiVersion, obj.kind);
      const ns = needNamespace("POST", info, obj.kind, name, obj.metadata.namespace);
      const path = resourcePath(info, ns);
      const res = await request("POST", path, {
        query: {
          ...(createOpts.dryRun ? { dryRun: "All" } : {}),
          fieldManager,
          fieldValidation: "Strict",
        },
        body: JSON.stringify(obj),
        contentType: "application/json",
      });
      return theObject<T>("POST", path, res, obj.apiVersion, obj.kind, name, ns);
    },

    async mergePatch<T extends KubeObject = KubeObject>(
      ref: { apiVersion: string; kind: string; name: string; namespace?: string },
      patch: Record<string, unknown>,
    ) {
      const info = await resourceFor(ref.apiVersion, ref.kind);
      const ns = needNamespace("PATCH", info, ref.kind, ref.name, ref.namespace);
      const path = resourcePath(info, ns, ref.name);
      const res = await request("PATCH", path, {
        query: { fieldManager, fieldValidation: "Strict" },
        body: JSON.stringify(patch),
        contentType: "application/merge-patch+json",
      });
      return theObject<T>("PATCH", path, res, ref.apiVersion, ref.kind, ref.name, ns);
    },

    async delete(
      apiVersion: string,
      kind: string,
      name: string,
      namespace?: string,
      deleteOpts: DeleteOptions = {},
    ) {
      const info = await resourceFor(apiVersion, kind);
      const ns = needNamespace("DELETE", info, kind, name, namespace);
      try {
        await request("DELETE", resourcePath(info, ns, name), {
          query: deleteOpts.dryRun ? { dryRun: "All" } : {},
          body: JSON.stringify({
            kind: "DeleteOptions",
            apiVersion: "v1",
            propagationPolicy: "Background",
            ...(deleteOpts.preconditions ? { preconditions: deleteOpts.preconditions } : {}),
          }),
          contentType: "application/json",
        });
        return true;
      } catch (error) {
        if (error instanceof KubeApiError && error.httpStatus === 404) return false;
        throw error;
      }
    },

    async version() {
      const res = await request("GET", "/version");
      const data = isJsonObject(res.data) ? res.data : {};
      const { gitVersion, major, minor } = data;
      if (typeof gitVersion !== "string" || !gitVersion) {
        throw new KubeApiError(
          "GET",
          "/version",
          res.status,
          "BadResponse",
          `no gitVersion in ${JSON.stringify(res.data)}`,
        );
      }
      // major and minor are strings in version.Info (k8s.io/apimachinery pkg/version/types.go).
      const str = (v: unknown) => (typeof v === "string" ? v : undefined);
      return { gitVersion, major: str(major), minor: str(minor) };
    },
  };
  return client;
}
