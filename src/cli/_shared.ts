/**
 * What the commands share: the global flags, finding the cluster file and the state dir, loading
 * plugins and config (a run's reporter and Ctrl-C are in _session.ts). Only the CLI layer prints and
 * chooses exit codes.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { ArgsDef } from "citty";
import { type LoadedConfig, loadClusterFile, parseClusterText } from "../core/config.ts";
import { loadPlugins, type PluginRegistry, pluginSearchPath } from "../core/plugins.ts";
import exampleText from "../example/kubehyve.yaml" with { type: "text" };
import { InputError } from "../lib/errors.ts";
import { builtinPlugins } from "./builtins.ts";

export const EXAMPLE_SOURCE = "<built-in example lab>";

export { exampleArg, globalArgs, selectionArgs } from "./_args.ts";
export { exampleText };

export const upgradeArg = {
  upgrade: {
    type: "boolean",
    alias: "upgrade-image",
    description:
      "Move pinned releases (such as the Fedora CoreOS image) to the newest; without it re-runs reproduce them",
  },
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

/** An empty value is refused rather than taken as "not given" (the command line refuses it first). */
export function nonEmpty(value: string | undefined, flag: string): string | undefined {
  if (value !== undefined && !value.trim())
    throw new InputError(
      `${flag} was given an empty value; nothing was done`,
      `give ${flag} a value, or leave it out`,
    );
  return value;
}

/** -c FILE, else ./kubehyve.yaml, else the system-wide file. */
export function resolveConfigPath(flag: string | undefined, cwd = process.cwd()): string {
  if (nonEmpty(flag, "--config") !== undefined) return resolve(cwd, flag!);
  const local = resolve(cwd, "kubehyve.yaml");
  if (existsSync(local) || !existsSync(SYSTEM_CONFIG)) return local;
  return SYSTEM_CONFIG;
}

/** /var/db/kubehyve/<cluster> on FreeBSD, $XDG_STATE_HOME/kubehyve/<cluster> elsewhere. */
export function defaultStateDir(cluster: string, platform = process.platform, env = process.env): string {
  if (platform === "freebsd") return join("/var/db/kubehyve", cluster);
  // The XDG Base Directory spec: a relative $XDG_STATE_HOME is invalid and must be ignored.
  const xdg = env.XDG_STATE_HOME && isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : undefined;
  // A relative HOME would put the cluster's keys below whatever directory the command ran in, a
  // different state dir from each one.
  if (!xdg && env.HOME && !isAbsolute(env.HOME))
    throw new InputError(
      `HOME is ${JSON.stringify(env.HOME)}, not an absolute path, so the state dir of ${cluster} cannot be found by it; nothing was done`,
      "set HOME to your home directory, or pass --state-dir DIR",
    );
  const base = xdg ?? join(env.HOME || homedir(), ".local", "state");
  return join(base, "kubehyve", cluster);
}

export async function loadRegistry(flags: GlobalFlags): Promise<PluginRegistry> {
  const dirs = splitList(nonEmpty(flags["plugin-dir"], "--plugin-dir"), "--plugin-dir", ":") ?? [];
  return loadPlugins(await builtinPlugins(), pluginSearchPath(dirs));
}

export interface Loaded {
  registry: PluginRegistry;
  config: LoadedConfig;
  stateDir: string;
}

export async function loadCluster(flags: GlobalFlags): Promise<Loaded> {
  if (flags.example && flags.config !== undefined)
    throw new InputError(
      `--example and -c ${flags.config} name two cluster files; nothing was done`,
      "give one of them",
    );
  const registry = await loadRegistry(flags);
  const config = flags.example
    ? parseClusterText(exampleText, EXAMPLE_SOURCE, registry)
    : await loadClusterFile(resolveConfigPath(flags.config), registry);
  const named = nonEmpty(flags["state-dir"], "--state-dir");
  return {
    registry,
    config,
    // Found when asked for: config validate needs none, and must not fail for want of a HOME.
    get stateDir() {
      return resolve(named ?? defaultStateDir(config.cluster.name));
    },
  };
}

/** `a,b` as a list; an empty item (`a,,b`, `a,`) is refused: it is a typo, never "all". */
export function splitList(value: string | undefined, flag = "--only", separator = ","): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(separator).map((s) => s.trim());
  if (items.some((s) => !s))
    throw new InputError(
      `${flag} ${JSON.stringify(value)} has an empty item; nothing was done`,
      `list the items separated by "${separator}", without an empty one`,
    );
  return items;
}
