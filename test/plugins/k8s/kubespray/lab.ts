/**
 * The lab the k8s/kubespray tests run in: a real sshd on loopback standing for every node, the
 * stand-in Kubespray tree (test/lab/kubespray) packed as a release tarball and served over HTTP, the
 * Kubernetes API test server, and a state dir holding the sshd's key as the cluster key.
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Hooks, v } from "kubehyve";
import { kubesprayPlugin } from "../../../../plugins/k8s/kubespray/index.ts";
import { type KubesprayOptions, optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import { DownloadCache } from "../../../../src/artifacts/cache.ts";
import { treeSha256V1 } from "../../../../src/artifacts/tree.ts";
import { createPluginContext, type TestablePluginContext } from "../../../../src/core/context.ts";
import type { Cluster, NodeSpec } from "../../../../src/core/model.ts";
import { memoryReporter, type RunEvent } from "../../../../src/core/reporter.ts";
import { labCluster as exampleLab, labNode } from "../../../lab/cluster.ts";
import { type FileServer, serveFiles } from "../../../lab/http.ts";
import { type KubeApiServer, startKubeApiServer } from "../../../lab/kube/server.ts";
import { type Sshd, startSshd } from "../../../lab/sshd.ts";

export const STAND_IN_TREE = join(import.meta.dir, "../../../lab/kubespray");

export function node(name: string, role: NodeSpec["role"]): NodeSpec {
  // Every node is the loopback sshd; Kubespray tells them apart by inventory name only.
  return labNode(name, role, "127.0.0.1");
}

export function labCluster(nodes: NodeSpec[], withNetStage = true): Cluster {
  return exampleLab({
    nodes,
    stages: {
      k8s: { plugin: "k8s/kubespray", options: {} },
      ...(withNetStage ? { net: { plugin: "net/calico", options: {} } } : {}),
    },
  });
}

export interface Lab {
  sshd: Sshd;
  kube: KubeApiServer;
  files: FileServer;
  dir: string;
  stateDir: string;
  standInRoot: string;
  tarballUrl: string;
  /** tree-sha256-v1 of the stand-in tree, the release's content pin. */
  treeDigest: string;
  options(extra?: Record<string, unknown>, extraVars?: Record<string, unknown>): KubesprayOptions;
  context(
    cluster: Cluster,
    options: KubesprayOptions,
    more?: { assumeYes?: boolean; hooks?: Hooks },
  ): TestablePluginContext & { events: RunEvent[] };
  readNodeFile(nodeName: string, file: string): Promise<string | undefined>;
  stop(): Promise<void>;
}

export async function startLab(): Promise<Lab> {
  const dir = await mkdtemp(join(tmpdir(), "kubehyve-kubespray-"));
  const stateDir = join(dir, "state");
  const standInRoot = join(dir, "nodes");
  await mkdir(join(stateDir, "ssh"), { recursive: true, mode: 0o700 });
  await mkdir(standInRoot, { recursive: true });

  const sshd = await startSshd();
  // The sshd's authorized key becomes the cluster key, as the os stage would have put it on nodes.
  await cp(sshd.identityFile, join(stateDir, "ssh", "id_ed25519"));
  await cp(`${sshd.identityFile}.pub`, join(stateDir, "ssh", "id_ed25519.pub"));

  const kube = await startKubeApiServer({ gitVersion: "v1.35.4" });

  // GitHub's archive layout: one top directory named after the repository and the tag.
  const tree = join(dir, "src", "kubespray-2.31.0");
  await cp(STAND_IN_TREE, tree, { recursive: true });
  const tarball = join(dir, "kubespray.tar.gz");
  const tar = Bun.spawn(["tar", "-czf", tarball, "-C", join(dir, "src"), "kubespray-2.31.0"], {
    stderr: "pipe",
  });
  if ((await tar.exited) !== 0) throw new Error(`tar failed: ${await new Response(tar.stderr).text()}`);
  const bytes = new Uint8Array(await readFile(tarball));
  const treeDigest = (await treeSha256V1(tree)).digest;
  const path = "/kubernetes-sigs/kubespray/archive/refs/tags/v2.31.0.tar.gz";
  const files = serveFiles({ [path]: bytes });
  const tarballUrl = `${files.url}${path}`;

  const lab: Lab = {
    sshd,
    kube,
    files,
    dir,
    stateDir,
    standInRoot,
    tarballUrl,
    treeDigest,
    options(extra = {}, extraVars = {}) {
      return v.parse(optionsSchema, {
        runner: { kind: "system" },
        release: { url: tarballUrl, "tree-sha256-v1": treeDigest },
        ssh: { user: sshd.user, port: sshd.port },
        extraVars: {
          stand_in_root: standInRoot,
          stand_in_admin_conf: kube.kubeconfigPath,
          kube_apiserver_port: kube.port,
          ...extraVars,
        },
        ...extra,
      });
    },
    context(cluster, options, more = {}) {
      const reporter = memoryReporter();
      const ctx = createPluginContext({
        cluster,
        plugin: kubesprayPlugin,
        options,
        stateDir,
        assumeYes: more.assumeYes,
        hooks: more.hooks,
        artifacts: new DownloadCache({ dir: join(stateDir, "cache") }),
        reporter,
      });
      return Object.assign(ctx, { events: reporter.events });
    },
    readNodeFile: (nodeName, file) =>
      readFile(join(standInRoot, nodeName, file), "utf8").catch(() => undefined),
    async stop() {
      await Promise.allSettled([sshd.stop(), kube.stop(), files.stop()]);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return lab;
}

/** Writes a file into the node's stand-in state, as an earlier run would have left it. */
export async function writeNodeFile(
  lab: Lab,
  nodeName: string,
  file: string,
  content: string,
): Promise<void> {
  await mkdir(join(lab.standInRoot, nodeName), { recursive: true });
  await writeFile(join(lab.standInRoot, nodeName, file), content);
}
