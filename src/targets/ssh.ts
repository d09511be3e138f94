/**
 * A machine reached with the system OpenSSH client: the FreeBSD host given as `ssh://user@host`, and
 * the nodes (as `core`). One multiplexed connection per target serves every command (ControlMaster),
 * and the host key is pinned on first contact in the state dir's known_hosts: a changed key (or one
 * of another type, or an entry that no longer reads) stops the run, it is never accepted silently.
 *
 * A timeout or an abort ends the local ssh client at once. The remote command cannot be signalled
 * through ssh (short of a pty, which would merge stderr into stdout), so every remote command runs
 * under the remote timeout(1) (FreeBSD's and GNU's take the same `-k` and seconds), set a little
 * past the local limit: that is its owner on the remote side, which ends it, and what it started,
 * when the local side has given up on it or left.
 */
import { lstat, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CancelledError, KubehyveError } from "../lib/errors.ts";
import { appendPrivateFile, ensurePrivateDir, readPrivateFile, writeFileAtomic } from "../lib/fsutil.ts";
import { knownHostsName, pinsName, withoutPins } from "./known-hosts.ts";
import { spawnCommand } from "./local.ts";
import { shellJoin } from "./quote.ts";
import { FALLBACK_TIMEOUT_MS, type RunOptions, type RunResult, showCommand, type Target } from "./target.ts";

export interface SshTargetOptions {
  user: string;
  host: string;
  /** Defaults to 22. */
  port?: number;
  /** Private key to log in with; without it, ssh uses the agent and the user's default keys. */
  identityFile?: string;
  /** The cluster's state dir: known_hosts and the control socket live in `<stateDir>/ssh/`. */
  stateDir: string;
  /** Name in log lines; defaults to `user@host` (with `:port` when not 22). */
  name?: string;
  /** Defaults to 10 seconds. */
  connectTimeoutSec?: number;
  /** More `-o` options for ssh, e.g. `{ ProxyJump: "bastion" }`. They cannot override the pinned ones. */
  extraOptions?: Record<string, string>;
}

export type SshErrorKind = "host-key-changed" | "unreachable" | "auth-failed" | "ssh-failed";

/** ssh itself failed (exit 255 with its own message): the command never ran. */
export class SshError extends KubehyveError {
  constructor(
    readonly kind: SshErrorKind,
    readonly target: string,
    message: string,
    hint?: string,
    readonly stderr = "",
  ) {
    super(message, undefined, hint);
    this.name = "SshError";
  }
}

/**
 * sshd sends a command's exit status when it exits, but closes the channel, and ssh exits, only once
 * every process holding the command's stdout and stderr has closed them (OpenSSH session.c
 * session_exit_message: the session "will be then be closed by session_close_by_channel when the
 * child sessions close their fds"): a process started
 * with `cmd &` that keeps them holds the command open until it ends or the limit comes. No wrapper
 * on the remote side can take those descriptors from another process, and ending the command's
 * process group when it exits would kill what it meant to leave running, so it is said instead.
 */
const BACKGROUND_HOLDS_OUTPUT =
  "over ssh, a command runs until every process holding its stdout or stderr has closed them: a background process the command started (`cmd &`, a daemon that does not detach) keeps it running after it exited; send that process's output elsewhere (`cmd >/dev/null 2>&1 &`)";

/** FreeBSD's sun_path holds 104 bytes including the final NUL (Linux: 108). */
const SUN_PATH_MAX = 104;
/** ssh binds the master socket as `<ControlPath>.<16 random characters>` first, then renames it. */
const CONTROL_TEMP_SUFFIX = 17;
/** Linux's MAX_ARG_STRLEN (32 pages of 4 KiB): one argument of execve(2), its final NUL included. */
const MAX_ARG_BYTES = 131_072;
/** OpenSSH's sshd allows 10 sessions per connection (MaxSessions); stay below it. */
const MAX_SESSIONS = 8;
/** Right after a command went through the master, it is assumed alive without asking it. */
const MASTER_FRESH_MS = 20_000;
/**
 * The remote timeout(1) fires this long after the local limit (the local side reports the timeout;
 * the remote one only cleans up), and sends SIGKILL this long after its SIGTERM.
 */
