import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { CommandTimeoutError, policyBinder } from "../../src/core/signal-target.ts";
import { mapLimit } from "../../src/lib/concurrency.ts";
import { CancelledError, KubehyveError } from "../../src/lib/errors.ts";
import { LocalTarget, spawnCommand } from "../../src/targets/local.ts";
import { classifySshFailure, parseSshUrl, SshError, SshTarget } from "../../src/targets/ssh.ts";
import { runOk, TIMEOUT_EXIT } from "../../src/targets/target.ts";
import { have } from "../lab/prereq.ts";
import { loginOf, type Sshd, startSshd } from "../lab/sshd.ts";

const haveOpenSsh = have("sshd", "openssh-server") && have("ssh", "openssh-client");

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function targetFor(
  sshd: Sshd,
  stateDir: string,
  extra: Partial<ConstructorParameters<typeof SshTarget>[0]> = {},
) {
  const target = new SshTarget({ ...loginOf(sshd), stateDir, ...extra });
  cleanups.push(() => target.close());
  return target;
}

async function acceptedLogins(sshd: Sshd): Promise<number> {
  const log = await readFile(join(sshd.dir, "sshd.log"), "utf8");
  return log
    .split("\n")
    .filter((line) => line.startsWith(`Accepted publickey for ${sshd.user} from 127.0.0.1`)).length;
}

/** True while the process runs; a zombie (gone, not yet reaped by its new parent) counts as gone. */
function isRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

/** A loopback port nothing listens on: bound by us, then released. */
function closedPort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

