import { defineCommand } from "citty";
import { InputError } from "../lib/errors.ts";
import { runStages } from "./_run.ts";
import { exampleArg, globalArgs } from "./_shared.ts";

export default defineCommand({
  meta: {
    name: "doctor",
    description: "Inspect every stage read-only and say what is wrong and how to fix it",
  },
  args: {
    ...globalArgs,
    ...exampleArg,
    timeout: {
      type: "string",
      description: "Seconds one stage's check or verify may take (default 120)",
      valueHint: "SECONDS",
    },
  },
  run: ({ args }) => {
    const seconds = args.timeout === undefined ? undefined : Number(args.timeout);
    // Number("abc") is NaN, which the engine would take as "no timeout at all".
    if (seconds !== undefined && !(Number.isFinite(seconds) && seconds > 0))
      throw new InputError(
        `--timeout ${JSON.stringify(args.timeout)} is not a number of seconds`,
        "kubehyve doctor --timeout 300",
      );
    return runStages("doctor", args, { phaseTimeoutMs: seconds === undefined ? undefined : seconds * 1000 });
  },
});
