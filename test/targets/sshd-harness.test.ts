/**
 * The loopback sshd that other tests log in to: what they rely on (session environment, stop,
 * host key rotation on the same port) is checked here with the plain OpenSSH client.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { LocalTarget } from "../../src/targets/local.ts";
import type { RunResult } from "../../src/targets/target.ts";
import { have } from "../lab/prereq.ts";
import { type Sshd, startSshd } from "../lab/sshd.ts";

const local = new LocalTarget();
const started: Sshd[] = [];
afterAll(async () => {
  for (const sshd of started) await sshd.stop().catch(() => {});
});

async function start(opts?: Parameters<typeof startSshd>[0]): Promise<Sshd> {
  const sshd = await startSshd(opts);
  started.push(sshd);
  return sshd;
}

/** The OpenSSH client with nothing but the harness's own files: no state shared with other tests. */
function ssh(sshd: Sshd, knownHosts: string, command: string): Promise<RunResult> {
  return local.run(
    [
      "ssh",
      "-T",
      "-F",
      "/dev/null",
      "-o",
      "BatchMode=yes",
      "-o",
      `UserKnownHostsFile=${knownHosts}`,
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      "IdentitiesOnly=yes",
      "-i",
      sshd.identityFile,
      "-p",
      String(sshd.port),
      `${sshd.user}@${sshd.host}`,
      command,
    ],
    { timeoutMs: 20_000 },
  );
}

async function pinHostKey(sshd: Sshd): Promise<string> {
  const knownHosts = join(sshd.dir, `known_hosts-${Date.now()}`);
  await Bun.write(knownHosts, `[${sshd.host}]:${sshd.port} ${sshd.hostPublicKey}\n`);
  return knownHosts;
}

describe.skipIf(!have("sshd", "openssh-server") || !have("ssh", "openssh-client"))("startSshd", () => {
  test("logs the user in with the generated key against the announced host key", async () => {
    const sshd = await start();
    expect(sshd.host).toBe("127.0.0.1");
    expect(sshd.hostPublicKey).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+ \S+$/);
    const result = await ssh(sshd, await pinHostKey(sshd), "id -un");
    expect(result).toEqual({ code: 0, stdout: `${sshd.user}\n`, stderr: "" });
    const log = await readFile(join(sshd.dir, "sshd.log"), "utf8");
    expect(log).toContain(`Accepted publickey for ${sshd.user} from 127.0.0.1`);
  });

  test("gives every session the variables passed as env, PATH included, untouched by dotfiles", async () => {
    const path = "/opt/kubehyve-shims:/usr/local/bin:/usr/bin:/bin";
    const sshd = await start({ env: { KUBEHYVE_A: "first value", PATH: path } });
    const result = await ssh(sshd, await pinHostKey(sshd), 'printf "%s|%s|%s" "$KUBEHYVE_A" "$PATH" "$HOME"');
    expect(result.stdout).toBe(`first value|${path}|${join(sshd.dir, "home")}`);
  });

  test("lets env choose HOME", async () => {
    const sshd = await start({ env: { HOME: "/tmp" } });
    expect((await ssh(sshd, await pinHostKey(sshd), "echo $HOME")).stdout).toBe("/tmp\n");
  });

  test("refuses an env value that sshd_config cannot carry", async () => {
    await expect(startSshd({ env: { BAD: 'has "quotes"' } })).rejects.toThrow(
      "the value of BAD cannot contain quotes, backslashes or newlines",
    );
  });

  test("refuses a user that does not exist", async () => {
    await expect(startSshd({ user: "kubehyve-no-such-user" })).rejects.toThrow(
      "user kubehyve-no-such-user does not exist on this machine",
    );
  });

  test("rotateHostKey serves a new host key on the same port", async () => {
    const sshd = await start();
    const port = sshd.port;
    const oldKey = sshd.hostPublicKey;
    const oldKnownHosts = await pinHostKey(sshd);
    await sshd.rotateHostKey();
    expect(sshd.port).toBe(port);
    expect(sshd.hostPublicKey).not.toBe(oldKey);
    const refused = await ssh(sshd, oldKnownHosts, "true");
    expect(refused.code).toBe(255);
    expect(refused.stderr).toContain("REMOTE HOST IDENTIFICATION HAS CHANGED");
    expect((await ssh(sshd, await pinHostKey(sshd), "echo ok")).stdout).toBe("ok\n");
  });

  test("stop ends sshd, its open connections and its temp dir", async () => {
    const sshd = await startSshd();
    const knownHosts = await pinHostKey(sshd);
    // A session still running when stop() is called must not keep the test waiting.
    const running = ssh(sshd, knownHosts, "sleep 30");
    await Bun.sleep(500);
    const stopping = Date.now();
    await sshd.stop();
    const result = await running;
    expect(Date.now() - stopping).toBeLessThan(5000);
    expect(result.code).not.toBe(0);
    expect(await Bun.file(sshd.identityFile).exists()).toBe(false);
    const again = await local.run(
      ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-p", String(sshd.port), "x@127.0.0.1", "true"],
      {
        timeoutMs: 10_000,
      },
    );
    expect(again.stderr).toContain("Connection refused");
  });
});
