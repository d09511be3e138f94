/**
 * YAML for generated files (inventories, manifests): the same library that reads cluster files.
 * Lines are never folded: with folding, the library writes some deeply indented multi-line strings
 * as folded scalars that read back as a different string (six of the CRDs in Calico v3.32.1's
 * operator-crds.yaml lose or gain line breaks in their descriptions). Unfolded, every upstream
 * manifest kubehyve applies reads back as it was.
 */
import {
  type CreateNodeOptions,
  type DocumentOptions,
  type ParseOptions,
  parse,
  type SchemaOptions,
  stringify,
  type ToStringOptions,
} from "yaml";

export const parseYaml = parse;

export function stringifyYaml(
  value: unknown,
  options?: DocumentOptions & SchemaOptions & ParseOptions & CreateNodeOptions & ToStringOptions,
): string {
  return stringify(value, { lineWidth: 0, ...options });
}
