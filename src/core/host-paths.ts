/**
 * What a directory or file a stage names on the hypervisor host may be: one allowlist, shared by
 * every stage (and offered to drop-ins through the plugin API), because these paths end up where a
 * shell reads them (rc.conf's vm_dir, vm-bhyve's bhyve_options, Ansible's ssh_args) and where
 * kubehyve creates and removes things as root.
 *
 * Each function returns what is wrong as the end of a sentence ("must not end with a slash"), or
 * undefined when the path is fine; the caller says which option it is.
 */

/** FreeBSD's NAME_MAX (sys/syslimits.h). */
const NAME_MAX = 255;

/**
 * One component: letters, digits and `. _ + -`. That keeps out what sh acts on (blanks, `$ # " ' \`,
 * backquotes, glob characters; vm-bhyve's lib/vm-run expands bhyve_options unquoted), the comma
 * bhyve's `-f name=…,file=…` splits at, and `=` and `:` that rc.conf and PATH-like lists read.
 */
const PLAIN_COMPONENT = /^[A-Za-z0-9._+-]+$/;

/**
 * FreeBSD hier(7) trees (and Linux's, for a host driven from Linux) that belong to the system:
 * nothing of kubehyve's goes in or under them.
 */
const SYSTEM_TREES = [
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/lib",
  "/lib64",
  "/libexec",
  "/net",
  "/proc",
  "/rescue",
  "/run",
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
  "/var/run",
];

/** hier(7) directories that hold everybody's things: a directory of kubehyve's goes below them. */
const SHARED_DIRS = [
  "/compat",
  "/home",
  "/media",
  "/mnt",
  "/opt",
  "/root",
  "/srv",
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
  "/var/lib",
  "/var/log",
  "/var/mail",
  "/var/spool",
  "/var/tmp",
  "/zroot",
];

/** A plain absolute path: `/` and plain components, no `.` or `..`, no `//`, no trailing slash. */
export function plainPathProblem(path: string, maxLength = 768): string | undefined {
  if (!path.startsWith("/")) return "must be an absolute path (starting with /)";
  if (path === "/") return "must not be / itself";
  if (path.length > maxLength) return `must be at most ${maxLength} characters`;
  if (path.endsWith("/")) return "must not end with a slash";
  for (const part of path.slice(1).split("/")) {
    if (part === "") return "must not contain //";
    if (part === "." || part === "..") return "must not contain . or .. parts";
    if (part.length > NAME_MAX) return `has a part longer than ${NAME_MAX} characters (NAME_MAX)`;
    if (!PLAIN_COMPONENT.test(part))
      return `has the part ${JSON.stringify(part)}: each part between slashes must be letters, digits and . _ + - (no blanks, quotes, $, commas or other characters a shell or a config file reads)`;
  }
  return undefined;
}

/** The system tree `path` is in or under, if any. */
export function systemTreeOf(path: string): string | undefined {
  return SYSTEM_TREES.find((t) => path === t || path.startsWith(`${t}/`));
}

/**
 * A directory kubehyve may make, fill and remove: a plain path, not in a system tree, and not a
 * shared directory itself. `example` names a good place, for the message.
 */
export function ownDirProblem(
  path: string,
  opts: { example?: string; maxLength?: number } = {},
): string | undefined {
  const plain = plainPathProblem(path, opts.maxLength);
  if (plain) return plain;
  const instead = opts.example ? `, such as ${opts.example}` : "";
  const tree = systemTreeOf(path);
  if (tree) return `must not be in the system directory ${tree}: use a directory of its own${instead}`;
  if (SHARED_DIRS.includes(path))
    return `must not be ${path} itself: use a directory of its own below it${instead}`;
  return undefined;
}
