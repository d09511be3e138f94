/**
 * Builds the context a plugin phase runs with. The engine makes one per stage and run; tests of a
 * plugin make one directly, replacing only the heavy boundaries (targets, Kubernetes, downloads).
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DownloadCache } from "../artifacts/cache.ts";
import type { ArtifactCache } from "../artifacts/types.ts";
import type { KubeClient } from "../kube/types.ts";
import { busy, busyMethods } from "../lib/activity.ts";
import { CancelledError, KubehyveError } from "../lib/errors.ts";
import { ensurePrivateDir, writeFileAtomic } from "../lib/fsutil.ts";
import { pending, poll } from "../lib/poll.ts";
import type { Target } from "../targets/target.ts";
import type { AnyPlugin, Canary, CanaryRun, Hooks, Logger, PluginContext, SshKey } from "./contract.ts";
import { clusterIdentity } from "./identity.ts";
import { type Cluster, type CommandTimeouts, DEFAULT_TIMEOUTS, type NodeSpec } from "./model.ts";
import { argumentProblem } from "./plugin-results.ts";
import { clusterKeyPath, defaultTargets, TargetPool } from "./pool.ts";
import { memoryReporter, type Reporter } from "./reporter.ts";
import { changeScope, policyBinder } from "./signal-target.ts";
import { generateEd25519KeyPair } from "./sshkey.ts";
import { openStateStore } from "./state.ts";

export interface ContextArgs {
  cluster: Cluster;
  plugin: AnyPlugin;
  options: unknown;
  stateDir: string;
  dryRun?: boolean;
  /** The cluster's identity; default: the one kept in the state dir, made (and kept unless a dry run) when missing. */
  clusterId?: string;
  upstreamPending?: boolean;
  assumeYes?: boolean;
  upgrade?: boolean;
  /** An earlier stage of this run changed something: this stage's canaries run (see ctx.canary). */
  upstreamChanged?: () => boolean;
  /** `up --canaries`: every canary runs, whatever its record says. */
  canaries?: boolean;
  /** The run's signal (the first Ctrl-C): stop between steps; kills only cancellable commands. */
  signal?: AbortSignal;
  /** The hard abort (a second Ctrl-C, doctor's limit for a stage): kills every command. */
  abort?: AbortSignal;
  /** Default limits of commands; the cluster's, else DEFAULT_TIMEOUTS. */
  timeouts?: CommandTimeouts;
  /** Replace the host or node targets (tests: a simulated host, a loopback sshd). */
  targets?: { host?: Target; node?: (node: NodeSpec) => Target; local?: Target };
  /** Shared by the stages of a run, so each target is connected once. */
  pool?: TargetPool;
  hooks?: Hooks;
  kube?: () => Promise<KubeClient>;
  artifacts?: ArtifactCache;
  reporter?: Reporter;
  /** Answers questions when --yes was not given; default: nobody can answer, so no. */
  ask?: (question: string) => Promise<boolean>;
}

export type TestablePluginContext = PluginContext<never> & {
  /** Every ctx.wet description, in order, whether or not it ran. */
  wetLog: string[];
  /** A ctx.wet step of this stage ran (not a canary's): the stage changed in this run. */
  readonly changed: boolean;
  runCleanups(): Promise<void>;
};

/** The stage's state key of its canaries' records: canary name → when it last passed (ISO 8601). */
export const CANARIES_KEY = "kubehyve.canaries";

export function kubeconfigPathOf(stateDir: string): string {
  return join(stateDir, "kubeconfig");
}

/**
 * One key per key file, however many stages (doctor runs them side by side) and nodes ask at once:
 * a second generator would replace the key the first one already handed out.
 */
const keygens = new Map<string, Promise<void>>();

/** A key takes milliseconds to make: a lock older than this is what a killed run left behind. */
const KEYGEN_LOCK_STALE_MS = 30_000;

