/** The common path of the commands that run the stage engine. */
import { type Command, type EngineRequest, runEngine } from "../core/engine.ts";
import { prepareStateDir } from "../core/state-dir.ts";
import {
  askFor,
  type GlobalFlags,
  interruptSignal,
  loadCluster,
  makeReporter,
  nonEmpty,
  splitList,
} from "./_shared.ts";

export interface StageFlags extends GlobalFlags {
  only?: string;
  from?: string;
  until?: string;
  upgrade?: boolean;
}

export async function runStages(
  command: Command,
  flags: StageFlags,
  extra: Partial<Pick<EngineRequest, "dryRun" | "offline" | "renderDir" | "phaseTimeoutMs">> = {},
): Promise<number> {
  const { registry, config, stateDir } = await loadCluster(flags);
  // Refused before anything is written: an empty item is a typo, never "every stage".
  const select = {
    only: splitList(flags.only),
    from: nonEmpty(flags.from, "--from"),
    until: nonEmpty(flags.until, "--until"),
  };
  // Checked (or made) before anything is written into it, the run's log included.
  prepareStateDir(stateDir);
  const reporter = await makeReporter(flags, stateDir, command);
  for (const w of config.warnings) reporter.emit({ type: "diagnostic", stage: "config", ...w });
  if (command !== "doctor") {
    for (const d of registry.diagnostics) reporter.emit({ type: "diagnostic", stage: "plugins", ...d });
  }
  const result = await runEngine({
    command,
    cluster: config.cluster,
    stages: config.stages,
    stateDir,
    reporter,
    select,
    assumeYes: flags.yes,
    upgrade: flags.upgrade,
    ask: askFor(flags),
    signal: interruptSignal(),
    preflight: command === "doctor" ? [...config.warnings, ...registry.diagnostics] : undefined,
    ...extra,
  });
  return result.exitCode;
}
