/**
 * YAML for generated files (inventories, manifests): the same library that reads cluster files.
 * Lines are never folded: with folding, the library writes some deeply indented multi-line strings
 * as folded scalars that read back as a different string (six of the CRDs in Calico v3.32.1's
 * operator-crds.yaml lose or gain line breaks in their descriptions). Unfolded, every upstream
 * manifest kubehyve applies reads back as it was.
 *
 * The library is evaluated when first used rather than when a plugin is loaded: a command that
 * writes no YAML does not pay for it.
 */
import type * as Yaml from "yaml";
import type { CreateNodeOptions, DocumentOptions, ParseOptions, SchemaOptions, ToStringOptions } from "yaml";

const yaml = (): typeof Yaml => require("yaml");

export const parseYaml = ((...args: Parameters<typeof Yaml.parse>) =>
  yaml().parse(...args)) as typeof Yaml.parse;

export function stringifyYaml(
  value: unknown,
  options?: DocumentOptions & SchemaOptions & ParseOptions & CreateNodeOptions & ToStringOptions,
): string {
  return yaml().stringify(value, { lineWidth: 0, ...options });
}
