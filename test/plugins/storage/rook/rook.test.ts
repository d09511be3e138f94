/**
 * storage/rook: its sizing and static rules, its manifests against Rook v1.20.6's CRD schemas, check
 * on simulated nodes answering with util-linux's own output, and up / verify / destroy against the
 * Kubernetes API test server playing Rook's operator and the ceph-csi driver.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cephHealth } from "../../../../plugins/storage/rook/health.ts";
import plugin, { KNOWN_KINDS } from "../../../../plugins/storage/rook/index.ts";
import {
  blockPools,
  canaryClaim,
  canaryPod,
  cephCluster,
  storageClass,
} from "../../../../plugins/storage/rook/manifests.ts";
import { clockSkew, flexVolumeUnderUsr } from "../../../../plugins/storage/rook/nodes.ts";
import { redundancyNotice, validateRook } from "../../../../plugins/storage/rook/options.ts";
import {
  dataDiskDevice,
  memoryPlan,
  mgrCount,
  monCount,
  poolReplicas,
} from "../../../../plugins/storage/rook/sizing.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";
import { createPluginContext } from "../../../../src/core/context.ts";
import type { Diagnostic } from "../../../../src/core/diagnostics.ts";
import type { Cluster, NodeSpec } from "../../../../src/core/model.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import { GiB } from "../../../../src/core/units.ts";
import { parseManifests } from "../../../../src/kube/apply.ts";
import type { KubeObject } from "../../../../src/kube/types.ts";
import { RecordingTarget } from "../../../../src/targets/recording.ts";
import { DATA_DISK, labCluster, labNode } from "../../../lab/cluster.ts";
import { type RookStandIn, rookStandIn, specChecks } from "../../../lab/kube/controllers/rook.ts";
import { defaultControllers, pvcController } from "../../../lab/kube/controllers.ts";
import { resourcesOfCrd } from "../../../lab/kube/resources.ts";
import { validateAgainstSchema } from "../../../lab/kube/schema.ts";
import type { RequestLogEntry } from "../../../lab/kube/server.ts";
import { type StageLab, startStageLab } from "../../../lab/kube/stage-lab.ts";
import { oracle } from "../../../lab/oracles.ts";
import { have } from "../../../lab/prereq.ts";
import { type FakeNode, fakeNode } from "./fake-node.ts";

const OPTIONS = { pool: "replicapool", defaultStorageClass: true, canary: true };

/** A request that changed something: a write that was not a server-side dry run. */
const isMutating = (r: RequestLogEntry) =>
  ["POST", "PUT", "PATCH", "DELETE"].includes(r.method) &&
  new URLSearchParams(r.query.replace(/^\?/, "")).get("dryRun") !== "All";
const codes = (ds: Diagnostic[]) => ds.map((d) => `${d.severity} ${d.code}`);

