import { resolve } from "node:path";
import { defineCommand } from "citty";
import { checkRenderDir } from "../core/render-output.ts";
import { InputError } from "../lib/errors.ts";
import { needed } from "./_args.ts";
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
    output: needed({
      type: "string",
      alias: "o",
      description: "Output directory: a new or empty one, or one render made before",
      valueHint: "DIR",
    }),
    force: {
      type: "boolean",
      description:
        "Also write into a directory render did not make, and replace render's files edited since (never anyone else's)",
    },
  },
  run: ({ args }) => {
    if (!args.output?.trim())
      throw new InputError("render needs an output directory", "kubehyve render -o DIR");
    const renderDir = resolve(args.output);
    // Before anything is rendered (or a cluster key made for it): refused now or refused later.
    checkRenderDir(renderDir, args.force);
    return runStages("render", args, { renderDir, renderForce: args.force });
  },
});
