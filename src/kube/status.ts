/**
 * Errors from the Kubernetes API. A failed call answers with a `Status` object (kind Status,
 * apiVersion v1: metadata, status "Failure", message, reason, details, code), see
 * k8s.io/apimachinery/pkg/apis/meta/v1 types.go `Status`; the error keeps its message and reason
 * and names the request, so "what and where" is in one line.
 */
import { KubehyveError } from "../lib/errors.ts";
import { isJsonObject } from "./types.ts";

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

export interface KubeStatus {
  kind: "Status";
  apiVersion?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    causes?: StatusCause[];
    retryAfterSeconds?: number;
  };
}

/** The Status object in a response body, or undefined when the body is something else. */
export function parseStatus(body: unknown): KubeStatus | undefined {
  let value = body;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch {
      return undefined;
    }
  }
  if (!isJsonObject(value)) return undefined;
  const record = value;
  if (record.kind !== "Status") return undefined;
  // Only what has the type of its Go field is kept: an error's words come from a body that is
  // wrong by definition, and `causes: {}` read as a list would replace the error with a TypeError.
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  const details = isJsonObject(record.details) ? record.details : {};
  const causes = Array.isArray(details.causes)
    ? details.causes
        .filter(isJsonObject)
        .map((c) => ({ reason: str(c.reason), message: str(c.message), field: str(c.field) }))
    : undefined;
  return {
    kind: "Status",
    apiVersion: str(record.apiVersion),
    status: str(record.status),
    message: str(record.message),
    reason: str(record.reason),
    code: typeof record.code === "number" ? record.code : undefined,
    details: {
      name: str(details.name),
      group: str(details.group),
      kind: str(details.kind),
      causes,
      retryAfterSeconds:
        typeof details.retryAfterSeconds === "number" ? details.retryAfterSeconds : undefined,
    },
  };
}

/** Most characters of an error answer that is no Status shown in the error. */
const UNSTRUCTURED_TEXT_MAX = 2048;

export class KubeApiError extends KubehyveError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly httpStatus: number,
    readonly reason: string,
    readonly apiMessage: string,
    readonly causes: StatusCause[] = [],
    readonly attempts = 1,
  ) {
    const tries = attempts > 1 ? ` (gave up after ${attempts} attempts)` : "";
    super(`${method} ${path}: ${httpStatus} ${reason}: ${apiMessage}${tries}`);
    this.name = "KubeApiError";
  }

  /** Builds the error from a response: the Status message when there is one, else the raw text. */
  static fromResponse(
    method: string,
    path: string,
    httpStatus: number,
    body: unknown,
    attempts = 1,
  ): KubeApiError {
    const status = parseStatus(body);
    const whole = typeof body === "string" ? body.trim() : "";
    // What is no Status is an HTML page of a proxy, a stack trace: its start says what it is, as
    // client-go keeps only maxUnstructuredResponseTextBytes (2048) of it (rest/request.go).
    const text =
      whole.length > UNSTRUCTURED_TEXT_MAX
        ? `${whole.slice(0, UNSTRUCTURED_TEXT_MAX)}… (${whole.length} characters in all)`
        : whole;
    return new KubeApiError(
      method,
      path,
      httpStatus,
      status?.reason || reasonForCode(httpStatus),
      status?.message || text || "(empty response)",
      status?.details?.causes ?? [],
      attempts,
    );
  }
}

/** The reason a server sends with a code when the body does not name one (StatusReason constants). */
export function reasonForCode(code: number): string {
  const reasons: Record<number, string> = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
  };
  return reasons[code] ?? `HTTP${code}`;
}

/** Transport failures (no HTTP response at all): refused connections, TLS, DNS, timeouts. */
export class KubeTransportError extends KubehyveError {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly code: string,
    detail: string,
    readonly attempts = 1,
  ) {
    const tries = attempts > 1 ? ` (gave up after ${attempts} attempts)` : "";
    super(`${method} ${url}: ${detail}${tries}`);
    this.name = "KubeTransportError";
  }
}

/** A request the client cannot even make: an unknown kind, a namespaced object without a namespace. */
export class KubeRequestError extends KubehyveError {
  constructor(message: string, hint?: string) {
    super(hint ? `${message} (${hint})` : message, undefined, hint);
    this.name = "KubeRequestError";
  }
}

/**
 * A kind the server does not serve (discovery, asked again, does not list it): its CRD is not
 * there, or not yet. The one KubeRequestError that says something about the cluster rather than
 * about the request, and so the one a search may take for "there are none".
 */
export class KubeNotServedError extends KubeRequestError {
  constructor(message: string, hint?: string) {
    super(message, hint);
    this.name = "KubeNotServedError";
  }
}

/** One field another manager owns, as a 409 apply conflict names it (details.causes[].field/message). */
export interface ApplyConflict {
  /** The field path, e.g. `.spec.replicas` or `.spec.template.spec.containers[name="x"].image`. */
  field: string;
  /** The owner as the server names it: `"tigera-operator"` or `"kubectl" using apps/v1 at ...`. */
  manager: string;
}

/**
 * A server-side apply refused because other field managers own fields it changes
 * (k8s.io/apimachinery managedfields/internal/conflict.go NewConflictError: causes of reason
 * FieldManagerConflict, one per field, message `conflict with "manager"`).
 */
export class KubeApplyConflictError extends KubeApiError {
  constructor(
    method: string,
    path: string,
    apiMessage: string,
    readonly object: string,
    readonly conflicts: ApplyConflict[],
  ) {
    super(
      method,
      path,
      409,
      "Conflict",
      apiMessage,
      conflicts.map((c) => ({
        reason: "FieldManagerConflict",
        message: `conflict with ${c.manager}`,
        field: c.field,
      })),
    );
    const list = conflicts.map((c) => `${c.field} (owned by ${c.manager})`).join(", ");
    this.message = `apply of ${object} conflicts with fields other managers own: ${list}`;
    this.name = "KubeApplyConflictError";
  }

  /** The conflicts of a 409 apply answer, or undefined when it is some other Conflict. */
  static conflictsOf(error: KubeApiError): ApplyConflict[] | undefined {
    if (error.httpStatus !== 409) return undefined;
    const found = error.causes
      .filter((c) => c.reason === "FieldManagerConflict" && c.field)
      .map((c) => ({ field: c.field!, manager: (c.message ?? "").replace(/^conflict with /, "") }));
    return found.length ? found : undefined;
  }
}

/**
 * A write the API server refused because it could not call an admission webhook whose
 * failurePolicy is Fail: k8s.io/apiserver pkg/admission/plugin/webhook/validating/dispatcher.go
 * answers a webhookutil.ErrCallingWebhook ("failed calling webhook %q: %v", pkg/util/webhook/error.go)
 * with apierrors.NewInternalError, a 500 "Internal error occurred: failed calling webhook ...". Right
 * after an install this is the webhook's pod not serving yet, or serving a certificate its CA bundle
 * does not match yet (MetalLB's cert-controller rotates one in after start-up: metallb/metallb#1597).
 * A webhook that answered and refused ("admission webhook ... denied the request") is a 4xx and final.
 */
export function isWebhookCallFailure(status: number, body: string): boolean {
  return status === 500 && body.includes("failed calling webhook");
}
