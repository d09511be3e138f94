/**
 * The order stages run in: built-in slots keep the pipeline's order, and every plugin's `after`
 * adds edges. A cycle is an input error naming the slots on it.
 */

import { InputError } from "../lib/errors.ts";
import type { Stage } from "./config.ts";

/** The pipeline of built-in slots, first to last. Third-party slots go where their `after` puts them. */
export const PIPELINE = ["hypervisor", "os", "k8s", "net", "lb", "ingress", "storage"] as const;

export function orderStages(stages: readonly Stage[]): Stage[] {
  const bySlot = new Map(stages.map((s) => [s.slot, s]));
  const deps = new Map<string, Set<string>>();
  const present = PIPELINE.filter((slot) => bySlot.has(slot));
  for (const stage of stages) {
    const after = new Set(
      (stage.plugin.after ?? []).filter((slot) => slot !== stage.slot && bySlot.has(slot)),
    );
    const index = present.indexOf(stage.slot as (typeof PIPELINE)[number]);
    if (index > 0) after.add(present[index - 1]!);
    // A third-party slot that says nothing of its place runs after the whole pipeline.
    if (index < 0 && !stage.plugin.after?.length) for (const slot of present) after.add(slot);
    deps.set(stage.slot, after);
  }

  const rank = (slot: string) => {
    const i = PIPELINE.indexOf(slot as (typeof PIPELINE)[number]);
    return i >= 0 ? i : PIPELINE.length + stages.findIndex((s) => s.slot === slot);
  };
  const ordered: Stage[] = [];
  const done = new Set<string>();
  while (ordered.length < stages.length) {
    const ready = stages
      .filter((s) => !done.has(s.slot) && [...deps.get(s.slot)!].every((d) => done.has(d)))
      .sort((a, b) => rank(a.slot) - rank(b.slot));
    if (!ready.length) {
      const stuck = stages
        .filter((s) => !done.has(s.slot))
        .map((s) => `${s.slot} (after ${[...deps.get(s.slot)!].join(", ")})`);
      throw new InputError(
        `the stages' "after" lists form a cycle: ${stuck.join("; ")}`,
        "remove one of the after entries of the plugins named",
      );
    }
    ordered.push(ready[0]!);
    done.add(ready[0]!.slot);
  }
  return ordered;
}
