/**
 * Loaded before every test file (bunfig.toml). Tests start real sshd, dnsmasq and HTTP servers and
 * spawn the compiled binary: on a loaded 2-core machine Bun's 5 s default fails them at random.
 * Bun 1.4 applies a preload's default to the first file of a run only, unless files run isolated
 * (--parallel): the package scripts also pass --timeout, which reaches every file.
 *
 * The engine's runs lock "the host" they drive, and in most tests that host is this machine: each
 * test process gets a host lock of its own, so that files running side by side (or the tests of
 * another checkout) do not refuse each other's runs, and no test takes /var/run/kubehyve.lock.
 */
import { setDefaultTimeout } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

setDefaultTimeout(60_000);

if (!process.env.KUBEHYVE_HOST_LOCK) {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-test-host-lock-"));
  process.env.KUBEHYVE_HOST_LOCK = join(dir, "kubehyve.lock");
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
}
