/** The example lab and a plugin context on a simulated host, shared by the bhyve stage's tests. */

import { bhyvePlugin } from "../../../../plugins/hypervisor/bhyve/index.ts";
import {
  type BhyveOptions,
  type BhyveOptionsInput,
  parseBhyveOptions,
} from "../../../../plugins/hypervisor/bhyve/options.ts";
import { createPluginContext, type TestablePluginContext } from "../../../../src/core/context.ts";
import type { Hooks } from "../../../../src/core/contract.ts";
import type { Cluster, NodeSpec } from "../../../../src/core/model.ts";
import type { Target } from "../../../../src/targets/target.ts";
import { labCluster, labNode } from "../../../lab/cluster.ts";

/** The example lab with the hypervisor stage. */
export function exampleCluster(overrides: Partial<Cluster> = {}): Cluster {
  return labCluster({ stages: { hypervisor: { plugin: "hypervisor/bhyve", options: {} } }, ...overrides });
}

export function workers(n: number): NodeSpec[] {
  return Array.from({ length: n }, (_, i) => labNode(`w${i + 1}`, "worker", `192.168.1.${22 + i}`));
}

export interface LabContextArgs {
  host: Target;
  stateDir: string;
  cluster?: Cluster;
  options?: BhyveOptionsInput;
  assumeYes?: boolean;
  dryRun?: boolean;
  hooks?: Hooks;
  ask?: (question: string) => Promise<boolean>;
  signal?: AbortSignal;
  /** The nodes' targets (the stage reaches them only to forget a made or destroyed node's key). */
  node?: (node: NodeSpec) => Target;
}

export function labContext(args: LabContextArgs): TestablePluginContext & { options: BhyveOptions } {
  const options = parseBhyveOptions({ nic: "em0", ...args.options });
  return createPluginContext({
    cluster: args.cluster ?? exampleCluster(),
    plugin: bhyvePlugin,
    options,
    stateDir: args.stateDir,
    dryRun: args.dryRun,
    assumeYes: args.assumeYes,
    hooks: args.hooks,
    ask: args.ask,
    signal: args.signal,
    targets: { host: args.host, node: args.node },
  }) as TestablePluginContext & { options: BhyveOptions };
}

/** What `kubehyve up` does with one stage: check, apply the changes, verify. */
export async function up(ctx: TestablePluginContext & { options: BhyveOptions }) {
  const plan = await bhyvePlugin.check(ctx);
  if (plan.changes.length) await bhyvePlugin.apply!(ctx, plan.changes);
  const verified = await bhyvePlugin.verify!(ctx);
  return { plan, verified };
}

/** Host commands that change something; everything else only reads. */
export function isMutating(argv: readonly string[]): boolean {
  const [cmd, sub, ...rest] = argv;
  switch (cmd) {
    case "vm":
      return !["list", "version", "info"].includes(sub ?? "") && !(sub === "switch" && rest[0] === "list");
    case "sysrc":
      return argv.slice(1).some((a) => a.includes("=")) || argv.includes("-x");
    case "zfs":
      return !["list", "get"].includes(sub ?? "");
    case "sysctl":
      return argv.slice(1).some((a) => a.includes("="));
    case "pfctl":
      return !argv.includes("-s");
    case "ifconfig":
      return argv.length > 2 || (argv.length === 2 && !argv[1]!.startsWith("-"));
    case "sh":
    case "rm":
    case "mkdir":
    case "dd":
    case "truncate":
    case "mv":
    case "chmod":
      return true;
    default:
      return false;
  }
}
