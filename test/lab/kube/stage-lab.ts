/**
 * A cluster for the stages that talk to Kubernetes: the API test server with the controllers a test
 * picks, a loopback mirror serving the pinned upstream release files from ../shared/oracles/releases
 * at their upstream paths, and plugin contexts wired to both.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadCache } from "../../../src/artifacts/cache.ts";
import { createPluginContext, type TestablePluginContext } from "../../../src/core/context.ts";
import type { AnyPlugin, Hooks } from "../../../src/core/contract.ts";
import type { Cluster, NodeSpec } from "../../../src/core/model.ts";
import type { Reporter } from "../../../src/core/reporter.ts";
import { createKubeClient } from "../../../src/kube/client.ts";
import type { KubeClient } from "../../../src/kube/types.ts";
import type { Target } from "../../../src/targets/target.ts";
import { type FileServer, serveFiles } from "../http.ts";
import { oracle } from "../oracles.ts";
import type { Controller } from "./controllers.ts";
import { type KubeApiServer, startKubeApiServer } from "./server.ts";

/** Upstream raw-file path (as a mirror serves it) to the file in the oracle data, for each pinned file. */
export const RELEASE_FILES: Record<string, string> = {
  "/traefik/traefik/v3.7.9/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml":
    "releases/traefik/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml",
  "/traefik/traefik/v3.7.9/docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml":
    "releases/traefik/docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml",
  ...Object.fromEntries(
    ["crds.yaml", "common.yaml", "csi-operator.yaml", "operator.yaml"].map((f) => [
      `/rook/rook/v1.20.6/deploy/examples/${f}`,
      `releases/rook/deploy/examples/${f}`,
    ]),
  ),
};

export interface StageLab {
  dir: string;
  server: KubeApiServer;
  mirror: FileServer;
  /** The download cache, mirrored to `mirror`. */
  artifacts: DownloadCache;
  kube: () => Promise<KubeClient>;
  ctx(
    plugin: AnyPlugin,
    options: unknown,
    opts?: {
      cluster?: Cluster;
      host?: Target;
      node?: (node: NodeSpec) => Target;
      dryRun?: boolean;
      upstreamPending?: boolean;
      hooks?: Hooks;
      /** As `up --canaries`: every canary runs, whatever its record says. */
      canaries?: boolean;
      /** Where the context's events go (its log lines). */
      reporter?: Reporter;
    },
  ): TestablePluginContext;
  stop(): Promise<void>;
}

export async function startStageLab(cluster: Cluster, controllers: Controller[]): Promise<StageLab> {
  const dir = await mkdtemp(join(tmpdir(), "kubehyve-stage-"));
  const server = await startKubeApiServer({ controllers, namespaces: ["default", "kube-system"] });
  const mirror = serveFiles(
    Object.fromEntries(Object.entries(RELEASE_FILES).map(([path, file]) => [path, Bun.file(oracle(file))])),
  );
  const artifacts = new DownloadCache({ dir: join(dir, "cache"), mirror: mirror.url });
  let client: Promise<KubeClient> | undefined;
  const kube = () => {
    client ??= createKubeClient(server.kubeconfigPath);
    return client;
  };
  return {
    dir,
    server,
    mirror,
    artifacts,
    kube,
    ctx: (plugin, options, opts = {}) =>
      createPluginContext({
        cluster: opts.cluster ?? cluster,
        plugin,
        options,
        stateDir: join(dir, "state"),
        clusterId: "9b6f1c4e-7d2a-4e8b-9a31-5c0d2e7f4a10",
        dryRun: opts.dryRun,
        upstreamPending: opts.upstreamPending,
        canaries: opts.canaries,
        kube,
        artifacts,
        hooks: opts.hooks,
        targets: { host: opts.host, node: opts.node },
        reporter: opts.reporter,
      }),
    async stop() {
      await server.stop();
      await mirror.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
