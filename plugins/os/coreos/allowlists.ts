/**
 * The allowlists of the values this stage hands to other programs. Each returns what is wrong with a
 * value (a sentence for `config validate`), or undefined when the value is fine. They are allowlists,
 * not escapes: a value that a shell, GRUB or a config parser would read differently is refused.
 */

/**
 * One path segment: letters, digits and `. _ + -`, but not `.` or `..`. That keeps out what
 * vm-bhyve's sh would act on in bhyve_options (blanks, `$ # " ' \` and glob characters: lib/vm-run
 * expands the options unquoted, `set -- ${_opts}`) and the comma bhyve's `-f name=…,file=…` splits at.
 */
const PLAIN_SEGMENT = /^[A-Za-z0-9._+-]+$/;

function isPlainSegment(segment: string): boolean {
  return PLAIN_SEGMENT.test(segment) && segment !== "." && segment !== "..";
}

/** FreeBSD hier(7) trees that belong to the system: nothing of ours goes in or under them. */
const SYSTEM_TREES = [
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/lib",
  "/libexec",
  "/proc",
  "/rescue",
  "/sbin",
  "/sys",
  "/usr/bin",
  "/usr/include",
  "/usr/lib",
  "/usr/lib32",
  "/usr/libdata",
  "/usr/libexec",
  "/usr/obj",
  "/usr/sbin",
  "/usr/share",
  "/usr/src",
  "/usr/local/bin",
  "/usr/local/etc",
  "/usr/local/include",
  "/usr/local/lib",
  "/usr/local/libexec",
  "/usr/local/sbin",
  "/usr/local/share",
];

/** hier(7) directories that hold everybody's things: a stage's own directory goes below them. */
const SHARED_DIRS = [
  "/compat",
  "/home",
  "/media",
  "/mnt",
  "/net",
  "/root",
  "/tmp",
  "/usr",
  "/usr/home",
  "/usr/local",
  "/usr/ports",
  "/var",
  "/var/backups",
  "/var/cache",
  "/var/crash",
  "/var/db",
  "/var/empty",
  "/var/log",
  "/var/mail",
  "/var/run",
  "/var/spool",
  "/var/tmp",
];

/** Longer paths gain nothing, and the Ignition path below it must stay well inside PATH_MAX. */
const MAX_PATH_LENGTH = 200;

/** A plain absolute path: `/` and segments, no `..`, no trailing slash. */
export function plainPathProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return "must be an absolute path (starting with /)";
  if (path === "/") return "must not be / itself";
  if (path.length > MAX_PATH_LENGTH) return `must be at most ${MAX_PATH_LENGTH} characters`;
  if (path.endsWith("/")) return "must not end with a slash";
  return segmentProblem(path);
}

/** The first part of an absolute path that is not a plain segment, as a sentence. */
export function segmentProblem(path: string): string | undefined {
  const bad = path
    .slice(1)
    .split("/")
    .find((segment) => !isPlainSegment(segment));
  if (bad === undefined) return undefined;
  return `has the part ${JSON.stringify(bad)}: each part between slashes must be letters, digits and . _ + - (and not . or ..), because the path ends up in vm-bhyve's bhyve_options, which sh reads`;
}

/** `hostDir`: a plain absolute path that is not a system directory. */
export function hostDirProblem(path: string): string | undefined {
  const plain = plainPathProblem(path);
  if (plain) return plain;
  const tree = SYSTEM_TREES.find((t) => path === t || path.startsWith(`${t}/`));
  if (tree)
    return `must not be in the system directory ${tree}: use a directory of its own, such as /var/db/kubehyve/<cluster>/os`;
  if (SHARED_DIRS.includes(path))
    return `must not be ${path} itself: use a directory of its own below it, such as /var/db/kubehyve/<cluster>/os`;
  return undefined;
}

/**
 * `streamUrl`: https, or http (which a mirror then serves: the cache's mirror replaces scheme and
 * host). Everything else is refused, `file:` above all, which fetch would read from this machine.
 */
export function streamUrlProblem(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "must be a URL such as https://builds.coreos.fedoraproject.org/streams/stable.json";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    return `must be an https URL (this one is ${url.protocol}); the stream metadata pins every image by its sha256, so it must come from a server that proves who it is`;
  if (url.username || url.password)
    return "must not carry a user name or password: they would show in every plan and log";
  if (!url.hostname) return "must name a host";
  return undefined;
}

/** The longest `kernelArgs` joined by blanks (x86's COMMAND_LINE_SIZE is 2048). */
export const MAX_KERNEL_ARGS_LENGTH = 1024;

/**
 * Arguments that Fedora CoreOS's boot entry or Ignition own (the BLS entry written by
 * coreos-assembler: root=, rootflags=, rw, boot=, ostree=, ignition.platform.id=, and GRUB's
 * `$ignition_firstboot`): a second value would keep the node from booting or from reading its config.
 */
const RESERVED_KERNEL_ARGS = /^(?:root|rootflags|rw|ro|boot|ostree|init|BOOT_IMAGE)(?:=|$)|^ignition\./;

/**
 * One kernel argument. Ignition passes each as one `--should-exist` argument to Fedora CoreOS's
 * kargs helper (ignition internal/exec/stages/kargs/kargs.go), which rdcore writes into the boot
 * entry's blank-separated `options` line, where GRUB expands `$` variables and gives quotes and
 * backslashes meaning. So: printable ASCII, one word, none of those.
 */
export function kernelArgProblem(arg: string): string | undefined {
  if (arg === "") return "must not be empty";
  if (/[\0\n\r]/.test(arg)) return "must not contain a NUL or a line break";
  if (/\s/.test(arg)) return "must be one word: a blank would split it into two arguments";
  if (/[^\x21-\x7e]/.test(arg)) return "must be printable ASCII";
  if (/["'\\$`]/.test(arg))
    return "must not contain quotes, backslashes, $ or backticks: GRUB expands them in the boot entry";
  if (RESERVED_KERNEL_ARGS.test(arg))
    return `${arg.split("=")[0]} is set by Fedora CoreOS's boot entry or by Ignition: a second value would keep the node from booting`;
  return undefined;
}

/**
 * A time zone as Zincati takes it (zincati docs/usage/updates-strategy.md "Time zone
 * configuration"; src/strategy/periodic.rs `Tz::named`, which reads the zoneinfo file of that name):
 * "localtime", or a name of the IANA database spelled exactly as there, since the node's file system
 * is case-sensitive. The runtime's ICU database answers which names exist.
 */
export function isZincatiTimeZone(name: string): boolean {
  if (name === "localtime") return true;
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/.test(name)) return false;
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions().timeZone === name;
  } catch {
    return false;
  }
}
