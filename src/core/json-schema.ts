/**
 * The JSON Schema of the cluster file for editors (yaml-language-server, VS Code): the core schema
 * with every known plugin's options under its stage. Checks that JSON Schema cannot say (sizes,
 * CIDR maths) are left to `kubehyve config validate`.
 */
import { type JsonSchema, toJsonSchema } from "@valibot/to-json-schema";
import type * as v from "valibot";
import type { AnyPlugin } from "./contract.ts";
import { ClusterFileSchema } from "./schema.ts";

const convert = (schema: v.GenericSchema) => toJsonSchema(schema, { errorMode: "ignore", typeMode: "input" });

export function clusterJsonSchema(plugins: readonly AnyPlugin[]): JsonSchema {
  const root = convert(ClusterFileSchema) as JsonSchema & { properties: Record<string, JsonSchema> };
  const slots = new Map<string, AnyPlugin[]>();
  for (const p of plugins) {
    const slot = p.id.split("/")[0]!;
    slots.set(slot, [...(slots.get(slot) ?? []), p]);
  }
  const stageProperties: Record<string, JsonSchema> = {};
  for (const [slot, list] of slots) {
    const variants = list.map((p) => {
      const options = (p.options ? convert(p.options) : { type: "object", properties: {} }) as JsonSchema & {
        properties?: Record<string, JsonSchema>;
        required?: string[];
      };
      const name = p.id.split("/")[1]!;
      // config validate refuses a key a plain v.object does not name (config.ts, unknownOptions),
      // though valibot's converter leaves such a schema open: the editor is told the same.
      const closed = p.options?.type === "object" ? { additionalProperties: false } : {};
      return {
        ...options,
        ...closed,
        title: p.title,
        properties: { plugin: { enum: [name, p.id], description: p.title }, ...(options.properties ?? {}) },
        required: ["plugin", ...(options.required ?? [])],
      } as JsonSchema;
    });
    stageProperties[slot] = variants.length === 1 ? variants[0]! : ({ oneOf: variants } as JsonSchema);
  }
  root.properties.stages = {
    type: "object",
    description: "One plugin per stage, with that plugin's options",
    properties: stageProperties,
    additionalProperties: {
      type: "object",
      properties: { plugin: { type: "string" } },
      required: ["plugin"],
    },
  } as JsonSchema;
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "kubehyve cluster file",
    ...root,
  } as JsonSchema;
}
