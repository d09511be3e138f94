import { resolve } from "node:path";
import { defineCommand } from "citty";
import { InputError } from "../core/errors.ts";
import { runStages } from "./_run.ts";
import { exampleArg, globalArgs } from "./_shared.ts";

export default defineCommand({
  meta: {
    name: "render",
    description:
      "Write every stage's generated files (VM configs, Ignition, inventory, manifests) into DIR/<slot>/",
  },
  args: {
    ...globalArgs,
    ...exampleArg,
    output: { type: "string", alias: "o", description: "Output directory", valueHint: "DIR" },
  },
  run: ({ args }) => {
    if (!args.output) throw new InputError("render needs an output directory", "kubehyve render -o DIR");
    return runStages("render", args, { renderDir: resolve(args.output) });
  },
});
