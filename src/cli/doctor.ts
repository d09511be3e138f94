/**
 * `kubehyve doctor`: every stage's check and verify, read-only, side by side, as one report. The
 * report is for people, one versioned JSON document (--json), or a node_exporter textfile
 * (--format prometheus); --watch makes a round of it every N seconds until Ctrl-C.
 */
import { lstatSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { defineCommand } from "citty";
import { type DoctorReport, doctorReport, doctorSummaryLine, prometheusText } from "../core/doctor-report.ts";
import { parseDuration } from "../core/duration.ts";
import { runEngine } from "../core/engine.ts";
import { prepareStateDir, throwawayStateDir } from "../core/state-dir.ts";
import { checkStateFormat } from "../core/state-format.ts";
import { CancelledError, ExitCode, InputError } from "../lib/errors.ts";
import { ensurePrivateDir, pathError, removeStaleTemps, writeFileAtomic } from "../lib/fsutil.ts";
import { sleep } from "../lib/poll.ts";
import { interruptSignals } from "./_session.ts";
import { exampleArg, type GlobalFlags, globalArgs, loadCluster, nonEmpty, splitList } from "./_shared.ts";
import { cursorMoves, output } from "./output.ts";
import { doctorReporter, formatDoctorReport } from "./reporters.ts";
import { version } from "./version-info.ts";

const FORMATS = ["human", "json", "prometheus"] as const;
type Format = (typeof FORMATS)[number];

/** Clears a terminal and puts the cursor top left (ECMA-48 CUP and ED), for --watch's redraw. */
const CLEAR_SCREEN = "\x1b[H\x1b[2J";

interface DoctorFlags extends GlobalFlags {
  timeout?: string;
  stage?: string;
  ignore?: string;
  watch?: string;
  format?: string;
  output?: string;
}

/** What the flags ask for, checked before anything is loaded or written. */
interface DoctorRequest {
  phaseTimeoutMs?: number;
  stages?: string[];
  ignore: string[];
  watchMs?: number;
  format: Format;
  output?: string;
}

/**
 * The longest a timer waits: setTimeout takes a signed 32-bit number of milliseconds and runs a
 * longer one after 1 ms (with a TimeoutOverflowWarning), so `--watch 1e10` would be a round every
 * millisecond and `--timeout 1e10` would time every check out at once.
 */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The shortest --watch interval, watch(1)'s (procps-ng watch.c clamps `-n` to 0.1 s): a round asks
 * every node, and `--watch 1e-9` made rounds back to back.
 */
const MIN_WATCH_MS = 100;

/**
 * A flag's duration in the cluster file's grammar (`90`, `1.5`, `90s`, `10m`, `2h`, `500ms`).
 * `Number()` alone took `0x10` for 16 s and `1e-300` for no time at all.
 */
function seconds(value: string | undefined, flag: string, example: string, minMs = 1): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0)
    throw new InputError(
      `${flag} ${JSON.stringify(value)} is not a number of seconds (or a duration such as 90s, 10m, 2h)`,
      example,
    );
  if (ms < minMs)
    throw new InputError(`${flag} ${JSON.stringify(value)} is less than ${minMs / 1000} s`, example);
  if (ms > MAX_TIMER_MS)
    throw new InputError(
      `${flag} ${JSON.stringify(value)} is more than ${Math.floor(MAX_TIMER_MS / 1000)} seconds (24 days), the longest kubehyve can wait`,
      example,
    );
  return ms;
}

/** Every --ignore, repeated or comma-separated: citty keeps only a flag's last value. */
export function ignoredIds(rawArgs: readonly string[]): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const token = rawArgs[i]!;
    if (token === "--") break;
    if (token === "--ignore") values.push(rawArgs[++i] ?? "");
    else if (token.startsWith("--ignore=")) values.push(token.slice("--ignore=".length));
  }
  const ids = values.flatMap((v) => splitList(v, "--ignore") ?? []);
  for (const id of ids)
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id))
      throw new InputError(
        `--ignore ${JSON.stringify(id)} is not a check id`,
        "the ids are in parentheses at the end of each line of the report, e.g. --ignore bhyve.cpu-overcommit",
      );
  return [...new Set(ids)];
}

