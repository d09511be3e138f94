import { defineCommand } from "citty";
import { runStages } from "./_run.ts";
import { globalArgs, selectionArgs } from "./_shared.ts";

export default defineCommand({
  meta: { name: "verify", description: "Check that every stage works, changing nothing" },
  args: { ...globalArgs, ...selectionArgs },
  run: ({ args }) => runStages("verify", args),
});
