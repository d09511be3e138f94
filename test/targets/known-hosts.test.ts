/**
 * pinsName must find the entries OpenSSH finds: each case is put to the real `ssh-keygen -F`, which
 * looks a name up in a known_hosts file as ssh does (hostfile.c), and both must agree.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { knownHostsName, pinsName, withoutPins } from "../../src/targets/known-hosts.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import { have } from "../lab/prereq.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
const local = new LocalTarget();

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kubehyve-known-hosts-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Whether the real ssh-keygen finds an entry for `name` in a file holding `text`. */
async function sshKeygenFinds(text: string, name: string): Promise<boolean> {
  const file = join(dir, "known_hosts");
  await writeFile(file, text);
  const result = await local.run(["ssh-keygen", "-F", name, "-f", file], { timeoutMs: 10_000 });
  // Exit 0 and the entry printed when found; 1 and nothing when not.
  return result.code === 0 && result.stdout.trim() !== "";
}

test("names a machine as ssh looks it up: lowercased, with the port in brackets off 22", () => {
  expect(knownHostsName("Hv1.Lab", 22)).toBe("hv1.lab");
  expect(knownHostsName("127.0.0.1", 2222)).toBe("[127.0.0.1]:2222");
  expect(knownHostsName("fd00::10", 22)).toBe("fd00::10");
  expect(knownHostsName("fd00::10", 2222)).toBe("[fd00::10]:2222");
});

describe.skipIf(!have("ssh-keygen", "openssh-client"))("pinsName agrees with ssh-keygen -F", () => {
  const cases: [string, string, string][] = [
    ["a plain entry", `10.0.0.5 ${KEY}\n`, "10.0.0.5"],
    ["another machine's entry", `10.0.0.6 ${KEY}\n`, "10.0.0.5"],
    ["an entry with a port", `[127.0.0.1]:2222 ${KEY}\n`, "[127.0.0.1]:2222"],
    ["the same address on port 22", `[127.0.0.1]:2222 ${KEY}\n`, "127.0.0.1"],
    ["a list of names", `cp1.lab,10.0.0.5 ${KEY}\n`, "10.0.0.5"],
    ["a name in other case", `CP1.Lab ${KEY}\n`, "cp1.lab"],
    ["a wildcard", `10.0.0.* ${KEY}\n`, "10.0.0.5"],
    ["a one-character wildcard", `10.0.0.? ${KEY}\n`, "10.0.0.5"],
    ["a negated name", `10.0.0.*,!10.0.0.5 ${KEY}\n`, "10.0.0.5"],
    ["a comment", `# 10.0.0.5 ${KEY}\n`, "10.0.0.5"],
    ["an indented entry", `   10.0.0.5 ${KEY}\n`, "10.0.0.5"],
    ["a revoked key", `@revoked 10.0.0.5 ${KEY}\n`, "10.0.0.5"],
    ["a certificate authority", `@cert-authority *.lab ${KEY}\n`, "cp1.lab"],
    ["an entry without a trailing newline", `10.0.0.5 ${KEY}`, "10.0.0.5"],
  ];
  test.each(cases)("%s", async (_, text, name) => {
    expect(pinsName(text, name)).toBe(await sshKeygenFinds(text, name));
  });

  test("an entry hashed by ssh-keygen -H", async () => {
    const file = join(dir, "hashed");
    await writeFile(file, `[127.0.0.1]:2222 ${KEY}\ncp1.lab ${KEY}\n`);
    expect((await local.run(["ssh-keygen", "-H", "-f", file], { timeoutMs: 10_000 })).code).toBe(0);
    const hashed = await readFile(file, "utf8");
    expect(hashed).toStartWith("|1|");
    for (const name of ["[127.0.0.1]:2222", "cp1.lab", "cp2.lab", "127.0.0.1"]) {
      expect(pinsName(hashed, name)).toBe(await sshKeygenFinds(hashed, name));
    }
    expect(pinsName(hashed, "cp1.lab")).toBe(true);
  });

  test("withoutPins forgets one machine's entries, plain on any port or hashed, and nothing of the operator's", async () => {
    const file = join(dir, "forget");
    await writeFile(file, `10.0.0.5 ${KEY}\n[10.0.0.5]:2222 ${KEY}\n`);
    expect((await local.run(["ssh-keygen", "-H", "-f", file], { timeoutMs: 10_000 })).code).toBe(0);
    const hashed = (await readFile(file, "utf8")).trim().split("\n");
    const kept = [
      `10.0.0.50 ${KEY}`,
      `[10.0.0.50]:22 ${KEY}`,
      `cp1.lab,10.0.0.5 ${KEY}`,
      `10.0.0.* ${KEY}`,
      `@revoked 10.0.0.5 ${KEY}`,
      `# 10.0.0.5 ${KEY}`,
    ];
    const text = [...kept, `10.0.0.5 ${KEY}`, `[10.0.0.5]:2222 ${KEY}`, ...hashed].join("\n");
    const left = withoutPins(text, "10.0.0.5", [22, 2222]);
    expect(left.split("\n")).toEqual(kept);
    // And ssh-keygen finds nothing for the machine in what is left but the operator's lines.
    expect(pinsName(left, "10.0.0.5")).toBe(await sshKeygenFinds(left, "10.0.0.5"));
  });

  test("a line whose key was cut short still names the machine", () => {
    // ssh-keygen skips such a line; kubehyve must not take its name for a first contact.
    expect(pinsName(`10.0.0.5 ssh-ed25519 AAAAC3Nza`, "10.0.0.5")).toBe(true);
    expect(pinsName(`10.0.0.5`, "10.0.0.5")).toBe(true);
  });
});
