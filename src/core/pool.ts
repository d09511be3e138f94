/**
 * The targets of one run: the hypervisor host and the nodes, each created once (so an ssh target
 * keeps one multiplexed connection for the whole run) and closed together at the end.
 */
import { join } from "node:path";
import { KubehyveError } from "../lib/errors.ts";
import { LocalTarget } from "../targets/local.ts";
import { SshTarget } from "../targets/ssh.ts";
import type { RunResult, Target } from "../targets/target.ts";
import { DEFAULT_HOST_LOCK } from "./host-lock.ts";
import type { Cluster, NodeSpec } from "./model.ts";

export interface TargetFactory {
  host(): Target;
  node(node: NodeSpec): Target;
  /** The machine kubehyve runs on (Ansible, downloads' helpers); local when not given. */
  local?(): Target;
  /**
   * Where on the host `up` and `down` take the host lock (see core/host-lock.ts); none when not
   * given (a test's recording host).
   */
  hostLock?: string;
}

export function clusterKeyPath(stateDir: string): string {
  return join(stateDir, "ssh", "id_ed25519");
}

/**
 * Targets as the cluster file declares them: local or ssh:// host, nodes as `core` over ssh. The
 * host lock is /var/run/kubehyve.lock unless $KUBEHYVE_HOST_LOCK names another file.
 */
export function defaultTargets(cluster: Cluster, stateDir: string): TargetFactory {
  return {
    hostLock: process.env.KUBEHYVE_HOST_LOCK || DEFAULT_HOST_LOCK,
    host: () =>
      cluster.host.kind === "local"
        ? new LocalTarget()
        : new SshTarget({
            user: cluster.host.user,
            host: cluster.host.hostname,
            port: cluster.host.port,
            stateDir,
          }),
    node: (node) =>
      new SshTarget({
        user: "core",
        host: node.address,
        port: 22,
        identityFile: clusterKeyPath(stateDir),
        stateDir,
        name: `core@${node.name}`,
      }),
  };
}

/** For `plan --offline` and `render`: any attempt to reach a machine is a bug in the plugin asking. */
export class OfflineTarget implements Target {
  constructor(readonly name: string) {}
  async run(argv: readonly string[]): Promise<RunResult> {
    throw new KubehyveError(`offline: refusing to run \`${argv.join(" ")}\` on ${this.name}`);
  }
  async close(): Promise<void> {}
}

export const offlineTargets: TargetFactory = {
  host: () => new OfflineTarget("host"),
  node: (node) => new OfflineTarget(node.name),
  local: () => new OfflineTarget("local"),
};

export class TargetPool {
  private hostTarget?: Target;
  private localTarget?: Target;
  private readonly nodes = new Map<string, Target>();
  constructor(private readonly factory: TargetFactory) {}

  get hostLock(): string | undefined {
    return this.factory.hostLock;
  }

  host(): Target {
    this.hostTarget ??= this.factory.host();
    return this.hostTarget;
  }

  local(): Target {
    this.localTarget ??= this.factory.local?.() ?? new LocalTarget();
    return this.localTarget;
  }

  node(node: NodeSpec): Target {
    let target = this.nodes.get(node.name);
    if (!target) {
      target = this.factory.node(node);
      this.nodes.set(node.name, target);
    }
    return target;
  }

  async closeAll(): Promise<void> {
    const all = [this.hostTarget, this.localTarget, ...this.nodes.values()].filter(
      (t): t is Target => t !== undefined,
    );
    await Promise.allSettled(all.map((t) => t.close()));
  }
}
