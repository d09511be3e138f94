/**
 * Finds and loads plugins: the built-ins handed over by main.ts, then drop-in `.ts`/`.js` files from
 * the plugin path. Loading never throws: a file that fails to import, declares another API version,
 * repeats an id or sits where others could have written it becomes a diagnostic, shown by `plugins`
 * and `doctor`, and the plugin is not used.
 */
import { readdirSync, type Stats, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { formatSeconds } from "../lib/poll.ts";
import { describeValue } from "../lib/values.ts";
import type { PluginLookup } from "./config.ts";
import { type AnyPlugin, API_VERSION } from "./contract.ts";
import { type Diagnostic, diag } from "./diagnostics.ts";
import { registerPluginApiModule } from "./plugin-api-module.ts";
import { type Distrust, distrust, distrustDir, distrustHint, UntrustedPluginCode } from "./plugin-trust.ts";

export const DEFAULT_PLUGIN_DIR = "/usr/local/lib/kubehyve/plugins";

export interface PluginEntry {
  id: string;
  /** `built-in`, or the file it came from. */
  origin: string;
  version?: string;
  status: "loaded" | "refused" | "failed";
  plugin?: AnyPlugin;
  /** Why it is not used, said of the file as "it": for messages that name the plugin, not the finding. */
  problem?: string;
}

export interface PluginRegistry extends PluginLookup {
  entries: PluginEntry[];
  diagnostics: Diagnostic[];
}

/** The names the loader considers: code files, no declarations, no dotfiles (editor swap files). */
const isPluginName = (name: string) =>
  /\.(ts|js|mjs)$/.test(name) && !name.endsWith(".d.ts") && !name.startsWith(".");

/** A file that is not a regular one, as a person names its kind. */
function fileKind(st: Stats): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  return "no regular file";
}

/**
 * What to do about a plugin directory readdir refused. ENOTDIR: a plugin file given in its place
 * (its directory is meant), or a FIFO or a device, which is no plugin's.
 */
function dirUnreadableHint(dir: string, code: string | undefined): string {
  if (code !== "ENOTDIR") return `check its permissions (ls -ld ${dir}), or leave it out of the plugin path`;
  let st: Stats | undefined;
  try {
    st = statSync(dir);
  } catch {}
  if (st && !st.isFile())
    return `${dir} is ${fileKind(st)}: name a directory of plugin files, or leave it out of the plugin path`;
  return `name the directory that holds the plugin files: --plugin-dir ${dirname(dir)}`;
}

/** --plugin-dir first, then $KUBEHYVE_PLUGIN_PATH (colon-separated), then the system directory. */
export function pluginSearchPath(flagDirs: readonly string[] = [], env = process.env): string[] {
  const fromEnv = (env.KUBEHYVE_PLUGIN_PATH ?? "").split(":").filter(Boolean);
  return [...new Set([...flagDirs, ...fromEnv, DEFAULT_PLUGIN_DIR].map((d) => resolve(d)))];
}

