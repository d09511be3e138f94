/**
 * What `plan` says a set of objects would change on a live cluster: dry-run server-side applies,
 * compared with the live objects on the fields kubehyve manages, against the test server (whose
 * field ownership follows structured-merge-diff).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { applyManifests, parseManifests } from "../../src/kube/apply.ts";
import { createKubeClient, type KubeClientImpl } from "../../src/kube/client.ts";
import { changedFields, describePlan, diffManifests, fieldLeaves } from "../../src/kube/diff.ts";
import { withOwner } from "../../src/kube/ownership.ts";
import type { KubeObject } from "../../src/kube/types.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { oracle } from "../lab/oracles.ts";
import { have } from "../lab/prereq.ts";

const owner = { stage: "lb", clusterId: "6f1c8a52-3d4e-4f8a-9b2c-1d2e3f4a5b6c" };

const pool = (addresses: string[], name = "lab"): KubeObject =>
  withOwner(
    {
      apiVersion: "metallb.io/v1beta1",
      kind: "IPAddressPool",
      metadata: { name, namespace: "metallb-system" },
      spec: { addresses },
    },
    owner,
  );

const configMap = (data: Record<string, string>, name = "settings"): KubeObject =>
  withOwner({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "default" }, data }, owner);

const mutations = (server: KubeApiServer) =>
  server.requests.filter((r) => r.method !== "GET" && !r.query.includes("dryRun=All")).length;

describe("FieldsV1 leaves", () => {
  test("name every field a set holds, list items by their keys, and take atomic values whole", () => {
    const obj = {
      metadata: { labels: { app: "x", other: "y" } },
      spec: {
        containers: [{ name: "a", image: "a:1", ports: [{ containerPort: 80 }] }],
        finalizers: ["one"],
      },
    };
    const set = {
      "f:metadata": { "f:labels": { ".": {}, "f:app": {} } },
      "f:spec": {
        "f:containers": { 'k:{"name":"a"}': { ".": {}, "f:image": {}, "f:ports": {} } },
        "f:finalizers": { 'v:"one"': {}, 'v:"two"': {} },
      },
    };
    expect(Object.fromEntries(fieldLeaves(obj, set))).toEqual({
      "metadata.labels.app": '"x"',
      "spec.containers[name=a].image": '"a:1"',
      "spec.containers[name=a].ports": '[{"containerPort":80}]',
      "spec.finalizers[=one]": "present",
      "spec.finalizers[=two]": "(absent)",
    });
  });
});

describe.skipIf(!have("openssl", "openssl"))("dry-run diffs against a live cluster", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;

  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
    const crd = parseManifests(
      readFileSync(oracle("metallb/crds/metallb.io_ipaddresspools.yaml"), "utf8"),
      "crd",
    );
    await applyManifests(
      client,
      [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "metallb-system" } }, ...crd],
      {
        intervalMs: 10,
      },
    );
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("an object that is not there is a create, and planning it stores nothing", async () => {
    const before = server.resourceVersion();
    server.requests.length = 0;
    const planned = await diffManifests(client, [pool(["192.168.1.240/28"])], { owner });
    expect(planned).toEqual([
      {
        ref: {
          apiVersion: "metallb.io/v1beta1",
          kind: "IPAddressPool",
          name: "lab",
          namespace: "metallb-system",
        },
        action: "create",
        fields: [],
      },
    ]);
    // The create was dry-run: the server validated it, and nothing was written.
    expect(server.requests.some((r) => r.method === "PATCH" && r.query.includes("dryRun=All"))).toBe(true);
    expect(mutations(server)).toBe(0);
    expect(server.resourceVersion()).toBe(before);
  });

  test("an applied object is unchanged, and a changed field kubehyve manages is an update naming it", async () => {
    await client.apply(pool(["192.168.1.240/28"]));
    expect((await diffManifests(client, [pool(["192.168.1.240/28"])], { owner }))[0]!.action).toBe(
      "unchanged",
    );
    const planned = await diffManifests(client, [pool(["192.168.1.240/29"])], { owner });
    expect(planned[0]).toMatchObject({ action: "update", fields: ["spec.addresses"] });
    expect(describePlan("pools", planned)).toEqual({
      summary: "pools: update IPAddressPool metallb-system/lab (spec.addresses)",
      detail: "update IPAddressPool metallb-system/lab: spec.addresses",
    });
  });

  test("a field someone else set and kubehyve does not is none of its business", async () => {
    await client.apply(configMap({ mode: "fast" }));
    // A person edits the ConfigMap by hand: kubectl's merge patch, another field manager.
    const res = await fetch(
      `${server.url}/api/v1/namespaces/default/configmaps/settings?fieldManager=kubectl-edit`,
      {
        method: "PATCH",
        headers: { "Content-Type": "application/merge-patch+json" },
        body: JSON.stringify({ data: { extra: "theirs" } }),
        tls: { cert: server.pki.clientCert, key: server.pki.clientKey, ca: server.caCert },
      } as RequestInit,
    );
    expect(res.status).toBe(200);
    expect((await diffManifests(client, [configMap({ mode: "fast" })], { owner }))[0]!.action).toBe(
      "unchanged",
    );

    // The same person changes a field kubehyve applied: that is a change to undo.
    await fetch(`${server.url}/api/v1/namespaces/default/configmaps/settings?fieldManager=kubectl-edit`, {
      method: "PATCH",
      headers: { "Content-Type": "application/merge-patch+json" },
      body: JSON.stringify({ data: { mode: "slow" } }),
      tls: { cert: server.pki.clientCert, key: server.pki.clientKey, ca: server.caCert },
    } as RequestInit);
    expect((await diffManifests(client, [configMap({ mode: "fast" })], { owner }))[0]).toMatchObject({
      action: "update",
      fields: ["data.mode"],
    });
  });

  test("a field kubehyve applied before and no longer sets is a change (the server would prune it)", async () => {
    await client.apply(configMap({ a: "1", b: "2" }, "pruned"));
    const planned = await diffManifests(client, [configMap({ a: "1" }, "pruned")], { owner });
    expect(planned[0]).toMatchObject({ action: "update", fields: ["data.b"] });
  });

  test("an object of the same name without the owner's labels is foreign and is not dry-run", async () => {
    await client.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "theirs", namespace: "default" },
      data: { x: "1" },
    });
    server.requests.length = 0;
    const planned = await diffManifests(client, [configMap({ x: "1" }, "theirs")], { owner });
    expect(planned[0]!.action).toBe("foreign");
    expect(server.requests.filter((r) => r.method === "PATCH")).toEqual([]);
    expect(describePlan("x", planned)).toBeUndefined();
  });

  test("an object whose kind or namespace does not exist yet is a create, not an error", async () => {
    const cr: KubeObject = withOwner(
      {
        apiVersion: "metallb.io/v1beta1",
        kind: "L2Advertisement",
        metadata: { name: "l2", namespace: "metallb-system" },
      },
      owner,
    );
    const elsewhere = withOwner(
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x", namespace: "not-yet" }, data: {} },
      owner,
    );
    const planned = await diffManifests(client, [cr, elsewhere], { owner });
    expect(planned.map((p) => p.action)).toEqual(["create", "create"]);
  });

  test("an object the server refuses fails the plan, naming it", async () => {
    const bad = pool(["192.168.1.240/28"], "bad");
    bad.spec.autoAssign = "yes";
    await expect(diffManifests(client, [bad], { owner })).rejects.toThrow(
      'dry run of IPAddressPool metallb-system/bad: PATCH /apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/bad?dryRun=All&fieldManager=kubehyve&force=true&fieldValidation=Strict: 422 Invalid: IPAddressPool.metallb.io "bad" is invalid: spec.autoAssign: Invalid value: "yes": spec.autoAssign in body must be of type boolean: "yes"',
    );
  });

  test("changedFields reads only the field manager's Apply entries", () => {
    const entry = (manager: string, operation: string, fieldsV1: unknown) => ({
      manager,
      operation,
      fieldsV1,
    });
    const live: KubeObject = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: "x",
        managedFields: [
          entry("kubehyve", "Apply", { "f:data": { "f:a": {} } }),
          entry("someone", "Update", { "f:data": { "f:b": {} } }),
        ],
      },
      data: { a: "1", b: "2" },
    };
    const next: KubeObject = { ...live, data: { a: "1", b: "3" } };
    expect(changedFields(live, next, "kubehyve")).toEqual([]);
    expect(changedFields(live, { ...live, data: { a: "9", b: "2" } }, "kubehyve")).toEqual(["data.a"]);
  });
});
