/** The common path of the commands that run the stage engine. */
import { type Command, type EngineRequest, runEngine } from "../core/engine.ts";
import {
  askFor,
  type GlobalFlags,
  interruptSignals,
  loadCluster,
  makeReporter,
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
    select: { only: splitList(flags.only), from: flags.from, until: flags.until },
    assumeYes: flags.yes,
    upgrade: flags.upgrade,
    ask: askFor(flags),
    ...interruptSignals(),
    preflight: command === "doctor" ? [...config.warnings, ...registry.diagnostics] : undefined,
    ...extra,
  });
  return result.exitCode;
}