const ID_PATTERN = /^[a-z0-9-]+\/[a-z0-9-]+$/;
/** A release name as `plugins` shows it: `0.1.0`, `v3.7.9`, `1.2.0-rc.1+build.5`. */
const VERSION_PATTERN = /^[0-9A-Za-z][0-9A-Za-z.+_~-]{0,63}$/;
/** Hook names are `slot:what`, the slot being the caller's (contract.ts, HookTypes). */
const HOOK_NAME_PATTERN = /^[a-z0-9-]+:[a-z0-9-]+$/;
/** A line break or an escape sequence in a title would make `plugins` and the reports say something else. */
const CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/** Why a plugin object cannot be used, or undefined when it can. */
function shapeProblem(candidate: unknown): string | undefined {
  if (!candidate || typeof candidate !== "object")
    return "its default export is not a plugin object (use `export default definePlugin({...})`)";
  const p = candidate as Partial<AnyPlugin>;
  if (typeof p.id !== "string" || !ID_PATTERN.test(p.id))
    return `its id ${describeValue(p.id)} is not of the form slot/name (lower-case)`;
  if (typeof p.title !== "string" || !p.title.trim()) return "it has no title";
  if (CONTROL.test(p.title)) return `its title ${JSON.stringify(p.title)} holds control characters`;
  // Compared with API_VERSION by accept(): "1" or 1.5 would be refused as "needs plugin API 1".
  if (typeof p.apiVersion !== "number" || !Number.isInteger(p.apiVersion) || p.apiVersion < 1)
    return `its apiVersion is not a whole number (${describeValue(p.apiVersion)}; this kubehyve speaks ${API_VERSION})`;
  if (p.version !== undefined && (typeof p.version !== "string" || !VERSION_PATTERN.test(p.version)))
    return `its version is not a release name such as 1.2.0 (${describeValue(p.version)})`;
  if (typeof p.check !== "function") return "it has no check function";
  if (p.after !== undefined && (!Array.isArray(p.after) || p.after.some((s) => typeof s !== "string")))
    return "its after is not a list of slot names";
  // A slot of no stage is passed over when ordering (lb after net, in a file without net): one that
  // could never be a slot ("K8s", "k8s/kubespray") would be passed over without a word.
  const oddSlot = p.after?.find((s) => !/^[a-z0-9-]+$/.test(s));
  if (oddSlot !== undefined)
    return `its after names ${JSON.stringify(oddSlot)}, which is no slot name (lower-case, such as k8s)`;
  if (p.options !== undefined && (p.options as { kind?: unknown } | null)?.kind !== "schema")
    return 'its options is not a valibot schema (use v.object(...) from "kubehyve")';
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
    // A misspelt name is never called, and nothing would say so.
    for (const name of Object.keys(map ?? {}))
      if (!HOOK_NAME_PATTERN.test(name))
        return `its ${field} names ${JSON.stringify(name)}, which is no hook name (slot:what, such as os:node-files)`;
  }
  // Found now, before any host is touched, not when a stage first calls the hook mid-run.
  for (const [name, handler] of Object.entries(p.hooks ?? {}))
    if (typeof handler !== "function")
      return `its handler of hook ${name} is ${describeValue(handler)}, not a function`;
  for (const [name, schema] of Object.entries(p.hookAnswers ?? {}))
    if ((schema as { kind?: unknown } | null)?.kind !== "schema")
      return `its hookAnswers of ${name} is not a valibot schema (use v.object(...) from "kubehyve")`;
  return undefined;
}

/** The fields of the contract, read once. */
const CONTRACT_FIELDS = [
  "id",
  "title",
  "apiVersion",
  "version",
  "after",
  "options",
  "validate",
  "check",
  "apply",
  "verify",
  "render",
  "destroy",
  "hooks",
  "hookAnswers",
] as const;

/**
 * The drop-in's plugin object as it was when judged: every own field and every field of the
 * contract read once into plain data properties (a getter or a Proxy answers once), its lists and
 * maps copied. What shapeProblem passed is then what the steps call, whatever the module does with
 * its object later. Its prototype stays, so that `this.helper()` of a class's method still works.
 */
function snapshot(candidate: object): Record<string, unknown> {
  const copy = Object.create(Object.getPrototypeOf(candidate)) as Record<string | symbol, unknown>;
  for (const key of Reflect.ownKeys(candidate))
    copy[key] = (candidate as Record<string | symbol, unknown>)[key];
  for (const field of CONTRACT_FIELDS) {
    if (Object.hasOwn(copy, field)) continue;
    // One the prototype holds (a class's method), read once as well.
    const value = (candidate as Record<string, unknown>)[field];
    if (value !== undefined) copy[field] = value;
  }
  if (Array.isArray(copy.after)) copy.after = [...copy.after];
  // Without a prototype: a hook named "toString" or "constructor" is not found on Object's.
  for (const map of ["hooks", "hookAnswers"])
    if (copy[map] && typeof copy[map] === "object")
      copy[map] = Object.assign(Object.create(null), copy[map] as object);
  return copy;
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
  // What a module throws is its own: a Proxy whose every read throws, or a toString that does, must
  // not make loading throw (every command loads the plugins first, `plugins` too).
  try {
    const messages = (error as { errors?: unknown } | null)?.errors;
    const first = (Array.isArray(messages) ? messages[0] : error) as BuildMessageLike | undefined;
    if (first?.position && typeof first.message === "string") {
      const { line, column } = first.position;
      return `${file}:${line}:${column}: ${first.message}`;
    }
    if (error instanceof Error && typeof error.message === "string") return error.message;
    const text = typeof error === "string" ? error : String(error);
    if (typeof text === "string") return `it threw ${text}`;
  } catch {}
  return `it threw ${describeThrown(error)}, which cannot be shown`;
}

