/**
 * Loaded before every test file (bunfig.toml). Tests start real sshd, dnsmasq and HTTP servers and
 * spawn the compiled binary: on a loaded 2-core machine Bun's 5 s default fails them at random.
 * Bun 1.4 applies a preload's default to the first file of a run only, unless files run isolated
 * (--parallel): the package scripts also pass --timeout, which reaches every file.
 *
 * Everything a test file makes in the temp dir goes into one directory of its own, removed once the
 * file's tests and hooks are done (with --parallel each file runs isolated and this runs per file;
 * without, once for the run): TMPDIR points there, so every mkdtemp(tmpdir()) of the tests, of the
 * test/lab servers and of the programs they spawn lands in it. Servers a test forgot to stop are
 * killed first (test/lab/servers.ts). A process "exit" handler would not do: bun test runs none.
 *
 * The engine's runs lock "the host" they drive, and in most tests that host is this machine: each
 * test file gets a host lock of its own in that directory, so that files running side by side (or
 * the tests of another checkout) do not refuse each other's runs, and no test takes
 * /var/run/kubehyve.lock. Ansible's temp dirs and control sockets go there too, not to ~/.ansible.
 */
import { afterAll, setDefaultTimeout } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killLeftovers } from "./lab/servers.ts";

setDefaultTimeout(60_000);

const outer = Object.fromEntries(
  [
    "TMPDIR",
    "KUBEHYVE_HOST_LOCK",
    "ANSIBLE_LOCAL_TEMP",
    "ANSIBLE_REMOTE_TEMP",
    "ANSIBLE_SSH_CONTROL_PATH_DIR",
  ].map((name) => [name, process.env[name]]),
);
const root = mkdtempSync(join(tmpdir(), "kubehyve-test-"));
// Traversable: some tests run programs as another user (a root sshd's sessions, dnsmasq as nobody).
chmodSync(root, 0o755);
process.env.TMPDIR = root;
// A lock given from outside (a test that runs the suite's own files) is kept.
process.env.KUBEHYVE_HOST_LOCK = outer.KUBEHYVE_HOST_LOCK || join(root, "kubehyve.lock");
// Ansible's own temp dirs and control sockets would go to the account's ~/.ansible, and stay there
// when a test stops a run midway; the "nodes" of the tests are this machine, so the remote side's
// temp dir (remote_tmp) is here too.
process.env.ANSIBLE_LOCAL_TEMP = join(root, "ansible-local");
process.env.ANSIBLE_REMOTE_TEMP = join(root, "ansible-remote");
process.env.ANSIBLE_SSH_CONTROL_PATH_DIR = join(root, "ansible-cp");

afterAll(async () => {
  await killLeftovers();
  for (const [name, value] of Object.entries(outer)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  rmSync(root, { recursive: true, force: true });
});
