/**
 * Makes `import … from "kubehyve"` work in drop-in plugin files, inside the compiled binary and from
 * source alike, without a node_modules: the API is served as a virtual module. The API is imported
 * only when the first drop-in asks for it, so commands without drop-ins start faster.
 */
import { plugin } from "bun";

let registered = false;

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
    },
  });
}
