/** The common path of the commands that run the stage engine. */
import { realpathSync } from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import { type Command, type EngineRequest, runEngine } from "../core/engine.ts";
import { prepareStateDir, throwawayStateDir } from "../core/state-dir.ts";
import { checkStateFormat, readsStateDir } from "../core/state-format.ts";
import { InputError } from "../lib/errors.ts";
import { askFor, interruptSignals, makeReporter } from "./_session.ts";
import { type GlobalFlags, loadCluster, nonEmpty, splitList } from "./_shared.ts";
import { version } from "./version-info.ts";

export interface StageFlags extends GlobalFlags {
  only?: string;
  from?: string;
  until?: string;
  upgrade?: boolean;
  canaries?: boolean;
}

/** `path` with its links resolved as far as it exists, for telling whether two paths meet. */
function real(path: string): string {
  const rest: string[] = [];
  for (let at = path; ; at = dirname(at)) {
    try {
      return join(realpathSync(at), ...rest);
    } catch {
      if (dirname(at) === at) return path;
      rest.unshift(basename(at));
    }
  }
}

/**
 * render's files are the user's to read and edit; the state dir is kubehyve's, private, and checked
 * strictly: render -o into it (--force lets render write next to files it did not make) would put
 * world-readable folders among the cluster's keys, where a stage's own folder may be named the same.
 */
function refuseRenderIntoStateDir(renderDir: string, stateDir: string, slots: readonly string[]): void {
  const out = real(renderDir);
  const state = real(stateDir);
  const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir}${sep}`);
  if (within(out, state))
    throw new InputError(
      `render output ${renderDir} is ${out === state ? "" : "inside "}the state dir ${stateDir}; nothing was written`,
      "kubehyve render -o DIR, somewhere outside the state dir",
    );
  // The other way round only a stage's folder matters: render -o . with the state dir at ./os
  // would write the os stage's Ignition files among the cluster's keys.
  const slot = slots.find((s) => within(state, join(out, s)));
  if (slot !== undefined)
    throw new InputError(
      `render output ${renderDir} would put the ${slot} stage's files in ${join(renderDir, slot)}, where the state dir ${stateDir} is; nothing was written`,
      "kubehyve render -o DIR, where no stage's folder is the state dir",
    );
}

/** The commands that print the engine's events as they come: every one but doctor (cli/doctor.ts). */
export async function runStages(
  command: Exclude<Command, "doctor">,
  flags: StageFlags,
  extra: Partial<Pick<EngineRequest, "dryRun" | "offline" | "renderDir" | "renderForce" | "expose">> = {},
): Promise<number> {
  const loaded = await loadCluster(flags);
  const { registry, config } = loaded;
  // Refused before anything is written: an empty item is a typo, never "every stage".
  const select = {
    only: splitList(flags.only),
    from: nonEmpty(flags.from, "--from"),
    until: nonEmpty(flags.until, "--until"),
  };
  // The example lab is nobody's cluster: it runs in a state dir of its own, gone when it ends, so
  // that it leaves no key or journal in the state dir of a real cluster that shares its name.
  const throwaway = flags.example && flags["state-dir"] === undefined ? throwawayStateDir() : undefined;
  const stateDir = throwaway?.dir ?? loaded.stateDir;
  if (extra.renderDir)
    refuseRenderIntoStateDir(
      extra.renderDir,
      stateDir,
      config.stages.map((s) => s.slot),
    );
  const interrupts = interruptSignals();
  try {
    // Checked (or made) before anything is written into it, the run's log included.
    prepareStateDir(stateDir);
    // A state dir a newer kubehyve wrote is refused before this run writes its log into it.
    const kubehyve = version();
    if (readsStateDir(command, extra.offline)) checkStateFormat(stateDir, kubehyve);
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
      kubehyve,
    });
    return result.exitCode;
  } finally {
    interrupts.dispose();
    throwaway?.remove();
  }
}
