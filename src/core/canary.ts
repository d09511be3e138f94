/**
 * The finding a stage's verify gives for a canary that ctx.canary did not run, worded one way for
 * every stage: when it last passed, or that only `up` runs it and what it would create.
 */
import type { CanaryRun } from "./contract.ts";
import { type Diagnostic, diag } from "./diagnostics.ts";

export function canaryNotRun(
  run: Exclude<CanaryRun<unknown>, { ran: true }>,
  opts: {
    /** The finding's id: the one the canary's own result has. */
    code: string;
    /** What it is called: "the pod network canary". */
    what: string;
    /** The stage's slot, for the hint: ctx.plugin.slot. */
    slot: string;
    /** What it would make: "two pods". */
    creates: string;
  },
): Diagnostic {
  return run.why === "proven"
    ? diag.info(
        opts.code,
        `${opts.what} passed at ${run.passedAt}, and nothing changed since: not run again`,
        {
          hint: `kubehyve up --only ${opts.slot} --canaries runs it again`,
        },
      )
    : diag.info(opts.code, `${opts.what} runs in kubehyve up only: it creates ${opts.creates}`, {
        hint: `kubehyve up --only ${opts.slot}`,
      });
}