/**
 * The file is replaced by a rename inside its directory, which must already be there: made here,
 * it would be private to root and unreadable to node_exporter. A link to the directory (a textfile
 * directory moved to a bigger disk) is that directory. Checked again before each write: a
 * directory removed while --watch runs is not made anew.
 */
function outputDirThere(out: string, shown: string): void {
  const dir = dirname(out);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {}
  if (!isDir)
    throw new InputError(
      `--output ${shown}: the directory ${dir} does not exist`,
      "make it first (node_exporter's --collector.textfile.directory names it)",
    );
}

export function doctorRequest(flags: DoctorFlags, rawArgs: readonly string[]): DoctorRequest {
  const format = (nonEmpty(flags.format, "--format") ?? (flags.json ? "json" : "human")) as Format;
  if (!FORMATS.includes(format))
    throw new InputError(
      `--format ${JSON.stringify(flags.format)} is not one of ${FORMATS.join(", ")}`,
      "kubehyve doctor --format prometheus --output /var/tmp/node_exporter/kubehyve.prom",
    );
  if (flags.json && format !== "json")
    throw new InputError(`--json and --format ${format} ask for two formats`, "give one of them");
  let out: string | undefined;
  if (nonEmpty(flags.output, "--output") !== undefined) {
    out = resolve(flags.output!);
    // node_exporter's textfile collector reads only *.prom files (collector/textfile.go).
    if (format === "prometheus" && !basename(out).endsWith(".prom"))
      throw new InputError(
        `--output ${flags.output}: node_exporter's textfile collector reads only files ending in .prom`,
        `--output ${join(dirname(out), "kubehyve.prom")}`,
      );
    outputDirThere(out, flags.output!);
    // Found now, not after every stage was looked at, when the rename onto it would fail.
    let isDirItself = false;
    try {
      isDirItself = lstatSync(out).isDirectory();
    } catch {}
    if (isDirItself)
      throw new InputError(
        `--output ${flags.output} is a directory`,
        `name the file to write in it: --output ${join(out, `kubehyve.${format === "prometheus" ? "prom" : format === "json" ? "json" : "txt"}`)}`,
      );
  }
  return {
    phaseTimeoutMs: seconds(flags.timeout, "--timeout", "kubehyve doctor --timeout 300"),
    stages: splitList(nonEmpty(flags.stage, "--stage"), "--stage"),
    ignore: ignoredIds(rawArgs),
    watchMs: seconds(flags.watch, "--watch", "kubehyve doctor --watch 60", MIN_WATCH_MS),
    format,
    output: out,
  };
}

/** The cluster whose doctor report `text` is, in any of the three formats, or undefined for another file. */
export function reportCluster(text: string): string | undefined {
  const first = text.slice(0, text.indexOf("\n") >>> 0);
  if (first.startsWith("# HELP kubehyve_check_status ")) {
    // The label value as prometheusText escaped it (backslash, double quote, newline).
    const m = /^kubehyve_doctor_last_run_timestamp_seconds\{cluster="((?:[^"\\]|\\.)*)"\} /m.exec(text);
    return m?.[1]?.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
  }
  if (first.startsWith("{")) {
    try {
      const doc = JSON.parse(first) as Partial<DoctorReport>;
      return doc.v === 1 && typeof doc.checkedAt === "string" && Array.isArray(doc.stages)
        ? doc.cluster
        : undefined;
    } catch {
      return undefined;
    }
  }
  const human = /^doctor (\S+): .* \(\d{4}-\d\d-\d\dT[\d:.]+Z, [^)]*\)$/.exec(first);
  return human && /^doctor: .*\n$/m.test(text) ? human[1] : undefined;
}

/**
 * Refuses to put this cluster's report over what is not already one: kubehyve runs as root, and
 * --output naming another collector's textfile, a link, or a device would otherwise replace it
 * without a word. Missing or empty (made ready with touch) is fine; so is an earlier report of
 * this same cluster, in any format. Checked before the first round and again before each write.
 */
