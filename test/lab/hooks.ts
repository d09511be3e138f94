/** Hooks for a plugin under test without the other stages: fixed answers per hook name. */
import type { HookAnswer, HookName, Hooks } from "../../src/api.ts";

export function answering(answers: { [N in HookName]?: HookAnswer<N>[] }): Hooks {
  const call = async (name: HookName) => answers[name] ?? [];
  return { call: call as Hooks["call"] };
}
