/**
 * Right after an install an admission webhook with failurePolicy Fail refuses for a while (MetalLB's
 * answers "failed calling webhook" for seconds after its controller is ready): the client retries
 * those refusals for a time budget of their own, and gives up with the server's words; a webhook
 * that answers and denies is final at once. The webhook is MetalLB's, from the release manifest.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { applyManifests, parseManifests } from "../../src/kube/apply.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import { waitFor } from "../../src/kube/readiness.ts";
import { isWebhookCallFailure, KubeApiError } from "../../src/kube/status.ts";
import { metallbControllers } from "../lab/kube/controllers/metallb.ts";
import { podControllers } from "../lab/kube/controllers/pods.ts";
import { defaultControllers } from "../lab/kube/controllers.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { validatingWebhooks } from "../lab/kube/webhooks.ts";
import { oracle } from "../lab/oracles.ts";
import { have } from "../lab/prereq.ts";

// A whole `up` against the test server takes seconds; on a loaded 2-core machine, many.
setDefaultTimeout(90_000);

const NATIVE = parseManifests(
  readFileSync(oracle("releases/metallb/config/manifests/metallb-native.yaml"), "utf8"),
  "metallb-native.yaml",
);

const pool = (name: string, addresses: string[]) => ({
  apiVersion: "metallb.io/v1beta1",
  kind: "IPAddressPool",
  metadata: { name, namespace: "metallb-system" },
  spec: { addresses },
});

let server: KubeApiServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

async function installed(refusesForMs: number) {
  const metallb = metallbControllers({ webhookRefusesForMs: refusesForMs });
  server = await startKubeApiServer({
    controllers: [...defaultControllers(), ...podControllers(), ...metallb.controllers],
  });
  const s = server;
  s.admission.push(
    validatingWebhooks(
      () => s.list("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
      metallb.backends,
    ),
  );
  s.setNodeReady("cp1", true, { address: "127.0.0.21" });
  const setup = await createKubeClient(s.kubeconfigPath, { baseDelayMs: 10 });
  await applyManifests(setup, NATIVE, { intervalMs: 10 });
  await waitFor(
    setup,
    { apiVersion: "apps/v1", kind: "Deployment", name: "controller", namespace: "metallb-system" },
    {
      intervalMs: 20,
      timeoutMs: 5000,
    },
  );
  return { server: s, metallb };
}

describe.skipIf(!have("openssl", "openssl"))("a webhook that refuses right after its install", () => {
  test("is retried until it answers, and the write goes through", async () => {
    // Long enough for many refusals on a loaded machine too, where each try takes longer and the
    // window opens (when the controller is ready) well before the first try.
    const { server: s, metallb } = await installed(5000);
    const client = await createKubeClient(s.kubeconfigPath, { baseDelayMs: 50, maxDelayMs: 150 });
    s.requests.length = 0;
    const stored = await client.apply(pool("lab", ["127.0.0.240-127.0.0.250"]));
    expect(stored.spec.addresses).toEqual(["127.0.0.240-127.0.0.250"]);
    expect(metallb.refusals()).toBeGreaterThan(6);
    const answers = s.requests.filter((r) => r.path.endsWith("/ipaddresspools/lab")).map((r) => r.status);
    // More refusals than the count-limited retries of 5xx (five) would have sat out.
    expect(answers.length).toBeGreaterThan(6);
    expect(answers.at(-1)).toBe(201);
    expect(new Set(answers.slice(0, -1))).toEqual(new Set([500]));
  });

  test("gives up after its time budget with the API server's words", async () => {
    const { server: s } = await installed(60_000);
    const client = await createKubeClient(s.kubeconfigPath, {
      baseDelayMs: 20,
      maxDelayMs: 100,
      webhookRetryMs: 400,
    });
    const error = await client.apply(pool("lab", ["127.0.0.240/29"])).catch((e) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.httpStatus).toBe(500);
    expect(error.message).toContain(
      '500 InternalError: Internal error occurred: failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": failed to call webhook: Post "https://metallb-webhook-service.metallb-system.svc:443/validate-metallb-io-v1beta1-ipaddresspool?timeout=10s": dial tcp 10.233.12.88:443: connect: connection refused',
    );
    expect(error.message).toMatch(/; the webhook has refused for \d+ s$/);
  });

  test("that answers and denies is not retried", async () => {
    const { server: s } = await installed(0);
    const client = await createKubeClient(s.kubeconfigPath, { baseDelayMs: 20 });
    await client.apply(pool("first", ["127.0.0.240/29"]));
    s.requests.length = 0;
    const error = await client.apply(pool("second", ["127.0.0.244-127.0.0.250"])).catch((e) => e);
    expect(error.httpStatus).toBe(403);
    expect(error.apiMessage).toBe(
      'admission webhook "ipaddresspoolvalidationwebhook.metallb.io" denied the request: CIDR "127.0.0.244/30" in pool "second" overlaps with already defined CIDR "127.0.0.240/29"',
    );
    expect(s.requests.filter((r) => r.method === "PATCH")).toHaveLength(1);
  });

  test("without a ready controller there is no endpoint, which is the same refusal", async () => {
    const { server: s } = await installed(0);
    s.setReady(
      { apiVersion: "apps/v1", kind: "Deployment", name: "controller", namespace: "metallb-system" },
      false,
    );
    await Bun.sleep(20);
    const client = await createKubeClient(s.kubeconfigPath, {
      baseDelayMs: 20,
      maxDelayMs: 50,
      webhookRetryMs: 150,
    });
    const error = await client.apply(pool("lab", ["127.0.0.240/29"])).catch((e) => e);
    expect(error.apiMessage).toContain('no endpoints available for service "metallb-webhook-service"');
  });
});

test("only a failed call of a webhook counts as one, not a denial or another 500", () => {
  expect(
    isWebhookCallFailure(500, '{"message":"Internal error occurred: failed calling webhook \\"x\\": ..."}'),
  ).toBe(true);
  expect(isWebhookCallFailure(403, 'admission webhook "x" denied the request: no')).toBe(false);
  expect(isWebhookCallFailure(500, "Internal error occurred: etcdserver: leader changed")).toBe(false);
});
