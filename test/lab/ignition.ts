/**
 * The real Ignition binary of Debian's `ignition` package, applying a config to a throwaway root the
 * way Fedora CoreOS's initramfs applies it to /sysroot: platform `file`, the stages fetch-offline,
 * kargs and files, in that order (ignition dracut/30ignition: ignition-fetch-offline.service, then
 * ignition-kargs.service, then ignition-files.service).
 *
 * How the `file` platform finds its config: the environment variable IGNITION_CONFIG_FILE, else
 * ./config.ign (ignition v2.14.0 internal/providers/file/file.go). Everything Ignition would write
 * outside the root is pointed into the work directory: the config cache, the neednet flag and the
 * state file (flags of internal/main.go), the base configs it reads (IGNITION_SYSTEM_CONFIG_DIR,
 * internal/distro/distro.go), and the two programs it runs by name from PATH that are not ours to
 * run here: `setfiles` (Debian's build always relabels: internal/distro selinuxRelabel "true", so
 * the root carries an /etc/selinux/config naming a policy, internal/exec/util/selinux.go) and
 * `ignition-kargs-helper` (internal/exec/stages/kargs/kargs.go; on Fedora CoreOS it is rdcore
 * editing the boot entry). Both stand-ins only record what they were given. `useradd --root`
 * chroots into the root (shadow-utils), so users land there too.
 */
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { have } from "./prereq.ts";

export const IGNITION_BINARY = "/usr/lib/dracut/modules.d/30ignition/ignition";
/** Fedora CoreOS's order of the stages that matter without disks (ignition dracut units' After=). */
export const STAGES = ["fetch-offline", "kargs", "files"] as const;
const STAGE_TIMEOUT_MS = 60_000;

/**
 * True when the real Ignition can run here. Under CI=true a missing binary fails the run (have()),
 * and so does a run that is not root: Ignition writes files as their owners and chroots for useradd.
 */
export function haveIgnition(): boolean {
  if (!have(IGNITION_BINARY, "ignition")) return false;
  if (process.getuid?.() === 0) return true;
  const message = `${IGNITION_BINARY} must run as root (it chowns and chroots): run the tests as root`;
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping: ${message}`);
  return false;
}

export interface Entry {
  type: "file" | "dir" | "link" | "other";
  /** Permission bits with setuid, setgid and sticky. */
  mode: number;
  uid: number;
  gid: number;
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface AppliedConfig {
  /** The throwaway root Ignition wrote to. */
  root: string;
  /** Ignition's own log lines of every stage (-log-to-stdout). */
  log: string;
  /** Every argument the kargs helper got, in order (`--should-exist`, `console=…`, …). */
  kargs: string[];
  /** The patterns Ignition asked setfiles to relabel, as paths in the root. */
  relabeled: string[];
  /** Every path in the root, as the guest sees it (`/etc/hostname`), before and after. */
  before: Map<string, Entry>;
  after: Map<string, Entry>;
  read(path: string): string;
  user(name: string): PasswdEntry | undefined;
  cleanup(): Promise<void>;
}

function entryOf(path: string): Entry {
  const s = lstatSync(path);
  const type = s.isSymbolicLink() ? "link" : s.isDirectory() ? "dir" : s.isFile() ? "file" : "other";
  return { type, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid };
}

/** Every path under `root`, keyed as the guest sees it. */
export function listTree(root: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (dir: string, guest: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const inGuest = `${guest}/${name}`;
      const entry = entryOf(path);
      out.set(inGuest, entry);
      if (entry.type === "dir") walk(path, inGuest);
    }
  };
  walk(root, "");
  return out;
}

async function runStage(stage: string, args: { work: string; root: string; configFile: string }) {
  const proc = Bun.spawn(
    [
      IGNITION_BINARY,
      "-platform",
      "file",
      "-stage",
      stage,
      "-root",
      args.root,
      "-log-to-stdout",
      "-config-cache",
      join(args.work, "run", "ignition.json"),
      "-neednet",
      join(args.work, "run", "neednet"),
      "-state-file",
      join(args.work, "run", "state"),
    ],
    {
      cwd: args.work,
      // Only what Ignition is meant to see: nothing of the test runner's environment leaks in.
      env: {
        PATH: `${join(args.work, "bin")}:/usr/sbin:/usr/bin:/sbin:/bin`,
        IGNITION_CONFIG_FILE: args.configFile,
        IGNITION_SYSTEM_CONFIG_DIR: join(args.work, "system-config"),
      },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const timer = setTimeout(() => proc.kill("SIGKILL"), STAGE_TIMEOUT_MS);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, output: stdout + stderr };
}

/** A shell stand-in that appends its arguments (NUL-separated) and its stdin to files in `work`. */
function recorder(work: string, name: string): string {
  const args = join(work, `${name}.args`);
  const stdin = join(work, `${name}.stdin`);
  return `#!/bin/sh\nfor a in "$@"; do printf '%s\\0' "$a"; done >> '${args}'\ncat >> '${stdin}'\nexit 0\n`;
}

function readNulList(path: string): string[] {
  try {
    return readFileSync(path, "utf8").split("\0").filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * Applies `config` (the bytes kubehyve hands to the guest) to a fresh throwaway root holding copies
 * of this machine's passwd, group, shadow and gshadow. Throws with Ignition's log when a stage fails.
 */
export async function applyIgnition(config: string): Promise<AppliedConfig> {
  const work = await mkdtemp(join(tmpdir(), "kubehyve-ignition-"));
  // Ignition writes a user's files as that user (internal/as_user): the path to the root must be
  // traversable by them, and mkdtemp made it 0700.
  await chmod(work, 0o755);
  const root = join(work, "root");
  const cleanup = () => rm(work, { recursive: true, force: true });
  try {
    for (const dir of ["bin", "run", "system-config", "root/etc/selinux"])
      await mkdir(join(work, dir), { recursive: true });
    await chmod(root, 0o755);
    for (const file of ["passwd", "group", "shadow", "gshadow"])
      await copyFile(`/etc/${file}`, join(root, "etc", file));
    await writeFile(join(root, "etc/selinux/config"), "SELINUX=disabled\nSELINUXTYPE=targeted\n");
    await writeFile(join(work, "bin/setfiles"), recorder(work, "setfiles"), { mode: 0o755 });
    await writeFile(join(work, "bin/ignition-kargs-helper"), recorder(work, "kargs"), { mode: 0o755 });
    const configFile = join(work, "config.ign");
    await writeFile(configFile, config, { mode: 0o600 });

    const before = listTree(root);
    let log = "";
    for (const stage of STAGES) {
      const result = await runStage(stage, { work, root, configFile });
      log += result.output;
      if (result.code !== 0)
        throw new Error(`ignition -stage ${stage} exited ${result.code}:\n${result.output}`);
    }
    return {
      root,
      log,
      kargs: readNulList(join(work, "kargs.args")),
      relabeled: readNulList(join(work, "setfiles.stdin")),
      before,
      after: listTree(root),
      read: (path) => readFileSync(join(root, path), "utf8"),
      user(name) {
        const line = readFileSync(join(root, "etc/passwd"), "utf8")
          .split("\n")
          .find((l) => l.startsWith(`${name}:`));
        if (!line) return undefined;
        const [, , uid, gid, , home, shell] = line.split(":");
        return { name, uid: Number(uid), gid: Number(gid), home: home!, shell: shell! };
      },
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
