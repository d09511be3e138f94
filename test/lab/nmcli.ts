/**
 * NetworkManager's own keyfile parser and writer, without a daemon: `nmcli --offline connection
 * modify` reads a keyfile on stdin and prints the connection as NetworkManager would store it
 * (nmcli(1), --offline; the format is nm-settings-keyfile(5)). With no property given it changes
 * nothing, so its output is the keyfile as NetworkManager understood it: a value it did not take is
 * dropped or rewritten there.
 */
import { have } from "./prereq.ts";

const NMCLI_TIMEOUT_MS = 20_000;

/** Under CI=true a missing nmcli fails the run. */
export function haveNmcli(): boolean {
  return have("nmcli", "network-manager");
}

export interface NmcliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The keyfile after a round trip through NetworkManager's parser and writer. */
export async function nmcliRoundTrip(keyfile: string): Promise<NmcliResult> {
  const proc = Bun.spawn(["nmcli", "--offline", "connection", "modify"], {
    stdin: new TextEncoder().encode(keyfile),
    stdout: "pipe",
    stderr: "pipe",
    // No daemon, no bus: nothing of the test runner's environment is needed.
    env: { PATH: "/usr/bin:/bin", LC_ALL: "C" },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), NMCLI_TIMEOUT_MS);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/**
 * What NetworkManager adds to any keyfile on its way through: a generated `uuid=` (random for a
 * keyfile read from stdin) and an empty `[proxy]` section (the proxy setting always exists,
 * nm-settings-nmcli(5)). Everything else in its output came from the keyfile.
 */
export function withoutNmAdditions(written: string): string {
  return written
    .split("\n")
    .filter((line) => !/^uuid=[0-9a-f-]{36}$/.test(line))
    .join("\n")
    .replace(/\n\[proxy\]\n$/, "");
}