const REMOTE_GRACE_S = 10;
const REMOTE_KILL_AFTER_S = 5;
/**
 * Options the target depends on: extraOptions cannot replace them. Beside the ones it sets: any
 * other source of trusted host keys or name to look the pin up by (the pin in the state dir is the
 * one), local commands and agent forwarding (nothing of this machine goes to the cluster's), and a
 * session other than a plain command without a terminal (a tty merges stderr into stdout).
 */
const PINNED = new Set(
  [
    "HostKeyAlias",
    "KnownHostsCommand",
    "UpdateHostKeys",
    "VerifyHostKeyDNS",
    "CheckHostIP",
    "LocalCommand",
    "PermitLocalCommand",
    "ForwardAgent",
    "RemoteCommand",
    "RequestTTY",
    "SessionType",
    "BatchMode",
    "ControlMaster",
    "ControlPath",
    "ControlPersist",
    "UserKnownHostsFile",
    "GlobalKnownHostsFile",
    "StrictHostKeyChecking",
    "HashKnownHosts",
    "IdentitiesOnly",
    "IdentityFile",
    "Port",
    "User",
    "Hostname",
    "LogLevel",
  ].map((o) => o.toLowerCase()),
);

export class SshTarget implements Target {
  readonly name: string;
  readonly user: string;
  readonly host: string;
  readonly port: number;
  readonly knownHostsFile: string;
  private readonly sshDir: string;
  private readonly options: SshTargetOptions;
  private controlPath?: Promise<string>;
  private masterReady?: Promise<void>;
  private masterUsedAt = 0;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(options: SshTargetOptions) {
    checkHost(options.host, "SshTarget");
    checkUser(options.user, "SshTarget");
    const port = options.port ?? 22;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new KubehyveError(
        `ssh target ${options.user}@${options.host}: port ${port} is not between 1 and 65535`,
      );
    }
    for (const key of Object.keys(options.extraOptions ?? {})) {
      if (PINNED.has(key.toLowerCase())) {
        throw new KubehyveError(`ssh target ${options.user}@${options.host}: extraOptions cannot set ${key}`);
      }
      if (!/^[A-Za-z]+$/.test(key))
        throw new KubehyveError(`ssh target: ${JSON.stringify(key)} is not an ssh option name`);
    }
    this.options = options;
    this.user = options.user;
    this.host = options.host;
    this.port = port;
    this.name = options.name ?? `${options.user}@${options.host}${port === 22 ? "" : `:${port}`}`;
    this.sshDir = join(resolve(options.stateDir), "ssh");
    this.knownHostsFile = join(this.sshDir, "known_hosts");
    // Refused here, before any machine is contacted, rather than by the first command.
    sshPathValue(this.knownHostsFile, this.name);
    if (options.identityFile !== undefined) sshPathValue(resolve(options.identityFile), this.name);
  }

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (argv.length === 0 || argv[0] === "") throw new Error(`${this.name}: cannot run an empty command`);
    const limitMs = opts.timeoutMs ?? FALLBACK_TIMEOUT_MS;
    const remote = shellJoin([
      // ssh passes on a command's exit status but not its death by a signal (clientloop.c
      // client_input_channel_req reads "exit-status" only; it then exits 255, as for a lost
      // connection). A shell around turns the signal into 128 + its number, as the local target
      // reports it: the `exit` after the command keeps it from exec'ing the command, and it runs
      // timeout(1), an outside program, so the command is still found as the local target finds
      // it (never a shell builtin of the same name: echo, printf, kill, test). /bin/sh by its path:
      // the transport's own shell, whatever the session's PATH puts first.
      "/bin/sh",
      "-c",
      '"$@"; exit "$?"',
      "sh",
      "timeout",
      "-k",
      String(REMOTE_KILL_AFTER_S),
      String(Math.ceil(limitMs / 1000) + REMOTE_GRACE_S),
      ...withEnvAndCwd(argv, opts),
    ]);
    // The remote shell gets this as one argument, and Linux takes at most 128 KiB in one
    // (MAX_ARG_STRLEN): past it, spawning ssh fails with no word of which command was too long.
    // MAX_ARG_BYTES counts the final NUL, so the line itself may be one byte shorter.
    const bytes = Buffer.byteLength(remote);
    if (bytes + 1 > MAX_ARG_BYTES) {
      throw new Error(
        `${this.name}: the remote command line of \`${showCommand(argv)}\` is ${bytes} bytes, more than the ${MAX_ARG_BYTES - 1} one argument may hold (${MAX_ARG_BYTES} with its final NUL): pass large data on stdin`,
      );
    }
    await this.ensureMaster(opts);
    await this.acquireSession();
    try {
      const stderr = opts.onStderr ? muxFallbackFilter(opts.onStderr) : undefined;
      const result = await spawnCommand(
        this.name,
        [...(await this.sshArgs()), "--", this.destination(), remote],
        {
          ...opts,
          timeoutMs: limitMs,
          env: undefined,
          cwd: undefined,
          onStderr: stderr?.push,
        },
        argv,
      );
      stderr?.end();
      result.stderr = withoutMuxFallback(result.stderr);
      if (result.timedOut) result.timeoutNote = BACKGROUND_HOLDS_OUTPUT;
      this.throwIfSshFailed(result, argv);
      // A connection that drops mid-command ends the client with 255 and, multiplexed, not a word:
      // the same as a remote command that exits 255. Only the master's being gone tells them apart.
      if (result.code === 255 && !(await this.masterAlive())) {
        this.masterUsedAt = 0;
        throw new SshError(
          "unreachable",
          this.name,
          `${this.name}: the connection to ${this.user}@${this.host} port ${this.port} was lost while \`${argv.join(" ")}\` ran: whether it finished is not known`,
          `check that the machine is up and sshd listens (nc -z ${this.host} ${this.port}), then run again`,
          result.stderr,
        );
      }
      this.masterUsedAt = Date.now();
      return result;
    } finally {
      this.releaseSession();
    }
  }

  /**
   * Stops the master connection. Safe to call twice and when there never was one.
   *
   * The master is not ours alone: another kubehyve process on the same state dir (a doctor beside
   * an `up`) sends its commands through it too. `-O exit` would end it with their sessions in it,
   * so it is `-O stop`: the master stops taking new sessions (it removes its socket at once, so the
   * next command anywhere opens a connection of its own) and leaves when the last running one ends
   * (mux.c mux_master_process_stop_listening; clientloop.c client_stop_mux: with ControlPersist
   * the master closes once no channel is open).
   */
  async close(): Promise<void> {
    this.masterReady = undefined;
    this.masterUsedAt = 0;
    // Never used: there is no master of ours to stop.
    if (!this.controlPath) return;
    const args = await this.sshArgs();
    await spawnCommand(this.name, [...args, "-O", "stop", "--", this.destination()], { timeoutMs: 10_000 });
  }

  /**
   * The machine at this address is a new one: the master to the old one is stopped and the key ssh
   * pinned for it is forgotten (only the entries ssh wrote for this machine, see withoutPins), so the
   * next connection pins the new machine's key rather than refusing it as a changed one.
   */
  async forgetHostKey(): Promise<void> {
    await this.close();
    const text = readPrivateFile(this.knownHostsFile);
    if (text === undefined) return;
    // On every port: Ansible may reach the machine on another than this target's.
    const kept = withoutPins(text, this.host, [this.port, 22]);
    if (kept !== text) await writeFileAtomic(this.knownHostsFile, kept, 0o600);
  }

  /** The ssh options shared by every invocation, without destination and command. */
  async sshArgs(): Promise<string[]> {
    const controlPath = await this.ensureControlPath();
    const o = (key: string, value: string) => ["-o", `${key}=${value}`];
    const args = [
      "ssh",
      // No ssh_config at all, neither ~/.ssh/config nor /etc/ssh/ssh_config (ssh(1): "-F none": no
      // configuration files are read). Whatever they say would apply to every option set below by
      // its absence: a `Host *` with ForwardAgent, RemoteCommand, ProxyCommand or `Match exec`
      // would reach the cluster's machines, and Debian's own file hashes known_hosts and sends the
      // locale. The user's default keys and agent still serve a host given without an identity.
      "-F",
      "none",
      "-T",
      ...o("BatchMode", "yes"),
      ...o("ControlMaster", "auto"),
      ...o("ControlPersist", "60s"),
      ...o("ControlPath", sshPathValue(controlPath, this.name)),
      ...o("UserKnownHostsFile", sshPathValue(this.knownHostsFile, this.name)),
      // The state dir is the one record of which keys are trusted for this cluster.
      ...o("GlobalKnownHostsFile", "/dev/null"),
      ...o("StrictHostKeyChecking", this.hostKeyChecking()),
      // Readable entries (Debian's ssh_config hashes them): the file lists only this cluster's machines.
      ...o("HashKnownHosts", "no"),
      ...o("ConnectTimeout", String(this.options.connectTimeoutSec ?? 10)),
      ...o("ServerAliveInterval", "15"),
      ...o("ServerAliveCountMax", "4"),
      // Without it the first command's stderr would start with "Permanently added … to known hosts".
      ...o("LogLevel", "ERROR"),
      ...o("Port", String(this.port)),
    ];
    if (this.options.identityFile) {
      // Absolute, so that a relative path starting with `~` is not taken for a home directory.
      const identity = sshPathValue(resolve(this.options.identityFile), this.name);
      args.push(...o("IdentityFile", identity), ...o("IdentitiesOnly", "yes"));
    }
    for (const [key, value] of Object.entries(this.options.extraOptions ?? {})) args.push(...o(key, value));
    return args;
  }

  /**
   * accept-new only while the state dir pins no key for this machine; from then on `yes`: the
   * pinned key or nothing (see known-hosts.ts). Read at each invocation, as any of them may be the
   * one that connects (a master gone, or stopped by another process).
   */
  private hostKeyChecking(): "yes" | "accept-new" {
    // Never through a link, and only a file of this user nobody else can write: what it lists is
    // what this cluster trusts.
    const text = readPrivateFile(this.knownHostsFile) ?? "";
    if (pinsName(text, knownHostsName(this.host, this.port))) return "yes";
    // ssh appends its line as is: after a last line cut short, the two would run together and
    // neither would pin anything.
    if (text !== "" && !text.endsWith("\n")) appendPrivateFile(this.knownHostsFile, "\n");
    return "accept-new";
  }

  private destination(): string {
    return `${this.user}@${this.host}`;
  }

  private ensureControlPath(): Promise<string> {
    this.controlPath ??= this.prepareSshDir().catch((error) => {
      this.controlPath = undefined;
      throw error;
    });
    return this.controlPath;
  }

  private async prepareSshDir(): Promise<string> {
    // Made 0700, or refused when it is a link or others can write it; never chmodded into shape.
    await ensurePrivateDir(this.sshDir);
    const id = `${this.user}@${this.host}:${this.port}`;
    const inStateDir = join(this.sshDir, `cm-${shortHash(id)}`);
    if (Buffer.byteLength(inStateDir) + CONTROL_TEMP_SUFFIX < SUN_PATH_MAX) return inStateDir;
    // A deep state dir leaves no room for a socket path: use a private dir of this user in /tmp,
    // keyed by state dir too so that two clusters never share a master.
    const uid = process.getuid?.() ?? 0;
    const fallbackDir = join(tmpdir(), `kubehyve-${uid}`);
    await mkdir(fallbackDir, { recursive: true, mode: 0o700 });
    const info = await lstat(fallbackDir);
    if (!info.isDirectory() || info.uid !== uid || (info.mode & 0o077) !== 0) {
      throw new KubehyveError(
        `${this.name}: ${fallbackDir} must be a directory owned by uid ${uid} with mode 0700 (it holds ssh control sockets)`,
        undefined,
        `rm -rf ${fallbackDir}, or use a shorter --state-dir`,
      );
    }
    const fallback = join(fallbackDir, `cm-${shortHash(`${this.sshDir}\0${id}`)}`);
    if (Buffer.byteLength(fallback) + CONTROL_TEMP_SUFFIX >= SUN_PATH_MAX) {
      throw new KubehyveError(
        `${this.name}: no path for the ssh control socket fits in ${SUN_PATH_MAX} bytes`,
      );
    }
    return fallback;
  }

  /**
   * The first command of a burst opens the master alone: with ControlMaster=auto, commands started
   * together before any master exists would each open their own connection.
   */
  private async ensureMaster(opts: RunOptions): Promise<void> {
    for (;;) {
      if (Date.now() - this.masterUsedAt < MASTER_FRESH_MS) return;
      this.masterReady ??= this.openMaster(opts).finally(() => {
        this.masterReady = undefined;
      });
      try {
        await this.masterReady;
        return;
      } catch (error) {
        // The command that was opening the connection was cancelled; this one was not: open it anew.
        if (error instanceof CancelledError && !opts.signal?.aborted) continue;
        throw error;
      }
    }
  }

  /** Whether our master connection is up (`ssh -O check`). */
  private async masterAlive(signal?: AbortSignal): Promise<boolean> {
    const args = await this.sshArgs();
    const check = await spawnCommand(this.name, [...args, "-O", "check", "--", this.destination()], {
      timeoutMs: 10_000,
      signal,
    });
    return check.code === 0;
  }

  private async openMaster(opts: RunOptions): Promise<void> {
    if (await this.masterAlive(opts.signal)) return;
    const args = await this.sshArgs();
    // `true` runs once over the new connection; ControlPersist then keeps the master for what follows.
    const first = await spawnCommand(this.name, [...args, "--", this.destination(), "true"], {
      timeoutMs: ((this.options.connectTimeoutSec ?? 10) + 20) * 1000,
      signal: opts.signal,
    });
    this.throwIfSshFailed(first, ["true"]);
    if (first.code !== 0) {
      throw new SshError(
        "ssh-failed",
        this.name,
        `${this.name}: opening the ssh connection failed: ${oneLine(first)}`,
      );
    }
    this.masterUsedAt = Date.now();
  }

  private throwIfSshFailed(result: RunResult, argv: readonly string[]): void {
    if (result.code !== 255) return;
    const failure = classifySshFailure(result.stderr);
    if (!failure) return;
    const where = `${this.user}@${this.host} port ${this.port}`;
    const detail = sshMessage(result.stderr);
    switch (failure) {
      case "host-key-changed": {
        const entry = knownHostsName(this.host, this.port);
        throw new SshError(
          failure,
          this.name,
          `${this.name}: the host key of ${where} differs from the one pinned in ${this.knownHostsFile}; ` +
            "refusing to connect (the machine was reinstalled, or someone is intercepting the connection)",
          `if the machine was reinstalled, forget the old key: ssh-keygen -f ${this.knownHostsFile} -R '${entry}'`,
          result.stderr,
        );
      }
      case "unreachable":
        throw new SshError(
          failure,
          this.name,
          `${this.name}: cannot reach ${where}: ${detail}`,
          `check that the machine is up and sshd listens: nc -z ${this.host} ${this.port}`,
          result.stderr,
        );
      case "auth-failed":
        throw new SshError(
          failure,
          this.name,
          `${this.name}: ${where} refused the login: ${detail}`,
          /Load key .*: bad permissions/.test(result.stderr)
            ? `ssh ignores a private key that others can read: chmod 600 ${this.options.identityFile ?? "<key file>"}`
            : this.options.identityFile
              ? `authorize ${this.options.identityFile}.pub for ${this.user} on ${this.host}`
              : `authorize your key for ${this.user} on ${this.host} (ssh-copy-id -p ${this.port} ${this.destination()})`,
          result.stderr,
        );
      case "ssh-failed":
        throw new SshError(
          failure,
          this.name,
          `${this.name}: ssh failed before running \`${argv.join(" ")}\`: ${detail}`,
          undefined,
          result.stderr,
        );
    }
  }

  private async acquireSession(): Promise<void> {
    if (this.active < MAX_SESSIONS) {
      this.active++;
      return;
    }
    await new Promise<void>((resolveTurn) => this.waiting.push(resolveTurn));
  }

  private releaseSession(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

/*
 * ssh's own messages, each anchored at the start of a line so that a remote command which exited 255
 * after printing something alike ("curl: … Connection refused") is not mistaken for ssh failing.
 * Sources (OpenSSH 9): sshconnect.c (host keys, connect), ssh.c (name resolution), sshconnect2.c
 * (authentication), kex.c and packet.c (connection lost), mux.c (multiplexing).
 */
const HOST_KEY_CHANGED =
  /^(@ +WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!|Host key verification failed\.)/m;
const AUTH_FAILED =
  /^\S+@\S+: Permission denied \([^)]*\)\.\r?$|^Received disconnect from .*: Too many authentication failures/m;
