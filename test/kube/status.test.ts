import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseRetryAfter } from "../../src/kube/client.ts";
import { KubeApiError, parseStatus } from "../../src/kube/status.ts";
import { oracle } from "../lab/oracles.ts";

const SAMPLES = oracle("kubernetes/api-samples");
const sample = (name: string) => readFileSync(join(SAMPLES, name), "utf8");

describe("errors from Status bodies", () => {
  test("a 404 names the request and carries the server's message", () => {
    const body = sample("status-404-notfound-service.kubectl-edit-recorded.json");
    const error = KubeApiError.fromResponse("GET", "/api/v1/namespaces/default/services/missing", 404, body);
    expect(error.message).toBe(
      'GET /api/v1/namespaces/default/services/missing: 404 NotFound: services "missing" not found',
    );
    expect(error.reason).toBe("NotFound");
  });

  test("a 422 keeps every cause with its field", () => {
    const body = sample("status-422-invalid-service-create.kubectl-edit-recorded.json");
    const error = KubeApiError.fromResponse("POST", "/api/v1/namespaces/default/services", 422, body);
    expect(error.causes.map((c) => c.field)).toEqual(["spec.ports[0].protocol", "spec.clusterIP"]);
    expect(error.message).toStartWith(
      'POST /api/v1/namespaces/default/services: 422 Invalid: Service "svc2" is invalid: [',
    );
  });

  test("a 403 reads the compact wire form", () => {
    const body = sample("status-403-forbidden-list-pods.kube-oidc-proxy-e2e-excerpt.json");
    expect(parseStatus(body)?.reason).toBe("Forbidden");
    const error = KubeApiError.fromResponse(
      "GET",
      "/api/v1/namespaces/kube-oidc-proxy-e2e-rbac/pods",
      403,
      body,
    );
    expect(error.apiMessage).toStartWith(
      'pods is forbidden: User "test-username" cannot list resource "pods"',
    );
  });

  test("a 429 from a Status body and from the plain-text rejection of API Priority and Fairness", () => {
    const fromStatus = KubeApiError.fromResponse(
      "POST",
      "/api/v1/namespaces/x/pods/y/eviction",
      429,
      sample("status-429-eviction-pdb.chaos-demo-excerpt.json"),
    );
    expect(fromStatus.message).toBe(
      "POST /api/v1/namespaces/x/pods/y/eviction: 429 TooManyRequests: Cannot evict pod as it would violate the pod's disruption budget.",
    );
    const fromText = KubeApiError.fromResponse(
      "GET",
      "/version",
      429,
      "Too many requests, please try again later.\n",
      4,
    );
    expect(fromText.message).toBe(
      "GET /version: 429 TooManyRequests: Too many requests, please try again later. (gave up after 4 attempts)",
    );
  });

  test("a body that is not a Status is no Status", () => {
    expect(parseStatus(sample("discovery-legacy-api.APIVersions.json"))).toBeUndefined();
    expect(parseStatus("not json")).toBeUndefined();
  });
});

describe("Retry-After", () => {
  test("reads delta-seconds and HTTP dates, and ignores nonsense", () => {
    const now = Date.parse("Wed, 20 May 2015 18:10:42 GMT");
    expect(parseRetryAfter("3", now)).toBe(3);
    expect(parseRetryAfter("Wed, 20 May 2015 18:10:52 GMT", now)).toBe(10);
    expect(parseRetryAfter("Wed, 20 May 2015 18:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});
