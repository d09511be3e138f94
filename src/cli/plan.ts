import { defineCommand } from "citty";
import { runStages } from "./_run.ts";
import { exampleArg, globalArgs, selectionArgs, upgradeArg } from "./_shared.ts";

export default defineCommand({
  meta: { name: "plan", description: "Show what `up` would change, without changing anything" },
  args: {
    ...globalArgs,
    ...exampleArg,
    ...selectionArgs,
    ...upgradeArg,
    offline: { type: "boolean", description: "Inspect nothing: plan a fresh install" },
  },
  run: ({ args }) => runStages("plan", args, { offline: args.offline }),
});
