import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Diagnostic, v } from "kubehyve";
import { parse } from "yaml";
import { kubesprayPlugin } from "../../../../plugins/k8s/kubespray/index.ts";
import { KNOWN_RELEASES, optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import { labCluster, labNode } from "../../../lab/cluster.ts";
import { oracle } from "../../../lab/oracles.ts";
import { STAND_IN_TREE } from "./lab.ts";

const withNet = (nodes = labCluster().nodes) =>
  labCluster({
    nodes,
    stages: { k8s: { plugin: "k8s/kubespray", options: {} }, net: { plugin: "net/calico", options: {} } },
  });

function validate(options: Record<string, unknown> = {}, cluster = withNet()): Diagnostic[] {
  return kubesprayPlugin.validate!({ cluster, options: v.parse(optionsSchema, options) });
}
const errors = (found: Diagnostic[]) => found.filter((d) => d.severity === "error");

describe("config validate for the k8s/kubespray stage", () => {
  test("the example lab passes", () => {
    expect(validate()).toEqual([]);
  });

  test("an even number of control planes is an error, as Kubespray's assert makes it", () => {
    const nodes = [
      labNode("cp1", "control-plane", "192.168.1.21"),
      labNode("cp2", "control-plane", "192.168.1.22"),
    ];
    expect(errors(validate({}, withNet(nodes)))).toEqual([
      expect.objectContaining({
        code: "kubespray.etcd-even-members",
        path: "nodes",
        hint: "use 1 or 3 control-plane nodes",
        detail: expect.stringContaining('"Stop if even number of etcd hosts"'),
      }),
    ]);
  });

  test("a Kubernetes version the pinned release has no checksums for is an error listing the range", () => {
    const found = errors(validate({ kubernetesVersion: "1.36.0" }));
    expect(found).toEqual([
      expect.objectContaining({
        code: "kubespray.kubernetes-version-unsupported",
        path: "stages.k8s.kubernetesVersion",
        summary:
          "Kubespray v2.31.0 cannot install Kubernetes 1.36.0: it has checksums for 1.33.0 to 1.35.4 only",
      }),
    ]);
    expect(errors(validate({ kubernetesVersion: "1.32.9" }))).toHaveLength(1);
    expect(errors(validate({ kubernetesVersion: "1.33.0" }))).toEqual([]);
    expect(errors(validate({ kubernetesVersion: "1.34.7" }))).toEqual([]);
    expect(errors(validate({ kubernetesVersion: "1.34.8" }))).toHaveLength(1);
  });

  test("the known versions are those of the stand-in tree's checksums, which follow upstream's", async () => {
    const checksums = parse(
      await readFile(join(STAND_IN_TREE, "roles/kubespray_defaults/vars/main/checksums.yml"), "utf8"),
    ) as Record<string, { amd64: Record<string, unknown> }>;
    const sorted = (list: string[]) => [...list].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    for (const name of ["kubelet_checksums", "kubeadm_checksums", "kubectl_checksums"]) {
      expect(sorted(Object.keys(checksums[name]!.amd64))).toEqual(
        sorted([...KNOWN_RELEASES["v2.31.0"]!.kubernetesVersions]),
      );
    }
    // Kubespray's default is the newest of them (kube_version in kubespray_defaults).
    expect(Object.keys(checksums.kubelet_checksums!.amd64)[0]).toBe("1.35.4");
  });

  test("booleans given as strings are errors naming the extraVar, as validate_inventory refuses them", () => {
    const found = errors(
      validate({
        extraVars: { download_run_once: "false", helm_enabled: "true", ignore_assert_errors: "no" },
      }),
    );
    expect(found.map((d) => [d.code, d.path])).toEqual([
      ["kubespray.var-not-boolean", "stages.k8s.extraVars.download_run_once"],
      ["kubespray.var-not-boolean", "stages.k8s.extraVars.helm_enabled"],
      ["kubespray.var-not-boolean", "stages.k8s.extraVars.ignore_assert_errors"],
    ]);
    expect(found[0]!.hint).toBe("write download_run_once: false (no quotes)");
    expect(errors(validate({ extraVars: { download_run_once: true } }))).toEqual([]);
  });

  test("a pod network too small for the nodes at kube_network_node_prefix is an error", () => {
    const small = withNet();
    small.network = { ...small.network, podCidr: "10.233.64.0/23" };
    expect(errors(validate({}, small))).toEqual([
      expect.objectContaining({
        code: "kubespray.pod-cidr-too-small",
        path: "network.podCidr",
        summary: "the pod network 10.233.64.0/23 holds 2 node ranges of /24, fewer than the 3 nodes",
      }),
    ]);
    // A longer prefix per node makes room, as Kubespray's sample explains.
    expect(errors(validate({ extraVars: { kube_network_node_prefix: 25 } }, small))).toEqual([]);
    // Kubespray's Calico allocates blocks itself: the assert does not apply without a net stage.
    const { net: _net, ...stages } = small.stages;
    expect(errors(validate({}, { ...small, stages }))).toEqual([]);
  });

  test("a node prefix with fewer addresses than kubelet_max_pods, or given as a string, is an error", () => {
    expect(
      errors(validate({ extraVars: { kube_network_node_prefix: 26 } })).map((d) => [d.code, d.path]),
    ).toEqual([["kubespray.node-prefix-too-small", "stages.k8s.extraVars.kube_network_node_prefix"]]);
    expect(errors(validate({ extraVars: { kube_network_node_prefix: 26, kubelet_max_pods: 60 } }))).toEqual(
      [],
    );
    expect(errors(validate({ extraVars: { kube_network_node_prefix: "24" } })).map((d) => d.code)).toEqual([
      "kubespray.var-not-integer",
    ]);
  });

  test("choices Kubespray does not support, a pod range that is not a network, and removed variables are errors", () => {
    const found = errors(
      validate({
        extraVars: {
          kube_proxy_mode: "userspace",
          kube_pods_subnet: "10.233.64.1/18",
          kubelet_static_pod_path: "/x",
        },
      }),
    );
    expect(found.map((d) => [d.code, d.path])).toEqual([
      ["kubespray.var-unsupported", "stages.k8s.extraVars.kube_proxy_mode"],
      ["kubespray.var-removed", "stages.k8s.extraVars.kubelet_static_pod_path"],
      ["kubespray.var-not-network", "stages.k8s.extraVars.kube_pods_subnet"],
    ]);
  });

  test("extraVars may not set connection settings, kubehyve's own variables, or invalid names", () => {
    const found = errors(
      validate({ extraVars: { ansible_user: "root", kube_version: "1.35.0", "bad-name": 1 } }),
    );
    expect(found.map((d) => [d.code, d.path])).toEqual([
      ["kubespray.var-connection", "stages.k8s.extraVars.ansible_user"],
      ["kubespray.var-owned", "stages.k8s.extraVars.kube_version"],
      ["kubespray.var-name", "stages.k8s.extraVars.bad-name"],
    ]);
  });

  test("extraVars may not move or turn off the admin kubeconfig kubehyve takes over", () => {
    const found = errors(
      validate({ extraVars: { kubeconfig_localhost: false, artifacts_dir: "/tmp/artifacts" } }),
    );
    expect(found.map((d) => [d.code, d.path])).toEqual([
      ["kubespray.var-owned", "stages.k8s.extraVars.kubeconfig_localhost"],
      ["kubespray.var-owned", "stages.k8s.extraVars.artifacts_dir"],
    ]);
  });

  test("a template in extraVars is a warning naming where: Kubespray gets it as plain text", () => {
    const found = validate({
      extraVars: {
        kube_apiserver_ip: "{{ lookup('pipe', 'id') }}",
        containerd_registries_mirrors: [{ prefix: "docker.io", mirrors: [{ host: "{% raw %}x" }] }],
        kube_oidc_url: "https://example.invalid/{#",
        kubelet_custom_flags: ["{not a template}"],
      },
    }).filter((d) => d.code === "kubespray.var-template");
    expect(found.map((d) => [d.severity, d.path])).toEqual([
      ["warn", "stages.k8s.extraVars.kube_apiserver_ip"],
      ["warn", "stages.k8s.extraVars.containerd_registries_mirrors[0].mirrors[0].host"],
      ["warn", "stages.k8s.extraVars.kube_oidc_url"],
    ]);
  });

  test("a lone surrogate in an extraVar, in a value or a key, is an error naming where", () => {
    const found = errors(
      validate({ extraVars: { kube_oidc_url: "a\ud800", containerd_registries_mirrors: [{ "\udc00": 1 }] } }),
    );
    expect(found.map((d) => [d.code, d.path])).toEqual([
      ["kubespray.var-not-text", "stages.k8s.extraVars.kube_oidc_url"],
      ["kubespray.var-not-text", "stages.k8s.extraVars.containerd_registries_mirrors[0]"],
    ]);
  });

  test("another Kubespray release needs its content pin, and its versions cannot be checked", () => {
    const found = validate({ version: "v2.30.0", kubernetesVersion: "1.33.5" });
    expect(found.map((d) => [d.code, d.severity, d.path])).toEqual([
      ["kubespray.release-unknown", "warn", "stages.k8s.version"],
      ["kubespray.release-pin-missing", "error", "stages.k8s.release.tree-sha256-v1"],
    ]);
    expect(
      validate({ version: "v2.30.0", release: { "tree-sha256-v1": "a".repeat(64) } }).map((d) => d.severity),
    ).toEqual(["warn"]);
  });

  test("the ssh user and the release URL are held to allowlists", () => {
    for (const options of [
      { ssh: { user: "core; rm -rf /" } },
      { ssh: { user: "Core" } },
      { ssh: { port: 0 } },
      { release: { url: "file:///etc/passwd" } },
      { release: { "tree-sha256-v1": "XYZ" } },
    ]) {
      expect(v.safeParse(optionsSchema, options).success).toBe(false);
    }
  });

  test("the defaults the checks assume are Kubespray v2.31.0's", async () => {
    const defaults = parse(
      await readFile(oracle("releases/kubespray/roles/kubespray_defaults/defaults/main/main.yml"), "utf8"),
    ) as Record<string, unknown>;
    expect(defaults).toMatchObject({
      kube_network_node_prefix: 24,
      ipv4_stack: true,
      dns_mode: "coredns",
      cert_management: "script",
      resolvconf_mode: "host_resolvconf",
      etcd_deployment_type: "host",
      kube_external_ca_mode: false,
    });
  });
});
