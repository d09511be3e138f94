/**
 * Where and how ansible-playbook runs. Ansible runs on the machine that runs kubehyve (the FreeBSD
 * host in the usual setup); it only needs to reach the nodes over SSH. See README.md for why the
 * default is a Python venv on the host and not a container.
 */
import { constants, createWriteStream, lstatSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { access, lstat, mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { type Diagnostic, diag, KubehyveError, type Target } from "kubehyve";
import { ensureStageDirs } from "./files.ts";
import type { KubesprayOptions } from "./options.ts";
import { type AnsibleEvent, parseAnsibleEvent } from "./progress.ts";

/** How long a version probe (doctor, check) may take before it counts as not working. */
const PROBE_TIMEOUT_MS = 60_000;

/**
 * The longest line of output read for progress: the jsonl callback writes one line per result, and
 * one result rarely comes near this. A longer one (a task that printed a flood) is only in the log.
 */
export const MAX_LINE_LENGTH = 16 * 1024 * 1024;

/**
 * Cuts streamed output into lines for a line-based consumer: `push` each chunk as it arrives, then
 * `end` hands over a last line that has no newline. Each chunk is scanned once, and a line longer
 * than `maxLength` is dropped as it streams (`onDropped` gets its length), so that a flood without
 * line breaks costs neither time nor memory beyond its length.
 */
export function lineSplitter(
  onLine: (line: string) => void,
  opts: { maxLength?: number; onDropped?: (length: number) => void } = {},
): { push(chunk: string): void; end(): void } {
  const maxLength = opts.maxLength ?? MAX_LINE_LENGTH;
  let parts: string[] = [];
  let length = 0;
  let overlong = false;
  const take = (piece: string) => {
    length += piece.length;
    if (overlong) return;
    if (length > maxLength) {
      overlong = true;
      parts = [];
    } else if (piece) parts.push(piece);
  };
  const finish = () => {
    if (overlong) opts.onDropped?.(length);
    else onLine(parts.join(""));
    parts = [];
    length = 0;
    overlong = false;
  };
  return {
    push(chunk) {
      let start = 0;
      for (let nl = chunk.indexOf("\n"); nl !== -1; nl = chunk.indexOf("\n", start)) {
        take(chunk.slice(start, nl));
        finish();
        start = nl + 1;
      }
      take(chunk.slice(start));
    },
    end() {
      if (length > 0) finish();
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** The file that marks a venv directory as made by kubehyve for one cluster: it holds the cluster's id. */
export const VENV_MARKER = ".kubehyve-venv";

export type DirectoryOwner =
  | { kind: "absent" }
  | { kind: "empty" }
  | { kind: "ours" }
  | { kind: "other-cluster"; clusterId: string }
  | { kind: "foreign"; why: string };

/**
 * Whose directory `dir` is. Ours: it carries this cluster's marker, or it lies in the stage's own
 * directory of the state dir (`ownDir`, where earlier releases made venvs before they were marked).
 * Read-only and synchronous, so that validate() can ask too.
 */
export function directoryOwner(dir: string, clusterId: string | undefined, ownDir?: string): DirectoryOwner {
  // Root runs the venv's bin/ansible-playbook: whoever could rename what is in the directory, or
  // the directory itself, could put a program of their own there.
  const above = writableAbove(dir);
  if (above) return { kind: "foreign", why: `others can write ${above}, above it` };
  let info: ReturnType<typeof lstatSync>;
  try {
    info = lstatSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
    return { kind: "foreign", why: `it cannot be read: ${(error as Error).message}` };
  }
  if (info.isSymbolicLink()) return { kind: "foreign", why: "it is a symlink" };
  if (!info.isDirectory()) return { kind: "foreign", why: "it is not a directory" };
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) return { kind: "foreign", why: `it belongs to uid ${info.uid}` };
  if ((info.mode & 0o022) !== 0) return { kind: "foreign", why: "others can write it" };
  let marker: string | undefined;
  try {
    marker = readFileSync(join(dir, VENV_MARKER), "utf8").trim();
  } catch {
    marker = undefined;
  }
  if (marker !== undefined) {
    if (clusterId !== undefined && marker === clusterId) return { kind: "ours" };
    return { kind: "other-cluster", clusterId: marker };
  }
  if (ownDir && dir.startsWith(`${ownDir}/`)) return { kind: "ours" };
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    return { kind: "foreign", why: `it cannot be read: ${(error as Error).message}` };
  }
  if (names.length === 0) return { kind: "empty" };
  return {
    kind: "foreign",
    why: `it holds ${names.length} entr${names.length === 1 ? "y" : "ies"} and no ${VENV_MARKER} marker`,
  };
}

/**
 * The first directory above `dir` that group or others may write and that is not sticky (as /tmp
 * is), judged where links lead (FreeBSD's /home is one to /usr/home); undefined when there is none.
 */
function writableAbove(dir: string): string | undefined {
  let at = dirname(dir);
  for (;;) {
    try {
      at = realpathSync(at);
      break;
    } catch {
      if (dirname(at) === at) return undefined;
      at = dirname(at);
    }
  }
  for (;;) {
    let mode: number;
    try {
      mode = lstatSync(at).mode;
    } catch {
      return undefined;
    }
    if ((mode & 0o022) !== 0 && (mode & 0o1000) === 0) return at;
    if (dirname(at) === at) return undefined;
    at = dirname(at);
  }
}

/**
 * Why root must not run the program at the absolute path `file`; undefined when it may. It must be
 * a file of root's or of the user running kubehyve that neither group nor others can write, and no
 * directory on the way to it (nor to where a link there leads) may be writable by others without
 * the sticky bit: whoever could write it, or rename it, would have root run a program of theirs.
 * Read-only and synchronous, so that validate() can ask too.
 */
export function programProblem(file: string): string | undefined {
  const above = writableAbove(file);
  if (above) return `others can write ${above}, on the way to it`;
  let real: string;
  try {
    real = realpathSync(file);
  } catch {
    // Missing: the probe of check says it cannot run.
    return undefined;
  }
  if (real !== file) {
    const beyond = writableAbove(real);
    if (beyond) return `it leads to ${real}, and others can write ${beyond}, on the way to it`;
  }
  const info = lstatSync(real);
  if (!info.isFile()) return real === file ? "it is not a file" : `it leads to ${real}, which is not a file`;
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid && info.uid !== 0)
    return real === file
      ? `it belongs to uid ${info.uid}`
      : `it leads to ${real}, which belongs to uid ${info.uid}`;
  if ((info.mode & 0o022) !== 0)
    return real === file ? "others can write it" : `it leads to ${real}, which others can write`;
  return undefined;
}

/** The diagnostic for a system runner's ansible-playbook root must not run; undefined when it may. */
export function unsafeAnsiblePlaybook(path: string): Diagnostic | undefined {
  // A bare name is looked up in PATH, which is the operator's to keep.
  if (!path.startsWith("/")) return undefined;
  const why = programProblem(path);
  if (!why) return undefined;
  return diag.error(
    "kubespray.runner-unsafe",
    `the ansible-playbook ${path} is not safe to run as root: ${why}`,
    {
      detail:
        "kubehyve runs it as root: whoever can change or replace it would run their own program as root",
      hint: `use an ansible-playbook that only root (or you) owns and can write, in directories only root can write (chown root ${path}; chmod go-w ${path}), or the default runner: stages.k8s.runner: { kind: "venv" }`,
      path: "stages.k8s.runner.ansiblePlaybook",
    },
  );
}

/** The diagnostic for a runner directory kubehyve must not take; undefined when it may. */
export function runnerDirProblem(owner: DirectoryOwner, dir: string): Diagnostic | undefined {
  if (owner.kind === "foreign") {
    return diag.error(
      "kubespray.runner-dir-foreign",
      `the runner directory ${dir} was not made by kubehyve: ${owner.why}`,
      {
        detail: "kubehyve removes and recreates its venv directory, so it never takes one it did not make",
        hint: "point stages.k8s.runner.dir at a new or empty directory, or leave it out (the venv then lives in the state dir)",
        path: "stages.k8s.runner.dir",
      },
    );
  }
  if (owner.kind === "other-cluster") {
    return diag.error(
      "kubespray.runner-dir-other-cluster",
      `the runner directory ${dir} belongs to another cluster (id ${owner.clusterId})`,
      {
        hint: "give each cluster its own stages.k8s.runner.dir, or leave it out",
        path: "stages.k8s.runner.dir",
      },
    );
  }
  return undefined;
}

/** Whether the venv directory may be taken, read from this machine's filesystem only (no probe runs). */
export function runnerDirDiagnostics(
  options: KubesprayOptions,
  stageDir: string,
  clusterId: string,
): Diagnostic[] {
  const dir = venvDirOf(options, stageDir);
  if (!dir) return [];
  const problem = runnerDirProblem(directoryOwner(dir, clusterId, stageDir), dir);
  return problem ? [problem] : [];
}

/** The runtime Ansible runs in. */
export interface AnsibleRunner {
  readonly kind: KubesprayOptions["runner"]["kind"];
  /** The machine Ansible runs on: the one kubehyve runs on (`ctx.local`). */
  readonly target: Target;
  /** What doctor and check report about the runner, without changing anything. */
  prerequisites(): Promise<Diagnostic[]>;
  /** True when `prepare` has nothing left to do for this Kubespray tree. */
  isPrepared(kubesprayDir: string): Promise<boolean>;
  /** Makes the runtime (a venv with the release's pinned requirements). Called inside ctx.wet. */
  prepare(kubesprayDir: string): Promise<void>;
  /** The argv that starts ansible-playbook. */
  command(): string[];
}

export function venvDirOf(options: KubesprayOptions, stageDir: string): string | undefined {
  if (options.runner.kind !== "venv") return undefined;
  return options.runner.dir ?? join(stageDir, `venv-${options.version}`);
}

/**
 * `local` is where Ansible runs: `ctx.local`, which stops with the run's signal. `stageDir` is the
 * stage's directory in the state dir; `clusterId` marks the venv directory as this cluster's.
 */
export function createRunner(
  options: KubesprayOptions,
  stageDir: string,
  local: Target,
  clusterId: string,
): AnsibleRunner {
  const runner = options.runner;
  if (runner.kind === "system") return systemRunner(local, runner.ansiblePlaybook);
  return venvRunner(local, runner.python, venvDirOf(options, stageDir)!, { clusterId, stageDir });
}

function systemRunner(local: Target, ansiblePlaybook: string): AnsibleRunner {
  return {
    kind: "system",
    target: local,
    async prerequisites() {
      // Before the probe: the probe runs it, as root.
      const unsafe = unsafeAnsiblePlaybook(ansiblePlaybook);
      if (unsafe) return [unsafe];
      const r = await local.run([ansiblePlaybook, "--version"], { timeoutMs: PROBE_TIMEOUT_MS });
      if (r.code !== 0) {
        return [
          diag.error("kubespray.runner-missing", `${ansiblePlaybook} cannot run here`, {
            detail: r.stderr.trim() || r.stdout.trim(),
            hint: 'install ansible-core 2.18.x, or use the default runner: stages.k8s.runner: { kind: "venv" }',
            path: "stages.k8s.runner.ansiblePlaybook",
          }),
        ];
      }
      return [diag.ok("kubespray.runner", `ansible-playbook: ${r.stdout.split("\n")[0]?.trim()}`)];
    },
    isPrepared: async () => true,
    prepare: async () => {},
    command: () => [ansiblePlaybook],
  };
}

/**
 * Kubespray's requirements.txt without the packages the host's package manager provides. On FreeBSD
 * cryptography has no wheel on PyPI and building it needs a Rust toolchain, so pkg's
 * py311-cryptography (seen through --system-site-packages) stands in for the pinned one.
 */
export function venvRequirements(requirementsTxt: string): { install: string[]; fromSystem: string[] } {
  const install: string[] = [];
  const fromSystem: string[] = [];
  for (const raw of requirementsTxt.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const name = line.split(/[<>=!~;[\s]/)[0]!.toLowerCase();
    if (SYSTEM_PACKAGES.has(name)) fromSystem.push(line);
    else install.push(line);
  }
  return { install, fromSystem };
}

const SYSTEM_PACKAGES = new Set(["cryptography"]);

function venvRunner(
  local: Target,
  python: string,
  dir: string,
  owner: { clusterId: string; stageDir: string },
): AnsibleRunner {
  const marker = join(dir, ".kubehyve-requirements");
  const probe = (argv: string[]) => local.run(argv, { timeoutMs: PROBE_TIMEOUT_MS });
  return {
    kind: "venv",
    target: local,
    async prerequisites() {
      const found: Diagnostic[] = [];
      const taken = runnerDirProblem(directoryOwner(dir, owner.clusterId, owner.stageDir), dir);
      if (taken) found.push(taken);
      const r = await probe([python, "-c", "import sys, venv, ensurepip; print(sys.version.split()[0])"]);
      if (r.code !== 0) {
        found.push(
          diag.error(
            "kubespray.python-missing",
            `${python} with venv and ensurepip is needed to run Kubespray`,
            {
              detail: r.stderr.trim(),
              hint: "pkg install python311 (FreeBSD) or apt-get install python3-venv (Debian)",
              path: "stages.k8s.runner.python",
            },
          ),
        );
        return found;
      }
      found.push(diag.ok("kubespray.python", `${python} ${r.stdout.trim()}`));
      const c = await probe([python, "-c", "import cryptography; print(cryptography.__version__)"]);
      if (c.code !== 0) {
        found.push(
          diag.error(
            "kubespray.cryptography-missing",
            `the Python module cryptography is not installed for ${python}`,
            {
              detail:
                "Kubespray's community.crypto needs it; pip cannot build it on FreeBSD without a Rust toolchain",
              hint: "pkg install py311-cryptography (FreeBSD) or apt-get install python3-cryptography (Debian)",
            },
          ),
        );
      } else {
        found.push(
          diag.ok("kubespray.cryptography", `cryptography ${c.stdout.trim()} from the system packages`),
        );
      }
      const ssh = await probe(["ssh", "-V"]);
      if (ssh.code !== 0) {
        found.push(
          diag.error("kubespray.ssh-missing", "the OpenSSH client (ssh) is not installed", {
            hint: "it is part of the FreeBSD base system; apt-get install openssh-client",
          }),
        );
      }
      return found;
    },
    async isPrepared(kubesprayDir) {
      const wanted = await readFile(join(kubesprayDir, "requirements.txt"), "utf8").catch(() => undefined);
      const have = await readFile(marker, "utf8").catch(() => undefined);
      return wanted !== undefined && have === wanted && (await exists(join(dir, "bin", "ansible-playbook")));
    },
    async prepare(kubesprayDir) {
      const requirementsTxt = await readFile(join(kubesprayDir, "requirements.txt"), "utf8");
      const { install } = venvRequirements(requirementsTxt);
      const found = directoryOwner(dir, owner.clusterId, owner.stageDir);
      const taken = runnerDirProblem(found, dir);
      if (taken) throw new KubehyveError(taken.summary, 1, taken.hint);
      // The requirements record is written last: a venv without it (pip failed half-way) is made
      // again from scratch. Only a directory this cluster made is removed for that.
      if (found.kind === "ours") await rm(dir, { recursive: true, force: true });
      await mkdir(dirname(dir), { recursive: true, mode: 0o700 });
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(join(dir, VENV_MARKER), `${owner.clusterId}\n`, { mode: 0o600 });
      const steps: string[][] = [[python, "-m", "venv", "--system-site-packages", dir]];
      if (install.length > 0) {
        steps.push([
          join(dir, "bin", "python"),
          "-m",
          "pip",
          "install",
          "--disable-pip-version-check",
          "--no-input",
          ...install,
        ]);
      }
      for (const argv of steps) {
        const r = await local.run(argv, { kind: "long" });
        if (r.code !== 0) {
          const output = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-5).join(" | ");
          throw new KubehyveError(`${argv.slice(0, 4).join(" ")} exited ${r.code}: ${output}`);
        }
      }
      await Bun.write(marker, requirementsTxt);
    },
    command: () => [join(dir, "bin", "ansible-playbook")],
  };
}

export interface PlaybookRequest {
  kubesprayDir: string;
  inventoryDir: string;
  /** Relative to the Kubespray tree: `cluster.yml`, `playbooks/facts.yml`. */
  playbook: string;
  limit?: readonly string[];
  extraVars?: Record<string, string | boolean>;
  /** Where the whole output goes (appended). */
  logFile: string;
  /** Private dir for Ansible's fact cache (and its known_hosts, without `knownHostsFile`). */
  workDir: string;
  /**
   * Where the nodes' targets pin their host keys: Ansible pins there too, so that a node made anew,
   * whose pin the hypervisor stage forgot, is not refused by Ansible alone as a changed key.
   */
  knownHostsFile?: string;
  signal?: AbortSignal;
  onEvent?: (event: AnsibleEvent) => void;
}

/**
 * Tags every playbook run skips. `system-packages` is the role roles/bootstrap_os/tasks/main.yml
 * imports (internal_facts.yml runs it from cluster, scale, facts, upgrade_cluster and reset). At
 * v2.31.0 its task "Install python3-libdnf5 on Fedora >= 41" runs `dnf install` with no
 * is_fedora_coreos guard, which fails on Fedora CoreOS (read-only /usr, no dnf of its own); every
 * other task of the role is guarded off CoreOS (roles/system_packages/tasks/main.yml), and the
 * libdnf5 binding is only for the dnf module, which Kubespray never uses on CoreOS. Skipping the
 * tag changes nothing else and leaves the nodes alone; layering python3-libdnf5 instead would cost
 * another rpm-ostree deployment and still run a dnf that is not there.
 */
export const SKIPPED_TAGS = ["system-packages"];

/**
 * Where Ansible's ssh pins the nodes' host keys when their targets keep no file of their own (see
 * PlaybookRequest.knownHostsFile); earlier versions always pinned here.
 */
export function knownHostsFileOf(workDir: string): string {
  return join(workDir, "known_hosts");
}

/** The argv of one playbook run; a list, so no value is ever parsed by a shell. */
export function playbookArgv(runner: AnsibleRunner, req: PlaybookRequest): string[] {
  const argv = [...runner.command(), "-i", join(req.inventoryDir, "hosts.yaml"), "-b"];
  argv.push("--skip-tags", SKIPPED_TAGS.join(","));
  if (req.limit && req.limit.length > 0) argv.push("--limit", req.limit.join(","));
  if (req.extraVars && Object.keys(req.extraVars).length > 0) argv.push("-e", JSON.stringify(req.extraVars));
  argv.push(req.playbook);
  return argv;
}

/**
 * Settings of this process's environment that would change what a playbook does: any ANSIBLE_* one
 * (an operator's ANSIBLE_RUN_TAGS makes Kubespray do nothing and succeed, ANSIBLE_ROLES_PATH or
 * ANSIBLE_COLLECTIONS_PATH swap its roles and collections, and environment settings win over
 * Kubespray's ansible.cfg), and Python's PYTHONPATH and PYTHONHOME, which swap the packages the
 * venv pins.
 */
export function inheritedAnsibleSettings(env: Record<string, string | undefined> = process.env): string[] {
  return Object.keys(env).filter(
    (name) => name.startsWith("ANSIBLE_") || name === "PYTHONPATH" || name === "PYTHONHOME",
  );
}

/**
 * FreeBSD's sun_path holds 104 bytes, the final NUL included (Linux: 108). OpenSSH refuses a longer
 * ControlPath (misc.c unix_listener: "path too long for Unix domain socket"), and the master binds
 * `<ControlPath>.<16 random characters>` first, renaming it after listen() (mux.c muxserver_listen).
 */
const SUN_PATH_MAX = 104;
const CONTROL_TEMP_SUFFIX = 17;
/**
 * The name Ansible gives a host's socket in control_path_dir when control_path is empty: the first
 * 10 hex digits of a sha1 (ansible-core stable-2.18, lib/ansible/plugins/connection/ssh.py
 * `_create_control_path`, `cpath = '%(directory)s/' + digest[:10]`).
 */
const ANSIBLE_SOCKET_NAME = 10;
/**
 * What may stand in the directory: Ansible puts it unquoted into `-o ControlPath="<dir>/<hash>"`
 * (ssh.py `_build_command`), where ssh expands `%` tokens and `${VARIABLE}`s and a `"` ends the value.
 */
const PLAIN_PATH = /^[A-Za-z0-9_@+=:,./-]+$/;

function fitsSocket(dir: string): boolean {
  return (
    PLAIN_PATH.test(dir) &&
    Buffer.byteLength(dir) + 1 + ANSIBLE_SOCKET_NAME + CONTROL_TEMP_SUFFIX < SUN_PATH_MAX
  );
}

/**
 * The directory of Ansible's ControlMaster sockets for a stage directory: `<workDir>/cp`, never the
 * default ~/.ansible/cp that everything else root runs with Ansible shares. A state dir whose path
 * leaves no room for a socket (or holds what ssh would expand) gets a directory of its own in this
 * user's private directory of the temp dir, the one the node targets fall back to as well.
 */
export function controlPathDirOf(workDir: string, tmp = tmpdir()): string {
  const own = join(workDir, "cp");
  if (fitsSocket(own) && fitsSocket(realOrNearest(own))) return own;
  const hash = new Bun.CryptoHasher("sha256").update(workDir).digest("hex").slice(0, 16);
  return join(tmp, `kubehyve-${process.getuid?.() ?? 0}`, `ansible-${hash}`);
}

/**
 * `path` with its links resolved as far as it exists, as Ansible resolves control_path_dir before
 * it makes it (lib/ansible/utils/path.py unfrackpath: os.path.realpath).
 */
function realOrNearest(path: string): string {
  for (let at = path; ; at = dirname(at)) {
    try {
      return join(realpathSync(at), relative(at, path));
    } catch {
      if (dirname(at) === at) return path;
    }
  }
}

async function privateDir(dir: string, uid: number): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "EEXIST") throw error;
  });
  const info = await lstat(dir);
  if (!info.isDirectory() || info.uid !== uid || (info.mode & 0o077) !== 0) {
    throw new KubehyveError(
      `${dir} must be a directory owned by uid ${uid} that only it can write (mode 0700): it holds Ansible's ssh control sockets; nothing was run`,
      1,
      `move it away, or use a shorter --state-dir`,
    );
  }
}

