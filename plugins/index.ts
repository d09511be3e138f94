/**
 * The built-in plugins, in pipeline order. This is the only file that names them: the core loads
 * them through the same contract as any drop-in plugin.
 */
import type { AnyPlugin } from "kubehyve";

export const builtinPlugins: readonly AnyPlugin[] = [];