const UNREACHABLE =
  /^(ssh: connect to host |ssh: Could not resolve hostname |kex_exchange_identification: |banner exchange: |Connection (closed|reset|timed out) by |Connection to \S+ (closed by remote host|timed out)|Unable to negotiate with )/m;
const OTHER_SSH_FAILURE = /^(ssh: |mux_client_|muxclient: |Control socket |ControlSocket )/m;

/**
 * What ssh prints before anything of the command when the master refuses it a session (sshd's
 * MaxSessions reached by the processes sharing the master, or a master stopped by another one):
 * it then runs the command over a connection of its own (mux.c mux_client_request_session), and,
 * with ControlMaster=auto, fails to bind the socket the live master holds (mux.c
 * muxserver_listen). The command runs all the same: the lines are no part of its output, and taken
 * for ssh failing they would report a command that ran as one that never did.
 */
const MUX_FALLBACK =
  /^(mux_client_request_session: session request failed: [^\n]*|ControlSocket [^\n]* already exists, disabling multiplexing\.?)\r?\n/;
const MUX_FALLBACK_STARTS = ["mux_client_request_session: session request failed: ", "ControlSocket "];

function withoutMuxFallback(stderr: string): string {
  let rest = stderr;
  for (let m = MUX_FALLBACK.exec(rest); m; m = MUX_FALLBACK.exec(rest)) rest = rest.slice(m[0].length);
  return rest;
}