/**
 * Makes the directory controlPathDirOf names (0700) and checks it, as the state dir's own files are
 * checked: a link, another user's directory or one others can write is refused before any host is
 * touched, as is a path that leaves ssh no room for a socket.
 */
export async function ensureControlPathDir(workDir: string, tmp = tmpdir()): Promise<string> {
  const dir = controlPathDirOf(workDir, tmp);
  if (!fitsSocket(dir) || !fitsSocket(realOrNearest(dir))) {
    throw new KubehyveError(
      `no directory for Ansible's ssh control sockets fits in the ${SUN_PATH_MAX} bytes of a socket's path: ${join(workDir, "cp")} and ${dir} are too long; nothing was run`,
      1,
      "use a shorter --state-dir, or a shorter TMPDIR",
    );
  }
  if (dir === join(workDir, "cp")) {
    // In the stage's directory, which the core checked: made 0700, or checked and made 0700.
    await ensureStageDirs(workDir, dir);
    return dir;
  }
  const uid = process.getuid?.() ?? 0;
  await mkdir(tmp, { recursive: true });
  await privateDir(dirname(dir), uid);
  await privateDir(dir, uid);
  return dir;
}

/**
 * A path as a value in ANSIBLE_SSH_ARGS, which Ansible splits with shlex (plugins/connection/__init__.py
 * `_split_ssh_args`) and ssh splits again, honouring quotes and backslashes, before it expands
 * `%`-tokens and `${VARIABLE}`s in UserKnownHostsFile (ssh.c default_client_percent_dollar_expand).
 * `%%` stands for `%`; a path with white space, a quote, a backslash or `$` is refused, as the two
 * quotings of one value cannot be told apart, rather than pinning host keys somewhere else.
 */
