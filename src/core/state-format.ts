/**
 * Which format a state dir is in, and which kubehyve last changed it. kubehyve is one binary copied
 * by hand, so old copies stay around (/usr/local/bin, ~, another machine driving the host over
 * ssh); one run on a state dir a newer kubehyve wrote would read the stages' state and the journal
 * as its own and could plan, change or tear down a lab it does not understand. As Terraform does
 * with state a newer version wrote (internal/states/statefile/read.go, readState: "The state
 * file uses format version N, which is not supported by Terraform X. This state file was created
 * by Terraform Y."),
 * such a state dir is refused, naming both versions, before any host is touched.
 *
 * A state dir without the record (every one made before it existed) is of format 1; the next run
 * that changes the state dir (a real up or down, under the state dir's lock) writes it.
 */
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { ExitCode, KubehyveError } from "../lib/errors.ts";
import { pathError, readPrivateFile, writeFileAtomicSync } from "../lib/fsutil.ts";

/**
 * The format this kubehyve reads and writes. Bumped only when an older kubehyve could misread
 * what a newer one writes (a state key that changes meaning, a journal line an older `down`
 * would act on wrongly); a new key that older binaries simply ignore needs no bump.
 */
export const STATE_FORMAT = 1;

/** A kubehyve: its version and the commit it was built from (cli/version-info.ts). */
export interface KubehyveBuild {
  version: string;
  commit: string;
}

/** Who runs when no caller says (a test calling the engine itself): the package's version. */
export const PACKAGE_BUILD: KubehyveBuild = { version: pkg.version, commit: "unknown" };

export interface StateFormatRecord extends KubehyveBuild {
  format: number;
}

/** The record is a line of JSON; anything much longer was not written by kubehyve. */
const MAX_BYTES = 4096;
/** A version or a commit as builds name them (0.1.0, 1.2.0-rc.1+meta, 0123abcd-source, unknown). */
const NAME = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,79}$/;

export function formatFileOf(stateDir: string): string {
  return join(stateDir, "format.json");
}

function broken(stateDir: string, file: string, why: string): KubehyveError {
  return new KubehyveError(
    `${file} ${why}; it records which format the state dir ${stateDir} is in, so kubehyve does not use the state dir; nothing was done`,
    ExitCode.badInput,
    `restore it from a backup of the state dir; if no kubehyve newer than this one ever used the state dir, remove it (the next up writes it again): rm ${file}`,
  );
}

/** Whether a command reads the state dir, and so its format: render and plan --offline read none of it. */
export function readsStateDir(command: string, offline: boolean | undefined): boolean {
  return command !== "render" && !offline;
}

/** The record, or undefined in a state dir without one (format 1). Broken or hostile: refused. */
export function readStateFormat(stateDir: string): StateFormatRecord | undefined {
  const file = formatFileOf(stateDir);
  // Never through a link, nor a file others could have written, nor a huge one.
  const text = readPrivateFile(file, { maxBytes: MAX_BYTES });
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw broken(stateDir, file, `is not valid JSON (${(error as Error).message})`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed))
    throw broken(stateDir, file, "does not hold a JSON object");
  const { format, version, commit } = parsed as Record<string, unknown>;
  if (typeof format !== "number" || !Number.isSafeInteger(format) || format < 1)
    throw broken(
      stateDir,
      file,
      `holds format ${JSON.stringify(format) ?? "(none)"}, not a whole number from 1 up`,
    );
  // As Terraform reads a state file (internal/states/statefile/read.go, readState): the format
  // first; who wrote a newer one is only for the message, and its record may be laid out anew.
  if (format > STATE_FORMAT) {
    const named = (value: unknown) => (typeof value === "string" && NAME.test(value) ? value : "unknown");
    return { format, version: named(version), commit: named(commit) };
  }
  for (const [key, value] of [
    ["version", version],
    ["commit", commit],
  ] as const)
    if (typeof value !== "string" || !NAME.test(value))
      throw broken(
        stateDir,
        file,
        `holds ${key} ${JSON.stringify(value) ?? "(none)"}, not a kubehyve ${key}`,
      );
  return { format, version: version as string, commit: commit as string };
}

/**
 * Refuses a state dir a newer kubehyve wrote in a format this one does not know; returns its
 * record (undefined: none yet). Called before anything is read from the state dir or written to it.
 */
export function checkStateFormat(stateDir: string, running: KubehyveBuild): StateFormatRecord | undefined {
  const record = readStateFormat(stateDir);
  if (record && record.format > STATE_FORMAT) {
    const known = record.version !== "unknown";
    throw new KubehyveError(
      `state dir ${stateDir} was last changed by ${known ? `kubehyve ${record.version} (commit ${record.commit})` : "a newer kubehyve"}, in state format ${record.format}; this is kubehyve ${running.version} (commit ${running.commit}), which knows state format ${STATE_FORMAT} and could misread it; nothing was done`,
      1,
      `use ${known ? `kubehyve ${record.version}` : "the kubehyve that wrote it"} or newer with this state dir (kubehyve --version says which one a binary is)`,
    );
  }
  return record;
}

/**
 * Records this kubehyve as the last to change the state dir, in this format: by a run that is
 * about to change it, under the state dir's lock, after checkStateFormat. Aside, synced, renamed.
 */
export function recordStateFormat(stateDir: string, running: KubehyveBuild, kept?: StateFormatRecord): void {
  // A build that cannot name itself (a checkout whose git said nothing) is recorded as unknown,
  // never as a name the next run would refuse as not kubehyve's.
  const named = (value: string) => (NAME.test(value) ? value : "unknown");
  const record: StateFormatRecord = {
    format: STATE_FORMAT,
    version: named(running.version),
    commit: named(running.commit),
  };
  if (
    kept &&
    kept.format === record.format &&
    kept.version === record.version &&
    kept.commit === record.commit
  )
    return;
  const file = formatFileOf(stateDir);
  try {
    writeFileAtomicSync(file, `${JSON.stringify(record)}\n`, 0o600);
  } catch (error) {
    throw (
      pathError(error, `cannot write the state dir's format ${file}`) ??
      new KubehyveError(
        `cannot write the state dir's format ${file}: ${(error as Error).message.replace(/ '[^']*'$/, "")}; nothing was done`,
        1,
        `make room on the file system of ${stateDir}, then run the command again`,
      )
    );
  }
}