/**
 * One key per key file across processes too: a plan and a render started together on a fresh
 * state dir would each make a key, and one of them would render nodes with a key the state dir no
 * longer holds (or the two halves on disk would come from different pairs). The maker holds
 * `id_ed25519.lock` (a directory: mkdir either makes it or finds it) while it writes; the others
 * wait for it and use its key.
 */
async function generateClusterKey(stateDir: string, privateKeyPath: string, comment: string): Promise<void> {
  await ensurePrivateDir(join(stateDir, "ssh"));
  const lock = `${privateKeyPath}.lock`;
  const mine = await poll(
    `the cluster key ${privateKeyPath}, which another kubehyve run is making`,
    async () => {
      try {
        mkdirSync(lock, { mode: 0o700 });
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      // Its maker writes the public half first, then the private one, then lets go.
      if (existsSync(privateKeyPath)) return false;
      if (Date.now() - lstatSync(lock).mtimeMs > KEYGEN_LOCK_STALE_MS)
        rmSync(lock, { recursive: true, force: true });
      return pending(`${lock} is held`);
    },
    { timeoutMs: 2 * KEYGEN_LOCK_STALE_MS, intervalMs: 50 },
  );
  if (!mine) return;
  try {
    if (existsSync(privateKeyPath)) return;
    const pair = generateEd25519KeyPair(comment);
    // The public half first: whoever finds the private key finds its .pub beside it.
    await writeFileAtomic(`${privateKeyPath}.pub`, `${pair.publicKey}\n`, 0o644);
    await writeFileAtomic(privateKeyPath, pair.privateKey, 0o600);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export function createPluginContext(args: ContextArgs): TestablePluginContext {
  const slot = args.plugin.id.split("/")[0]!;
  const dryRun = args.dryRun ?? false;
  const signal = args.signal ?? new AbortController().signal;
  let cleaning = false;
  // Every command on the plugin's targets gets a limit, and stops only as signal-target.ts says:
  // the first Ctrl-C lets it finish unless it is cancellable, the hard abort kills it.
  const bind = policyBinder({
    signal,
    abort: args.abort,
    timeouts: args.timeouts ?? args.cluster.timeouts ?? DEFAULT_TIMEOUTS,
    cleaningUp: () => cleaning,
  });
  const reporter = args.reporter ?? memoryReporter();
  const pool = args.pool ?? new TargetPool(defaultTargets(args.cluster, args.stateDir));
  const wetLog: string[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];
  const kubeconfigPath = kubeconfigPathOf(args.stateDir);
  const dir = join(args.stateDir, slot);
  let kubeClient: Promise<KubeClient> | undefined;
  let clusterId = args.clusterId;
  const state = openStateStore(args.stateDir, slot, dryRun);
  let changed = false;
  let inCanary = false;
  const passedCanaries = () => state.get<Record<string, string>>(CANARIES_KEY) ?? {};
  /**
   * The stage's first change of the run: from here on nothing says a canary still holds, even if
   * the run stops before verify proves it again.
   */
  const markChanged = async () => {
    if (changed || inCanary) return;
    changed = true;
    if (state.get(CANARIES_KEY) !== undefined) await state.delete(CANARIES_KEY);
  };

  // Drop-ins call these with values nobody type-checked: a wrong one is refused here, naming the
  // plugin, rather than ending as a TypeError or a garbled line further in.
  const id = args.plugin.id;
  const need = (ok: boolean, helper: string, what: string, value: unknown, expected: string) => {
    if (!ok) throw argumentProblem(id, helper, what, value, expected);
  };
  const line = (level: "debug" | "info" | "warn") => (message: string) => {
    need(typeof message === "string", `ctx.log.${level}`, "a message", message, "a string");
    reporter.emit({ type: "log", stage: slot, level, message });
  };
  const count = (n: unknown) => n === undefined || (typeof n === "number" && Number.isFinite(n) && n >= 0);
  const log: Logger = {
    debug: line("debug"),
    info: line("info"),
    warn: line("warn"),
    progress: (message, current, total) => {
      need(typeof message === "string", "ctx.log.progress", "a message", message, "a string");
      need(count(current), "ctx.log.progress", "a current step", current, "a number");
      need(count(total), "ctx.log.progress", "a total", total, "a number");
      reporter.emit({ type: "progress", stage: slot, message, current, total });
    },
  };

  // The plugin's view of its store: a value JSON cannot hold would be kept in memory and then
  // break the write of this one and of every later key (in a dry run, only a real run would tell).
  const key = (helper: string, k: unknown) =>
    need(typeof k === "string" && k !== "", helper, "a key", k, "a string");
  const pluginState: typeof state = {
    get: <T>(k: string) => {
      key("ctx.state.get", k);
      return state.get<T>(k);
    },
    async set(k, value) {
      key("ctx.state.set", k);
      let text: string | undefined;
      try {
        text = JSON.stringify(value);
      } catch {
        text = undefined;
      }
      need(text !== undefined, "ctx.state.set", `a value for ${k}`, value, "storable as JSON");
      await state.set(k, value);
    },
    async delete(k) {
      key("ctx.state.delete", k);
      await state.delete(k);
    },
  };

  const ctx: TestablePluginContext = {
    cluster: args.cluster,
    options: args.options as never,
    plugin: { id: args.plugin.id, slot },
    get host() {
      return bind(args.targets?.host ?? pool.host());
    },
    get local() {
      return bind(args.targets?.local ?? pool.local());
    },
    node(name) {
      need(typeof name === "string", "ctx.node", "a node name", name, "a string");
      const node = args.cluster.nodes.find((n) => n.name === name);
      if (!node) throw new KubehyveError(`no node named ${name} in the cluster file`);
      return bind(args.targets?.node?.(node) ?? pool.node(node));
    },
    kubeconfigPath,
    kube() {
      // Each request is bounded: a phase waiting on one is not stuck (activity.ts).
      const guard = (client: KubeClient) => busyMethods(pool.kube(client));
      if (args.kube) return args.kube().then(guard);
      if (kubeClient) return kubeClient.then(guard);
      const client = (async () => {
        if (!existsSync(kubeconfigPath)) {
          throw new KubehyveError(
            `no admin kubeconfig at ${kubeconfigPath} yet`,
            1,
            "the k8s stage writes it: run kubehyve up",
          );
        }
        const { createKubeClient } = await import("../kube/client.ts");
        return createKubeClient(kubeconfigPath, { signal });
      })();
      // A failure is not remembered: the k8s stage may write the kubeconfig later in this run.
      client.catch(() => {
        if (kubeClient === client) kubeClient = undefined;
      });
      kubeClient = client;
      return client.then(guard);
    },
    artifacts: busyMethods(
      args.artifacts ??
        new DownloadCache({
          dir: join(args.stateDir, "cache"),
          mirror: process.env.KUBEHYVE_MIRROR || undefined,
        }),
    ),
    log,
    state: pluginState,
    dir,
    async clusterKey(): Promise<SshKey> {
      const privateKeyPath = clusterKeyPath(args.stateDir);
      if (!existsSync(privateKeyPath)) {
        // Generated even in a dry run: it lives only in the state dir, and plan, render and up must
        // all show the same key.
        let pending = keygens.get(privateKeyPath);
        if (!pending) {
          pending = busy(() =>
            generateClusterKey(args.stateDir, privateKeyPath, `kubehyve@${args.cluster.name}`),
          ).finally(() => keygens.delete(privateKeyPath));
          keygens.set(privateKeyPath, pending);
        }
        await pending;
      }
      return { privateKeyPath, publicKey: readFileSync(`${privateKeyPath}.pub`, "utf8").trim() };
    },
    get clusterId() {
      clusterId ??= clusterIdentity(args.stateDir, !dryRun);
      return clusterId;
    },
    dryRun,
    upstreamPending: args.upstreamPending ?? false,
    signal,
    assumeYes: args.assumeYes ?? false,
    upgrade: args.upgrade ?? false,
    async confirm(question) {
      need(typeof question === "string", "ctx.confirm", "a question", question, "a string");
      if (args.assumeYes) return true;
      // The operator's time, not the plugin's: no phase is stuck while a question waits.
      return args.ask ? busy(() => args.ask!(question)) : false;
    },
    async wet(description, fn, opts) {
      need(
        typeof description === "string" && description !== "",
        "ctx.wet",
        "a description",
        description,
        "a line saying what it changes",
      );
      need(typeof fn === "function", "ctx.wet", "a step", fn, "a function");
      need(
        opts === undefined || (typeof opts === "object" && opts !== null),
        "ctx.wet",
        "options",
        opts,
        "an object",
      );
      need(
        opts?.target === undefined || typeof opts.target === "string",
        "ctx.wet",
        "a target",
        opts?.target,
        "a string",
      );
      wetLog.push(description);
      reporter.emit({ type: "wet", stage: slot, description, target: opts?.target, dryRun });
      if (dryRun) return undefined;
      // Ctrl-C stops between steps: a mutation that has not started does not start. A cleanup's
      // own steps still run: they are how the run stops cleanly.
      if (signal.aborted && !cleaning) throw new CancelledError(`interrupted before: ${description}`);
      await ensurePrivateDir(dir);
      await markChanged();
      // Commands started from here are changes, for their default limit.
      return changeScope.run(true, fn);
    },
    onCleanup(fn) {
      need(typeof fn === "function", "ctx.onCleanup", "a cleanup", fn, "a function");
      cleanups.push(fn);
    },
    async canary<T>(canary: Canary<T>, fn: () => Promise<T>): Promise<CanaryRun<T>> {
      need(typeof canary === "object" && canary !== null, "ctx.canary", "a canary", canary, "an object");
      need(
        typeof canary.name === "string" && canary.name !== "",
        "ctx.canary",
        "a canary name",
        canary.name,
        "a string",
      );
      need(
        typeof canary.description === "string",
        "ctx.canary",
        "a canary description",
        canary.description,
        "a string",
      );
      need(
        typeof canary.passed === "function",
        "ctx.canary",
        "a canary's passed",
        canary.passed,
        "a function",
      );
      need(typeof fn === "function", "ctx.canary", "a canary run", fn, "a function");
      if (dryRun) {
        await ctx.wet(canary.description, fn);
        return { ran: false, why: "read-only" };
      }
      const passedAt = passedCanaries()[canary.name];
      if (passedAt && !changed && !args.canaries && !args.upstreamChanged?.())
        return { ran: false, why: "proven", passedAt };
      inCanary = true;
      try {
        const result = await ctx.wet(canary.description, async () => {
          const { [canary.name]: _stale, ...others } = passedCanaries();
          await state.set(CANARIES_KEY, others);
          const r = await fn();
          const passed = canary.passed(r);
          need(
            typeof passed === "boolean",
            "ctx.canary",
            `a canary (${canary.name}) whose passed answered`,
            passed,
            "true or false",
          );
          if (passed)
            await state.set(CANARIES_KEY, { ...passedCanaries(), [canary.name]: new Date().toISOString() });
          return r;
        });
        return { ran: true, result: result as T };
      } finally {
        inCanary = false;
      }
    },
    hooks: args.hooks ?? { call: async () => [] },
    wetLog,
    get changed() {
      return changed;
    },
    async runCleanups() {
      cleaning = true;
      while (cleanups.length) {
        const fn = cleanups.pop()!;
        try {
          await fn();
        } catch (error) {
          log.warn(`cleanup failed: ${(error as Error).message}`);
        }
      }
    },
  };
  return ctx;
}