/**
 * Streams stderr to `onChunk` without the lines of MUX_FALLBACK at its start: the first bytes are
 * held while they may still become one of those lines, and everything after the first line that is
 * not one of them is passed on as it comes.
 */
function muxFallbackFilter(onChunk: (chunk: string) => void): { push(chunk: string): void; end(): void } {
  let held = "";
  let passing = false;
  const release = () => {
    passing = true;
    if (held) onChunk(held);
    held = "";
  };
  return {
    push(chunk) {
      if (passing) return onChunk(chunk);
      held = withoutMuxFallback(held + chunk);
      const mayBecomeOne =
        !held.includes("\n") &&
        MUX_FALLBACK_STARTS.some((start) => start.startsWith(held) || held.startsWith(start));
      if (held && !mayBecomeOne) release();
    },
    end: release,
  };
}

/** Tells ssh's own failures (exit 255 plus one of its messages) from a remote command that exited 255. */
export function classifySshFailure(stderr: string): SshErrorKind | undefined {
  if (HOST_KEY_CHANGED.test(stderr)) return "host-key-changed";
  if (AUTH_FAILED.test(stderr)) return "auth-failed";
  if (UNREACHABLE.test(stderr)) return "unreachable";
  if (OTHER_SSH_FAILURE.test(stderr)) return "ssh-failed";
  return undefined;
}

