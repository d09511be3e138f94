/** Reading and writing the host's files: several small ones in one command, each write whole or not at all. */
import { CommandError, type CommandKind, type Target } from "kubehyve";
import { TEMP_SUFFIX } from "./marks.ts";
import { parseLsLong } from "./parse.ts";

/**
 * `grep -H '' FILE…` prints every line of every file as `FILE:line` (POSIX grep; -H is in FreeBSD
 * and GNU grep alike). A missing file is reported on stderr and left out; its entry is undefined.
 * `-D skip` (FreeBSD's and GNU grep's --devices=skip) passes over FIFOs, sockets and devices
 * without opening them: a FIFO someone left where a config belongs would otherwise hold the read
 * until its time limit, and a device (a link to /dev/zero) would never end. Such a path reads as
 * empty; the caller tells a regular file from the rest with listFiles.
 *
 * grep exits 0 when it read a line, 1 when it read none and 2 on an error (a missing file among
 * them). Any other end (a timeout, a signal, output past the limit) cut the answer short: the files
 * it did not reach would read as empty, so it is an error, naming the command and the host.
 */
export async function readTextFiles(
  host: Target,
  paths: readonly string[],
): Promise<Map<string, string | undefined>> {
  const files = new Map<string, string | undefined>();
  if (!paths.length) return files;
  const argv = ["grep", "-D", "skip", "-H", "", "--", ...paths];
  const result = await host.run(argv);
  if (result.code > 2 || result.timedOut) {
    const shown = paths.length > 1 ? [...argv.slice(0, 7), `(and ${paths.length - 1} more files)`] : argv;
    throw new CommandError(host.name, shown, result);
  }
  // Longest first, so /vm/cp10/x.conf is never taken for /vm/cp1/… (a path is never a prefix of
  // another one followed by ":" unless it is that file).
  const byLength = [...paths].sort((a, b) => b.length - a.length);
  const lines = new Map<string, string[]>(paths.map((p) => [p, []]));
  for (const line of result.stdout.split("\n")) {
    const path = byLength.find((p) => line.startsWith(`${p}:`));
    if (path) lines.get(path)!.push(line.slice(path.length + 1));
  }
  for (const path of paths) {
    // "grep: PATH: No such file or directory": the path with its colon, so that a missing
    // x.conf.kubehyve-new is not taken for a missing x.conf.
    const missing = result.stderr
      .split("\n")
      .some((l) => l.includes(`${path}: `) && /No such file|not found|cannot open/i.test(l));
    const content = lines.get(path)!;
    files.set(path, missing ? undefined : content.length ? `${content.join("\n")}\n` : "");
  }
  return files;
}

/** The exit codes a script's signal traps leave with, as a shell reports death by that signal. */
export const SIGNAL_TRAPS = "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM";

/**
 * A script that makes one thing whole or not at all: `steps` work on `$tmp` (`made` + TEMP_SUFFIX),
 * and their last renames it into place. Until every step has run, leaving (a failure, or a signal
 * the targets send on Ctrl-C) removes `$tmp`, a file or a zvol, so no host command is needed
 * afterwards to clean up; one killed outright (SIGKILL) leaves it under a name the next run knows.
 */
export function wholeOrNothing(opts: {
  /** `set -eu`, the umask, the positional parameters given names. */
  prelude: string[];
  /** The shell expression of what is made: `$1`, `$zvol`. */
  made: string;
  tmp: "file" | "zvol";
  steps: string[];
}): string {
  const remove = opts.tmp === "file" ? 'rm -f "$tmp"' : 'zfs destroy "$tmp" >/dev/null 2>&1 || :';
  return [
    ...opts.prelude,
    `tmp="${opts.made}${TEMP_SUFFIX}"; done=0`,
    `trap '[ "$done" = 1 ] || ${remove}' EXIT`,
    SIGNAL_TRAPS,
    ...opts.steps,
    "done=1",
  ].join("\n");
}

/**
 * Runs a constant script with `sh -c`, the values as positional arguments (never inside the script).
 * On failure the error names `shown`, the command the script is about, not the script.
 */
export async function runScript(
  host: Target,
  shown: readonly string[],
  script: string,
  args: readonly string[],
  stdin?: string,
  opts: { kind?: CommandKind; cancellable?: boolean } = {},
): Promise<void> {
  const result = await host.run(["sh", "-c", script, "sh", ...args], {
    ...(stdin === undefined ? {} : { stdin }),
    ...opts,
    shownAs: shown,
  });
  if (result.code !== 0) throw new CommandError(host.name, shown, result);
}

/**
 * Writes a file whole or not at all (wholeOrNothing): to PATH + TEMP_SUFFIX (umask 077), checked to
 * hold every byte (a writer killed half-way closes the pipe early, and `cat` would take the short
 * file for all of it), then renamed over PATH.
 */
export async function writeHostFile(
  host: Target,
  path: string,
  content: string,
  mode = "0644",
): Promise<void> {
  const script = wholeOrNothing({
    prelude: ["set -eu", "umask 077"],
    made: "$1",
    tmp: "file",
    steps: [
      // rm first, then noclobber: whatever lies at the temporary name (a link, a FIFO) is removed,
      // never written through or waited on.
      'rm -f "$tmp"',
      'set -C; cat > "$tmp"; set +C',
      'n=$(wc -c < "$tmp")',
      '[ "$n" -eq "$3" ] || { echo "$1: only $n of $3 bytes arrived" >&2; exit 1; }',
      'chmod "$2" "$tmp"',
      'mv -f "$tmp" "$1"',
    ],
  });
  await runScript(host, ["write", path], script, [path, mode, String(Buffer.byteLength(content))], content);
}

export interface FileFact {
  mode: string;
  size: number;
  /** A symbolic link: what it points at. */
  link?: string;
}

/** What a path that is not a regular file is, for a message: "a FIFO", "a symbolic link to /x". */
export function notRegular(fact: FileFact): string | undefined {
  switch (fact.mode[0]) {
    case "-":
      return undefined;
    case "l":
      return `a symbolic link${fact.link ? ` to ${fact.link}` : ""}`;
    case "d":
      return "a directory";
    case "p":
      return "a FIFO";
    case "s":
      return "a socket";
    default:
      return "a device";
  }
}

/**
 * `ls -lnd` of every path in one command: present ones with mode and size, missing ones undefined.
 * `failed` when ls failed for another reason than missing files (the answer is then incomplete).
 */
export async function listFiles(
  host: Target,
  paths: readonly string[],
): Promise<{ files: Map<string, FileFact | undefined>; failed?: string }> {
  const files = new Map<string, FileFact | undefined>();
  if (!paths.length) return { files };
  const result = await host.run(["ls", "-lnd", "--", ...paths]);
  const entries = parseLsLong(result.stdout);
  // FreeBSD: "ls: PATH: No such file or directory"; GNU: "ls: cannot access 'PATH': No such …".
  const missing = (p: string) =>
    result.stderr
      .split("\n")
      .some((l) => (l.includes(`${p}: `) || l.includes(`'${p}': `)) && /No such file or directory/.test(l));
  let failed: string | undefined;
  for (const path of paths) {
    const entry = entries.get(path);
    if (entry)
      files.set(path, { mode: entry.mode, size: entry.size, ...(entry.link ? { link: entry.link } : {}) });
    else {
      files.set(path, undefined);
      if (!missing(path))
        failed ??= `ls -lnd exited ${result.code}: ${result.stderr.trim() || `no output for ${path}`}`;
    }
  }
  return { files, failed };
}