describe.skipIf(!haveOpenSsh)("SshTarget against a real sshd", () => {
  let sshd: Sshd;
  let target: SshTarget;
  let stateDir: string;

  beforeAll(async () => {
    sshd = await startSshd({ env: { KUBEHYVE_SESSION_MARK: "set by sshd" } });
    cleanups.push(() => sshd.stop());
    stateDir = await tempDir("kubehyve-ssh-state-");
    target = targetFor(sshd, stateDir);
  });

  test("is named user@host:port unless a name is given", () => {
    expect(target.name).toBe(`${sshd.user}@127.0.0.1:${sshd.port}`);
    expect(targetFor(sshd, stateDir, { name: "core@cp1" }).name).toBe("core@cp1");
  });

  test("returns the remote exit code, stdout and stderr", async () => {
    const result = await target.run(["sh", "-c", "echo out; echo err >&2; exit 7"]);
    expect(result).toEqual({ code: 7, stdout: "out\n", stderr: "err\n" });
  });

  test("returns a remote command's own exit code 255 as a result, not as an ssh failure", async () => {
    const result = await target.run(["sh", "-c", "echo 'failed on purpose' >&2; exit 255"]);
    expect(result).toEqual({ code: 255, stdout: "", stderr: "failed on purpose\n" });
  });

  test("reports a remote command's death by a signal as 128 plus its number, as the local target does", async () => {
    // ssh itself exits 255 for a command that died by a signal (it passes on exit-status only):
    // the same as a connection lost, and not what the command did.
    expect((await target.run(["sh", "-c", "kill -KILL $$"])).code).toBe(128 + 9);
    expect((await target.run(["sh", "-c", "kill -TERM $$"])).code).toBe(128 + 15);
    expect((await target.run(["sh", "-c", "exit 3"])).code).toBe(3);
    // The shell in between runs the program, never a builtin of its name (dash's echo knows no -e).
    expect((await target.run(["echo", "-e", "a"])).stdout).toBe(
      (await new LocalTarget().run(["echo", "-e", "a"])).stdout,
    );
  });

  test("refuses a remote command line longer than an argument may be, naming its length", async () => {
    // Linux takes at most 128 KiB in one argument (MAX_ARG_STRLEN), and ssh sends the remote
    // command as one string, which the remote shell gets as one argument again.
    const long = "x".repeat(200_000);
    await expect(target.run(["printf", "%s", long])).rejects.toThrow(
      /the remote command line of `printf %s x+…` is \d+ bytes, more than the 131071 one argument may hold \(131072 with its final NUL\): pass large data on stdin/,
    );
  });

  test("runs the longest remote command line an argument holds, and refuses one byte more", async () => {
    // MAX_ARG_STRLEN counts the final NUL: 131071 bytes of command line is the most.
    const measure = await target.run(["printf", "%s", "x".repeat(200_000)]).catch((e: Error) => e.message);
    const overhead = Number(/ is (\d+) bytes/.exec(String(measure))![1]) - 200_000;
    const longest = "x".repeat(131_071 - overhead);
    // At the limit: it runs, so no message may call it too long.
    expect((await runOk(target, ["printf", "%s", longest])).stdout).toBe(longest);
    // One past it: the message must be true of the number it names.
    await expect(target.run(["printf", "%s", `${longest}x`])).rejects.toThrow(
      "is 131072 bytes, more than the 131071 one argument may hold (131072 with its final NUL)",
    );
  });

  test("runs in the session environment sshd sets", async () => {
    const result = await runOk(target, ["sh", "-c", 'echo "$KUBEHYVE_SESSION_MARK"']);
    expect(result.stdout).toBe("set by sshd\n");
  });

  test("feeds stdin to the remote command", async () => {
    const payload = "line one\nline 'two' $(x)\n";
    expect((await runOk(target, ["cat"], { stdin: payload })).stdout).toBe(payload);
    const bytes = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
    expect((await runOk(target, ["od", "-An", "-tx1"], { stdin: bytes })).stdout.trim()).toBe("de ad be ef");
  });

  test("sets env and the working directory on the remote side", async () => {
    const dir = await tempDir("kubehyve-ssh-cwd-");
    const result = await runOk(target, ["sh", "-c", 'printf "%s|%s" "$A_VAR" "$(pwd -P)"'], {
      env: { A_VAR: "a value" },
      cwd: dir,
    });
    expect(result.stdout).toBe(`a value|${dir}`);
  });

  test("removes a name set to undefined from the remote environment", async () => {
    const result = await runOk(
      target,
      ["sh", "-c", "printenv KUBEHYVE_SESSION_MARK || echo unset; printenv B_VAR"],
      {
        env: { KUBEHYVE_SESSION_MARK: undefined, B_VAR: "kept" },
      },
    );
    expect(result.stdout).toBe("unset\nkept\n");
  });

  test("streams remote output to the callbacks as it arrives", async () => {
    const go = join(await tempDir("kubehyve-ssh-stream-"), "go");
    const chunks: string[] = [];
    // The remote command goes on only once the callback has seen its first line (sshd runs on this
    // machine, so it sees the file the callback creates): without streaming it would time out.
    const script = `echo first; while [ ! -e "$1" ]; do sleep 0.02; done; echo second`;
    const result = await target.run(["sh", "-c", script, "sh", go], {
      timeoutMs: 10_000,
      onStdout: (chunk) => {
        chunks.push(chunk);
        if (chunk.includes("first")) writeFileSync(go, "");
      },
    });
    expect(result).toEqual({ code: 0, stdout: "first\nsecond\n", stderr: "" });
    expect(chunks.join("")).toBe("first\nsecond\n");
  });

  test("stops waiting at the timeout and reports code 124 naming the remote command", async () => {
    const started = Date.now();
    const result = await target.run(["sleep", "8"], { timeoutMs: 500 });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(result.code).toBe(TIMEOUT_EXIT);
    expect(result.stderr).toBe(`${target.name}: \`sleep 8\` timed out after 0.5s\n`);
  });

  test("a command past its timeout is ended on the remote side too, not left running there", async () => {
    const dir = await tempDir("kubehyve-ssh-remote-timeout-");
    const pidFile = join(dir, "pid");
    // The loopback sshd's side is this machine: the remote command's pid can be watched from here.
    const result = await target.run(["sh", "-c", `echo $$ > ${pidFile}; exec sleep 60`], { timeoutMs: 500 });
    expect(result.code).toBe(TIMEOUT_EXIT);
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    // The remote timeout(1) fires 10 s after the local limit (rounded up to a second).
    const gone = async () => {
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; await Bun.sleep(200)) {
        try {
          process.kill(pid, 0);
        } catch {
          return true;
        }
      }
      return false;
    };
    expect(await gone()).toBe(true);
  }, 45_000);

  test("gives ssh the state dir's known_hosts as the only record of trusted keys", async () => {
    // A state dir of its own: whether the key is pinned yet must not depend on the tests before.
    const fresh = await tempDir("kubehyve-ssh-trust-");
    const first = targetFor(sshd, fresh);
    const options = async () => {
      const args = await first.sshArgs();
      return args.flatMap((a, i) => (args[i - 1] === "-o" ? [a] : []));
    };
    expect(await options()).toContain(`UserKnownHostsFile=${join(fresh, "ssh", "known_hosts")}`);
    // Keys in /etc/ssh/ssh_known_hosts are the machine's opinion, not this cluster's.
    expect(await options()).toContain("GlobalKnownHostsFile=/dev/null");
    // Pinned on first contact; from then on the pinned key or nothing.
    expect(await options()).toContain("StrictHostKeyChecking=accept-new");
    await runOk(first, ["true"]);
    await first.close();
    expect(await targetFor(sshd, fresh).sshArgs()).toContain("StrictHostKeyChecking=yes");
    const options_ = await options();
    // Never a prompt for a password or a passphrase: doctor runs from cron with nobody to answer.
    expect(options_).toContain("BatchMode=yes");
  });

  test("an abort rejects with CancelledError and leaves the target usable", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    await expect(target.run(["sleep", "8"], { signal: controller.signal })).rejects.toBeInstanceOf(
      CancelledError,
    );
    expect((await runOk(target, ["echo", "still here"])).stdout).toBe("still here\n");
  });

  test("a command cancelled while the connection opens does not take the others down with it", async () => {
    const fresh = targetFor(sshd, await tempDir("kubehyve-ssh-cancel-"));
    // The first call opens the connection for both; it is cancelled long before that can finish.
    const cancelled = fresh.run(["echo", "a"], { signal: AbortSignal.timeout(20) });
    const other = fresh.run(["echo", "b"]);
    await expect(cancelled).rejects.toBeInstanceOf(CancelledError);
    expect((await other).stdout).toBe("b\n");
  });

  test("runs 20 commands, 10 at a time, over one ssh connection", async () => {
    const fresh = targetFor(sshd, await tempDir("kubehyve-ssh-mux-"));
    const before = await acceptedLogins(sshd);
    const results = await mapLimit(
      Array.from({ length: 20 }, (_, i) => i),
      10,
      (i) => runOk(fresh, ["echo", `command ${i}`]),
    );
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 20 }, (_, i) => `command ${i}\n`));
    expect((await acceptedLogins(sshd)) - before).toBe(1);
  });

  test("a second target object on the same state dir reuses the running connection", async () => {
    const dir = await tempDir("kubehyve-ssh-reuse-");
    await runOk(targetFor(sshd, dir), ["true"]);
    const before = await acceptedLogins(sshd);
    await runOk(targetFor(sshd, dir), ["true"]);
    expect(await acceptedLogins(sshd)).toBe(before);
  });

  test("close() ends the connection and can be called twice", async () => {
    const dir = await tempDir("kubehyve-ssh-close-");
    const closing = targetFor(sshd, dir);
    await runOk(closing, ["true"]);
    const args = await closing.sshArgs();
    const check = () => spawnCommand("test", [...args, "-O", "check", "--", `${sshd.user}@127.0.0.1`]);
    expect((await check()).code).toBe(0);
    await closing.close();
    await closing.close();
    expect((await check()).code).toBe(255);
    const before = await acceptedLogins(sshd);
    expect((await runOk(closing, ["echo", "again"])).stdout).toBe("again\n");
    expect(await acceptedLogins(sshd)).toBe(before + 1);
  });

  test("pins the host key on first contact in the state dir's known_hosts, in a 0700 dir", async () => {
    const dir = await tempDir("kubehyve-ssh-pin-");
    await runOk(targetFor(sshd, dir), ["true"]);
    const sshDir = join(dir, "ssh");
    expect((await stat(sshDir)).mode & 0o777).toBe(0o700);
    const knownHosts = await readFile(join(sshDir, "known_hosts"), "utf8");
    const [type, key] = sshd.hostPublicKey.split(" ");
    expect(knownHosts.trim()).toBe(`[127.0.0.1]:${sshd.port} ${type} ${key}`);
  });

  test("puts the control socket in the state dir, short enough for FreeBSD's 104-byte sun_path", async () => {
    const args = await target.sshArgs();
    const controlPath = args.find((a) => a.startsWith("ControlPath="))?.slice("ControlPath=".length) ?? "";
    expect(controlPath.startsWith(join(stateDir, "ssh", "cm-"))).toBe(true);
    expect(Buffer.byteLength(controlPath) + 17).toBeLessThan(104);
  });

  test("moves the control socket to a private /tmp dir when the state dir is too deep for a socket", async () => {
    const deep = join(await tempDir("kubehyve-ssh-deep-"), "a-rather-long-cluster-directory-name".repeat(3));
    await mkdir(deep, { recursive: true });
    const deepTarget = targetFor(sshd, deep);
    expect((await runOk(deepTarget, ["echo", "deep"])).stdout).toBe("deep\n");
    const args = await deepTarget.sshArgs();
    const controlPath = args.find((a) => a.startsWith("ControlPath="))?.slice("ControlPath=".length) ?? "";
    expect(Buffer.byteLength(controlPath) + 17).toBeLessThan(104);
    const socketDir = await stat(join(controlPath, ".."));
    expect(socketDir.mode & 0o777).toBe(0o700);
    // known_hosts stays with the cluster even when the socket cannot.
    expect(await Bun.file(join(deep, "ssh", "known_hosts")).exists()).toBe(true);
  });

  test("refuses a /tmp socket dir that others can write, or that is a link, rather than put its socket there", async () => {
    const deep = join(await tempDir("kubehyve-ssh-deep-"), "a-rather-long-cluster-directory-name".repeat(3));
    await mkdir(deep, { recursive: true });
    // Another user of the machine made the socket dir first (a shared /tmp is everyone's to write in).
    const tmp = await tempDir("kubehyve-ssh-tmp-");
    const socketDir = join(tmp, `kubehyve-${process.getuid!()}`);
    const elsewhere = await tempDir("kubehyve-ssh-elsewhere-");
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      await mkdir(socketDir);
      await chmod(socketDir, 0o777);
      const open = await targetFor(sshd, deep)
        .sshArgs()
        .catch((e: Error) => e);
      expect(open).toBeInstanceOf(KubehyveError);
      expect((open as Error).message).toContain(
        `${socketDir} must be a directory owned by uid ${process.getuid!()} with mode 0700 (it holds ssh control sockets)`,
      );

      await rm(socketDir, { recursive: true });
      await symlink(elsewhere, socketDir);
      const linked = await targetFor(sshd, deep)
        .sshArgs()
        .catch((e: Error) => e);
      expect(linked).toBeInstanceOf(KubehyveError);
      expect((linked as Error).message).toContain(`${socketDir} must be a directory owned by uid`);
      expect(await readdir(elsewhere)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });

  test("a key that is not authorized is refused with a clear error naming the key", async () => {
    const dir = await tempDir("kubehyve-ssh-auth-");
    const otherKey = join(dir, "other_key");
    await runOk(new LocalTarget(), ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherKey]);
    const error = await targetFor(sshd, dir, { identityFile: otherKey })
      .run(["true"])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SshError);
    expect((error as SshError).kind).toBe("auth-failed");
    expect((error as SshError).message).toContain("refused the login: ");
    expect((error as SshError).message).toContain("Permission denied (publickey)");
    expect((error as SshError).hint).toBe(`authorize ${otherKey}.pub for ${sshd.user} on 127.0.0.1`);
  });

  test("refuses extraOptions that would undo the pinned ones", () => {
    expect(
      () =>
        new SshTarget({
          user: "root",
          host: "127.0.0.1",
          stateDir,
          extraOptions: { StrictHostKeyChecking: "no" },
        }),
    ).toThrow("extraOptions cannot set StrictHostKeyChecking");
  });

  test.each([
    // Keys trusted, or looked up, other than by the pin of this host in the state dir.
    "HostKeyAlias",
    "KnownHostsCommand",
    "UpdateHostKeys",
    "VerifyHostKeyDNS",
    "CheckHostIP",
    // Local commands, agent forwarding, and a session unlike the one every command expects.
    "LocalCommand",
    "PermitLocalCommand",
    "ForwardAgent",
    "RemoteCommand",
    "RequestTTY",
    "SessionType",
  ])("refuses extraOptions %s, which would undo what the target depends on", (option) => {
    expect(
      () => new SshTarget({ user: "root", host: "127.0.0.1", stateDir, extraOptions: { [option]: "yes" } }),
    ).toThrow(`extraOptions cannot set ${option}`);
  });

  test("refuses a host that ssh could read as an option", () => {
    expect(() => new SshTarget({ user: "root", host: "-oProxyCommand=id", stateDir })).toThrow(
      '"-oProxyCommand=id" is not a host name or IP address',
    );
  });
});

