/**
 * Validating admission webhooks, called the way kube-apiserver calls them, from the
 * ValidatingWebhookConfigurations stored in the test server (admissionregistration.k8s.io/v1).
 * A webhook's backend is a function registered under its Service (`namespace/name`), standing for
 * the pods behind it. Sources are k8s.io/apiserver at the v1.35 line:
 *
 * - Matching (pkg/admission/plugin/webhook/predicates/rules/rules.go): a rule matches when its
 *   operations, apiGroups, apiVersions and resources each hold the request's value or "*".
 * - A dry run is refused with 400 unless the webhook declares sideEffects None or NoneOnDryRun
 *   (validating/dispatcher.go callHook, webhookerrors.NewDryRunUnsupportedErr).
 * - A backend that cannot be reached (no Service, no ready endpoint, a refused connection) is an
 *   ErrCallingWebhook ("failed calling webhook %q: %v", pkg/util/webhook/error.go); with
 *   failurePolicy Fail (the default) the request fails with apierrors.NewInternalError of it, a
 *   500 "Internal error occurred: ..." (dispatcher.go Dispatch, "failing closed"); with Ignore it
 *   goes on.
 * - A backend that answers allowed=false is ToStatusErr (pkg/admission/plugin/webhook/errors/
 *   statuserror.go): the webhook's code (at least 400) and "admission webhook %q denied the
 *   request: <message>". controller-runtime's admission.Denied answers 403 Forbidden.
 */
import type { Admission, AdmissionRequest } from "./server.ts";
import type { Obj } from "./ssa.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

export interface WebhookCall {
  /** The webhook's name, e.g. ipaddresspoolvalidationwebhook.metallb.io. */
  name: string;
  /** clientConfig.service.path. */
  path: string;
  request: AdmissionRequest;
}

export type WebhookAnswer =
  | { allowed: true }
  | { allowed: false; message: string; code?: number; reason?: string }
  /** The call failed before any answer: the text after "failed to call webhook: ". */
  | { unreachable: string };

export type WebhookBackend = (call: WebhookCall) => WebhookAnswer;

function internalError(message: string): { code: number; status: Obj } {
  return {
    code: 500,
    status: {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `Internal error occurred: ${message}`,
      reason: "InternalError",
      details: { causes: [{ message }] },
      code: 500,
    },
  };
}

function ruleMatches(rule: Any, req: AdmissionRequest): boolean {
  const has = (list: unknown, value: string) =>
    Array.isArray(list) && (list.includes("*") || list.includes(value));
  return (
    has(rule.operations, req.operation) &&
    has(rule.apiGroups, req.resource.group) &&
    has(rule.apiVersions, req.resource.version) &&
    has(rule.resources, req.resource.resource)
  );
}

/**
 * The admission step of every ValidatingWebhookConfiguration that `list` returns, with `backends`
 * standing for the Services they name.
 */
export function validatingWebhooks(list: () => Obj[], backends: Map<string, WebhookBackend>): Admission {
  return (req) => {
    for (const config of list() as Any[]) {
      for (const hook of config.webhooks ?? []) {
        if (!(hook.rules ?? []).some((r: Any) => ruleMatches(r, req))) continue;
        const name = String(hook.name);
        if (req.dryRun && hook.sideEffects !== "None" && hook.sideEffects !== "NoneOnDryRun") {
          return {
            code: 400,
            status: {
              kind: "Status",
              apiVersion: "v1",
              metadata: {},
              status: "Failure",
              message: `admission webhook "${name}" does not support dry run`,
              reason: "BadRequest",
              code: 400,
            },
          };
        }
        const svc = hook.clientConfig?.service ?? {};
        const backend = backends.get(`${svc.namespace}/${svc.name}`);
        const url = `https://${svc.name}.${svc.namespace}.svc:${svc.port ?? 443}${svc.path ?? ""}?timeout=${hook.timeoutSeconds ?? 10}s`;
        const answer: WebhookAnswer = backend
          ? backend({ name, path: String(svc.path ?? ""), request: req })
          : { unreachable: `Post "${url}": service "${svc.name}" not found` };
        if ("unreachable" in answer) {
          if (hook.failurePolicy === "Ignore") continue;
          const reason = answer.unreachable.startsWith("Post ")
            ? answer.unreachable
            : `Post "${url}": ${answer.unreachable}`;
          return internalError(`failed calling webhook "${name}": failed to call webhook: ${reason}`);
        }
        if (!answer.allowed) {
          const code = Math.max(answer.code ?? 403, 400);
          return {
            code,
            status: {
              kind: "Status",
              apiVersion: "v1",
              metadata: {},
              status: "Failure",
              message: `admission webhook "${name}" denied the request: ${answer.message}`,
              reason: answer.reason ?? (code === 403 ? "Forbidden" : "BadRequest"),
              code,
            },
          };
        }
      }
    }
    return undefined;
  };
}
