/**
 * The cluster key is made in process, without ssh-keygen: the real OpenSSH tools must read it as
 * one of their own, and a real sshd must let it log in.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateEd25519KeyPair } from "../../src/core/sshkey.ts";
import { SshTarget } from "../../src/targets/ssh.ts";
import { have } from "../lab/prereq.ts";
import { loginOf, type Sshd, startSshd } from "../lab/sshd.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kubehyve-sshkey-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function keyFile(name: string, comment: string) {
  const pair = generateEd25519KeyPair(comment);
  const path = join(dir, name);
  await writeFile(path, pair.privateKey, { mode: 0o600 });
  return { pair, path };
}

describe("generateEd25519KeyPair", () => {
  test("writes the OpenSSH private key container and an authorized_keys line", () => {
    const { privateKey, publicKey } = generateEd25519KeyPair("kubehyve@lab");
    expect(privateKey).toMatch(
      /^-----BEGIN OPENSSH PRIVATE KEY-----\n([A-Za-z0-9+/=]{70}\n)+[A-Za-z0-9+/=]{1,70}\n-----END OPENSSH PRIVATE KEY-----\n$/,
    );
    // "ssh-ed25519" and a 32-byte key always encode to this prefix (RFC 8709).
    expect(publicKey).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} kubehyve@lab$/);
  });

  test("makes a new key every time", () => {
    expect(generateEd25519KeyPair("a").publicKey).not.toBe(generateEd25519KeyPair("a").publicKey);
  });

  test("refuses a comment that would break the public key line", () => {
    expect(() => generateEd25519KeyPair("a\nssh-ed25519 AAAA evil")).toThrow(/one line/);
  });
});

describe.skipIf(!have("ssh-keygen", "openssh-client"))("read by the real ssh-keygen", () => {
  test("derives the same public key and comment from the private key, for many keys", async () => {
    for (let i = 0; i < 20; i++) {
      const { pair, path } = await keyFile(`id_${i}`, `kubehyve@lab${i}`);
      const derived = Bun.spawnSync(["ssh-keygen", "-y", "-f", path], { stderr: "pipe" });
      expect(derived.stderr.toString()).toBe("");
      expect(derived.exitCode).toBe(0);
      // ssh-keygen -y prints the comment stored in the private key, so both halves must carry it.
      expect(derived.stdout.toString().trim()).toBe(pair.publicKey);
    }
  });

  test("fingerprints both halves alike", async () => {
    const { pair, path } = await keyFile("id_fp", "kubehyve@fp");
    await writeFile(`${path}.pub`, `${pair.publicKey}\n`);
    const fingerprint = (file: string) =>
      Bun.spawnSync(["ssh-keygen", "-l", "-f", file]).stdout.toString().trim();
    expect(fingerprint(path)).toMatch(/^256 SHA256:\S+ kubehyve@fp \(ED25519\)$/);
    expect(fingerprint(path)).toBe(fingerprint(`${path}.pub`));
  });
});

describe.skipIf(!have("sshd", "openssh-server") || !have("ssh", "openssh-client"))(
  "logging in to a real sshd",
  () => {
    let sshd: Sshd;
    beforeAll(async () => {
      sshd = await startSshd();
    });
    afterAll(() => sshd.stop());

    test("works with the generated key and with no other", async () => {
      const { pair, path } = await keyFile("id_login", "kubehyve@login");
      await appendFile(join(sshd.dir, "authorized_keys"), `${pair.publicKey}\n`);
      const stateDir = await mkdtemp(join(dir, "state-"));
      const target = new SshTarget({ ...loginOf(sshd), identityFile: path, stateDir });
      try {
        const result = await target.run(["echo", "logged in"]);
        expect(result).toMatchObject({ code: 0, stdout: "logged in\n" });
      } finally {
        await target.close();
      }
      // A key sshd was not told about is refused: the login above was this key's doing.
      const stranger = await keyFile("id_stranger", "stranger");
      const other = new SshTarget({ ...loginOf(sshd), identityFile: stranger.path, stateDir });
      try {
        expect((await other.run(["true"])).code).not.toBe(0);
      } catch (error) {
        expect(String(error)).toMatch(/Permission denied|publickey/);
      } finally {
        await other.close();
      }
    });
  },
);
