/**
 * Pruning and `down` touch what a stage of this cluster applied, found by its labels, and nothing
 * else: not another stage's objects, not another cluster's, not an object of the same name made by
 * hand.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createKubeClient, type KubeClientImpl } from "../../src/kube/client.ts";
import { diffManifests } from "../../src/kube/diff.ts";
import {
  deleteOwned,
  deletionOrder,
  findLeftovers,
  isOwnedBy,
  listServed,
  ownerLabels,
  ownerSelector,
  withOwner,
} from "../../src/kube/ownership.ts";
import { KubeApiError, KubeRequestError } from "../../src/kube/status.ts";
import type { KubeClient, KubeObject } from "../../src/kube/types.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { have } from "../lab/prereq.ts";

const CLUSTER = "6f1c8a52-3d4e-4f8a-9b2c-1d2e3f4a5b6c";
const net = { stage: "net", clusterId: CLUSTER };

const cm = (name: string, namespace = "default"): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace },
  data: { v: name },
});

test("an owner's labels name kubehyve, the stage and the cluster", () => {
  expect(ownerLabels(net)).toEqual({
    "app.kubernetes.io/managed-by": "kubehyve",
    "kubehyve.io/stage": "net",
    "kubehyve.io/cluster": CLUSTER,
  });
  expect(ownerSelector(net)).toBe(
    `app.kubernetes.io/managed-by=kubehyve,kubehyve.io/stage=net,kubehyve.io/cluster=${CLUSTER}`,
  );
  const labelled = withOwner({ ...cm("a"), metadata: { ...cm("a").metadata, labels: { app: "x" } } }, net);
  expect(labelled.metadata.labels).toEqual({ app: "x", ...ownerLabels(net) });
  // Labels alone, without the server's record of who set them (managedFields), prove nothing.
  expect(isOwnedBy(labelled, net)).toBe(false);
  const applied = {
    ...labelled,
    metadata: {
      ...labelled.metadata,
      managedFields: [
        {
          manager: "kubehyve",
          operation: "Apply",
          apiVersion: "v1",
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": {
              "f:labels": Object.fromEntries(Object.keys(ownerLabels(net)).map((k) => [`f:${k}`, {}])),
            },
          },
        },
      ],
    },
  };
  expect(isOwnedBy(applied, net)).toBe(true);
  expect(isOwnedBy(applied, { ...net, stage: "lb" })).toBe(false);
  expect(() => ownerLabels({ stage: "net stage", clusterId: CLUSTER })).toThrow(
    'the stage "net stage" cannot be a label value',
  );
});

test("deletion goes custom resources first, CRDs after the built-in objects, namespaces last", () => {
  const kinds = [
    { apiVersion: "v1", kind: "Namespace" },
    { apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition" },
    { apiVersion: "apps/v1", kind: "Deployment" },
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole" },
    { apiVersion: "operator.tigera.io/v1", kind: "Installation" },
  ];
  expect(deletionOrder(kinds).map((k) => k.kind)).toEqual([
    "Installation",
    "ClusterRole",
    "Deployment",
    "CustomResourceDefinition",
    "Namespace",
  ]);
});

describe.skipIf(!have("openssl", "openssl"))("leftovers of a stage on a live cluster", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;

  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
    for (const o of [
      withOwner(cm("kept"), net),
      withOwner(cm("dropped"), net),
      withOwner(cm("dropped", "kube-system"), net),
      withOwner(cm("other-stage"), { stage: "lb", clusterId: CLUSTER }),
      withOwner(cm("other-cluster"), { stage: "net", clusterId: "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5" }),
      // Made by hand, with the name of one of ours and only some of the labels.
      {
        ...cm("by-hand"),
        metadata: { ...cm("by-hand").metadata, labels: { "app.kubernetes.io/managed-by": "kubehyve" } },
      },
    ])
      await client.apply(o);
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("are the stage's own objects it no longer renders, in every namespace, and nothing else", async () => {
    const leftovers = await findLeftovers(client, {
      owner: net,
      keep: [withOwner(cm("kept"), net)],
      kinds: [{ apiVersion: "v1", kind: "ConfigMap" }],
    });
    expect(leftovers.map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort()).toEqual([
      "default/dropped",
      "kube-system/dropped",
    ]);
  });

  test("are told apart by their labels even where a server answers a list without its label selector", async () => {
    // An aggregated API may serve lists without filtering them: the labels are looked at again.
    const unfiltered = {
      ...client,
      list: (apiVersion: string, kind: string, opts?: Parameters<KubeClientImpl["list"]>[2]) =>
        client.list(apiVersion, kind, { ...opts, labelSelector: undefined }),
    } as KubeClientImpl;
    const leftovers = await findLeftovers(unfiltered, {
      owner: net,
      keep: [withOwner(cm("kept"), net)],
      kinds: [{ apiVersion: "v1", kind: "ConfigMap" }],
    });
    expect(leftovers.map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort()).toEqual([
      "default/dropped",
      "kube-system/dropped",
    ]);
  });

  test("a list the server refuses stops the search instead of passing for a kind with no objects", async () => {
    const forbidden = {
      ...client,
      list: async (apiVersion: string, kind: string) => {
        throw new KubeApiError(
          "GET",
          `/api/${apiVersion}/${kind.toLowerCase()}s`,
          403,
          "Forbidden",
          "forbidden",
        );
      },
    } as KubeClientImpl;
    await expect(
      findLeftovers(forbidden, { owner: net, keep: [], kinds: [{ apiVersion: "v1", kind: "ConfigMap" }] }),
    ).rejects.toThrow("403 Forbidden");
  });

  test("a list the server fails (500 past every retry) or a request that cannot be made is an error, not a kind with no objects", async () => {
    server.injectFault({ path: /\/configmaps$/, method: "GET", status: 500, times: 6 });
    await expect(
      findLeftovers(client, { owner: net, keep: [], kinds: [{ apiVersion: "v1", kind: "ConfigMap" }] }),
    ).rejects.toThrow("500 InternalError");
    await expect(listServed(client, "v1", "ConfigMap", { namespace: ".." })).rejects.toThrow(
      KubeRequestError,
    );
    // Past the fault, the same search finds them.
    expect((await listServed(client, "v1", "ConfigMap")).length).toBeGreaterThan(0);
  });

  test("a kind the cluster no longer serves has none", async () => {
    const leftovers = await findLeftovers(client, {
      owner: net,
      keep: [],
      kinds: [{ apiVersion: "metallb.io/v1beta1", kind: "IPAddressPool" }],
    });
    expect(leftovers).toEqual([]);
  });

  test("deleting one reads it again and refuses an object without the labels, whatever its name", async () => {
    expect(
      await deleteOwned(client, net, {
        apiVersion: "v1",
        kind: "ConfigMap",
        name: "dropped",
        namespace: "default",
      }),
    ).toBe(true);
    expect(server.get("v1", "ConfigMap", "dropped", "default")).toBeUndefined();
    expect(
      await deleteOwned(client, net, {
        apiVersion: "v1",
        kind: "ConfigMap",
        name: "gone",
        namespace: "default",
      }),
    ).toBe(false);
    await expect(
      deleteOwned(client, net, {
        apiVersion: "v1",
        kind: "ConfigMap",
        name: "by-hand",
        namespace: "default",
      }),
    ).rejects.toThrow(
      "ConfigMap default/by-hand does not carry the labels of stage net of this cluster, so it is not deleted",
    );
    await expect(
      deleteOwned(client, net, {
        apiVersion: "v1",
        kind: "ConfigMap",
        name: "other-stage",
        namespace: "default",
      }),
    ).rejects.toThrow("does not carry the labels");
    expect(server.get("v1", "ConfigMap", "by-hand", "default")).toBeDefined();
    expect(server.get("v1", "ConfigMap", "other-stage", "default")).toBeDefined();
    expect(server.get("v1", "ConfigMap", "other-cluster", "default")).toBeDefined();
  });
});

describe.skipIf(!have("openssl", "openssl"))("deleting one of a stage's objects", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;
  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("deletes only the object it read: one of the same name made meanwhile by someone else is left alone", async () => {
    await client.apply(withOwner(cm("swapped"), net));
    // Between the read and the delete, the object is removed and someone makes their own of the name.
    const racing = {
      ...client,
      get: async (...args: Parameters<KubeClientImpl["get"]>) => {
        const live = await client.get(...args);
        server.delete("v1", "ConfigMap", "swapped", "default");
        server.put({ ...cm("swapped"), data: { v: "theirs" } });
        return live;
      },
    } as KubeClient;
    const ref = { apiVersion: "v1", kind: "ConfigMap", name: "swapped", namespace: "default" };
    await expect(deleteOwned(racing, net, ref)).rejects.toThrow(
      "ConfigMap default/swapped changed hands after it was read (Precondition failed: UID in precondition:",
    );
    expect(server.get("v1", "ConfigMap", "swapped", "default")?.data).toEqual({ v: "theirs" });
    // Without a race it is deleted, precondition and all.
    await client.apply(withOwner(cm("plain"), net));
    expect(await deleteOwned(client, net, { ...ref, name: "plain" })).toBe(true);
    expect(server.get("v1", "ConfigMap", "plain", "default")).toBeUndefined();
    const del = server.requests.filter((r) => r.method === "DELETE").at(-1)!;
    expect(del.path).toBe("/api/v1/namespaces/default/configmaps/plain");
  });
});

describe.skipIf(!have("openssl", "openssl"))("a stage's labels that someone else set", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;
  /** A write of a person with kubectl: a request of another field manager (an Update, not an Apply). */
  let kubectl: (method: string, path: string, manager: string, body: unknown, type?: string) => Promise<void>;
  const configmaps = "/api/v1/namespaces/default/configmaps";

  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
    kubectl = async (method, path, manager, body, type = "application/json") => {
      const res = await fetch(`${server.url}${path}?fieldManager=${manager}`, {
        method,
        headers: { "Content-Type": type },
        body: JSON.stringify(body),
        tls: { cert: server.pki.clientCert, key: server.pki.clientKey, ca: server.caCert },
      } as RequestInit);
      expect(res.status).toBeLessThan(300);
    };
    await client.apply(withOwner(cm("ours"), net));
    // What `kubehyve render` wrote, copied and created under a name of the user's own.
    await kubectl("POST", configmaps, "kubectl-create", withOwner(cm("copied"), net));
    // Made by hand, then labelled by hand with this cluster's labels.
    await kubectl("POST", configmaps, "kubectl-create", cm("labelled"));
    await kubectl(
      "PATCH",
      `${configmaps}/labelled`,
      "kubectl-label",
      { metadata: { labels: ownerLabels(net) } },
      "application/merge-patch+json",
    );
    // The same name as one of ours, applied by another tool with the labels copied.
    await createKubeClient(server.kubeconfigPath, { fieldManager: "helm" }).then((helm) =>
      helm.apply(withOwner(cm("helmed"), net)),
    );
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("is not the stage's: prune and down do not list it, and deleting it is refused", async () => {
    const live = async (name: string) => (await client.get("v1", "ConfigMap", name, "default"))!;
    expect(isOwnedBy(await live("ours"), net)).toBe(true);
    for (const name of ["copied", "labelled", "helmed"]) {
      expect({ name, owned: isOwnedBy(await live(name), net) }).toEqual({ name, owned: false });
      await expect(
        deleteOwned(client, net, { apiVersion: "v1", kind: "ConfigMap", name, namespace: "default" }),
      ).rejects.toThrow(`ConfigMap default/${name} does not carry the labels of stage net of this cluster`);
    }
    const leftovers = await findLeftovers(client, {
      owner: net,
      keep: [],
      kinds: [{ apiVersion: "v1", kind: "ConfigMap" }],
    });
    expect(leftovers.map((o) => o.metadata.name)).toEqual(["ours"]);
    for (const name of ["copied", "labelled", "helmed"])
      expect(server.get("v1", "ConfigMap", name, "default")).toBeDefined();
  });

  test("a plan calls it someone else's and never dry-runs an apply over it", async () => {
    const planned = await diffManifests(
      client,
      ["copied", "labelled", "helmed"].map((name) => withOwner(cm(name), net)),
      { owner: net },
    );
    expect(planned.map((p) => p.action)).toEqual(["foreign", "foreign", "foreign"]);
    expect(planned.map((p) => p.note)).toEqual([
      'it carries the labels, but its fields are set by "kubectl-create"',
      'it carries the labels, but its fields are set by "kubectl-create", "kubectl-label"',
      'it carries the labels, but its fields are set by "helm"',
    ]);
  });

  test("is not the stage's once its managedFields are cleared: nothing then proves kubehyve set the labels", async () => {
    await client.apply(withOwner(cm("stripped"), net));
    // The way to clear them (Server-Side Apply, "Clearing managedFields"): an update that sends one
    // empty entry; the server keeps none (fieldmanager.go isResetManagedFields).
    await kubectl(
      "PATCH",
      `${configmaps}/stripped`,
      "kubectl-edit",
      { metadata: { managedFields: [{}] } },
      "application/merge-patch+json",
    );
    const live = (await client.get("v1", "ConfigMap", "stripped", "default"))!;
    expect(live.metadata.labels).toEqual(ownerLabels(net));
    expect(live.metadata.managedFields).toBeUndefined();
    expect(isOwnedBy(live, net)).toBe(false);
    const ref = { apiVersion: "v1", kind: "ConfigMap", name: "stripped", namespace: "default" };
    await expect(deleteOwned(client, net, ref)).rejects.toThrow("does not carry the labels");
    const leftovers = await findLeftovers(client, {
      owner: net,
      keep: [],
      kinds: [{ apiVersion: "v1", kind: "ConfigMap" }],
    });
    expect(leftovers.map((o) => o.metadata.name)).not.toContain("stripped");
    const [planned] = await diffManifests(client, [withOwner(cm("stripped"), net)], { owner: net });
    expect(planned!.action).toBe("foreign");
    // The finding says why something with the labels is not the stage's.
    expect(planned!.note).toBe("it carries the labels, but the server keeps no record of who set its fields");
    expect(server.get("v1", "ConfigMap", "stripped", "default")).toBeDefined();
  });

  test("an object of ours that a person also labelled or edited stays ours", async () => {
    await kubectl(
      "PATCH",
      `${configmaps}/ours`,
      "kubectl-label",
      { metadata: { labels: { team: "infra" } }, data: { extra: "theirs" } },
      "application/merge-patch+json",
    );
    expect(isOwnedBy((await client.get("v1", "ConfigMap", "ours", "default"))!, net)).toBe(true);
  });
});
