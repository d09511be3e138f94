/**
 * Makes `import … from "kubehyve"` work in drop-in plugin files, inside the compiled binary and from
 * source alike, without a node_modules: the API is served as a virtual module. The API is imported
 * only when the first drop-in asks for it, so commands without drop-ins start faster.
 *
 * The same runtime plugin judges every file a drop-in loads before Bun compiles it (see
 * plugin-trust.ts). It hooks onLoad, not onResolve: Bun's runtime onResolve never sees a bare
 * specifier (oven-sh/bun#40579), while onLoad sees every file read from disk. Kubehyve's own code
 * is left alone: inside the binary it lives in /$bunfs/, and run from source, in its own tree.
 */
import { plugin } from "bun";
import { deepFreeze } from "../lib/values.ts";
import { loadPluginCode, OWN_CODE_ROOT } from "./plugin-trust.ts";

let registered = false;

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Every path that is not kubehyve's own code. */
function foreignCode(): RegExp {
  const own = OWN_CODE_ROOT === "/$bunfs" ? undefined : OWN_CODE_ROOT;
  return new RegExp(`^(?!/\\$bunfs/)${own ? `(?!${escapeRegExp(own)}/)` : ""}/`);
}

export function registerPluginApiModule(): void {
  if (registered) return;
  registered = true;
  plugin({
    name: "kubehyve-plugin-api",
    setup(build) {
      build.module("kubehyve", async () => {
        const exports: Record<string, unknown> = { ...(await import("../api.ts")) };
        // The very objects kubehyve and the built-ins use (diag, HOP_PLACES): a drop-in that set
        // diag.error to diag.ok would turn every error, the core's too, into a pass.
        for (const value of Object.values(exports)) deepFreeze(value);
        return { exports, loader: "object" };
      });
      build.onLoad({ filter: foreignCode() }, ({ path }) => loadPluginCode(path));
    },
  });
}