function outputTaken(path: string, shown: string, cluster: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  const elsewhere = `--output ${join(dirname(path), `kubehyve-${cluster}${extname(path) || ".prom"}`)}`;
  if (st.isSymbolicLink())
    throw new InputError(
      `--output ${shown} is a symbolic link: doctor replaces only a file of its own, never a link`,
      "name the file itself, or a new one in a directory of your choice",
    );
  if (!st.isFile())
    throw new InputError(`--output ${shown} is not a regular file`, `name a file to write: ${elsewhere}`);
  if (st.size === 0) return;
  let text = "";
  // A report is a few KiB; anything far larger is not one, and is not read in whole to find out.
  if (st.size <= 16 * 1024 * 1024)
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      throw pathError(error, `--output ${shown} cannot be read`, shown) ?? error;
    }
  const owner = reportCluster(text);
  if (owner === undefined)
    throw new InputError(
      `--output ${shown} is a file kubehyve doctor did not write; it is left as it is`,
      `doctor replaces only its own report: name another file (${elsewhere}), or remove this one first`,
    );
  if (owner !== cluster)
    throw new InputError(
      `--output ${shown} holds the report of cluster ${JSON.stringify(owner)}, not of ${JSON.stringify(cluster)}`,
      `give each cluster a file of its own: ${elsewhere}`,
    );
}

function render(report: DoctorReport, format: Format, verbose?: boolean): string {
  if (format === "json") return `${JSON.stringify(report)}\n`;
  if (format === "prometheus") return prometheusText(report);
  return formatDoctorReport(report, { verbose });
}

/** How many of its own logs doctor keeps, this run's included: the others are removed, oldest first. */
export const DOCTOR_LOGS_KEPT = 20;
const DOCTOR_LOG = /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z-doctor(-watch)?\.ndjson$/;

/**
 * doctor from cron every five minutes would leave 288 logs a day, for ever: the oldest of doctor's
 * own (by the name it gives them, and only regular files) go, so that with this run's there are
 * DOCTOR_LOGS_KEPT. The logs of up, down and the rest are never touched.
 */
function pruneDoctorLogs(logs: string): void {
  const own = readdirSync(logs)
    .filter((name) => DOCTOR_LOG.test(name))
    .sort();
  for (const name of own.slice(0, Math.max(0, own.length - (DOCTOR_LOGS_KEPT - 1)))) {
    const path = join(logs, name);
    try {
      if (lstatSync(path).isFile()) rmSync(path, { force: true });
    } catch {
      // Gone already: another doctor pruned it at the same time.
    }
  }
}

