/**
 * Tests that need a real program (sshd, ansible, ignition-validate, dnsmasq, qemu-img) ask for it
 * here. Under CI=true a missing program fails the run; on a developer machine the test is skipped
 * with a message naming the Debian package to install.
 */
import { which } from "bun";

const SBIN = "/usr/sbin:/sbin:/usr/local/sbin";

export function findTool(command: string): string | null {
  return which(command, { PATH: `${process.env.PATH ?? ""}:${SBIN}` });
}

/** True when `command` exists. Throws under CI=true when it does not. */
export function have(command: string, debianPackage: string): boolean {
  if (findTool(command)) return true;
  const message = `${command} not found: install the Debian package ${debianPackage} (bash .ci/run does)`;
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping: ${message}`);
  return false;
}
