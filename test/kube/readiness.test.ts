import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { isReady } from "../../src/kube/readiness.ts";
import type { KubeObject } from "../../src/kube/types.ts";
import { oracle } from "../lab/oracles.ts";

const KUBERNETES = oracle("kubernetes");

/** An upstream api-samples file (JSON or YAML), parsed fresh so a test may change its copy. */
function sample(name: string): KubeObject {
  return parse(readFileSync(join(KUBERNETES, "api-samples", name), "utf8")) as KubeObject;
}

/**
 * A roundtrip fixture; these carry no apiVersion/kind (the file name says what they are) and set
 * every field, deletionTimestamp included, which `live` takes out.
 */
function fixture(name: string, apiVersion: string, kind: string, live = true): KubeObject {
  const body = JSON.parse(readFileSync(join(KUBERNETES, "roundtrip-fixtures", name), "utf8"));
  if (live) delete body.metadata.deletionTimestamp;
  return { ...body, apiVersion, kind } as KubeObject;
}

describe("readiness of Deployments", () => {
  test("a Deployment whose replicas are all updated and available is ready", () => {
    expect(isReady(sample("deployment-available-progressing.kubectl-edit-recorded.json"))).toEqual({
      ready: true,
      reason: "3/3 replicas available",
    });
    expect(isReady(sample("deployment-with-managedFields.argo-cd.yaml")).ready).toBe(true);
  });

  test("a Deployment whose controller has not seen the latest generation is not ready", () => {
    const obj = sample("deployment-available-progressing.kubectl-edit-recorded.json");
    obj.metadata.generation = 6;
    expect(isReady(obj)).toEqual({ ready: false, reason: "controller has seen generation 5 of 6" });
    expect(isReady(fixture("apps.v1.Deployment.json", "apps/v1", "Deployment"))).toEqual({
      ready: false,
      reason: "controller has seen generation 1 of 7",
    });
  });

  test("a Deployment with too few available replicas is not ready and says how many", () => {
    const obj = sample("deployment-available-progressing.kubectl-edit-recorded.json");
    obj.status.availableReplicas = 1;
    expect(isReady(obj)).toEqual({ ready: false, reason: "1/3 replicas available" });
  });

  test("a Deployment still rolling out counts its updated replicas", () => {
    const obj = sample("deployment-available-progressing.kubectl-edit-recorded.json");
    obj.status.updatedReplicas = 2;
    obj.status.replicas = 4;
    expect(isReady(obj)).toEqual({ ready: false, reason: "2/3 replicas updated" });
  });

  test("a Deployment past its progress deadline reports the condition", () => {
    const obj = sample("deployment-available-progressing.kubectl-edit-recorded.json");
    obj.status.conditions[0].reason = "ProgressDeadlineExceeded";
    obj.status.conditions[0].status = "False";
    obj.status.conditions[0].message = 'ReplicaSet "nginx-6f5fdbd667" has timed out progressing.';
    expect(isReady(obj).reason).toBe(
      'condition Progressing is False (ProgressDeadlineExceeded: ReplicaSet "nginx-6f5fdbd667" has timed out progressing.)',
    );
  });

  test("a Deployment just applied, without status, is not ready", () => {
    expect(isReady(sample("ssa-dryrun-response-deployment.managedFields.argo-gitops-engine.json"))).toEqual({
      ready: false,
      reason: "0/1 replicas updated",
    });
  });
});

describe("readiness of DaemonSets", () => {
  test("a DaemonSet with every scheduled pod updated and ready is ready", () => {
    expect(isReady(sample("daemonset-ready.argo-cd.yaml"))).toEqual({
      ready: true,
      reason: "4/4 pods ready",
    });
  });

  test("a DaemonSet with fewer ready pods than desired is not ready", () => {
    const obj = sample("daemonset-ready.argo-cd.yaml");
    obj.status.numberReady = 3;
    obj.status.numberAvailable = 3;
    expect(isReady(obj)).toEqual({ ready: false, reason: "3/4 pods available" });
  });

  test("a DaemonSet whose pods are not all updated is not ready", () => {
    const obj = sample("daemonset-ready.argo-cd.yaml");
    obj.status.updatedNumberScheduled = 1;
    expect(isReady(obj)).toEqual({ ready: false, reason: "1/4 pods updated" });
  });

  test("a DaemonSet behind its generation is not ready", () => {
    expect(isReady(fixture("apps.v1.DaemonSet.json", "apps/v1", "DaemonSet")).reason).toBe(
      "controller has seen generation 5 of 7",
    );
  });
});