describe("sizing to the lab", () => {
  test("mons are the largest odd number up to three, mgrs one on small labs", () => {
    expect([1, 2, 3, 4, 5, 7].map(monCount)).toEqual([1, 1, 3, 3, 3, 3]);
    expect([1, 3, 4, 5].map(mgrCount)).toEqual([1, 1, 1, 2]);
  });

  test("pools keep one copy per node with data disks, at most three", () => {
    expect(poolReplicas(labCluster())).toBe(2);
    const one = labCluster({
      nodes: [labNode("n1", "control-plane", "192.168.1.21", { disks: [DATA_DISK] })],
    });
    expect(poolReplicas(one)).toBe(1);
    const four = labCluster({
      nodes: ["a", "b", "c", "d"].map((n, i) =>
        labNode(n, "worker", `192.168.1.${30 + i}`, { disks: [DATA_DISK] }),
      ),
    });
    expect(poolReplicas(four)).toBe(3);
  });

  test("data disks are named as the guest's kernel names them after the boot disk", () => {
    const virtio = labCluster();
    expect([0, 1, 24, 25].map((i) => dataDiskDevice(virtio, i))).toEqual(["vdb", "vdc", "vdz", "vdaa"]);
    const nvme = labCluster({
      stages: { hypervisor: { plugin: "hypervisor/bhyve", options: { diskType: "nvme" } } },
    });
    expect([0, 1].map((i) => dataDiskDevice(nvme, i))).toEqual(["nvme1n1", "nvme2n1"]);
  });

  test("the CephCluster puts OSDs on the named data disks only, never on devices Rook finds itself", () => {
    const spec = cephCluster(labCluster()).spec;
    expect(spec.storage).toEqual({
      useAllNodes: false,
      useAllDevices: false,
      nodes: [
        { name: "w1", devices: [{ name: "vdb" }] },
        { name: "w2", devices: [{ name: "vdb" }] },
      ],
    });
    expect(spec.mon).toEqual({ count: 3, allowMultiplePerNode: false });
    expect(spec.mgr.count).toBe(1);
    expect(spec.dataDirHostPath).toBe("/var/lib/rook");
  });

  test("fewer than three replicas mute POOL_NO_REDUNDANCY as cluster-test.yaml does, and say so", () => {
    const cluster = labCluster();
    expect(cephCluster(cluster).spec.cephConfig).toEqual({
      global: { osd_pool_default_size: "2", mon_warn_on_pool_no_redundancy: "false" },
    });
    const pools = blockPools(cluster, "replicapool");
    expect(
      pools.map(
        (p) => `${p.metadata.name} ${p.spec.replicated.size} ${p.spec.replicated.requireSafeReplicaSize}`,
      ),
    ).toEqual(["builtin-mgr 2 false", "replicapool 2 false"]);
    expect(pools[1]!.spec.failureDomain).toBe("host");
    expect(validateRook({ cluster, options: OPTIONS })).toEqual([]);
    expect(redundancyNotice(cluster).map((d) => `${d.severity} ${d.code}`)).toEqual([
      "warn rook.no-redundancy",
    ]);
    const three = labCluster({
      nodes: ["a", "b", "c"].map((n, i) =>
        labNode(n, "worker", `192.168.1.${30 + i}`, { memory: 6 * GiB, disks: [DATA_DISK] }),
      ),
    });
    expect(cephCluster(three).spec.cephConfig).toBeUndefined();
    expect(blockPools(three, "replicapool").map((p) => p.metadata.name)).toEqual(["replicapool"]);
    expect(validateRook({ cluster: three, options: OPTIONS })).toEqual([]);
    expect(redundancyNotice(three)).toEqual([]);
  });
});

describe("validate: the cluster file's disks and memory", () => {
  test("a lab without data disks, or with a disk too small for an OSD, is refused with the paths", () => {
    const none = labCluster({ nodes: [labNode("cp1", "control-plane", "192.168.1.21")] });
    expect(validateRook({ cluster: none, options: OPTIONS }).map((d) => `${d.code} ${d.path}`)).toEqual([
      "rook.no-data-disks nodes",
    ]);
    const small = labCluster({
      nodes: [labNode("w1", "worker", "192.168.1.22", { disks: [{ name: "data1", size: 4 * GiB }] })],
    });
    expect(validateRook({ cluster: small, options: OPTIONS }).map((d) => `${d.code} ${d.path}`)).toContain(
      "rook.disk-too-small nodes[0].disks[0]",
    );
  });

  test("each node needs Kubernetes' share plus 2 GiB per OSD, 1 GiB per mon and 512 MiB for the mgr", () => {
    const plan = memoryPlan(labCluster());
    expect(plan.map((p) => `${p.node}: ${p.needs.join(" + ")}`)).toEqual([
      "cp1: Kubernetes 1.5 GiB + mon 1 GiB + mgr 512 MiB",
      "w1: Kubernetes 1 GiB + 1 OSD × 2 GiB + mon 1 GiB",
      "w2: Kubernetes 1 GiB + 1 OSD × 2 GiB + mon 1 GiB",
    ]);
    const tight = labCluster();
    tight.nodes[1]!.memory = 3 * GiB;
    const [d] = validateRook({ cluster: tight, options: OPTIONS }).filter((x) => x.code === "rook.memory");
    expect(d).toMatchObject({ severity: "error", path: "nodes[1].memory" });
    expect(d!.summary).toBe(
      "w1 has 3 GiB of memory, 1 GiB short of Kubernetes 1 GiB + 1 OSD × 2 GiB + mon 1 GiB",
    );
  });
});