describe.skipIf(!haveOpenSsh)("SshTarget against hostile paths and settings", () => {
  let sshd: Sshd;
  beforeAll(async () => {
    sshd = await startSshd();
    cleanups.push(() => sshd.stop());
  });

  test("reads no ssh_config: neither the user's ~/.ssh/config nor the system's", async () => {
    expect(have("strace", "strace")).toBe(true);
    const dir = await tempDir("kubehyve-ssh-config-");
    const target = targetFor(sshd, dir);
    // The master is up first: the traced client is then a short-lived one that strace can outlast.
    await runOk(target, ["true"]);
    const trace = join(dir, "trace");
    // ssh reads ~/.ssh/config from the passwd entry's home, not from $HOME: writing one would change
    // every other ssh client of this machine, so the test watches which files ssh opens instead.
    const result = await spawnCommand(
      "test",
      [
        "strace",
        "-f",
        "-e",
        "trace=open,openat",
        "-o",
        trace,
        ...(await target.sshArgs()),
        "--",
        `${sshd.user}@127.0.0.1`,
        "echo ran",
      ],
      { timeoutMs: 30_000 },
    );
    expect(result.stdout).toBe("ran\n");
    const opened = (await readFile(trace, "utf8"))
      .split("\n")
      .filter((line) => /ssh_config|\/\.ssh\/config"/.test(line));
    expect(opened).toEqual([]);
  });

  test("a state dir with spaces, quotes and % in its path keeps known_hosts and the socket inside it", async () => {
    const parent = await tempDir("kubehyve-ssh-odd-");
    const odd = join(parent, 'a "b" %h');
    await mkdir(odd);
    const key = join(odd, "key %d");
    await copyFile(sshd.identityFile, key);
    await chmod(key, 0o600);
    const target = targetFor(sshd, odd, { identityFile: key });
    expect((await runOk(target, ["echo", "odd"])).stdout).toBe("odd\n");
    const [type, hostKey] = sshd.hostPublicKey.split(" ");
    expect((await readFile(join(odd, "ssh", "known_hosts"), "utf8")).trim()).toBe(
      `[127.0.0.1]:${sshd.port} ${type} ${hostKey}`,
    );
    // Nothing landed next to the state dir (a path cut at a space, or % expanded).
    expect((await readdir(parent)).sort()).toEqual([basename(odd)]);
    const socket = (await readdir(join(odd, "ssh"))).find((name) => name.startsWith("cm-"));
    expect(socket).toBeDefined();
    // The second command goes through the master on that socket.
    const before = await acceptedLogins(sshd);
    expect((await runOk(target, ["echo", "again"])).stdout).toBe("again\n");
    expect(await acceptedLogins(sshd)).toBe(before);
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: ssh's own ${VARIABLE} syntax, on purpose
  test("refuses a state dir whose path ssh would expand as ${VARIABLE}, naming it", async () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: ssh's own ${VARIABLE} syntax, on purpose
    const odd = join(await tempDir("kubehyve-ssh-dollar-"), "${HOME}");
    // Before any command: nothing is contacted with a known_hosts file ssh would look for elsewhere.
    expect(() => new SshTarget({ ...loginOf(sshd), stateDir: odd })).toThrow(
      `${join(odd, "ssh", "known_hosts")}: ssh would read "\${" in it as a variable`,
    );
  });

  test("refuses a state dir with a line break in its path, before any command", () => {
    expect(() => new SshTarget({ ...loginOf(sshd), stateDir: "/tmp/kubehyve-lab\nUser=x" })).toThrow(
      "/tmp/kubehyve-lab\nUser=x/ssh/known_hosts: a path with a control character is not handed to ssh",
    );
  });

  test("close() on one target lets a command another process runs over the same connection finish", async () => {
    // Two kubehyve processes on one state dir (doctor beside up) share the master: the one that
    // leaves first must not cut the other's commands off.
    const dir = await tempDir("kubehyve-ssh-shared-");
    const mine = targetFor(sshd, dir);
    const theirs = targetFor(sshd, dir);
    await runOk(theirs, ["true"]);
    await runOk(mine, ["true"]);
    const check = await spawnCommand("test", [
      ...(await theirs.sshArgs()),
      "-O",
      "check",
      "--",
      `${sshd.user}@127.0.0.1`,
    ]);
    const masterPid = Number(/pid=(\d+)/.exec(check.stderr)?.[1]);
    expect(masterPid).toBeGreaterThan(0);
    const running = theirs.run(["sh", "-c", "sleep 2; echo finished"], { timeoutMs: 30_000 });
    await Bun.sleep(500);
    await mine.close();
    expect(await running).toEqual({ code: 0, stdout: "finished\n", stderr: "" });
    // The master leaves once that command is done: nothing of ours runs on after close().
    const deadline = Date.now() + 20_000;
    while (isRunning(masterPid) && Date.now() < deadline) await Bun.sleep(100);
    expect(isRunning(masterPid)).toBe(false);
    // And the next command opens a connection anew.
    expect((await runOk(theirs, ["echo", "new"])).stdout).toBe("new\n");
  }, 60_000);
});

describe.skipIf(!haveOpenSsh)("SshTarget when the host key changes", () => {
  test("refuses a rotated host key with an error naming known_hosts and the ssh-keygen -R command", async () => {
    const sshd = await startSshd();
    cleanups.push(() => sshd.stop());
    const stateDir = await tempDir("kubehyve-ssh-rotate-");
    const first = targetFor(sshd, stateDir);
    await runOk(first, ["true"]);
    await first.close();

    await sshd.rotateHostKey();
    const knownHosts = join(stateDir, "ssh", "known_hosts");
    const error = await targetFor(sshd, stateDir)
      .run(["touch", "/nonexistent/never-run"])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SshError);
    const sshError = error as SshError;
    expect(sshError.kind).toBe("host-key-changed");
    expect(sshError.message).toContain(`differs from the one pinned in ${knownHosts}`);
    expect(sshError.hint).toBe(
      `if the machine was reinstalled, forget the old key: ssh-keygen -f ${knownHosts} -R '[127.0.0.1]:${sshd.port}'`,
    );
    expect(sshError.stderr).toContain("REMOTE HOST IDENTIFICATION HAS CHANGED");

    // The hint works: after forgetting the old key, the new one is pinned on the next contact.
    await runOk(new LocalTarget(), ["ssh-keygen", "-f", knownHosts, "-R", `[127.0.0.1]:${sshd.port}`]);
    expect((await runOk(targetFor(sshd, stateDir), ["echo", "trusted again"])).stdout).toBe(
      "trusted again\n",
    );
    const [type, key] = sshd.hostPublicKey.split(" ");
    expect((await readFile(knownHosts, "utf8")).trim()).toBe(`[127.0.0.1]:${sshd.port} ${type} ${key}`);
  });
});

describe.skipIf(!haveOpenSsh)("SshTarget when its machine is made anew", () => {
  test("forgetHostKey forgets that machine's pins alone, on any port, and the next contact pins the new key", async () => {
    const sshd = await startSshd();
    cleanups.push(() => sshd.stop());
    const stateDir = await tempDir("kubehyve-ssh-anew-");
    const target = targetFor(sshd, stateDir);
    await runOk(target, ["true"]);
    const knownHosts = join(stateDir, "ssh", "known_hosts");
    const [type, oldKey] = sshd.hostPublicKey.split(" ");
    // Other machines' pins, and lines an operator wrote for several machines, are no business of it.
    const others = [
      `127.0.0.2 ${type} ${oldKey}`,
      `[127.0.0.2]:${sshd.port} ${type} ${oldKey}`,
      `a.example,b.example ${type} ${oldKey}`,
      `@revoked [127.0.0.1]:22 ${type} ${oldKey}`,
    ];
    // The same machine reached on another port (Ansible's): its key is the old machine's too.
    const otherPort = `[127.0.0.1]:2222 ${type} ${oldKey}`;
    await writeFile(knownHosts, `${others.join("\n")}\n${otherPort}\n${await readFile(knownHosts, "utf8")}`, {
      mode: 0o600,
    });

    await sshd.rotateHostKey();
    await target.forgetHostKey();
    expect((await runOk(target, ["echo", "the new machine"])).stdout).toBe("the new machine\n");
    const [, newKey] = sshd.hostPublicKey.split(" ");
    expect(newKey).not.toBe(oldKey);
    expect((await readFile(knownHosts, "utf8")).trim().split("\n")).toEqual([
      ...others,
      `[127.0.0.1]:${sshd.port} ${type} ${newKey}`,
    ]);
    expect((await stat(knownHosts)).mode & 0o777).toBe(0o600);
  });
});

describe.skipIf(!haveOpenSsh)("SshTarget when processes misbehave", () => {
  let sshd: Sshd;
  beforeAll(async () => {
    sshd = await startSshd();
    cleanups.push(() => sshd.stop());
  });

  async function masterPid(target: SshTarget): Promise<number> {
    const check = await spawnCommand("test", [
      ...(await target.sshArgs()),
      "-O",
      "check",
      "--",
      `${sshd.user}@127.0.0.1`,
    ]);
    return Number(/pid=(\d+)/.exec(check.stderr)?.[1]);
  }

  test("a background process that keeps the command's output open holds it to its timeout, and the timeout says so", async () => {
    const target = targetFor(sshd, await tempDir("kubehyve-ssh-background-"));
    // sshd closes the channel only once every holder of the command's stdout and stderr has closed
    // them (session.c): `cmd &` in the command keeps it open after the command itself exited.
    const held = await target.run(["sh", "-c", "sleep 30 & echo started"], { timeoutMs: 2000 });
    expect(held).toMatchObject({ code: TIMEOUT_EXIT, timedOut: true, stdout: "started\n" });
    expect(held.timeoutNote).toContain("a background process the command started");
    // Its output sent elsewhere, the same background process lets the command end when it ends.
    const started = Date.now();
    const freed = await target.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo started"], {
      timeoutMs: 20_000,
    });
    expect(freed).toEqual({ code: 0, stdout: "started\n", stderr: "" });
    expect(Date.now() - started).toBeLessThan(15_000);
    // Past a default limit, the phase's error carries the note in its hint.
    const bound = policyBinder({
      signal: new AbortController().signal,
      timeouts: { read: 2000, change: 60_000, long: 60_000 },
    })(target);
    const error = await bound.run(["sh", "-c", "sleep 30 & echo started"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandTimeoutError);
    expect((error as CommandTimeoutError).hint).toContain(
      "over ssh, a command runs until every process holding its stdout or stderr has closed them",
    );
  }, 60_000);

  test("a master killed outright leaves its socket behind, and the next command connects anew", async () => {
    const dir = await tempDir("kubehyve-ssh-stale-");
    const first = targetFor(sshd, dir);
    await runOk(first, ["true"]);
    const pid = await masterPid(first);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, "SIGKILL");
    const deadline = Date.now() + 10_000;
    while (isRunning(pid) && Date.now() < deadline) await Bun.sleep(50);
    const socket = (await readdir(join(dir, "ssh"))).filter((name) => name.startsWith("cm-"));
    expect(socket).toHaveLength(1);
    // A new run (a new target object) on the same state dir finds the dead socket.
    const before = await acceptedLogins(sshd);
    expect((await runOk(targetFor(sshd, dir), ["echo", "after"])).stdout).toBe("after\n");
    expect(await acceptedLogins(sshd)).toBe(before + 1);
  });

  test("two processes opening the first connection of one state dir at once both run, then share one", async () => {
    const dir = await tempDir("kubehyve-ssh-race-");
    const [a, b] = [targetFor(sshd, dir), targetFor(sshd, dir)];
    const results = await Promise.all([a, b].map((t, i) => t.run(["echo", `from ${i}`])));
    expect(results).toEqual([
      { code: 0, stdout: "from 0\n", stderr: "" },
      { code: 0, stdout: "from 1\n", stderr: "" },
    ]);
    // The one that lost the race to bind the socket ran over a connection of its own; from then
    // on both go through the same master.
    expect(await masterPid(a)).toBe(await masterPid(b));
    const before = await acceptedLogins(sshd);
    await Promise.all([a, b].map((t) => runOk(t, ["true"])));
    expect(await acceptedLogins(sshd)).toBe(before);
  });

  test("a remote command that reads stdin gets its end at once when none is given", async () => {
    const target = targetFor(sshd, await tempDir("kubehyve-ssh-stdin-"));
    expect(await target.run(["cat"], { timeoutMs: 20_000 })).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  test("a remote command that ignores SIGTERM is still ended on the remote side after its timeout", async () => {
    const dir = await tempDir("kubehyve-ssh-term-");
    const target = targetFor(sshd, dir);
    const pidFile = join(dir, "pid");
    const result = await target.run(
      ["sh", "-c", `trap '' TERM; echo $$ > "$1"; while :; do sleep 1; done`, "sh", pidFile],
      { timeoutMs: 1000 },
    );
    expect(result.code).toBe(TIMEOUT_EXIT);
    // sshd runs on this machine, so the remote process is one of ours to watch: timeout(1) sends
    // SIGTERM 10 s past the local limit and SIGKILL 5 s after that.
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    expect(isRunning(pid)).toBe(true);
    const deadline = Date.now() + 45_000;
    while (isRunning(pid) && Date.now() < deadline) await Bun.sleep(200);
    expect(isRunning(pid)).toBe(false);
  }, 60_000);

  test("no prompt can hold a command: a key with a passphrase fails at once, askpass or not", async () => {
    const dir = await tempDir("kubehyve-ssh-askpass-");
    const key = join(dir, "locked");
    await runOk(new LocalTarget(), ["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", key]);
    await writeFile(join(sshd.dir, "authorized_keys"), `\n${await readFile(`${key}.pub`, "utf8")}`, {
      flag: "a",
    });
    const askpass = join(dir, "askpass");
    await writeFile(askpass, `#!/bin/sh\ntouch "${dir}/asked"\necho 'a passphrase'\n`, { mode: 0o755 });
    const saved = { ...process.env };
    Object.assign(process.env, { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: ":0" });
    try {
      const error = await targetFor(sshd, dir, { identityFile: key })
        .run(["true"])
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SshError);
      expect((error as SshError).kind).toBe("auth-failed");
    } finally {
      for (const name of ["SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY"]) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
    expect(await Bun.file(join(dir, "asked")).exists()).toBe(false);
  });
});

describe.skipIf(!haveOpenSsh)("SshTarget when the shared connection has no session left", () => {
  test("a command ssh runs over a connection of its own is reported as it ran, without ssh's words", async () => {
    // sshd takes one session per connection here: while one target's command holds it, another
    // process's command on the same state dir is refused by the master, and ssh runs it over a
    // new connection instead, saying so on stderr first.
    const sshd = await startSshd({ maxSessions: 1 });
    cleanups.push(() => sshd.stop());
    const dir = await tempDir("kubehyve-ssh-full-");
    const [busy, other] = [targetFor(sshd, dir), targetFor(sshd, dir)];
    await runOk(busy, ["true"]);
    await runOk(other, ["true"]);
    const holding = busy.run(["sleep", "3"], { timeoutMs: 30_000 });
    await Bun.sleep(500);
    const streamed: string[] = [];
    const before = await acceptedLogins(sshd);
    const result = await other.run(["sh", "-c", "echo ran >&2; exit 255"], {
      timeoutMs: 30_000,
      onStderr: (chunk) => streamed.push(chunk),
    });
    // It ran (and exited 255 on its own): not "ssh failed before running".
    expect(result).toEqual({ code: 255, stdout: "", stderr: "ran\n" });
    expect(streamed.join("")).toBe("ran\n");
    expect((await acceptedLogins(sshd)) - before).toBe(1);
    expect((await holding).code).toBe(0);
  });
});

describe.skipIf(!haveOpenSsh)("SshTarget and a damaged or foreign known_hosts", () => {
  let sshd: Sshd;
  beforeAll(async () => {
    sshd = await startSshd();
    cleanups.push(() => sshd.stop());
  });

  /** A state dir whose known_hosts holds `content`, made the way kubehyve makes the dir. */
  async function stateWith(content: string): Promise<{ dir: string; knownHosts: string }> {
    const dir = await tempDir("kubehyve-ssh-kh-");
    await mkdir(join(dir, "ssh"), { mode: 0o700 });
    const knownHosts = join(dir, "ssh", "known_hosts");
    await writeFile(knownHosts, content, { mode: 0o600 });
    return { dir, knownHosts };
  }

  test("a key of another type than the pinned one is refused, not pinned beside it", async () => {
    // Any ECDSA key: the server has only its ed25519 one.
    const other = (
      await runOk(new LocalTarget(), [
        "sh",
        "-c",
        `ssh-keygen -q -t ecdsa -N '' -f "$1" && cat "$1.pub"`,
        "sh",
        join(await tempDir("kubehyve-ssh-ecdsa-"), "k"),
      ])
    ).stdout.split(" ");
    const pinned = `[127.0.0.1]:${sshd.port} ${other[0]} ${other[1]}\n`;
    const { dir, knownHosts } = await stateWith(pinned);
    const error = await targetFor(sshd, dir)
      .run(["true"])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SshError);
    expect((error as SshError).kind).toBe("host-key-changed");
    expect(await readFile(knownHosts, "utf8")).toBe(pinned);
  });

  test("a pinned entry cut short refuses the machine's key rather than pinning it anew", async () => {
    // A disk that filled up while the entry was written: the line names the machine, its key is cut.
    const [type, key] = sshd.hostPublicKey.split(" ");
    const cut = `[127.0.0.1]:${sshd.port} ${type} ${key?.slice(0, 30)}`;
    const { dir, knownHosts } = await stateWith(cut);
    const error = await targetFor(sshd, dir)
      .run(["touch", "/nonexistent/never-run"])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SshError);
    expect((error as SshError).kind).toBe("host-key-changed");
    expect(await readFile(knownHosts, "utf8")).toBe(cut);
  });

  test("a new machine's key goes on a line of its own after another machine's line cut short", async () => {
    const { dir, knownHosts } = await stateWith("[10.0.0.9]:22 ssh-ed25519 AAAAC3NzaC1lZDI1");
    expect((await runOk(targetFor(sshd, dir), ["echo", "pinned"])).stdout).toBe("pinned\n");
    const [type, key] = sshd.hostPublicKey.split(" ");
    expect((await readFile(knownHosts, "utf8")).split("\n")).toEqual([
      "[10.0.0.9]:22 ssh-ed25519 AAAAC3NzaC1lZDI1",
      `[127.0.0.1]:${sshd.port} ${type} ${key}`,
      "",
    ]);
  });

  test("a known_hosts that is a symbolic link is refused, and nothing is pinned through it", async () => {
    const { dir, knownHosts } = await stateWith("");
    const elsewhere = join(await tempDir("kubehyve-ssh-elsewhere-"), "known_hosts");
    await writeFile(elsewhere, "", { mode: 0o600 });
    await rm(knownHosts);
    await symlink(elsewhere, knownHosts);
    const error = await targetFor(sshd, dir)
      .run(["true"])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubehyveError);
    expect((error as KubehyveError).message).toContain(`${knownHosts} is a symbolic link`);
    expect(await readFile(elsewhere, "utf8")).toBe("");
  });

  test("a known_hosts others can write is refused", async () => {
    const { dir, knownHosts } = await stateWith("");
    await chmod(knownHosts, 0o666);
    const error = await targetFor(sshd, dir)
      .run(["true"])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubehyveError);
    expect((error as KubehyveError).message).toContain(`${knownHosts} is writable by group or others`);
  });
});