/** The kind of a thrown value, without reading it (reading is what threw). */
function describeThrown(value: unknown): string {
  try {
    return describeValue(value);
  } catch {
    return "an object";
  }
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
      entry.problem = `it repeats the id of ${existing.origin === "built-in" ? "a built-in plugin" : `the one from ${existing.origin}`}`;
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
      entry.problem = `it needs plugin API ${plugin.apiVersion}; this kubehyve speaks ${API_VERSION}`;
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

  /** A file of the plugin path that is not used, and the one finding that says why. */
  const notUsed = (entry: PluginEntry & { problem: string }, finding?: Diagnostic) => {
    entries.push(entry);
    if (finding) diagnostics.push(finding);
  };

  const files: string[] = [];
  for (const dir of searchPath) {
    let raw: Buffer[];
    try {
      raw = readdirSync(dir, { encoding: "buffer" });
    } catch (error) {
      // A directory that does not exist is simply empty (the system one mostly does not). One
      // that cannot be read is not: its plugins would be missing without a word.
      const e = error as NodeJS.ErrnoException;
      if (e.code === "ENOENT") {
        // One the user named (--plugin-dir, $KUBEHYVE_PLUGIN_PATH) is a typo more often than not:
        // its plugins would be "not found" later, with the directory's name among many.
        if (dir !== DEFAULT_PLUGIN_DIR)
          diagnostics.push(
            diag.warn(
              "plugin.dir-missing",
              `plugin directory ${dir} does not exist, so no plugin is loaded from it`,
              {
                hint: "create it, or correct --plugin-dir or $KUBEHYVE_PLUGIN_PATH",
              },
            ),
          );
        continue;
      }
      diagnostics.push(
        diag.error(
          "plugin.dir-unreadable",
          `plugin directory ${dir} cannot be read, so no plugin is loaded from it`,
          {
            detail: e.message,
            hint: dirUnreadableHint(dir, e.code),
          },
        ),
      );
      continue;
    }
    const names: string[] = [];
    for (const bytes of raw) {
      const name = bytes.toString("utf8");
      if (!isPluginName(name)) continue;
      // Decoded with U+FFFD in place of the bytes that are no UTF-8, the name is of no file: it
      // would be reported as missing, next to the file the user can see.
      if (!Buffer.from(name, "utf8").equals(bytes)) {
        const shown = JSON.stringify(name);
        notUsed(
          { id: shown, origin: join(dir, name), status: "failed", problem: "its name is not UTF-8" },
          diag.error(
            "plugin.bad-name",
            `the plugin file ${shown} in ${dir} is not loaded: its name is not UTF-8`,
            {
              hint: `rename it (ls -b ${dir} shows its name's bytes)`,
            },
          ),
        );
        continue;
      }
      names.push(name);
    }
    names.sort();
    if (!names.length) continue;
    // Judged once for all its files: a directory others can write is one finding, not one per file.
    let dirProblem: Distrust | undefined;
    try {
      dirProblem = distrustDir(dir);
    } catch {
      // Reached a moment ago: judged with each file below, which says what went wrong.
    }
    if (dirProblem) {
      const problem = `${dirProblem.subject} ${dirProblem.why}`;
      // Said of the directory: "it is", or "…, a directory above it, is".
      const ofDir = dirProblem.path === dir ? `it is ${dirProblem.why}` : problem;
      diagnostics.push(
        diag.error(
          "plugin.unsafe-permissions",
          `no plugin is loaded from ${dir} (${names.length} file${names.length === 1 ? "" : "s"}): ${ofDir}`,
          { hint: distrustHint(dirProblem) },
        ),
      );
      for (const name of names) notUsed({ id: name, origin: join(dir, name), status: "refused", problem });
      continue;
    }
    for (const name of names) {
      const file = join(dir, name);
      let problem: Distrust | undefined;
      try {
        const st = statSync(file);
        // A folder of that name is nobody's plugin file; a FIFO or a device would be read for ever.
        if (st.isDirectory()) continue;
        if (!st.isFile()) {
          const kind = fileKind(st);
          notUsed(
            { id: name, origin: file, status: "failed", problem: `it is ${kind}, not a regular file` },
            diag.error(
              "plugin.not-a-file",
              `plugin file ${file} is not loaded: it is ${kind}, not a regular file`,
              {
                hint: "move it out of the plugin path",
              },
            ),
          );
          continue;
        }
        problem = distrust(file);
      } catch (error) {
        // A dangling symlink, or a file that vanished or cannot be read.
        notUsed(
          {
            id: name,
            origin: file,
            status: "failed",
            problem: `it cannot be read: ${(error as Error).message}`,
          },
          diag.error("plugin.unreadable", `plugin file ${file} cannot be read`, {
            detail: (error as Error).message,
            hint: "fix the file, or move it out of the plugin path",
          }),
        );
        continue;
      }
      if (problem) {
        const why = `${problem.subject} ${problem.why}`;
        notUsed(
          { id: name, origin: file, status: "refused", problem: why },
          diag.error("plugin.unsafe-permissions", `plugin file ${file} is not loaded: ${why}`, {
            hint: distrustHint(problem),
          }),
        );
        continue;
      }
      files.push(file);
    }
  }

  if (files.length) registerPluginApiModule();
  // Started together, taken in order: files whose top-level await never ends cost one limit
  // between them, not one each, and the first in the path still wins an id.
  const limit = opts.importTimeoutMs ?? PLUGIN_IMPORT_TIMEOUT_MS;
  const imports = files.map((file) => {
    const loading = importWithin(file, limit);
    // Taken below in turn; until then a failure must not count as unhandled.
    loading.catch(() => {});
    return loading;
  });
  for (const [i, file] of files.entries()) {
    const name = basename(file);
    try {
      const mod = await imports[i]!;
      const candidate = mod.default;
      const plugin = candidate && typeof candidate === "object" ? snapshot(candidate) : candidate;
      const problem = shapeProblem(plugin);
      if (problem) {
        // Listed by the id it declares, when it declares one: the id the cluster file names.
        const declared = (plugin as { id?: unknown } | undefined)?.id;
        const id = typeof declared === "string" && ID_PATTERN.test(declared) ? declared : name;
        notUsed(
          { id, origin: file, status: "failed", problem },
          diag.error("plugin.invalid", `plugin file ${file} is not loaded: ${problem}`),
        );
        continue;
      }
      accept(plugin as AnyPlugin, file);
    } catch (error) {
      if (error instanceof UntrustedPluginCode) {
        // Something it imports is refused: the plugin is refused with it, the reason named.
        const problem = `${error.file === file ? "" : `${error.file}, which it loads: `}${error.reason}`;
        notUsed(
          { id: name, origin: file, status: "refused", problem },
          diag.error("plugin.unsafe-import", `plugin file ${file} is not loaded: ${problem}`, {
            hint: error.hint,
          }),
        );
        continue;
      }
      const why = whyNotLoaded(error, file);
      notUsed(
        { id: name, origin: file, status: "failed", problem: `it failed to load: ${why}` },
        diag.error("plugin.load-failed", `plugin file ${file} failed to load`, {
          detail: why,
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
