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
      build.module("kubehyve", async () => ({
        exports: { ...(await import("../api.ts")) },
        loader: "object",
      }));
      build.onLoad({ filter: foreignCode() }, ({ path }) => loadPluginCode(path));
    },
  });
}
