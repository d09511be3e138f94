/**
 * The allowlists of the values this stage hands to other programs. Each returns what is wrong with a
 * value (a sentence for `config validate`), or undefined when the value is fine. They are allowlists,
 * not escapes: a value that a shell, GRUB or a config parser would read differently is refused.
 */
import { ownDirProblem } from "kubehyve";

/** Longer paths gain nothing, and the Ignition path below it must stay well inside PATH_MAX. */
const MAX_PATH_LENGTH = 200;

/** `hostDir`: a directory of the stage's own on the host (the shared allowlist of the plugin API). */
export function hostDirProblem(path: string): string | undefined {
  return ownDirProblem(path, { example: "/var/db/kubehyve/<cluster>/os", maxLength: MAX_PATH_LENGTH });
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
