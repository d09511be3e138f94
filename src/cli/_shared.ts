/**
 * What the commands share: the global flags, finding the cluster file and the state dir, loading
 * plugins and config, and the reporter. Only the CLI layer prints and chooses exit codes.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import type { ArgsDef } from "citty";
import { consola } from "consola";
import { loadClusterFile, parseClusterText, type LoadedConfig } from "../core/config.ts";
import { InputError } from "../core/errors.ts";
import { loadPlugins, pluginSearchPath, type PluginRegistry } from "../core/plugins.ts";
import { humanReporter, jsonReporter, type Reporter } from "../core/reporter.ts";
import { ensurePrivateDir } from "../core/fsutil.ts";
import { builtinPlugins } from "./builtins.ts";
import exampleText from "../example/kubehyve.yaml" with { type: "text" };

export const EXAMPLE_SOURCE = "<built-in example lab>";
export { exampleText };

export const globalArgs = {
  config: {
    type: "string",
    alias: "c",
    description: "Cluster file (default: ./kubehyve.yaml, then /usr/local/etc/kubehyve/kubehyve.yaml)",
    valueHint: "FILE",
  },
  "state-dir": {
    type: "string",
    description: "State directory of this cluster (keys, kubeconfig, journal, cache)",
    valueHint: "DIR",
  },
  json: { type: "boolean", description: "Write NDJSON events on stdout and nothing else" },
  verbose: { type: "boolean", description: "Show debug lines and details" },
  yes: { type: "boolean", alias: "y", description: "Answer yes to every question (restarts, teardown)" },
  "plugin-dir": {
    type: "string",
    description: "Look for drop-in plugins here first (colon-separated for several)",
    valueHint: "DIR",
  },
} as const satisfies ArgsDef;

export const exampleArg = {
  example: { type: "boolean", description: "Use the built-in example lab instead of a cluster file" },
} as const satisfies ArgsDef;

export const selectionArgs = {
  only: { type: "string", description: "Run only these stages (comma-separated slots)", valueHint: "SLOTS" },
  from: { type: "string", description: "Start at this stage", valueHint: "SLOT" },
  until: { type: "string", description: "Stop after this stage", valueHint: "SLOT" },
} as const satisfies ArgsDef;

export interface GlobalFlags {
  config?: string;
  "state-dir"?: string;
  json?: boolean;
  verbose?: boolean;
  yes?: boolean;
  "plugin-dir"?: string;
  example?: boolean;
}

export const SYSTEM_CONFIG = "/usr/local/etc/kubehyve/kubehyve.yaml";

/** -c FILE, else ./kubehyve.yaml, else the system-wide file. */
export function resolveConfigPath(flag: string | undefined, cwd = process.cwd()): string {
  if (flag) return resolve(cwd, flag);
  const local = resolve(cwd, "kubehyve.yaml");
  if (existsSync(local) || !existsSync(SYSTEM_CONFIG)) return local;
  return SYSTEM_CONFIG;
}

/** /var/db/kubehyve/<cluster> on FreeBSD, $XDG_STATE_HOME/kubehyve/<cluster> elsewhere. */
export function defaultStateDir(cluster: string, platform = process.platform, env = process.env): string {
  if (platform === "freebsd") return join("/var/db/kubehyve", cluster);
  const base = env.XDG_STATE_HOME || join(env.HOME || homedir(), ".local", "state");
  return join(base, "kubehyve", cluster);
}

export async function loadRegistry(flags: GlobalFlags): Promise<PluginRegistry> {
  const dirs = (flags["plugin-dir"] ?? "").split(":").filter(Boolean);
  return loadPlugins(await builtinPlugins(), pluginSearchPath(dirs));
}

export interface Loaded {
  registry: PluginRegistry;
  config: LoadedConfig;
  stateDir: string;
}

export async function loadCluster(flags: GlobalFlags): Promise<Loaded> {
  const registry = await loadRegistry(flags);
  const config = flags.example
    ? parseClusterText(exampleText, EXAMPLE_SOURCE, registry)
    : await loadClusterFile(resolveConfigPath(flags.config), registry);
  const stateDir = resolve(flags["state-dir"] ?? defaultStateDir(config.cluster.name));
  return { registry, config, stateDir };
}

/** The run's reporter; its log file goes to <state dir>/logs/. */
export async function makeReporter(
  flags: GlobalFlags,
  stateDir?: string,
  command = "run",
): Promise<Reporter> {
  let logFile: string | undefined;
  if (stateDir) {
    await ensurePrivateDir(join(stateDir, "logs"));
    logFile = join(stateDir, "logs", `${new Date().toISOString().replace(/[:.]/g, "-")}-${command}.ndjson`);
  }
  return flags.json ? jsonReporter(logFile) : humanReporter({ verbose: flags.verbose, logFile });
}

/** Questions go to a person at a terminal; with --json or without a terminal nobody can answer. */
export function askFor(flags: GlobalFlags): ((question: string) => Promise<boolean>) | undefined {
  if (flags.json || !process.stdin.isTTY) return undefined;
  return async (question) =>
    (await consola.prompt(question, { type: "confirm", initial: false, cancel: "default" })) === true;
}

/** Ctrl-C stops the run between steps; a second Ctrl-C leaves at once. */
export function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  let count = 0;
  process.on("SIGINT", () => {
    count++;
    if (count > 1) process.exit(130);
    process.stderr.write("\ninterrupted: stopping after the current step (Ctrl-C again to leave now)\n");
    controller.abort(new Error("interrupted"));
  });
  process.on("SIGTERM", () => controller.abort(new Error("terminated")));
  return controller.signal;
}

export function splitList(value: string | undefined): string[] | undefined {
  return value
    ? value
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
}

export function requireNoPositionals(positionals: readonly string[], command: string): void {
  if (positionals.length)
    throw new InputError(
      `${command} takes no arguments, but got: ${positionals.join(" ")}`,
      `kubehyve ${command} --help`,
    );
}