describe.skipIf(!haveOpenSsh)("SshTarget when the host cannot be reached", () => {
  test("a closed port gives a clear error naming the host and port", async () => {
    const port = closedPort();
    const target = new SshTarget({
      user: "root",
      host: "127.0.0.1",
      port,
      stateDir: await tempDir("kubehyve-ssh-down-"),
    });
    const error = await target.run(["true"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SshError);
    expect((error as SshError).kind).toBe("unreachable");
    expect((error as SshError).message).toBe(
      `root@127.0.0.1:${port}: cannot reach root@127.0.0.1 port ${port}: connect to host 127.0.0.1 port ${port}: Connection refused`,
    );
    expect((error as SshError).hint).toBe(
      `check that the machine is up and sshd listens: nc -z 127.0.0.1 ${port}`,
    );
    await target.close();
  });

  test("a server that accepts and never speaks is given up on after connectTimeoutSec", async () => {
    // A TCP listener that takes the connection and says nothing: no SSH banner ever comes.
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const target = new SshTarget({
        user: "root",
        host: "127.0.0.1",
        port: silent.port,
        stateDir: await tempDir("kubehyve-ssh-silent-"),
        connectTimeoutSec: 2,
      });
      const started = Date.now();
      const error = await target.run(["true"], { timeoutMs: 60_000 }).catch((e: unknown) => e);
      // ssh applies ConnectTimeout to the banner exchange too (ssh_config(5)); the master's own
      // limit, connectTimeoutSec + 20 s, would come much later.
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(error).toBeInstanceOf(SshError);
      await target.close();
    } finally {
      silent.stop(true);
    }
  }, 45_000);

  test("a connection lost while a command runs is named so, not taken for the command exiting 255", async () => {
    const sshd = await startSshd();
    const target = targetFor(sshd, await tempDir("kubehyve-ssh-lost-"));
    // A remote command's own 255 stays a result.
    expect((await target.run(["sh", "-c", "exit 255"])).code).toBe(255);
    const running = target.run(["sleep", "5"]).catch((e: unknown) => e);
    await Bun.sleep(500);
    // The machine goes away: sshd and the sessions it serves end, as on a reboot.
    await sshd.stop();
    const error = await running;
    expect(error).toBeInstanceOf(SshError);
    expect((error as SshError).kind).toBe("unreachable");
    expect((error as SshError).message).toBe(
      `${sshd.user}@127.0.0.1:${sshd.port}: the connection to ${sshd.user}@127.0.0.1 port ${sshd.port} was lost while \`sleep 5\` ran: whether it finished is not known`,
    );
    expect((error as SshError).hint).toBe(
      `check that the machine is up and sshd listens (nc -z 127.0.0.1 ${sshd.port}), then run again`,
    );
  });

  test("a name that does not resolve gives a clear error", async () => {
    const target = new SshTarget({
      user: "core",
      host: "cp1.invalid",
      stateDir: await tempDir("kubehyve-ssh-dns-"),
    });
    const error = await target.run(["true"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SshError);
    expect((error as SshError).kind).toBe("unreachable");
    expect((error as SshError).message).toStartWith(
      "core@cp1.invalid: cannot reach core@cp1.invalid port 22: ",
    );
    expect((error as SshError).message).toContain("Could not resolve hostname cp1.invalid");
  });
});

/**
 * ssh's own messages, as OpenSSH 9.2 (Debian 12) prints them with LogLevel=ERROR, captured verbatim
 * from the ssh client; their text comes from sshconnect.c (host keys), sshconnect2.c (authentication)
 * and ssh.c / misc.c (connecting). The \r\n line ends are ssh's own.
 */
const SAMPLES = {
  hostKeyChanged:
    '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\nIT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\nSomeone could be eavesdropping on you right now (man-in-the-middle attack)!\r\nIt is also possible that a host key has just been changed.\r\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:9mXtdSQ2cmFPaMEjm/MOrj317cDh+JCtl6oj9B6XgA8.\r\nPlease contact your system administrator.\r\nAdd correct host key in /tmp/kubehyve-sshd-IS3lf5/kh to get rid of this message.\r\nOffending ED25519 key in /tmp/kubehyve-sshd-IS3lf5/kh:1\r\n  remove with:\r\n  ssh-keygen -f "/tmp/kubehyve-sshd-IS3lf5/kh" -R "[127.0.0.1]:39863"\r\nHost key for [127.0.0.1]:39863 has changed and you have requested strict checking.\r\nHost key verification failed.\r\n',
  badKeyPermissions:
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\r\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\nPermissions 0666 for '/dev/null' are too open.\r\nIt is required that your private key files are NOT accessible by others.\r\nThis private key will be ignored.\r\nLoad key \"/dev/null\": bad permissions\r\nroot@127.0.0.1: Permission denied (publickey).\r\n",
  refused: "ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n",
  unresolved: "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known\r\n",
};

describe("classifySshFailure", () => {
  test("recognizes a changed host key", () => {
    expect(classifySshFailure(SAMPLES.hostKeyChanged)).toBe("host-key-changed");
  });

  test("recognizes a refused login, also when the key file was ignored", () => {
    expect(classifySshFailure(SAMPLES.badKeyPermissions)).toBe("auth-failed");
  });

  test("recognizes a host that cannot be reached or resolved", () => {
    expect(classifySshFailure(SAMPLES.refused)).toBe("unreachable");
    expect(classifySshFailure(SAMPLES.unresolved)).toBe("unreachable");
  });

  test("leaves the stderr of a remote command that exited 255 to the caller", () => {
    expect(classifySshFailure("")).toBeUndefined();
    expect(classifySshFailure("error: something remote went wrong\n")).toBeUndefined();
    expect(classifySshFailure("ls: cannot open directory '/root': Permission denied\n")).toBeUndefined();
    expect(
      classifySshFailure(
        "curl: (7) Failed to connect to 127.0.0.1 port 6443 after 0 ms: Connection refused\n",
      ),
    ).toBeUndefined();
  });
});

describe("parseSshUrl", () => {
  test("reads user, host and port", () => {
    expect(parseSshUrl("ssh://admin@hv1.lab.home.arpa:2222")).toEqual({
      user: "admin",
      host: "hv1.lab.home.arpa",
      port: 2222,
    });
  });

  test("defaults the user to root and the port to 22", () => {
    expect(parseSshUrl("ssh://192.168.1.10")).toEqual({ user: "root", host: "192.168.1.10", port: 22 });
    expect(parseSshUrl("ssh://root@hv1/")).toEqual({ user: "root", host: "hv1", port: 22 });
  });

  test("reads an IPv6 address in brackets", () => {
    expect(parseSshUrl("ssh://root@[fd00::10]:22")).toEqual({ user: "root", host: "fd00::10", port: 22 });
  });

  test.each([
    ["root@hv1", "it must start with ssh://"],
    ["http://root@hv1", "it must start with ssh://"],
    ["ssh://root@hv1:0", 'the port "0" is not a number between 1 and 65535'],
    ["ssh://root@hv1:65536", 'the port "65536" is not a number between 1 and 65535'],
    ["ssh://root@hv1:ssh", 'the port "ssh" is not a number between 1 and 65535'],
    ["ssh://root:secret@hv1", "a password does not belong in it"],
    ["ssh://root@", "the host is missing"],
    ["ssh://root@-oProxyCommand=x", '"-oProxyCommand=x" is not a host name or IP address'],
    ["ssh://root@hv1/some/path", "it may hold only a user, a host and a port"],
    ["ssh://root@hv1?x=1", "it may hold only a user, a host and a port"],
    ["ssh://ro ot@hv1", '"ro ot" is not a user name'],
    ["ssh://root@[not-ipv6]", '"not-ipv6" is not a host name or IP address'],
  ])("rejects %p: %s", (url, why) => {
    expect(() => parseSshUrl(url)).toThrow(`${JSON.stringify(url)} is not a valid ssh URL: ${why}`);
  });
});
