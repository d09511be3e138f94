/**
 * Tests that need a real program (sshd, ansible, ignition-validate, dnsmasq, qemu-img) ask for it
 * here. Under CI=true a missing program fails the run; on a developer machine the test is skipped
 * with a message naming the Debian package to install.
 *
 * Every (command, package) pair must be listed in scripts/prerequisites.txt, the list that
 * scripts/test-prereqs.sh installs: a test cannot depend on a program that only this machine has.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { which } from "bun";

const SBIN = "/usr/sbin:/sbin:/usr/local/sbin";
export const PREREQUISITES_FILE = join(import.meta.dir, "../../scripts/prerequisites.txt");

/** The (command, package) pairs of scripts/prerequisites.txt. */
export function listedPrerequisites(): { command: string; debianPackage: string }[] {
  return readFileSync(PREREQUISITES_FILE, "utf8")
    .split("\n")
    .map((line) => line.replace(/#.*/, "").trim().split(/\s+/))
    .filter((words) => words.length >= 2)
    .map(([command, debianPackage]) => ({ command: command!, debianPackage: debianPackage! }));
}

export function findTool(command: string): string | null {
  return which(command, { PATH: `${process.env.PATH ?? ""}:${SBIN}` });
}

/** True when `command` exists. Throws under CI=true when it does not. */
export function have(command: string, debianPackage: string): boolean {
  if (!listedPrerequisites().some((p) => p.command === command && p.debianPackage === debianPackage)) {
    // Always an error, on every machine: this is a mistake in the test, not in the machine.
    throw new Error(
      `have(${JSON.stringify(command)}, ${JSON.stringify(debianPackage)}): add "${command} ${debianPackage}" to scripts/prerequisites.txt, which a fresh machine installs`,
    );
  }
  if (findTool(command)) return true;
  const message = `${command} not found: install the Debian package ${debianPackage} (bash scripts/test-prereqs.sh does)`;
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping: ${message}`);
  return false;
}
