import { defineCommand } from "citty";
import { runStages } from "./_run.ts";
import { globalArgs, selectionArgs } from "./_shared.ts";

export default defineCommand({
  meta: {
    name: "down",
    description: "Tear the cluster down: only what the cluster file names (asks unless --yes)",
  },
  args: {
    ...globalArgs,
    ...selectionArgs,
    "dry-run": { type: "boolean", description: "Show what would be removed" },
  },
  run: ({ args }) => runStages("down", args, { dryRun: args["dry-run"] }),
});