describe("the manifests", () => {
  const file = "releases/rook/deploy/examples/crds.yaml";
  const schemas = new Map<string, Record<string, unknown>>();
  for (const crd of parseManifests(readFileSync(oracle(file), "utf8"), file)) {
    for (const r of resourcesOfCrd(crd))
      if (r.schema) schemas.set(`${r.group}/${r.version}/${r.kind}`, r.schema);
  }
  const clusters: [string, Cluster][] = [
    ["the example lab", labCluster()],
    [
      "three storage nodes",
      labCluster({
        nodes: ["a", "b", "c"].map((n, i) =>
          labNode(n, "worker", `192.168.1.${30 + i}`, {
            disks: [DATA_DISK, { name: "data2", size: 20 * GiB }],
          }),
        ),
      }),
    ],
  ];
  for (const [name, cluster] of clusters) {
    test(`${name}: CephCluster and CephBlockPools validate against Rook v1.20.6's CRD schemas, objects closed`, () => {
      for (const obj of [cephCluster(cluster), ...blockPools(cluster, "replicapool")]) {
        const schema = schemas.get(`${obj.apiVersion}/${obj.kind}`)!;
        expect({ obj: obj.metadata.name, problems: validateAgainstSchema(obj, schema) }).toEqual({
          obj: obj.metadata.name,
          problems: [],
        });
      }
    });
  }

  test("the schema check can fail: a misspelt field is found", () => {
    const obj = cephCluster(labCluster());
    obj.spec.storage.useAllDevice = false;
    const problems = validateAgainstSchema(obj, schemas.get("ceph.rook.io/v1/CephCluster")!);
    expect(problems.map((p) => `${p.kind} ${p.field}`)).toEqual(["unknown spec.storage.useAllDevice"]);
  });

  test("the StorageClass is csi/rbd/storageclass.yaml's, the default one", () => {
    const sc = storageClass("replicapool", true);
    expect(sc.provisioner).toBe("rook-ceph.rbd.csi.ceph.com");
    expect(sc.metadata.annotations).toEqual({ "storageclass.kubernetes.io/is-default-class": "true" });
    expect((sc.parameters as Record<string, string>)["csi.storage.k8s.io/node-stage-secret-name"]).toBe(
      "rook-csi-rbd-node",
    );
  });
});

describe("Ceph's health as verify reports it", () => {
  /** A CephCluster status in the shape Rook's cephstatus.go writes. */
  const withHealth = (
    health: string,
    details: Record<string, { message: string; severity: string }>,
  ): KubeObject => ({
    apiVersion: "ceph.rook.io/v1",
    kind: "CephCluster",
    metadata: { name: "rook-ceph", namespace: "rook-ceph" },
    status: {
      phase: "Ready",
      state: "Created",
      message: "Cluster created successfully",
      ceph: { health, details, lastChecked: "2026-08-20T10:00:00Z" },
    },
  });

  test("a health code without its detail object, or details that are no map, still says what it can", () => {
    const nullDetail = withHealth("HEALTH_WARN", {}) as KubeObject & {
      status: { ceph: { details: unknown } };
    };
    nullDetail.status.ceph.details = { MON_DISK_LOW: null, OSD_DOWN: { severity: "HEALTH_ERR", message: 3 } };
    expect(codes(cephHealth(nullDetail))).toEqual([
      "warn rook.health",
      "warn rook.ceph.MON_DISK_LOW",
      "error rook.ceph.OSD_DOWN",
    ]);
    expect(cephHealth(nullDetail).map((d) => d.summary)).toContain("OSD_DOWN: (no message)");
    nullDetail.status.ceph.details = ["MON_DISK_LOW"];
    expect(codes(cephHealth(nullDetail))).toEqual(["warn rook.health"]);
  });

  test("HEALTH_OK and Ready is one ok line", () => {
    expect(codes(cephHealth(withHealth("HEALTH_OK", {})))).toEqual(["ok rook.health"]);
  });

  test("each health code comes with its message and, for those labs meet, what to do", () => {
    const cases: [string, string, RegExp][] = [
      ["TOO_FEW_OSDS", "OSD count 1 < osd_pool_default_size 2", /every data disk is empty/],
      ["MON_DISK_LOW", "mons a,b,c are low on available space", /free space on that node/],
      ["MON_CLOCK_SKEW", "clock skew detected on mon.b", /same NTP server/],
      ["POOL_NO_REDUNDANCY", "1 pool(s) have no replicas configured", /mon_warn_on_pool_no_redundancy false/],
      [
        "AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED",
        "mons are allowing insecure global_id reclaim",
        /auth_allow_insecure_global_id_reclaim false/,
      ],
      [
        "AUTH_INSECURE_GLOBAL_ID_RECLAIM",
        "client is using insecure global_id reclaim",
        /auth_allow_insecure_global_id_reclaim false/,
      ],
    ];
    const details = Object.fromEntries(
      cases.map(([code, message]) => [code, { message, severity: "HEALTH_WARN" }]),
    );
    const ds = cephHealth(withHealth("HEALTH_WARN", details));
    expect(ds[0]).toMatchObject({
      severity: "warn",
      code: "rook.health",
      summary: "Ceph reports HEALTH_WARN",
    });
    for (const [code, message, advice] of cases) {
      const d = ds.find((x) => x.code === `rook.ceph.${code}`)!;
      expect(d.summary).toBe(`${code}: ${message}`);
      expect(d.hint).toMatch(advice);
    }
  });

  test("an unknown code still gets its message and a way to learn more; HEALTH_ERR is an error", () => {
    const ds = cephHealth(
      withHealth("HEALTH_ERR", {
        PG_DAMAGED: { message: "Possible data damage: 1 pg inconsistent", severity: "HEALTH_ERR" },
      }),
    );
    expect(codes(ds)).toEqual(["error rook.health", "error rook.ceph.PG_DAMAGED"]);
    expect(ds[1]!.hint).toContain("ceph health detail");
  });

  test("a cluster that is not Ready says its phase and message", () => {
    const obj = withHealth("HEALTH_ERR", { error: { message: "failed to get status", severity: "Urgent" } });
    obj.status.phase = "Progressing";
    obj.status.message = "Configuring Ceph Mons";
    const ds = cephHealth(obj);
    expect(ds[0]!.summary).toBe(
      "CephCluster rook-ceph/rook-ceph is not Ready (Progressing: Configuring Ceph Mons)",
    );
  });

  test("the operator stand-in raises TOO_FEW_OSDS and POOL_NO_REDUNDANCY as Ceph does for the spec", () => {
    const cluster = labCluster({ nodes: [labNode("w1", "worker", "192.168.1.22", { disks: [DATA_DISK] })] });
    const cc = cephCluster(cluster);
    const pools = blockPools(cluster, "replicapool");
    expect(specChecks(cc, pools, new Set(["w1"]))).toEqual({});
    const unmuted = { ...cc, spec: { ...cc.spec, cephConfig: undefined } };
    expect(specChecks(unmuted, pools, new Set(["w1"]))).toEqual({
      TOO_FEW_OSDS: { severity: "HEALTH_WARN", message: "OSD count 1 < osd_pool_default_size 3" },
      POOL_NO_REDUNDANCY: { severity: "HEALTH_WARN", message: "2 pool(s) have no replicas configured" },
    });
  });
});