function sshArgsPath(path: string, workDir: string): string {
  if (!/^[A-Za-z0-9_@%+=:,./-]+$/.test(path)) {
    throw new KubehyveError(
      `the state dir ${workDir} holds a character that Ansible's ssh_args cannot carry (white space, a quote, a backslash or $): ${path}`,
      1,
      "use a state dir whose path has none of them",
    );
  }
  return path.replaceAll("%", "%%");
}

/** The playbook's environment: only kubehyve's settings, every inherited one of Ansible's removed. */
export function playbookEnv(req: PlaybookRequest): Record<string, string | undefined> {
  const cfg = join(req.kubesprayDir, "ansible.cfg");
  const knownHosts = sshArgsPath(req.knownHostsFile ?? knownHostsFileOf(req.workDir), req.workDir);
  return {
    ...Object.fromEntries(inheritedAnsibleSettings().map((name) => [name, undefined])),
    ANSIBLE_CONFIG: cfg,
    // Python puts the user's own site directory (~/.local, of root's `pip install --user`) before
    // the system's packages, and a venv made with --system-site-packages keeps it (site.py).
    PYTHONNOUSERSITE: "1",
    ANSIBLE_STDOUT_CALLBACK: "ansible.posix.jsonl",
    ANSIBLE_NOCOLOR: "1",
    ANSIBLE_FORCE_COLOR: "0",
    ANSIBLE_RETRY_FILES_ENABLED: "0",
    // Kubespray's ansible.cfg caches facts in /tmp; this lab's facts stay in its state dir.
    ANSIBLE_CACHE_PLUGIN_CONNECTION: join(req.workDir, "facts"),
    // ControlMaster sockets in a directory of this cluster's (see controlPathDirOf), under the name
    // Ansible makes when control_path is empty: an empty setting here wins over a control_path in
    // ansible.cfg (config/manager.py: environment before ini), so the socket's length is known.
    ANSIBLE_SSH_CONTROL_PATH_DIR: controlPathDirOf(req.workDir),
    ANSIBLE_SSH_CONTROL_PATH: "",
    // Kubespray's ansible.cfg turns host key checking off; a node's key is trusted on first use and
    // a changed key is an error, as for every other SSH connection of this tool.
    ANSIBLE_HOST_KEY_CHECKING: "True",
    ANSIBLE_SSH_ARGS: [
      "-o ControlMaster=auto",
      "-o ControlPersist=30m",
      "-o ConnectionAttempts=100",
      `-o UserKnownHostsFile=${knownHosts}`,
      "-o StrictHostKeyChecking=accept-new",
      // In the file the node targets write, in their form (Debian's ssh_config hashes the names).
      "-o HashKnownHosts=no",
    ].join(" "),
  };
}