describe("readiness of other kinds", () => {
  test("a Node is ready when its Ready condition is True", () => {
    expect(isReady(sample("node-v1.23.3-kube-worker-1.website-debug-cluster-excerpt.yaml"))).toEqual({
      ready: true,
      reason: "Ready",
    });
  });

  test("a Node whose Ready condition is False gives the kubelet's reason", () => {
    const node = sample("node-v1.23.3-kube-worker-1.website-debug-cluster-excerpt.yaml");
    const ready = node.status.conditions.find((c: { type: string }) => c.type === "Ready");
    Object.assign(ready, { status: "False", reason: "KubeletNotReady", message: "PLEG is not healthy" });
    expect(isReady(node)).toEqual({
      ready: false,
      reason: "condition Ready is False (KubeletNotReady: PLEG is not healthy)",
    });
  });

  test("a PersistentVolumeClaim is ready once Bound", () => {
    const pvc = sample("pvc-bound.argo-gitops-engine.yaml");
    expect(isReady(pvc).ready).toBe(true);
    pvc.status.phase = "Pending";
    expect(isReady(pvc)).toEqual({ ready: false, reason: "phase is Pending, not Bound" });
  });

  test("a CustomResourceDefinition is ready once Established", () => {
    const crd = sample("crd-established-namesaccepted.argo-cd.yaml");
    expect(isReady(crd)).toEqual({ ready: true, reason: "Established" });
    crd.status.conditions = crd.status.conditions.filter((c: { type: string }) => c.type !== "Established");
    expect(isReady(crd)).toEqual({ ready: false, reason: "not Established yet" });
  });

  test("a CustomResourceDefinition whose names conflict is not ready", () => {
    const crd = sample("crd-established-namesaccepted.argo-cd.yaml");
    Object.assign(crd.status.conditions[0], {
      status: "False",
      reason: "ListKindConflict",
      message: '"ExampleList" is already in use',
    });
    expect(isReady(crd).reason).toBe(
      'condition NamesAccepted is False (ListKindConflict: "ExampleList" is already in use)',
    );
  });

  test("a LoadBalancer Service is ready once it has an ingress address", () => {
    const svc = sample("service-loadbalancer-ingress-hostname.argo-gitops-engine.yaml");
    expect(isReady(svc)).toEqual({
      ready: true,
      reason: "load balancer at abc123.us-west-2.elb.amazonaws.com",
    });
    svc.status.loadBalancer = {};
    expect(isReady(svc)).toEqual({ ready: false, reason: "no load balancer address assigned yet" });
  });

  test("a ClusterIP Service needs no load balancer address", () => {
    expect(isReady(sample("ssa-dryrun-response-service.managedFields.argo-gitops-engine.json")).ready).toBe(
      true,
    );
  });

  test("an object being deleted is not ready", () => {
    expect(isReady(fixture("core.v1.Service.json", "v1", "Service", false))).toEqual({
      ready: false,
      reason: "being deleted since 2009-01-01T01:01:01Z",
    });
    const svc = sample("service-loadbalancer-ingress-hostname.argo-gitops-engine.yaml");
    svc.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
    expect(isReady(svc)).toEqual({ ready: false, reason: "being deleted since 2026-01-01T00:00:00Z" });
  });

  test("a custom resource follows its Ready condition", () => {
    const obj: KubeObject = {
      apiVersion: "ceph.rook.io/v1",
      kind: "CephCluster",
      metadata: { name: "rook-ceph", namespace: "rook-ceph", generation: 2 },
      status: {
        observedGeneration: 2,
        conditions: [
          { type: "Ready", status: "False", reason: "ClusterProgressing", message: "Configuring Ceph Mons" },
        ],
      },
    };
    expect(isReady(obj)).toEqual({
      ready: false,
      reason: "condition Ready is False (ClusterProgressing: Configuring Ceph Mons)",
    });
    obj.status.conditions[0].status = "True";
    expect(isReady(obj).ready).toBe(true);
  });

  test("an object without conditions or status is ready", () => {
    expect(isReady(fixture("core.v1.ConfigMap.json", "v1", "ConfigMap")).ready).toBe(true);
  });
});