/** ssh's own message without the warning banner: the last non-decorative line. */
function sshMessage(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("@"));
  return (lines.at(-1) ?? "ssh exited 255").replace(/^ssh: /, "");
}

/**
 * A file's path as the value of an ssh option. ssh splits an option's value into words at white
 * space, honouring double quotes and backslash escapes (misc.c argv_split), then expands
 * `%`-tokens and `${VARIABLE}`s in ControlPath, UserKnownHostsFile and IdentityFile (ssh.c,
 * default_client_percent_dollar_expand): a state dir with a space in its path would otherwise be
 * cut in two, and one with `%h` or `${HOME}` would put the known_hosts file elsewhere. `%%` stands
 * for `%` (misc.c percent_expand); there is no escape for `${`, so such a path is refused, and so
 * is one with a line break or another control character, which no state dir needs.
 */
function sshPathValue(path: string, target: string): string {
  const control = [...path].some((c) => c.charCodeAt(0) < 0x20 || c === "\x7f");
  if (path.includes("${") || control) {
    throw new KubehyveError(
      `ssh target ${target}: ${path}: ${path.includes("${") ? 'ssh would read "${" in it as a variable' : "a path with a control character is not handed to ssh"}`,
      undefined,
      "use a state dir (and key file) whose path has neither",
    );
  }
  const value = path.replaceAll("%", "%%");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  return `"${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

function oneLine(result: RunResult): string {
  return (result.stderr.trim() || result.stdout.trim() || `exit code ${result.code}`).split("\n").join(" | ");
}

function shortHash(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("hex").slice(0, 16);
}

/**
 * sshd passes no environment and starts in the home directory: both are set on the remote side,
 * through env(1) and a constant sh script that takes the directory as an argument.
 */
function withEnvAndCwd(argv: readonly string[], opts: RunOptions): string[] {
  let command = [...argv];
  if (opts.cwd !== undefined)
    command = ["sh", "-c", 'cd -- "$1" && shift && exec "$@"', "sh", opts.cwd, ...command];
  const env = Object.entries(opts.env ?? {});
  if (env.length > 0) {
    for (const [name] of env) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
        throw new Error(`not an environment variable name: ${JSON.stringify(name)}`);
    }
    // env(1) -u, in FreeBSD's and GNU's alike, removes a name; sshd passes little, but PAM may.
    command = [
      "env",
      ...env.flatMap(([name, value]) => (value === undefined ? ["-u", name] : [])),
      ...env.flatMap(([name, value]) => (value === undefined ? [] : [`${name}=${value}`])),
      ...command,
    ];
  }
  return command;
}

function checkHost(host: string, what: string): void {
  // An IPv6 literal, or a name or IPv4 address; never something ssh could read as an option.
  if (!/^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/.test(host)) {
    throw new KubehyveError(`${what}: ${JSON.stringify(host)} is not a host name or IP address`);
  }
}

function checkUser(user: string, what: string): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(user)) {
    throw new KubehyveError(`${what}: ${JSON.stringify(user)} is not a user name`);
  }
}

export interface SshUrl {
  user: string;
  host: string;
  port: number;
}

/**
 * Parses `ssh://user@host[:port]` (the cluster file's remote host). The user defaults to root
 * (kubehyve runs as root on the host) and the port to 22; IPv6 addresses go in brackets.
 */
export function parseSshUrl(text: string): SshUrl {
  const bad = (why: string) =>
    new KubehyveError(
      `${JSON.stringify(text.length > 100 ? `${text.slice(0, 99)}…` : text)} is not a valid ssh URL: ${why}`,
      undefined,
      "write it as ssh://user@host:port",
    );
  const match = /^ssh:\/\/(?:([^@/?#]*)@)?(\[[^\]]*\]|[^:/?#[\]]*)(?::([^/?#]*))?\/?$/.exec(text.trim());
  if (!match) {
    if (!text.trim().startsWith("ssh://")) throw bad("it must start with ssh://");
    throw bad("it may hold only a user, a host and a port");
  }
  const [, rawUser, rawHost = "", rawPort] = match;
  // Taken as written: a user name has nothing to percent-encode, and decoding could make one up.
  const user = rawUser === undefined ? "root" : rawUser;
  if (user.includes(":")) throw bad("a password does not belong in it (use a key)");
  if (!isUserName(user)) throw bad(`${JSON.stringify(user)} is not a user name`);
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost;
  if (host === "") throw bad("the host is missing");
  if (
    rawHost.startsWith("[") ? !/^[0-9A-Fa-f:.]{2,45}$/.test(host) || !host.includes(":") : !isHostName(host)
  ) {
    throw bad(`${JSON.stringify(host)} is not a host name or IP address`);
  }
  let port = 22;
  if (rawPort !== undefined) {
    if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) < 1 || Number(rawPort) > 65535) {
      throw bad(`the port ${JSON.stringify(rawPort)} is not a number between 1 and 65535`);
    }
    port = Number(rawPort);
  }
  return { user, host, port };
}

/**
 * A login name as FreeBSD and Linux allow one (pw(8), useradd(8)): letters, digits, `_`, `.`, `-`,
 * not starting with `-` or `.`, at most 32 characters (MAXLOGNAME is 33 with the NUL).
 */
export function isUserName(user: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(user);
}

/**
 * A host name by RFC 1123 (labels of letters, digits and `-`, 1 to 63 long, not starting or ending
 * with `-`, at most 253 in all), or an IPv4 address: a name of digits and dots only must be an
 * address ("999.1.1.1" is neither).
 */
export function isHostName(host: string): boolean {
  if (host.length > 253) return false;
  if (/^[\d.]+$/.test(host)) {
    const parts = host.split(".");
    return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
  }
  return host.split(".").every((label) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label));
}
