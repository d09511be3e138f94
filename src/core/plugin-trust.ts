/**
 * Which drop-in code kubehyve runs (as root): a file only this user or root can change. That holds
 * for the file, for where a link to it leads, for its directory and every directory above it (a
 * writable parent lets its other users rename the plugin's folder and put their own in its place;
 * a sticky one like /tmp does not), and for every file the plugin loads in turn. A drop-in imports
 * its API from "kubehyve" and may use node: built-ins; any other bare import would be looked up in
 * whatever node_modules sits in a directory above it, so it is refused.
 */
import { realpathSync, type Stats, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where kubehyve's own code lives: /$bunfs/ inside the compiled binary; run from source, the
 * checkout (src/core → its root), node_modules included.
 */
export const OWN_CODE_ROOT = import.meta.dir.startsWith("/$bunfs/")
  ? "/$bunfs"
  : dirname(dirname(import.meta.dir));

export interface Distrust {
  /** The path to fix. */
  path: string;
  /** Says what `path` is to the plugin file: "it is", "its directory … is", … */
  subject: string;
  why: string;
}

/** The fix for a Distrust, as a command. */
export function distrustHint(d: Distrust): string {
  return d.why.startsWith("owned") ? `chown root ${d.path}, or remove it` : `chmod go-w ${d.path}`;
}

const me = () => process.getuid?.();

function ownProblem(st: Stats, allowSticky: boolean): string | undefined {
  const uid = me();
  if (uid !== undefined && st.uid !== 0 && st.uid !== uid) return `owned by another user (uid ${st.uid})`;
  if ((st.mode & 0o022) !== 0 && !(allowSticky && (st.mode & 0o1000) !== 0))
    return allowSticky ? "writable by group or others (and not sticky)" : "writable by group or others";
  return undefined;
}

/** The first directory above `realDir` (itself not judged) that others could change. */
function aboveProblem(realDir: string): { path: string; why: string } | undefined {
  for (let at = dirname(realDir); ; at = dirname(at)) {
    const why = ownProblem(statSync(at), true);
    if (why) return { path: at, why };
    if (dirname(at) === at) return undefined;
  }
}

/**
 * Why any file in `dir` could have been written by someone other than this user or root: `dir`
 * (where a link to it leads) or a directory above it can be changed by others. Said of a file in
 * it ("its directory … is"). Throws when `dir` cannot be reached.
 */
export function distrustDir(dir: string): Distrust | undefined {
  const realDir = realpathSync(dir);
  const dirWhy = ownProblem(statSync(realDir), false);
  if (dirWhy) return { path: dir, subject: `its directory ${dir} is`, why: dirWhy };
  const above = aboveProblem(realDir);
  if (above) return { path: above.path, subject: `${above.path}, a directory above it, is`, why: above.why };
  return undefined;
}

/**
 * Why the code at `file` could have been written by someone other than this user or root, or
 * undefined when it could not. A link is judged by where it leads as well as where it lies. Throws
 * when the file cannot be reached (a dangling link).
 */
export function distrust(file: string): Distrust | undefined {
  const dir = dirname(file);
  const dirProblem = distrustDir(dir);
  if (dirProblem) return dirProblem;
  const realDir = realpathSync(dir);
  const real = realpathSync(file);
  const linked = real !== join(realDir, basename(file));
  const fileWhy = ownProblem(statSync(real), false);
  if (fileWhy) return { path: real, subject: linked ? `${real}, where it leads, is` : "it is", why: fileWhy };
  if (!linked) return undefined;
  const leadsTo = dirname(real);
  const leadsWhy = ownProblem(statSync(leadsTo), false);
  if (leadsWhy) return { path: leadsTo, subject: `${leadsTo}, where it leads, is`, why: leadsWhy };
  const leadsAbove = aboveProblem(leadsTo);
  if (leadsAbove)
    return {
      path: leadsAbove.path,
      subject: `${leadsAbove.path}, a directory above where it leads, is`,
      why: leadsAbove.why,
    };
  return undefined;
}

/** A file a drop-in plugin loads (or the plugin itself) that kubehyve will not run. */
export class UntrustedPluginCode extends Error {
  constructor(
    readonly file: string,
    /** Why, said of the file as "it". */
    readonly reason: string,
    readonly hint: string,
  ) {
    super(`${file} is not loaded: ${reason}`);
    this.name = "UntrustedPluginCode";
  }
}

/** Where a relative, absolute or file: specifier in `from` leads, links followed as far as they exist. */
function resolvedImport(spec: string, from: string): string {
  let target: string;
  try {
    target = spec.startsWith("file:")
      ? fileURLToPath(spec.replace(/[?#].*$/, ""))
      : resolve(dirname(from), spec);
  } catch {
    return spec;
  }
  // The file itself may be named without its extension: its nearest directory that exists is real.
  for (let at = target; ; at = dirname(at)) {
    try {
      return join(realpathSync(at), relative(at, target));
    } catch {
      if (dirname(at) === at) return target;
    }
  }
}

const isOwnCode = (path: string) => path === OWN_CODE_ROOT || path.startsWith(`${OWN_CODE_ROOT}/`);

/**
 * A syntax error of `path`, placed: Bun places the errors of code an onLoad hands it in "input.ts",
 * so an error in a file the plugin imports would be reported at the plugin's own line and column.
 */
function syntaxError(path: string, error: unknown): unknown {
  const first = ((error as { errors?: unknown[] } | null)?.errors?.[0] ?? error) as {
    message?: unknown;
    position?: { line: number; column: number } | null;
  } | null;
  if (!first?.position || typeof first.message !== "string") return error;
  return new Error(`${path}:${first.position.line}:${first.position.column}: ${first.message}`);
}

/** The most a drop-in plugin's file, or a file it loads, may hold: a bundled plugin is a few MiB. */
export const MAX_PLUGIN_CODE_BYTES = 64 * 2 ** 20;

/** A specifier that names a package (looked up in node_modules), not a file. */
const isBare = (spec: string) => !/^(\.{1,2}(\/|$)|\/|file:)/.test(spec);
const allowedBare = (spec: string) => spec === "kubehyve" || spec.startsWith("node:");

type CodeLoader = "ts" | "tsx" | "js" | "jsx";
export type Loaded =
  | { contents: string; loader: CodeLoader | "toml" | "yaml" }
  | { exports: Record<string, unknown>; loader: "object" };

function loaderFor(path: string): CodeLoader | "toml" | "yaml" | "json" | "text" {
  const ext = path.slice(path.lastIndexOf(".") + 1);
  if (ext === "ts" || ext === "mts" || ext === "cts") return "ts";
  if (ext === "tsx" || ext === "jsx") return ext;
  if (ext === "js" || ext === "mjs" || ext === "cjs") return "js";
  if (ext === "json" || ext === "toml") return ext;
  if (ext === "yaml" || ext === "yml") return "yaml";
  return "text";
}

/**
 * Loads one file on behalf of a drop-in plugin after judging it: trusted as above, outside any
 * node_modules, and importing nothing bare but "kubehyve" and node: built-ins. What was judged is
 * what runs: the text read here is what Bun compiles.
 */
export async function loadPluginCode(path: string): Promise<Loaded> {
  let why: Distrust | undefined;
  try {
    why = distrust(path);
  } catch (error) {
    throw new UntrustedPluginCode(
      path,
      `it cannot be read: ${(error as Error).message}`,
      "fix the file, or the import that names it",
    );
  }
  if (why) throw new UntrustedPluginCode(path, `${why.subject} ${why.why}`, distrustHint(why));
  // A package reached some way the import check below cannot see (a computed specifier).
  if (path.split(sep).includes("node_modules"))
    throw new UntrustedPluginCode(
      path,
      "it lies in a node_modules folder, and drop-in plugins do not load packages",
      "bundle what the plugin needs into its file: bun build plugin.ts --external kubehyve",
    );
  // Read whole and compiled in memory: a file of gigabytes (a disk image dropped in by mistake, a
  // link to a device that stat took for a file) would take the memory of every command with it.
  const size = statSync(path).size;
  if (size > MAX_PLUGIN_CODE_BYTES)
    throw new UntrustedPluginCode(
      path,
      `it is ${size} bytes, more than the ${MAX_PLUGIN_CODE_BYTES / 2 ** 20} MiB a file of a plugin may be`,
      "move what is not the plugin's code out of the plugin path",
    );
  const text = await Bun.file(path).text();
  const loader = loaderFor(path);
  if (loader === "json") {
    const value = JSON.parse(text);
    return {
      exports: { default: value, ...(value && typeof value === "object" ? value : {}) },
      loader: "object",
    };
  }
  if (loader === "text") return { exports: { default: text }, loader: "object" };
  if (loader === "toml" || loader === "yaml") return { contents: text, loader };
  let imports: ReturnType<Bun.Transpiler["scanImports"]>;
  try {
    imports = new Bun.Transpiler({ loader }).scanImports(text);
  } catch (error) {
    throw syntaxError(path, error);
  }
  for (const { path: spec } of imports) {
    if (isBare(spec)) {
      if (!allowedBare(spec))
        throw new UntrustedPluginCode(
          path,
          `it imports "${spec}", but a drop-in plugin imports only from "kubehyve" and node: built-ins`,
          "bundle its other dependencies into the plugin file: bun build plugin.ts --external kubehyve",
        );
      continue;
    }
    // Kubehyve's own files are never judged (loaded unlike a drop-in's), and outside the plugin API:
    // a plugin that reaches into src/ works from a checkout and breaks in the binary, or at the next
    // release.
    if (isOwnCode(resolvedImport(spec, path)))
      throw new UntrustedPluginCode(
        path,
        `it imports "${spec}", which is kubehyve's own code, not its plugin API`,
        'import what the plugin needs from "kubehyve"; what it does not offer is not part of the plugin API',
      );
  }
  return { contents: text, loader };
}
