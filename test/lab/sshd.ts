/**
 * A real OpenSSH server on loopback for tests: the ssh target, Ansible runs and anything else that
 * needs a machine to log in to. Each call gets its own temp dir with freshly generated ed25519 host
 * and user keys, its own sshd_config and its own port; nothing of the system sshd is used or touched
 * (apart from the privilege separation dir that a root sshd insists on).
 *
 * sshd logs at INFO to `<dir>/sshd.log` (appended across host key rotations), so tests can count
 * "Accepted publickey" lines to see how many connections were made.
 *
 * Sessions are hermetic: HOME is `<dir>/home` (empty) unless env sets it, so the account's own
 * dotfiles (a .bashrc that prepends to PATH, say) cannot change what a test's commands find.
 */
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findTool } from "./prereq.ts";
import { dyingWithParent, track } from "./servers.ts";

export interface SshdOptions {
  /** The account to log in as; defaults to the user running the tests. */
  user?: string;
  /**
   * Variables every session gets (sshd_config `SetEnv`), e.g. PATH with shim dirs first. HOME
   * defaults to `<dir>/home`.
   */
  env?: Record<string, string>;
  /** Sessions sshd allows on one connection (MaxSessions); 64 unless given (OpenSSH's default is 10). */
  maxSessions?: number;
}