export interface PlaybookResult {
  code: number;
  argv: string[];
}

/**
 * Runs one playbook on the runner's target, its output appended to `logFile` (0600). A run stopped
 * by the signal (Ctrl-C) rejects with the target's cancellation error after the log says so.
 */
export async function runPlaybook(runner: AnsibleRunner, req: PlaybookRequest): Promise<PlaybookResult> {
  const argv = playbookArgv(runner, req);
  // Before anything is made: a state dir whose path ssh_args cannot carry is refused here.
  const env = playbookEnv(req);
  await ensureStageDirs(req.workDir, join(req.workDir, "facts"));
  await ensureStageDirs(req.workDir, dirname(req.logFile));
  await ensureControlPathDir(req.workDir);
  // Never through a link left at the log's name (O_NOFOLLOW: ELOOP on Linux, EMLINK on FreeBSD),
  // and never waiting on a FIFO left there (O_NONBLOCK: ENXIO without a reader; no change for a file).
  const fd = await open(
    req.logFile,
    constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    0o600,
  ).catch((error: NodeJS.ErrnoException) => {
    const what = { ELOOP: "a symlink", EMLINK: "a symlink", ENXIO: "a FIFO", EISDIR: "a directory" }[
      error.code ?? ""
    ];
    if (!what) throw error;
    throw new KubehyveError(
      `${req.logFile} is ${what}, where kubehyve writes the playbook's log`,
      1,
      "move it away",
    );
  });
  if (!(await fd.stat()).isFile()) {
    await fd.close();
    throw new KubehyveError(
      `${req.logFile} is not a file, where kubehyve writes the playbook's log`,
      1,
      "move it away",
    );
  }
  const log = createWriteStream(req.logFile, { fd });
  // A log that cannot be written (a full disk) does not stop the playbook, whose run is worth more
  // than its record, nor end kubehyve as an unhandled stream error: the run fails once it is over.
  let logError: Error | undefined;
  log.on("error", (error) => {
    logError ??= error;
  });
  const append = (text: string) => {
    if (!logError) log.write(text);
  };
  append(`# ${new Date().toISOString()} ${argv.join(" ")}\n`);
  // The log gets all the output as it came (a byte that is no UTF-8 as U+FFFD: the target hands
  // over text); only the events are read line by line.
  let atLineStart = true;
  const write = (chunk: string) => {
    if (!chunk) return;
    append(chunk);
    atLineStart = chunk.endsWith("\n");
  };
  const note = (text: string) => append(`${atLineStart ? "" : "\n"}# ${text}\n`);
  const lines = lineSplitter((line) => {
    const event = parseAnsibleEvent(line);
    if (event) req.onEvent?.(event);
  });
  let code: number;
  try {
    const r = await runner.target.run(argv, {
      cwd: req.kubesprayDir,
      env,
      // A playbook run takes long, and Kubespray converges when run again: Ctrl-C may stop it.
      kind: "long",
      cancellable: true,
      signal: req.signal,
      onStdout: (chunk) => {
        write(chunk);
        lines.push(chunk);
      },
      onStderr: write,
    });
    lines.end();
    note(`exit ${r.code}`);
    code = r.code;
  } catch (error) {
    lines.end();
    note(error instanceof Error ? error.message : String(error));
    throw error;
  } finally {
    // An errored stream is destroyed and never calls end's callback; it has closed, or will.
    await new Promise<void>((resolve) => {
      if (log.destroyed) return resolve();
      log.once("close", () => resolve());
      log.end();
    });
  }
  if (logError) {
    throw new KubehyveError(
      `ansible-playbook ${req.playbook} exited ${code}, but its log ${req.logFile} could not be written: ${logError.message}`,
      1,
      "free space on the state dir's file system (df), then run again",
    );
  }
  return { code, argv };
}
