import { defineCommand } from "citty";
import { runStages } from "./_run.ts";
import { globalArgs } from "./_shared.ts";

export default defineCommand({
  meta: {
    name: "doctor",
    description: "Inspect every stage read-only and say what is wrong and how to fix it",
  },
  args: {
    ...globalArgs,
    timeout: {
      type: "string",
      description: "Seconds one stage's check or verify may take (default 120)",
      valueHint: "SECONDS",
    },
  },
  run: ({ args }) =>
    runStages("doctor", args, { phaseTimeoutMs: args.timeout ? Number(args.timeout) * 1000 : undefined }),
});