async function runDoctor(flags: DoctorFlags, rawArgs: readonly string[]): Promise<number> {
  const req = doctorRequest(flags, rawArgs);
  const loaded = await loadCluster(flags);
  const { registry, config } = loaded;
  const throwaway = flags.example && flags["state-dir"] === undefined ? throwawayStateDir() : undefined;
  const stateDir = throwaway?.dir ?? loaded.stateDir;
  if (req.output) outputTaken(req.output, flags.output!, config.cluster.name);
  const interrupts = interruptSignals();
  const stopAtOnce = AbortSignal.any([interrupts.signal, interrupts.abort]);
  const out = output();
  try {
    prepareStateDir(stateDir);
    // Before its log is written: a state dir a newer kubehyve wrote is not this one's to read.
    const kubehyve = version();
    checkStateFormat(stateDir, kubehyve);
    let logFile: string | undefined;
    if (!throwaway) {
      await ensurePrivateDir(join(stateDir, "logs"));
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      // A watch keeps one log, holding its last round: a round a minute must not fill the disk.
      logFile = join(stateDir, "logs", `${stamp}-doctor${req.watchMs ? "-watch" : ""}.ndjson`);
      pruneDoctorLogs(join(stateDir, "logs"));
    }
    for (let round = 1; ; round++) {
      const started = Date.now();
      if (logFile && round > 1) await writeFileAtomic(logFile, "", 0o600);
      const reporter = doctorReporter({ logFile, live: req.format === "human", verbose: flags.verbose });
      let result: Awaited<ReturnType<typeof runEngine>>;
      try {
        result = await runEngine({
          command: "doctor",
          cluster: config.cluster,
          stages: config.stages,
          stateDir,
          reporter,
          select: { only: req.stages },
          signal: interrupts.signal,
          // doctor changes nothing, so no step of it is worth finishing once told to stop: the
          // first Ctrl-C or SIGTERM kills its commands, as the second does for up. A check left to
          // run on would hold a stop back for its whole limit, past systemd's patience.
          abort: stopAtOnce,
          phaseTimeoutMs: req.phaseTimeoutMs,
          preflight: [...config.warnings, ...registry.diagnostics],
          ignore: req.ignore,
          kubehyve,
        });
      } finally {
        reporter.done();
      }
      // An interrupted round has no report: what it saw is not the whole picture. A stop during
      // the round's last step leaves nothing after it to cancel, so the engine calls that round
      // finished: the signal, not the engine's exit code, says it was cut short.
      if (result.exitCode === ExitCode.interrupted || interrupts.signal.aborted) return ExitCode.interrupted;
      const report = doctorReport({
        cluster: config.cluster.name,
        outcomes: result.outcomes,
        findings: result.findings,
        exitCode: result.exitCode,
        finishedAt: new Date(),
        durationMs: Date.now() - started,
      });
      const text = render(report, req.format, flags.verbose);
      if (req.output) {
        outputDirThere(req.output, flags.output!);
        outputTaken(req.output, flags.output!, config.cluster.name);
        // Left by a doctor killed mid-write: the collector skips them, but they would pile up.
        removeStaleTemps(req.output);
        try {
          await writeFileAtomic(req.output, text, 0o644);
        } catch (error) {
          // Named by the flag and its path, not by the temporary file the error speaks of.
          throw pathError(error, `--output ${req.output} cannot be written`, req.output) ?? error;
        }
        // For a person at a terminal only: from cron any output is a mail every round, and
        // after --json a line that is not JSON breaks the reader of stdout.
        if (out.stdoutTerminal)
          out.stdout(`${doctorSummaryLine(report.summary)} (written to ${req.output})\n`);
      } else if (req.watchMs && req.format === "human" && out.stdoutTerminal && cursorMoves()) {
        out.stdout(`${CLEAR_SCREEN}${text}`);
      } else {
        out.stdout(req.watchMs && req.format === "human" && round > 1 ? `\n${text}` : text);
      }
      if (!req.watchMs) return report.exitCode;
      // A watch whose rounds go to a stdout that takes nothing more (`| head -1`, a full disk):
      // further rounds would be for no one, for ever. It ends as one run would, with its exit code.
      if (!req.output && out.stdoutGone) return report.exitCode;
      try {
        await sleep(Math.max(0, req.watchMs - (Date.now() - started)), interrupts.signal);
      } catch (error) {
        if (error instanceof CancelledError) return ExitCode.interrupted;
        throw error;
      }
    }
  } finally {
    interrupts.dispose();
    throwaway?.remove();
  }
}

export default defineCommand({
  meta: {
    name: "doctor",
    description: "Inspect every stage read-only and say what is wrong and how to fix it",
  },
  args: {
    ...globalArgs,
    json: { type: "boolean", description: "Write the report as one JSON document (see the README)" },
    ...exampleArg,
    stage: {
      type: "string",
      description: "Look only at these stages (comma-separated slots)",
      valueHint: "SLOTS",
    },
    ignore: {
      type: "string",
      description: "Show this check's errors as warnings, marked ignored (repeatable, or comma-separated)",
      valueHint: "ID",
    },
    watch: {
      type: "string",
      description: "Run again every SECONDS (or 90s, 10m, 2h; at least 0.1) until Ctrl-C (exit 130)",
      valueHint: "SECONDS",
    },
    format: {
      type: "string",
      description: "human (default), json, or prometheus (a node_exporter textfile)",
      valueHint: "FORMAT",
    },
    output: {
      type: "string",
      alias: "o",
      description: "Write the report to FILE (atomically) instead of stdout",
      valueHint: "FILE",
    },
    timeout: {
      type: "string",
      description: "Seconds (or 90s, 10m, 2h) one stage's check or verify may take (default 120)",
      valueHint: "SECONDS",
    },
  },
  run: ({ args, rawArgs }) => runDoctor(args as DoctorFlags, rawArgs),
});
