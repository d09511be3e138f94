/**
 * The targets of one run: the hypervisor host and the nodes, each created once (so an ssh target
 * keeps one multiplexed connection for the whole run) and closed together at the end.
 */
import { join } from "node:path";
import type { KubeClient } from "../kube/types.ts";
import { KubehyveError } from "../lib/errors.ts";
import { LocalTarget } from "../targets/local.ts";
import { SshTarget } from "../targets/ssh.ts";
import type { RunResult, Target } from "../targets/target.ts";
import { DEFAULT_HOST_LOCK } from "./host-lock.ts";
import type { Cluster, NodeSpec } from "./model.ts";
import { type ApiReach, guardKube, ReachGuard, type UnreachableError } from "./reach.ts";

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

export interface PoolOptions {
  /**
   * Look once (doctor): a machine's first connection failure is remembered, and later commands on
   * it fail at once with it (core/reach.ts). Not for `up`, which waits for nodes that reboot.
   */
  rememberUnreachable?: boolean;
}

export class TargetPool {
  private hostTarget?: Target;
  private localTarget?: Target;
  private readonly nodes = new Map<string, Target>();
  private readonly failures: UnreachableError[] = [];
  constructor(
    private readonly factory: TargetFactory,
    private readonly options: PoolOptions = {},
  ) {}

  /** The host target's name, once it was made (it names the host in findings). */
  get hostName(): string | undefined {
    return this.hostTarget?.name;
  }

  /** The machines found unreachable so far, in the order they were found (rememberUnreachable). */
  unreachable(): readonly UnreachableError[] {
    return this.failures;
  }

  private readonly api: ApiReach = {};

  /** The Kubernetes client, its reachability remembered for the run like a machine's. */
  kube(client: KubeClient): KubeClient {
    if (!this.options.rememberUnreachable) return client;
    return guardKube(client, this.api, (error) => this.failures.push(error));
  }

  private guarded(target: Target, machine: string): Target {
    if (!this.options.rememberUnreachable) return target;
    return new ReachGuard(target, machine, (error) => this.failures.push(error));
  }

  get hostLock(): string | undefined {
    return this.factory.hostLock;
  }

  host(): Target {
    if (!this.hostTarget) {
      const host = this.factory.host();
      this.hostTarget = this.guarded(host, host.name);
    }
    return this.hostTarget;
  }

  local(): Target {
    this.localTarget ??= this.factory.local?.() ?? new LocalTarget();
    return this.localTarget;
  }

  node(node: NodeSpec): Target {
    let target = this.nodes.get(node.name);
    if (!target) {
      target = this.guarded(this.factory.node(node), node.name);
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
