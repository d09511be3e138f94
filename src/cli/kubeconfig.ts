import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { defineCommand } from "citty";
import { consola } from "consola";
import { kubeconfigPathOf } from "../core/context.ts";
import { KubehyveError } from "../core/errors.ts";
import { globalArgs, loadCluster } from "./_shared.ts";

export default defineCommand({
  meta: {
    name: "kubeconfig",
    description: "Print the path of the cluster's admin kubeconfig, or merge it into ~/.kube/config",
  },
  args: {
    ...globalArgs,
    merge: {
      type: "boolean",
      description: "Merge it into $KUBECONFIG or ~/.kube/config under the cluster's name",
    },
  },
  async run({ args }) {
    const { config, stateDir } = await loadCluster(args);
    const path = kubeconfigPathOf(stateDir);
    if (!existsSync(path))
      throw new KubehyveError(
        `no admin kubeconfig for ${config.cluster.name} at ${path} yet`,
        1,
        "kubehyve up writes it once Kubernetes is installed",
      );
    if (!args.merge) {
      process.stdout.write(`${path}\n`);
      return 0;
    }
    const target = process.env.KUBECONFIG?.split(":")[0] || join(homedir(), ".kube", "config");
    const { mergeKubeconfig } = await import("../kube/kubeconfig.ts");
    await mergeKubeconfig(target, readFileSync(path, "utf8"), config.cluster.name);
    if (!args.json)
      consola.success(
        `merged ${config.cluster.name} into ${target}: kubectl --context ${config.cluster.name} get nodes`,
      );
    return 0;
  },
});