export interface Sshd {
  host: "127.0.0.1";
  port: number;
  user: string;
  /** Private key (0600) authorized for `user`. */
  identityFile: string;
  /** The host public key line as in a `.pub` file: `ssh-ed25519 AAAA… comment`. */
  hostPublicKey: string;
  dir: string;
  stop(): Promise<void>;
  /** Generates a new host key and restarts sshd on the same port. */
  rotateHostKey(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 10_000;

export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  const sshdPath = findTool("sshd");
  const keygenPath = findTool("ssh-keygen");
  if (!sshdPath || !keygenPath) throw new Error("sshd and ssh-keygen are needed: install openssh-server");
  const user = opts.user ?? (await currentUser());
  await userIds(user);

  const dir = await mkdtemp(join(tmpdir(), "kubehyve-sshd-"));
  try {
    // sshd reads authorized_keys as the target user, which may not be the owner of this dir.
    await chmod(dir, 0o755);
    const hostKey = join(dir, "ssh_host_ed25519_key");
    const identityFile = join(dir, "id_ed25519");
    const authorizedKeys = join(dir, "authorized_keys");
    const config = join(dir, "sshd_config");
    const logFile = join(dir, "sshd.log");

    await keygen(keygenPath, hostKey, "kubehyve-test-host");
    await keygen(keygenPath, identityFile, "kubehyve-test-user");
    await writeFile(authorizedKeys, await readFile(`${identityFile}.pub`, "utf8"), { mode: 0o644 });
    const home = join(dir, "home");
    await mkdir(home, { mode: 0o755 });
    const ids = await userIds(user);
    if (ids.uid !== process.getuid?.()) await chown(home, ids.uid, ids.gid);
    const env = { HOME: home, ...opts.env };
    if (process.getuid?.() === 0) {
      // A root sshd chroots its unprivileged child into this dir and refuses to start without it.
      await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
    }

    const state = { proc: undefined as Bun.Subprocess | undefined, port: 0 };
    const launch = async (port: number) => {
      const seen = countListening(await readLog(logFile), port);
      await writeFile(
        config,
        sshdConfig({ port, hostKey, authorizedKeys, user, env, dir, maxSessions: opts.maxSessions ?? 64 }),
      );
      // Ended with the test file even when a test forgets stop() (servers.ts).
      const proc = track(
        Bun.spawn(dyingWithParent([sshdPath, "-D", "-e", "-E", logFile, "-f", config]), {
          stdin: "ignore",
          stdout: "ignore",
          stderr: "ignore",
        }),
      );
      state.proc = proc;
      await waitListening(proc, logFile, port, seen);
      state.port = port;
    };

    let lastError: unknown;
    for (let attempt = 0; attempt < 5 && state.port === 0; attempt++) {
      try {
        await launch(await freePort());
      } catch (error) {
        lastError = error;
        // Another process may take the port between probing and binding: only that case is retried.
        if (!String(error).includes("Address already in use")) break;
      }
    }
    if (state.port === 0) throw lastError;

    const stopProcess = async () => {
      const proc = state.proc;
      if (!proc) return;
      state.proc = undefined;
      // Each connection is served by a forked child in its own session: end those and what they
      // run too, or a client holding a multiplexed master would keep talking to a server that
      // should be gone.
      for (const pid of await descendants(proc.pid)) {
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          // already gone
        }
      }
      proc.kill("SIGTERM");
      await proc.exited;
    };

    const sshd: Sshd = {
      host: "127.0.0.1",
      port: state.port,
      user,
      identityFile,
      hostPublicKey: (await readFile(`${hostKey}.pub`, "utf8")).trim(),
      dir,
      async stop() {
        await stopProcess();
        await rm(dir, { recursive: true, force: true });
      },
      async rotateHostKey() {
        await stopProcess();
        await rm(hostKey, { force: true });
        await rm(`${hostKey}.pub`, { force: true });
        await keygen(keygenPath, hostKey, "kubehyve-test-host-rotated");
        sshd.hostPublicKey = (await readFile(`${hostKey}.pub`, "utf8")).trim();
        await launch(state.port);
      },
    };
    return sshd;
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

function sshdConfig(c: {
  port: number;
  hostKey: string;
  authorizedKeys: string;
  user: string;
  env: Record<string, string>;
  dir: string;
  maxSessions: number;
}): string {
  const lines = [
    `Port ${c.port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${c.hostKey}`,
    `PidFile ${join(c.dir, "sshd.pid")}`,
    `AuthorizedKeysFile ${c.authorizedKeys}`,
    `AllowUsers ${c.user}`,
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    // PAM would need root and the system's pam.d; key authentication needs neither.
    "UsePAM no",
    "PermitRootLogin prohibit-password",
    // The keys live in a temp dir, not in a home directory with the usual ownership.
    "StrictModes no",
    "PrintMotd no",
    "PrintLastLog no",
    // ~/.ssh/rc of the real account would run before every command.
    "PermitUserRC no",
    "LogLevel INFO",
    // Ansible moves files over sftp; the built-in server needs no sftp-server binary.
    "Subsystem sftp internal-sftp",
    // Tests run many sessions over one multiplexed connection and many connections at once.
    `MaxSessions ${c.maxSessions}`,
    "MaxStartups 64",
  ];
  const setEnv: string[] = [];
  for (const [name, value] of Object.entries(c.env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new Error(`startSshd: bad environment variable name ${JSON.stringify(name)}`);
    if (/["\\\n\r]/.test(value)) {
      throw new Error(
        `startSshd: the value of ${name} cannot contain quotes, backslashes or newlines in sshd_config`,
      );
    }
    setEnv.push(`"${name}=${value}"`);
  }
  // sshd keeps only the first SetEnv line it reads, so every variable goes on one line.
  if (setEnv.length > 0) lines.push(`SetEnv ${setEnv.join(" ")}`);
  return `${lines.join("\n")}\n`;
}

async function keygen(keygenPath: string, file: string, comment: string): Promise<void> {
  const proc = Bun.spawn([keygenPath, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`ssh-keygen for ${file} exited ${code}: ${err.trim()}`);
}

/** The login name of this process (`id -un`: os.userInfo() cannot be trusted in every runtime). */
async function currentUser(): Promise<string> {
  const proc = Bun.spawn(["id", "-un"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [code, out] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
  if (code !== 0 || !out.trim())
    throw new Error(`startSshd: cannot tell the current user (id -un exited ${code})`);
  return out.trim();
}

async function userIds(user: string): Promise<{ uid: number; gid: number }> {
  const id = async (flag: string) => {
    const proc = Bun.spawn(["id", flag, "--", user], { stdin: "ignore", stdout: "pipe", stderr: "ignore" });
    const [code, out] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
    if (code !== 0) throw new Error(`startSshd: user ${user} does not exist on this machine`);
    return Number(out.trim());
  };
  return { uid: await id("-u"), gid: await id("-g") };
}

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

/**
 * Waits for sshd's "Server listening" line, which it logs after listen(2) succeeded. The log is
 * appended across restarts on the same port, so only a line beyond the `seen` earlier ones counts.
 */
async function waitListening(
  proc: Bun.Subprocess,
  logFile: string,
  port: number,
  seen: number,
): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    const log = await readLog(logFile);
    if (countListening(log, port) > seen) return;
    if (exited) throw new Error(`sshd exited with code ${proc.exitCode} during start-up: ${tail(log)}`);
    await Bun.sleep(20);
  }
  proc.kill("SIGKILL");
  throw new Error(`sshd did not start listening on port ${port} within ${STARTUP_TIMEOUT_MS} ms`);
}

function readLog(logFile: string): Promise<string> {
  return readFile(logFile, "utf8").catch(() => "");
}

function countListening(log: string, port: number): number {
  return log.split(`Server listening on 127.0.0.1 port ${port}.`).length - 1;
}

function tail(log: string): string {
  return log.trim().split("\n").slice(-5).join(" | ") || "(no log output)";
}

/** Every process below pid, parents before their children. */
async function descendants(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const child of await childPids(pid)) found.push(child, ...(await descendants(child)));
  return found;
}

async function childPids(pid: number): Promise<number[]> {
  const direct = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => undefined);
  if (direct !== undefined) return direct.trim().split(/\s+/).filter(Boolean).map(Number);
  // Kernels without CONFIG_PROC_CHILDREN: find the children by their parent pid.
  const found: number[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) found.push(Number(entry));
  }
  return found;
}

/** What a client needs to log in to the server: user, address and the authorized key. */
export function loginOf(sshd: Sshd): { user: string; host: string; port: number; identityFile: string } {
  return { user: sshd.user, host: sshd.host, port: sshd.port, identityFile: sshd.identityFile };
}