describe("clocks and FlexVolume", () => {
  test("clocks further apart than Ceph's 50 ms, beyond what the round trips can tell, are MON_CLOCK_SKEW", () => {
    expect(
      clockSkew([
        { node: "w1", offsetMs: 10, uncertaintyMs: 2 },
        { node: "w2", offsetMs: 40, uncertaintyMs: 2 },
      ]).severity,
    ).toBe("ok");
    const d = clockSkew([
      { node: "w1", offsetMs: -100, uncertaintyMs: 2 },
      { node: "w2", offsetMs: 30, uncertaintyMs: 2 },
    ]);
    expect(d).toMatchObject({ severity: "error", code: "rook.clock-skew" });
    expect(d.summary).toContain("w2 and w1 are 130 ms apart");
    expect(d.hint).toBe(
      "ssh core@w2 chronyc tracking; ssh core@w1 chronyc tracking   # both should follow the same NTP server",
    );
  });

  test("50 ms beyond the readings' uncertainty is allowed, a millisecond more is not", () => {
    const skew = (apart: number, uncertaintyMs: number) =>
      clockSkew([
        { node: "w1", offsetMs: 10, uncertaintyMs },
        { node: "w2", offsetMs: 10 + apart, uncertaintyMs },
      ]).code;
    expect(skew(54, 2)).toBe("rook.clocks");
    expect(skew(55, 2)).toBe("rook.clock-skew");
    // 60 ms apart, but each reading may be 6 ms off: they may be only 48 ms apart.
    expect(skew(60, 6)).toBe("rook.clocks");
  });

  test("a FlexVolume directory under /usr is found in the kubelet's config or flags", () => {
    const config =
      "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nvolumePluginDir: /usr/libexec/kubernetes/kubelet-plugins/volume/exec\n";
    expect(flexVolumeUnderUsr(config, undefined)).toEqual([
      "/etc/kubernetes/kubelet-config.yaml: volumePluginDir: /usr/libexec/kubernetes/kubelet-plugins/volume/exec",
    ]);
    expect(
      flexVolumeUnderUsr(
        config.replace("/usr/libexec/kubernetes", "/var/lib/kubelet"),
        'KUBELET_ARGS="--volume-plugin-dir=/usr/local/flex"',
      ),
    ).toEqual(["/etc/kubernetes/kubelet.env: --volume-plugin-dir=/usr/local/flex"]);
    expect(flexVolumeUnderUsr(undefined, undefined)).toEqual([]);
    // /usr itself is under /usr; a directory whose name only starts with "usr" is not.
    expect(flexVolumeUnderUsr("volumePluginDir: /usr\n", "--volume-plugin-dir=/usrdata/flex")).toEqual([
      "/etc/kubernetes/kubelet-config.yaml: volumePluginDir: /usr",
    ]);
  });
});

