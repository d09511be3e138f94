/** The common path of the commands that run the stage engine. */
import { type Command, type EngineRequest, runEngine } from "../core/engine.ts";
import { prepareStateDir, throwawayStateDir } from "../core/state-dir.ts";
import { askFor, interruptSignals, makeReporter } from "./_session.ts";
import { type GlobalFlags, loadCluster, nonEmpty, splitList } from "./_shared.ts";

export interface StageFlags extends GlobalFlags {
  only?: string;
  from?: string;
  until?: string;
  upgrade?: boolean;
  canaries?: boolean;
}

/** The commands that print the engine's events as they come: every one but doctor (cli/doctor.ts). */
export async function runStages(
  command: Exclude<Command, "doctor">,
  flags: StageFlags,
  extra: Partial<Pick<EngineRequest, "dryRun" | "offline" | "renderDir" | "renderForce" | "expose">> = {},
): Promise<number> {
  const { registry, config, stateDir: named } = await loadCluster(flags);
  // Refused before anything is written: an empty item is a typo, never "every stage".
  const select = {
    only: splitList(flags.only),
    from: nonEmpty(flags.from, "--from"),
    until: nonEmpty(flags.until, "--until"),
  };
  // The example lab is nobody's cluster: it runs in a state dir of its own, gone when it ends, so
  // that it leaves no key or journal in the state dir of a real cluster that shares its name.
  const throwaway = flags.example && flags["state-dir"] === undefined ? throwawayStateDir() : undefined;
  const stateDir = throwaway?.dir ?? named;
  const interrupts = interruptSignals();
  try {
    // Checked (or made) before anything is written into it, the run's log included.
    prepareStateDir(stateDir);
    // A log in a directory about to be removed would be named in vain.
    const reporter = await makeReporter(flags, throwaway ? undefined : stateDir, command);
    for (const w of config.warnings) reporter.emit({ type: "diagnostic", stage: "config", ...w });
    for (const d of registry.diagnostics) reporter.emit({ type: "diagnostic", stage: "plugins", ...d });
    const result = await runEngine({
      command,
      cluster: config.cluster,
      stages: config.stages,
      stateDir,
      reporter,
      select,
      assumeYes: flags.yes,
      upgrade: flags.upgrade,
      canaries: flags.canaries,
      ask: askFor(flags),
      signal: interrupts.signal,
      abort: interrupts.abort,
      ...extra,
    });
    return result.exitCode;
  } finally {
    interrupts.dispose();
    throwaway?.remove();
  }
}
