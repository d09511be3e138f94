/**
 * Finds and loads plugins: the built-ins handed over by main.ts, then drop-in `.ts`/`.js` files from
 * the plugin path. Loading never throws: a file that fails to import, declares another API version,
 * repeats an id or sits where others could have written it becomes a diagnostic, shown by `plugins`
 * and `doctor`, and the plugin is not used.
 */
import { readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { formatSeconds } from "../lib/poll.ts";
import type { PluginLookup } from "./config.ts";
import { type AnyPlugin, API_VERSION } from "./contract.ts";
import { type Diagnostic, diag } from "./diagnostics.ts";
import { registerPluginApiModule } from "./plugin-api-module.ts";
import { type Distrust, distrust, distrustHint, UntrustedPluginCode } from "./plugin-trust.ts";

export const DEFAULT_PLUGIN_DIR = "/usr/local/lib/kubehyve/plugins";

export interface PluginEntry {
  id: string;
  /** `built-in`, or the file it came from. */
  origin: string;
  version?: string;
  status: "loaded" | "refused" | "failed";
  plugin?: AnyPlugin;
}

export interface PluginRegistry extends PluginLookup {
  entries: PluginEntry[];
  diagnostics: Diagnostic[];
}

/** --plugin-dir first, then $KUBEHYVE_PLUGIN_PATH (colon-separated), then the system directory. */
export function pluginSearchPath(flagDirs: readonly string[] = [], env = process.env): string[] {
  const fromEnv = (env.KUBEHYVE_PLUGIN_PATH ?? "").split(":").filter(Boolean);
  return [...new Set([...flagDirs, ...fromEnv, DEFAULT_PLUGIN_DIR].map((d) => resolve(d)))];
}

const ID_PATTERN = /^[a-z0-9-]+\/[a-z0-9-]+$/;

/** Why a plugin object cannot be used, or undefined when it can. */
function shapeProblem(candidate: unknown): string | undefined {
  if (!candidate || typeof candidate !== "object")
    return "its default export is not a plugin object (use `export default definePlugin({...})`)";
  const p = candidate as Partial<AnyPlugin>;
  if (typeof p.id !== "string" || !ID_PATTERN.test(p.id))
    return `its id ${JSON.stringify(p.id)} is not of the form slot/name (lower-case)`;
  if (typeof p.title !== "string") return "it has no title";
  if (typeof p.check !== "function") return "it has no check function";
  if (p.after !== undefined && (!Array.isArray(p.after) || p.after.some((s) => typeof s !== "string")))
    return "its after is not a list of slot names";
  // Called without another look by the steps: one that is there must be a function.
  for (const phase of ["validate", "apply", "verify", "render", "destroy"] as const)
    if (p[phase] !== undefined && typeof p[phase] !== "function") return `its ${phase} is not a function`;
  for (const [field, what] of [
    ["hooks", "hook handlers"],
    ["hookAnswers", "schemas of hook answers"],
  ] as const) {
    const map = p[field];
    if (map !== undefined && (typeof map !== "object" || map === null || Array.isArray(map)))
      return `its ${field} is not an object of ${what}`;
  }
  for (const [name, schema] of Object.entries(p.hookAnswers ?? {}))
    if ((schema as { kind?: unknown } | null)?.kind !== "schema")
      return `its hookAnswers of ${name} is not a valibot schema (use v.object(...) from "kubehyve")`;
  return undefined;
}

/** Where Bun's parser puts a syntax error (its BuildMessage): line and column are 1-based. */
interface BuildMessageLike {
  message: string;
  position?: { file?: string; line: number; column: number } | null;
}

/**
 * What went wrong importing `file`, for a person: the first syntax error with its place (Bun
 * reports them as an AggregateError of BuildMessages whose own message is only "Failed to scan
 * imports"), the message of anything else thrown, and a value that is not an Error at all (a
 * plugin may `throw null`) as itself.
 */
function whyNotLoaded(error: unknown, file: string): string {
  const messages = (error as { errors?: unknown } | null)?.errors;
  const first = (Array.isArray(messages) ? messages[0] : error) as BuildMessageLike | undefined;
  if (first?.position && typeof first.message === "string") {
    const { line, column } = first.position;
    return `${file}:${line}:${column}: ${first.message}`;
  }
  if (error instanceof Error) return error.message;
  return `it threw ${typeof error === "string" ? error : String(error)}`;
}

/**
 * How long one drop-in may take to load. Every command loads the plugins first, `kubehyve plugins`
 * too: a file whose top-level await never ends would otherwise hang the very command that is
 * there to find it.
 */
export const PLUGIN_IMPORT_TIMEOUT_MS = 10_000;

class ImportTimeout extends Error {}

/** `import(file)`, or an ImportTimeout after `ms`; the timer does not keep the process alive. */
function importWithin(file: string, ms: number): Promise<{ default?: unknown }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ImportTimeout(
            `it did not finish loading within ${formatSeconds(ms)} (a top-level await that never ends?)`,
          ),
        ),
      ms,
    );
    timer.unref?.();
  });
  return Promise.race([import(file), limit]).finally(() => clearTimeout(timer));
}