describe("check, up, verify and destroy against the API test server", () => {
  let lab: StageLab;
  let rook: RookStandIn;
  const nodes = new Map<string, FakeNode>();
  const cluster = labCluster({ stages: { os: { plugin: "os/coreos", options: {} } } });
  const nodeTarget = (n: NodeSpec) => nodes.get(n.name)!.target;

  beforeAll(async () => {
    if (!have("openssl", "openssl")) return;
    for (const n of cluster.nodes) nodes.set(n.name, fakeNode(n.name));
    rook = rookStandIn();
    const controllers = [...defaultControllers().filter((c) => c !== pvcController), ...rook.controllers];
    lab = await startStageLab(cluster, controllers);
    for (const n of cluster.nodes) lab.server.setNodeReady(n.name, true, { address: n.address });
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  }, 60_000);

  test("verify before Rook is installed says so, also while its CRDs do not exist", async () => {
    const ds = await plugin.verify!(lab.ctx(plugin, OPTIONS, { node: nodeTarget }) as never);
    expect(codes(ds)).toEqual(["error rook.no-cluster"]);
  }, 60_000);

  test("check finds a data disk with a partition table and gives the wipefs line that frees it", async () => {
    nodes.get("w1")!.disk.partitioned = true;
    try {
      const { diagnostics } = await plugin.check(lab.ctx(plugin, OPTIONS, { node: nodeTarget }) as never);
      const w1 = diagnostics.find((d) => d.code === "rook.disk-not-empty")!;
      expect(w1.summary).toBe(
        "data disk data1 (50 GiB) of w1 at /dev/vdb is in use: /dev/vdb1 is mounted at /home/archive (the boot disk?); has a gpt partition table; has partitions vdb1: Rook will not put an OSD on it",
      );
      expect(w1.hint).toBe("if nothing on it is needed: ssh core@w1 sudo wipefs --all /dev/vdb");
      expect(codes(diagnostics)).toContain("error rook.too-few-disks");
      expect(codes(diagnostics)).toContain("ok rook.disk-free");
    } finally {
      nodes.get("w1")!.disk.partitioned = false;
    }
  }, 60_000);

  test("a disk whose signatures cannot be read is not taken for empty", async () => {
    const w2 = nodes.get("w2")!;
    const failing = new RecordingTarget([], "core@w2")
      .on(["sudo", "-n", "wipefs"], { code: 1, stderr: "sudo: a password is required\n" })
      .on(
        () => true,
        (argv, opts) => w2.target.run(argv, opts),
      );
    const { diagnostics } = await plugin.check(
      lab.ctx(plugin, OPTIONS, { node: (n) => (n.name === "w2" ? failing : nodeTarget(n)) }) as never,
    );
    const d = diagnostics.find((x) => x.code === "rook.disk-unread")!;
    expect(d.summary).toBe("cannot read the signatures on /dev/vdb of w2: sudo: a password is required");
    expect(codes(diagnostics)).toContain("error rook.too-few-disks");
  }, 60_000);

  test("check flags a FlexVolume directory under /usr on a Fedora CoreOS node", async () => {
    nodes.get("cp1")!.kubeletConfig =
      "kind: KubeletConfiguration\nvolumePluginDir: /usr/libexec/kubernetes/kubelet-plugins/volume/exec\n";
    try {
      const { diagnostics } = await plugin.check(lab.ctx(plugin, OPTIONS, { node: nodeTarget }) as never);
      const flex = diagnostics.filter((d) => d.code === "rook.flexvolume-under-usr");
      expect(flex.map((d) => d.target)).toEqual(["cp1"]);
      expect(flex[0]!.hint).toContain("kubelet_flexvolumes_plugins_dir: /var/lib/kubelet/volumeplugins");
    } finally {
      nodes.get("cp1")!.kubeletConfig = undefined;
    }
  }, 60_000);

  test("a fresh cluster: each file's objects planned for creation, applied in the documented order, Ready and HEALTH_OK, canary bound and cleaned up", async () => {
    const ctx = lab.ctx(plugin, OPTIONS, { node: nodeTarget });
    const first = await plugin.check(ctx as never);
    expect(codes(first.diagnostics).filter((c) => !c.startsWith("ok"))).toEqual(["warn rook.no-redundancy"]);
    const plan = [
      "Rook v1.20.6 crds.yaml: create 21 objects",
      "Rook v1.20.6 common.yaml: create 36 objects",
      "Rook v1.20.6 csi-operator.yaml: create 60 objects",
      "Rook v1.20.6 operator.yaml: create 6 objects",
      "Rook's Ceph cluster (3 mon(s), 2 OSD(s) on w1:vdb, w2:vdb, 2 replica(s)) and StorageClass rook-ceph-block: create 4 objects",
    ];
    expect(first.changes.map((c) => c.summary)).toEqual(plan);
    await plugin.apply!(ctx as never, first.changes);
    expect(ctx.wetLog.filter((l) => l.startsWith("Rook"))).toEqual(plan);
    // The OSDs now hold the disks.
    for (const n of nodes.values()) n.disk.bluestore = true;

    const diagnostics = await plugin.verify!(ctx as never);
    expect(codes(diagnostics)).toEqual(["ok rook.health", "ok rook.canary"]);
    expect(lab.server.get("v1", "PersistentVolumeClaim", "kubehyve-canary", "rook-ceph")).toBeUndefined();
    expect(lab.server.get("v1", "Pod", "kubehyve-canary", "rook-ceph")).toBeUndefined();
  }, 60_000);

  test("a second up changes nothing, and the OSDs' BlueStore labels are taken for this cluster's", async () => {
    const ctx = lab.ctx(plugin, OPTIONS, { node: nodeTarget });
    const before = lab.server.resourceVersion();
    const again = await plugin.check(ctx as never);
    expect(again.changes).toEqual([]);
    expect(codes(again.diagnostics).filter((c) => c.includes("disk"))).toEqual([
      "ok rook.disk-in-use",
      "ok rook.disk-in-use",
    ]);
    expect(lab.server.resourceVersion()).toBe(before);
  }, 60_000);

  test("a pool the stage applied before and no longer renders is pruned, asking first, and a pool it did not make is not", async () => {
    const kube = await lab.kube();
    const live = lab.server.get("ceph.rook.io/v1", "CephBlockPool", "replicapool", "rook-ceph") as KubeObject;
    const pool = (name: string, labels?: Record<string, string>): KubeObject => ({
      apiVersion: "ceph.rook.io/v1",
      kind: "CephBlockPool",
      metadata: { name, namespace: "rook-ceph", ...(labels ? { labels } : {}) },
      spec: { failureDomain: "host", replicated: { size: 2, requireSafeReplicaSize: false } },
    });
    // The pool of an earlier `pool:` name, with the labels the stage gave it (a rename through the
    // stage itself would also update the StorageClass's parameters, which a real API server refuses:
    // kubernetes pkg/apis/storage/validation ValidateStorageClassUpdate), and one made by hand.
    await kube.apply(pool("oldpool", live.metadata.labels));
    await kube.apply(pool("handmade"));
    const ctx = lab.ctx(plugin, OPTIONS, { node: nodeTarget });
    const { changes } = await plugin.check(ctx as never);
    expect(changes.map((c) => [c.kind, c.summary, c.disruptive])).toEqual([
      [
        "rook.prune",
        "delete CephBlockPool rook-ceph/oldpool this stage applied before and no longer renders",
        true,
      ],
    ]);
    await plugin.apply!(ctx as never, changes);
    expect(ctx.wetLog.at(-1)).toBe(
      "delete CephBlockPool rook-ceph/oldpool, which this stage no longer renders",
    );
    // An up that changed the stage proves the storage path again.
    const writes = lab.server.requests.length;
    expect(codes(await plugin.verify!(ctx as never))).toEqual(["ok rook.health", "ok rook.canary"]);
    expect(
      lab.server.requests
        .slice(writes)
        .filter(isMutating)
        .map((r) => `${r.method} ${r.path}`)
        // Each is created, then applied and its create's entry dropped (retried after a
        // controller's write in between): one line per request path.
        .filter((line, i, all) => line !== all[i - 1]),
    ).toEqual([
      "POST /api/v1/namespaces/rook-ceph/persistentvolumeclaims",
      "PATCH /api/v1/namespaces/rook-ceph/persistentvolumeclaims/kubehyve-canary",
      "POST /api/v1/namespaces/rook-ceph/pods",
      "PATCH /api/v1/namespaces/rook-ceph/pods/kubehyve-canary",
      "DELETE /api/v1/namespaces/rook-ceph/pods/kubehyve-canary",
      "DELETE /api/v1/namespaces/rook-ceph/persistentvolumeclaims/kubehyve-canary",
    ]);
    expect(lab.server.get("ceph.rook.io/v1", "CephBlockPool", "oldpool", "rook-ceph")).toBeUndefined();
    expect(lab.server.get("ceph.rook.io/v1", "CephBlockPool", "handmade", "rook-ceph")).toBeDefined();
    expect((await plugin.check(lab.ctx(plugin, OPTIONS, { node: nodeTarget }) as never)).changes).toEqual([]);
  }, 60_000);

  test("verify reports each health code the operator writes into the CephCluster status", async () => {
    rook.checks.set("MON_CLOCK_SKEW", { severity: "HEALTH_WARN", message: "clock skew detected on mon.b" });
    rook.checks.set("AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED", {
      severity: "HEALTH_WARN",
      message: "mons are allowing insecure global_id reclaim",
    });
    lab.server.reconcile();
    try {
      const ds = await plugin.verify!(lab.ctx(plugin, OPTIONS, { node: nodeTarget }) as never);
      expect(codes(ds)).toEqual([
        "warn rook.health",
        "warn rook.ceph.AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED",
        "warn rook.ceph.MON_CLOCK_SKEW",
        "info rook.canary",
      ]);
    } finally {
      rook.checks.clear();
      lab.server.reconcile();
    }
  }, 60_000);

  test("a canary that cannot write its volume fails verify with the pod's message, and is cleaned up", async () => {
    rook.failPods = true;
    try {
      const ds = await plugin.verify!(
        lab.ctx(plugin, OPTIONS, { node: nodeTarget, canaries: true }) as never,
      );
      const canary = ds.find((d) => d.code === "rook.canary")!;
      expect(canary.severity).toBe("error");
      expect(canary.detail).toBe("Error: sh: can't create /data/canary: Read-only file system");
      expect(lab.server.get("v1", "PersistentVolumeClaim", "kubehyve-canary", "rook-ceph")).toBeUndefined();
    } finally {
      rook.failPods = false;
    }
    // No record of a pass since: the next up runs the canary again.
    const again = await plugin.verify!(lab.ctx(plugin, OPTIONS, { node: nodeTarget }) as never);
    expect(codes(again)).toEqual(["ok rook.health", "ok rook.canary"]);
  }, 60_000);

  test("a no-op up after a converged one writes nothing, and says when the canary last passed", async () => {
    const ctx = lab.ctx(plugin, OPTIONS, { node: nodeTarget });
    const seen = lab.server.requests.length;
    expect((await plugin.check(ctx as never)).changes).toEqual([]);
    const ds = await plugin.verify!(ctx as never);
    expect(lab.server.requests.slice(seen).filter(isMutating)).toEqual([]);
    expect(ds.find((d) => d.code === "rook.canary")).toMatchObject({
      severity: "info",
      summary: expect.stringMatching(
        /^the storage canary passed at \d{4}-\d\d-\d\dT[\d:.]+Z, and nothing changed since: not run again$/,
      ),
      hint: "kubehyve up --only storage --canaries runs it again",
    });
  }, 60_000);

  test("verify in a read-only run (verify, doctor) creates no canary", async () => {
    const ctx = lab.ctx(plugin, OPTIONS, { node: nodeTarget, dryRun: true });
    const writes = () => lab.server.requests.filter((r) => r.method !== "GET").length;
    const before = writes();
    const ds = await plugin.verify!(ctx as never);
    expect(codes(ds)).toEqual(["ok rook.health", "info rook.canary"]);
    expect(writes()).toBe(before);
  }, 60_000);

  test("a claim of rook-ceph-block stays Pending while the ceph-csi driver is missing", async () => {
    const kube = await lab.kube();
    await kube.delete("csi.ceph.io/v1", "Driver", "rook-ceph.rbd.csi.ceph.com", "rook-ceph");
    await kube.apply({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "app-data", namespace: "default" },
      spec: {
        accessModes: ["ReadWriteOnce"],
        storageClassName: "rook-ceph-block",
        resources: { requests: { storage: "1Gi" } },
      },
    });
    lab.server.reconcile();
    expect(
      (lab.server.get("v1", "PersistentVolumeClaim", "app-data", "default") as KubeObject).status.phase,
    ).toBe("Pending");
  }, 60_000);

  test("render downloads nothing: upstream files not in the cache are listed with their pins instead", async () => {
    const mirror = lab.mirror.requests.length;
    const ctx = createPluginContext({
      cluster,
      plugin,
      options: OPTIONS,
      stateDir: join(lab.dir, "render-state"),
      dryRun: true,
      artifacts: new DownloadCache({ dir: join(lab.dir, "empty-cache"), mirror: lab.mirror.url }),
    });
    const files = await plugin.render!(ctx as never);
    expect(files.map((f) => f.path)).toEqual(["cluster.yaml", "upstream-files.txt"]);
    expect(String(files[1]!.content)).toContain(
      "https://raw.githubusercontent.com/rook/rook/v1.20.6/deploy/examples/csi-operator.yaml sha256:de0bf9160c8370220353d7140a4b60ee6d4b8eda5e260f395fd00cbdc1059ffb",
    );
    expect(lab.mirror.requests.length).toBe(mirror);
  }, 60_000);

  test("render writes every manifest, group by group", async () => {
    const files = await plugin.render!(lab.ctx(plugin, OPTIONS, { node: nodeTarget }) as never);
    expect(files.map((f) => f.path)).toEqual([
      "crds.yaml",
      "common.yaml",
      "csi-operator.yaml",
      "operator.yaml",
      "cluster.yaml",
    ]);
    // A down without a record of what was applied still looks in every kind rendered, and the canary's.
    const known = KNOWN_KINDS.map((k) => `${k.apiVersion} ${k.kind}`);
    const rendered = files.flatMap((f) => parseManifests(String(f.content), f.path));
    for (const o of [...rendered, canaryClaim(), canaryPod("0123456789abcdef")])
      expect(known).toContain(`${o.apiVersion} ${o.kind}`);
  }, 60_000);

  test("destroy removes what the stage applied, its custom resources first, then the CRDs; a pool made by hand keeps the namespace and its CRD", async () => {
    const dryReporter = memoryReporter();
    const dry = lab.ctx(plugin, OPTIONS, { node: nodeTarget, dryRun: true, reporter: dryReporter });
    await plugin.destroy!(dry as never);
    const reporter = memoryReporter();
    const ctx = lab.ctx(plugin, OPTIONS, { node: nodeTarget, reporter });
    await plugin.destroy!(ctx as never);
    const warnings = (r: typeof reporter) =>
      r.events.flatMap((e) => (e.type === "log" && e.level === "warn" ? [e.message] : []));
    // The CephBlockPool made by hand in rook-ceph would go with the namespace, and with its CRD.
    const kept = [
      'left Namespace rook-ceph: 1 object in it that this stage did not make (CephBlockPool rook-ceph/handmade: its fields are set by "kubehyve") would go with it; once they are not needed: kubectl delete namespace rook-ceph',
      "left CustomResourceDefinition cephblockpools.ceph.rook.io: 1 object of it that this stage did not make (rook-ceph/handmade) would go with it; once they are not needed: kubectl delete crd cephblockpools.ceph.rook.io",
    ];
    expect(warnings(reporter)).toEqual(kept);
    expect(warnings(dryReporter)).toEqual(kept);
    expect(lab.server.get("ceph.rook.io/v1", "CephBlockPool", "handmade", "rook-ceph")).toBeDefined();
    expect(lab.server.get("v1", "Namespace", "rook-ceph")).toBeDefined();
    const deletes = ctx.wetLog.filter((l) => l.startsWith("delete "));
    expect(deletes.slice(0, 3)).toEqual([
      "delete CephBlockPool rook-ceph/replicapool",
      "delete CephBlockPool rook-ceph/builtin-mgr",
      "delete CephCluster rook-ceph/rook-ceph",
    ]);
    const at = (line: string) => deletes.indexOf(line);
    expect(at("delete StorageClass rook-ceph-block")).toBeGreaterThan(2);
    expect(at("delete StorageClass rook-ceph-block")).toBeLessThan(
      at("delete CustomResourceDefinition cephclusters.ceph.rook.io"),
    );
    expect(deletes).not.toContain("delete Namespace rook-ceph");
    expect(deletes).not.toContain("delete CustomResourceDefinition cephblockpools.ceph.rook.io");
    expect(deletes.at(-1)).toMatch(/^delete CustomResourceDefinition /);
    // The pool made by hand carries none of the stage's labels: not the stage's to delete.
    expect(deletes).not.toContain("delete CephBlockPool rook-ceph/handmade");
    expect(lab.server.get("apps/v1", "Deployment", "rook-ceph-operator", "rook-ceph")).toBeUndefined();
  }, 60_000);
});
