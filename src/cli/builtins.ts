/**
 * The built-in plugins reach the CLI from main.ts, which imports plugins/index.ts: src/ itself names
 * no plugin. They load lazily, so `--version` and `--help` do not pay for them.
 */
import type { AnyPlugin } from "../core/contract.ts";

let loader: () => Promise<readonly AnyPlugin[]> = async () => [];

export function provideBuiltins(load: () => Promise<readonly AnyPlugin[]>): void {
  loader = load;
}

export function builtinPlugins(): Promise<readonly AnyPlugin[]> {
  return loader();
}
