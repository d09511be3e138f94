import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalTarget } from "../../src/targets/local.ts";
import { SshTarget } from "../../src/targets/ssh.ts";
import { have } from "../lab/prereq.ts";
import { loginOf, type Sshd, startSshd } from "../lab/sshd.ts";

const dir = mkdtempSync(join(tmpdir(), "kubehyve-stdin-"));
const file = join(dir, "image.bin");
// 8 MiB of varied bytes: larger than any pipe buffer, so the stream really has to flow.
const bytes = new Uint8Array(8 * 1024 * 1024).map((_, i) => (i * 31 + (i >> 10)) & 0xff);
const expected = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
writeFileSync(file, bytes);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a file as stdin", () => {
  test("reaches a local command whole", async () => {
    const r = await new LocalTarget().run(["sha256sum"], { stdin: { file } });
    expect(r.code).toBe(0);
    expect(r.stdout.split(" ")[0]).toBe(expected);
  });

  describe.skipIf(!have("sshd", "openssh-server"))("over ssh", () => {
    let sshd: Sshd;
    beforeAll(async () => {
      sshd = await startSshd();
    });
    afterAll(() => sshd?.stop());

    test("reaches the remote command whole, as a disk image copied to a remote host would", async () => {
      const target = new SshTarget({ ...loginOf(sshd), stateDir: join(dir, "state") });
      try {
        const r = await target.run(["sha256sum"], { stdin: { file } });
        expect(r.code).toBe(0);
        expect(r.stdout.split(" ")[0]).toBe(expected);
      } finally {
        await target.close();
      }
    });
  });
});