export async function loadPlugins(
  builtins: readonly AnyPlugin[],
  searchPath: readonly string[],
  opts: { importTimeoutMs?: number } = {},
): Promise<PluginRegistry> {
  const entries: PluginEntry[] = [];
  const diagnostics: Diagnostic[] = [];
  const byId = new Map<string, PluginEntry>();

  const accept = (plugin: AnyPlugin, origin: string) => {
    const entry: PluginEntry = { id: plugin.id, origin, version: plugin.version, status: "loaded", plugin };
    const existing = byId.get(plugin.id);
    if (existing) {
      entry.status = "refused";
      entry.plugin = undefined;
      diagnostics.push(
        diag.error(
          "plugin.duplicate-id",
          existing.origin === "built-in"
            ? `plugin ${plugin.id} from ${origin} repeats the id of a built-in plugin, which stays in use`
            : `plugin ${plugin.id} from ${origin} repeats the id of the one from ${existing.origin}, which stays in use`,
          {
            // A built-in cannot be renamed: only the drop-in can.
            hint:
              existing.origin === "built-in"
                ? `give the plugin in ${origin} an id of its own, or remove it`
                : `rename one of them, or remove ${origin}`,
          },
        ),
      );
    } else if (plugin.apiVersion !== API_VERSION) {
      entry.status = "refused";
      entry.plugin = undefined;
      diagnostics.push(
        diag.error(
          "plugin.api-version",
          `plugin ${plugin.id} (${origin}) needs plugin API ${plugin.apiVersion}; this kubehyve speaks ${API_VERSION}`,
          {
            hint: "use a release of the plugin made for this kubehyve, or a kubehyve that speaks its API",
          },
        ),
      );
    } else {
      byId.set(plugin.id, entry);
    }
    entries.push(entry);
  };

  for (const plugin of builtins) accept(plugin, "built-in");

  const files: string[] = [];
  for (const dir of searchPath) {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (error) {
      // A directory that does not exist is simply empty (the system one mostly does not). One
      // that cannot be read is not: its plugins would be missing without a word.
      const e = error as NodeJS.ErrnoException;
      if (e.code === "ENOENT") continue;
      diagnostics.push(
        diag.error(
          "plugin.dir-unreadable",
          `plugin directory ${dir} cannot be read, so no plugin is loaded from it`,
          {
            detail: e.message,
            hint:
              e.code === "ENOTDIR"
                ? `name the directory that holds the plugin files: --plugin-dir ${dirname(dir)}`
                : `check its permissions (ls -ld ${dir}), or leave it out of the plugin path`,
          },
        ),
      );
      continue;
    }
    for (const name of names) {
      if (!/\.(ts|js|mjs)$/.test(name) || name.endsWith(".d.ts") || name.startsWith(".")) continue;
      const file = join(dir, name);
      let problem: Distrust | undefined;
      try {
        if (!statSync(file).isFile()) continue;
        problem = distrust(file);
      } catch (error) {
        // A dangling symlink, or a file that vanished or cannot be read.
        entries.push({ id: name, origin: file, status: "failed" });
        diagnostics.push(
          diag.error("plugin.unreadable", `plugin file ${file} cannot be read`, {
            detail: (error as Error).message,
            hint: "fix the file, or move it out of the plugin path",
          }),
        );
        continue;
      }
      if (problem) {
        entries.push({ id: name, origin: file, status: "refused" });
        diagnostics.push(
          diag.error(
            "plugin.unsafe-permissions",
            `plugin file ${file} is not loaded: ${problem.subject} ${problem.why}`,
            { hint: distrustHint(problem) },
          ),
        );
        continue;
      }
      files.push(file);
    }
  }

  if (files.length) registerPluginApiModule();
  for (const file of files) {
    try {
      const mod = await importWithin(file, opts.importTimeoutMs ?? PLUGIN_IMPORT_TIMEOUT_MS);
      const problem = shapeProblem(mod.default);
      if (problem) {
        entries.push({ id: file.split("/").pop()!, origin: file, status: "failed" });
        diagnostics.push(diag.error("plugin.invalid", `plugin file ${file} is not loaded: ${problem}`));
        continue;
      }
      accept(mod.default as AnyPlugin, file);
    } catch (error) {
      if (error instanceof UntrustedPluginCode) {
        // Something it imports is refused: the plugin is refused with it, the reason named.
        entries.push({ id: file.split("/").pop()!, origin: file, status: "refused" });
        diagnostics.push(
          diag.error(
            "plugin.unsafe-import",
            `plugin file ${file} is not loaded: ${error.file === file ? "" : `${error.file}, which it loads: `}${error.reason}`,
            { hint: error.hint },
          ),
        );
        continue;
      }
      entries.push({ id: file.split("/").pop()!, origin: file, status: "failed" });
      diagnostics.push(
        diag.error("plugin.load-failed", `plugin file ${file} failed to load`, {
          detail: whyNotLoaded(error, file),
          hint: "fix the file, or move it out of the plugin path",
        }),
      );
    }
  }

  return {
    entries,
    diagnostics,
    searchPath,
    find: (id) => byId.get(id)?.plugin,
  };
}
