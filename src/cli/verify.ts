import { defineCommand } from "citty";
import { InputError } from "../lib/errors.ts";
import { runStages } from "./_run.ts";
import { globalArgs, selectionArgs } from "./_shared.ts";

export default defineCommand({
  meta: { name: "verify", description: "Check that every stage works, changing nothing" },
  args: {
    ...globalArgs,
    ...selectionArgs,
    expose: {
      type: "boolean",
      description:
        "Then deploy a whoami canary with an Ingress for whoami.DOMAIN, walk the path to it from the host hop by hop, and remove it",
    },
    "dry-run": { type: "boolean", description: "With --expose: say what would be deployed; deploy nothing" },
  },
  run: ({ args }) => {
    if (args["dry-run"] && !args.expose)
      throw new InputError(
        "--dry-run goes with --expose: verify alone changes nothing",
        "kubehyve verify --expose --dry-run",
      );
    return runStages(
      "verify",
      args,
      args.expose ? { expose: { app: { kind: "canary" }, dryRun: args["dry-run"] } } : {},
    );
  },
});
