import { describe, expect, test } from "bun:test";
import Ajv from "ajv";
import * as v from "valibot";
import { parse } from "yaml";
import { builtinPlugins } from "../../plugins/index.ts";
import { definePlugin } from "../../src/core/contract.ts";
import { clusterJsonSchema } from "../../src/core/json-schema.ts";
import exampleText from "../../src/example/kubehyve.yaml" with { type: "text" };

const schema = clusterJsonSchema(builtinPlugins);
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

describe("the cluster file's JSON Schema", () => {
  test("accepts the example lab, every built-in stage's options included", () => {
    const ok = validate(parse(exampleText));
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  test("describes every built-in plugin's options under its stage", () => {
    const stages = (
      schema as {
        properties: { stages: { properties: Record<string, { properties: Record<string, unknown> }> } };
      }
    ).properties.stages.properties;
    expect(Object.keys(stages).sort()).toEqual([
      "hypervisor",
      "ingress",
      "k8s",
      "lb",
      "net",
      "os",
      "storage",
    ]);
    expect(Object.keys(stages.ingress!.properties)).toContain("address");
    expect(Object.keys(stages.storage!.properties)).toContain("pool");
    expect(Object.keys(stages.hypervisor!.properties)).toContain("vmDir");
    expect(Object.keys(stages.os!.properties)).toContain("stream");
  });

  test("lets an editor flag a misspelt stage option and a wrong node role", () => {
    const file = parse(exampleText);
    file.stages.os.strem = "stable";
    file.nodes[0].role = "master";
    expect(validate(file)).toBe(false);
    const where = (validate.errors ?? []).map((e) => e.instancePath);
    expect(where).toContain("/stages/os");
    expect(where).toContain("/nodes/0/role");
  });

  test("flags a misspelt option of a drop-in whose schema is a plain v.object, as config validate does", () => {
    const plugin = (id: string, options: v.GenericSchema) =>
      definePlugin({
        id,
        title: id,
        apiVersion: 1,
        options,
        async check() {
          return { changes: [], diagnostics: [] };
        },
      });
    const withDropIns = clusterJsonSchema([
      ...builtinPlugins,
      plugin("motd/banner", v.object({ text: v.optional(v.string()) })),
      plugin("loose/one", v.looseObject({ text: v.optional(v.string()) })),
    ]);
    const check = new Ajv({ allErrors: true, strict: false }).compile(withDropIns);
    const file = parse(exampleText);
    file.stages.motd = { plugin: "banner", txt: "Hello" };
    expect(check(file)).toBe(false);
    expect((check.errors ?? []).map((e) => e.instancePath)).toContain("/stages/motd");
    file.stages.motd = { plugin: "banner", text: "Hello" };
    file.stages.loose = { plugin: "one", more: 1 };
    expect(check(file)).toBe(true);
  });
});
