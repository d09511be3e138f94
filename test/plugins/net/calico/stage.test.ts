/**
 * net/calico without a cluster: what it generates, held to upstream schemas and to a real
 * NetworkManager; what `config validate` refuses; what it asks of other stages; and render.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KubeObject, parseYaml, v } from "kubehyve";
import { builtinPlugins } from "../../../../plugins/index.ts";
import calicoPlugin from "../../../../plugins/net/calico/index.ts";
import { customResources, installation } from "../../../../plugins/net/calico/manifests.ts";
import {
  calicoNodeFiles,
  NETWORK_MANAGER_DROP_IN,
  networkManagerDropIn,
  RP_FILTER_SYSCTL,
} from "../../../../plugins/net/calico/node-files.ts";
import { optionsSchema } from "../../../../plugins/net/calico/options.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";
import { parseClusterText } from "../../../../src/core/config.ts";
import { createPluginContext } from "../../../../src/core/context.ts";
import { runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import exampleText from "../../../../src/example/kubehyve.yaml" with { type: "text" };
import { parseManifests } from "../../../../src/kube/apply.ts";
import { labCluster } from "../../../lab/cluster.ts";
import { serveFiles } from "../../../lab/http.ts";
import { defaultedInstallationSpec } from "../../../lab/kube/controllers/calico.ts";
import { resourcesOfCrd } from "../../../lab/kube/resources.ts";
import { validateAgainstSchema } from "../../../lab/kube/schema.ts";
import { oracle } from "../../../lab/oracles.ts";
import { findTool, have } from "../../../lab/prereq.ts";
import { CLUSTER_ID, RELEASE_PATH } from "./lab.ts";

// A whole `up` against the test server takes seconds; on a loaded 2-core machine, many.
setDefaultTimeout(90_000);

const work = mkdtempSync(join(tmpdir(), "kubehyve-calico-stage-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const options = (o: Record<string, unknown> = {}) => v.parse(optionsSchema, o);
const cluster = labCluster({ stages: { net: { plugin: "net/calico", options: {} } } });

function schemasOf(path: string): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const crd of parseManifests(readFileSync(oracle(path), "utf8"), path))
    for (const r of resourcesOfCrd(crd)) if (r.schema) out.set(`${r.group}/${r.version}/${r.kind}`, r.schema);
  return out;
}

describe("the custom resources", () => {
  // With the stage's labels, as they are applied.
  const objects = (): KubeObject[] =>
    customResources(
      createPluginContext({
        cluster,
        plugin: calicoPlugin,
        options: options(),
        stateDir: work,
        clusterId: CLUSTER_ID,
      }),
    );

  for (const source of [
    "releases/calico/manifests/operator-crds.yaml",
    "calico/operator.tigera.io_installations.yaml",
  ]) {
    test(`validate against the upstream schemas of ${source}, with objects closed`, () => {
      const schemas = schemasOf(source);
      const checked = objects().filter((o) => schemas.has(`${o.apiVersion}/${o.kind}`));
      expect(checked.map((o) => o.kind)).toContain("Installation");
      for (const obj of checked) {
        expect({
          kind: obj.kind,
          problems: validateAgainstSchema(obj, schemas.get(`${obj.apiVersion}/${obj.kind}`)!),
        }).toEqual({
          kind: obj.kind,
          problems: [],
        });
      }
    });
  }

  test("a misspelt field would be caught: the schemas are closed", () => {
    const schema = schemasOf("releases/calico/manifests/operator-crds.yaml").get(
      "operator.tigera.io/v1/Installation",
    )!;
    const wrong = installation(cluster, options());
    wrong.spec.calicoNetwork.ipPools[0].encapsulaton = "VXLAN";
    expect(validateAgainstSchema(wrong, schema).map((p) => `${p.kind} ${p.field}`)).toEqual([
      "unknown spec.calicoNetwork.ipPools[0].encapsulaton",
    ]);
  });

  test("use the cluster's pod CIDR and node subnet, VXLANCrossSubnet, and no FlexVolume", () => {
    const spec = installation(cluster, options()).spec;
    expect(spec.calicoNetwork.ipPools[0]).toMatchObject({
      cidr: "10.233.64.0/18",
      encapsulation: "VXLANCrossSubnet",
      blockSize: 26,
    });
    expect(spec.calicoNetwork.nodeAddressAutodetectionV4).toEqual({ cidrs: ["192.168.1.0/24"] });
    expect(spec.flexVolumePath).toBe("None");
  });

  test("give the IP pool every field the operator would default, so it never takes the list over", () => {
    const ours = installation(cluster, options()).spec;
    expect(defaultedInstallationSpec(ours).calicoNetwork.ipPools).toEqual(ours.calicoNetwork.ipPools);
    // Calico's own sample leaves them out: the operator would write the pool anew.
    const sample = parseYaml(readFileSync(oracle("calico/custom-resources.yaml"), "utf8").split("---")[0]!);
    expect(defaultedInstallationSpec(sample.spec).calicoNetwork.ipPools).not.toEqual(
      sample.spec.calicoNetwork.ipPools,
    );
  });
});

describe("the files every node gets", () => {
  test("are the NetworkManager drop-in and the rp_filter sysctl of Kubespray's Fedora CoreOS notes", () => {
    expect(calicoNodeFiles().map((f) => [f.path, f.mode])).toEqual([
      [NETWORK_MANAGER_DROP_IN, 0o644],
      [RP_FILTER_SYSCTL, 0o644],
    ]);
    // docs/operating_systems/fcos.md, the file and line it asks for.
    const fcos = readFileSync(oracle("kubespray/fcos.md"), "utf8");
    expect(fcos).toContain(`path: ${RP_FILTER_SYSCTL}`);
    expect(fcos).toContain(calicoNodeFiles()[1]!.contents.trim());
  });

  test.skipIf(!have("NetworkManager", "network-manager"))(
    "NetworkManager reads the drop-in beside Kubespray's own, and leaves Calico's interfaces unmanaged",
    () => {
      const dir = join(work, "nm");
      mkdirSync(join(dir, "conf.d"), { recursive: true });
      writeFileSync(join(dir, "NetworkManager.conf"), "");
      writeFileSync(join(dir, "conf.d", "calico.conf"), networkManagerDropIn());
      // roles/kubernetes/preinstall/tasks/0062-networkmanager-unmanaged-devices.yml writes this one always.
      writeFileSync(
        join(dir, "conf.d", "k8s.conf"),
        "[keyfile]\nunmanaged-devices+=interface-name:kube-ipvs0;interface-name:nodelocaldns\n",
      );
      const run = Bun.spawnSync(
        [
          findTool("NetworkManager")!,
          "--print-config",
          `--config=${join(dir, "NetworkManager.conf")}`,
          `--config-dir=${join(dir, "conf.d")}`,
          `--system-config-dir=${join(dir, "none")}`,
          `--intern-config=${join(dir, "intern.conf")}`,
        ],
        { stderr: "pipe", stdout: "pipe" },
      );
      expect(run.stderr.toString()).toBe("");
      expect(run.exitCode).toBe(0);
      const line = run.stdout
        .toString()
        .split("\n")
        .find((l) => l.startsWith("unmanaged-devices="));
      expect(line).toBe(
        "unmanaged-devices=interface-name:cali*,interface-name:tunl*,interface-name:vxlan.calico,interface-name:vxlan-v6.calico,interface-name:wireguard.cali,interface-name:wg-v6.cali,interface-name:kube-ipvs0,interface-name:nodelocaldns",
      );
    },
  );
});

describe("config validate for net/calico", () => {
  const validate = (o: Record<string, unknown> = {}, c = cluster) =>
    calicoPlugin.validate!({ cluster: c, options: options(o) });

  test("the example's options pass", () => {
    expect(validate()).toEqual([]);
  });

  test("a release kubehyve does not know needs its manifests' sha256", () => {
    expect(validate({ version: "v3.33.1" }).map((d) => [d.code, d.path])).toEqual([
      ["calico.release-unpinned", "stages.net.sha256.operator-crds.yaml"],
      ["calico.release-unpinned", "stages.net.sha256.tigera-operator.yaml"],
    ]);
    const pinned = {
      version: "v3.33.1",
      sha256: { "operator-crds.yaml": "a".repeat(64), "tigera-operator.yaml": "b".repeat(64) },
    };
    expect(validate(pinned)).toEqual([]);
  });

  test("blocks that do not fit the pod CIDR, or too few of them for the nodes, are errors", () => {
    const small = labCluster({ network: { ...cluster.network, podCidr: "10.233.64.0/27" } });
    expect(validate({}, small)).toEqual([
      expect.objectContaining({
        code: "calico.block-size",
        summary: "Calico's address blocks (/26) cannot be larger than the pod CIDR 10.233.64.0/27",
        path: "stages.net.blockSize",
      }),
    ]);
    expect(validate({ blockSize: 28 }, small)[0]!.summary).toBe(
      "the pod CIDR 10.233.64.0/27 holds 2 blocks of /28, fewer than the 3 nodes",
    );
  });
});

describe("what net/calico asks of the other stages", () => {
  test("the example lab's Kubespray variables and Ignition configs carry it", async () => {
    const lookup = { find: (id: string) => builtinPlugins.find((p) => p.id === id), searchPath: [] };
    const { cluster: example, stages } = parseClusterText(exampleText, "example", lookup);
    const out = join(work, "render");
    const result = await runEngine({
      command: "render",
      cluster: example,
      stages,
      stateDir: join(work, "render-state"),
      reporter: memoryReporter(),
      renderDir: out,
    });
    expect(result.exitCode).toBe(0);
    const vars = parseYaml(
      readFileSync(join(out, "k8s/inventory/group_vars/k8s_cluster/kubehyve.yml"), "utf8"),
    );
    expect(vars.kube_network_plugin).toBe("cni");
    for (const node of ["cp1", "w1", "w2"]) {
      const files = JSON.parse(readFileSync(join(out, "os", `${node}.ign`), "utf8")).storage.files as {
        path: string;
        contents: { source: string };
      }[];
      const nm = files.find((f) => f.path === NETWORK_MANAGER_DROP_IN)!;
      expect(decodeURIComponent(nm.contents.source.replace(/^data:,/, ""))).toBe(networkManagerDropIn());
      expect(files.map((f) => f.path)).toContain(RP_FILTER_SYSCTL);
    }
  });
});

describe("render", () => {
  test("without the release in the cache writes the custom resources and says where the manifests come from", async () => {
    const ctx = createPluginContext({
      cluster,
      plugin: calicoPlugin,
      options: options(),
      stateDir: join(work, "empty"),
      clusterId: CLUSTER_ID,
      artifacts: new DownloadCache({ dir: join(work, "empty-cache") }),
    });
    const files = await calicoPlugin.render!(ctx);
    expect(files.map((f) => f.path)).toEqual([
      "manifests/10-operator-crds.yaml.missing",
      "manifests/20-tigera-operator.yaml.missing",
      "manifests/30-custom-resources.yaml",
    ]);
    expect(String(files[0]!.content)).toContain(
      "\nhttps://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/operator-crds.yaml sha256:192f8b2d934ef24b62e86b7e1a6e1762d1c8af26a916f78057bc13fa5ed60f71\n",
    );
    expect(String(files[1]!.content)).toContain("/manifests/tigera-operator.yaml sha256:f18e0737");
    expect(String(files[1]!.content)).not.toContain("operator-crds.yaml");
    const crs = parseManifests(String(files[2]!.content), "render");
    expect(crs.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      "Installation/default",
      "APIServer/default",
    ]);
    expect(crs[0]!.metadata.labels).toEqual({
      "app.kubernetes.io/managed-by": "kubehyve",
      "kubehyve.io/stage": "net",
      "kubehyve.io/cluster": CLUSTER_ID,
    });
  });

  test("with the release in the cache writes every object of it, labelled", async () => {
    const files = serveFiles({
      [`${RELEASE_PATH}/operator-crds.yaml`]: Bun.file(
        oracle("releases/calico/manifests/operator-crds.yaml"),
      ),
      [`${RELEASE_PATH}/tigera-operator.yaml`]: Bun.file(
        oracle("releases/calico/manifests/tigera-operator.yaml"),
      ),
    });
    try {
      const artifacts = new DownloadCache({ dir: join(work, "cache"), mirror: files.url });
      const ctx = createPluginContext({
        cluster,
        plugin: calicoPlugin,
        options: options(),
        stateDir: join(work, "full"),
        clusterId: CLUSTER_ID,
        artifacts,
      });
      for (const name of ["operator-crds.yaml", "tigera-operator.yaml"])
        await artifacts.fetch({
          url: `https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/${name}`,
          sha256: name.startsWith("operator")
            ? "192f8b2d934ef24b62e86b7e1a6e1762d1c8af26a916f78057bc13fa5ed60f71"
            : "f18e073794207d372606bc3ea6f8fd73972f86d6828f4ba666dfe0d4aa8ab07f",
          name: `calico-v3.32.1-${name}`,
        });
      const rendered = await calicoPlugin.render!(ctx);
      expect(rendered.map((f) => f.path)).toEqual([
        "manifests/10-operator-crds.yaml",
        "manifests/20-tigera-operator.yaml",
        "manifests/30-custom-resources.yaml",
      ]);
      const upstream = parseManifests(
        readFileSync(oracle("releases/calico/manifests/operator-crds.yaml"), "utf8"),
        "up",
      );
      const ours = parseManifests(String(rendered[0]!.content), "render");
      expect(ours).toHaveLength(32);
      // The same objects, with the stage's labels added and nothing else changed.
      ours.forEach((o, i) => {
        const { labels, ...meta } = o.metadata;
        expect(labels).toMatchObject({ "kubehyve.io/stage": "net" });
        const { labels: theirs, ...upstreamMeta } = upstream[i]!.metadata;
        expect({ ...o, metadata: meta }).toEqual({ ...upstream[i]!, metadata: upstreamMeta });
        const ownKeys = ["app.kubernetes.io/managed-by", "kubehyve.io/stage", "kubehyve.io/cluster"];
        expect(theirs ?? {}).toEqual(
          Object.fromEntries(Object.entries(labels ?? {}).filter(([k]) => !ownKeys.includes(k))),
        );
      });
    } finally {
      await files.stop();
    }
  });
});
