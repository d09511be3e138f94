import { defineCommand } from "citty";
import { runStages } from "./_run.ts";
import { globalArgs, selectionArgs, upgradeArg } from "./_shared.ts";

export default defineCommand({
  meta: { name: "up", description: "Build the cluster, or bring it back to what the cluster file says" },
  args: {
    ...globalArgs,
    ...selectionArgs,
    ...upgradeArg,
    canaries: {
      type: "boolean",
      description:
        "Run every stage's canary (test pods, Services, claims) even where nothing changed since it last passed",
    },
    "dry-run": { type: "boolean", description: "Only plan: the same as kubehyve plan" },
  },
  run: ({ args }) => runStages(args["dry-run"] ? "plan" : "up", args),
});
