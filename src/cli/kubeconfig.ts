import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { defineCommand } from "citty";
import { kubeconfigPathOf } from "../core/context.ts";
import { readClusterId } from "../core/identity.ts";
import { prepareStateDir } from "../core/state-dir.ts";
import { checkStateFormat } from "../core/state-format.ts";
import { InputError, KubehyveError } from "../lib/errors.ts";
import { pathError, readPrivateFile } from "../lib/fsutil.ts";
import { globalArgs, loadCluster } from "./_shared.ts";
import { jsonLine, logger, output } from "./output.ts";
import { version } from "./version-info.ts";

/**
 * The file kubectl itself would write new entries to (client-go clientcmd PathOptions
 * GetDefaultFilename): the only $KUBECONFIG file, else the first of its files that exists, else
 * the last of them; without $KUBECONFIG, ~/.kube/config, with ~ from $HOME first as client-go's
 * homedir.HomeDir() takes it (under `sudo -E`, the invoking user's).
 */
export function mergeTarget(env = process.env, home = env.HOME || homedir()): string {
  const files = (env.KUBECONFIG ?? "").split(delimiter).filter(Boolean);
  if (!files.length) return join(home, ".kube", "config");
  return files.find((f) => files.length === 1 || existsSync(f)) ?? files.at(-1)!;
}

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
    overwrite: {
      type: "boolean",
      description: "With --merge: replace entries of the same name that another cluster wrote",
    },
  },
  async run({ args }) {
    if (args.overwrite && !args.merge)
      throw new InputError(
        "--overwrite only means something with --merge; nothing was done",
        "kubehyve kubeconfig --merge --overwrite",
      );
    const { config, stateDir } = await loadCluster(args);
    const path = kubeconfigPathOf(stateDir);
    // Only an existing state dir is checked: there is nothing to read in one that is not there.
    if (existsSync(stateDir)) {
      prepareStateDir(stateDir);
      checkStateFormat(stateDir, version());
    }
    const admin = readPrivateFile(path);
    if (admin === undefined)
      throw new KubehyveError(
        `no admin kubeconfig for ${config.cluster.name} at ${path} yet`,
        1,
        "kubehyve up writes it once Kubernetes is installed",
      );
    if (!args.merge) {
      // --json promises NDJSON on stdout and nothing else, so the path comes as an event there too.
      output().stdout(args.json ? jsonLine({ type: "kubeconfig", path }) : `${path}\n`);
      return 0;
    }
    const target = mergeTarget();
    const { mergeKubeconfig } = await import("../kube/kubeconfig.ts");
    const result = await mergeKubeconfig(target, admin, config.cluster.name, {
      clusterId: readClusterId(stateDir),
      overwrite: args.overwrite,
      sourcePath: path,
    }).catch((error: unknown) => {
      // $KUBECONFIG or HOME names a path that cannot hold a file: say which one it was.
      throw pathError(error, `cannot merge into ${target}`) ?? error;
    });
    const name = config.cluster.name;
    if (args.json)
      output().stdout(
        jsonLine({
          type: "kubeconfig.merged",
          path,
          file: result.file,
          context: name,
          changed: result.changed,
          backup: result.backup,
          replaced: result.replaced,
        }),
      );
    else {
      const where = result.file === target ? target : `${target} (→ ${result.file})`;
      logger().success(
        result.changed
          ? `merged ${name} into ${where}: kubectl --context ${name} get nodes`
          : `${where} has ${name} already: kubectl --context ${name} get nodes`,
      );
      if (result.replaced.length) logger().info(`replaced ${result.replaced.join(", ")}`);
      if (result.backup) logger().info(`the file as it was: ${result.backup}`);
    }
    return 0;
  },
});
