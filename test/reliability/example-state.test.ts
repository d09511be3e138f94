/**
 * The built-in example is nobody's cluster: `render --example` and `plan --example --offline` leave
 * nothing in the state dir a real cluster of the same name (`lab`) would use, and no temporary
 * folder either. A real cluster file's render makes that cluster's key once, in its state dir, and
 * every later command uses the same one. The command line from source.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../lab/cli.ts";
import { have } from "../lab/prereq.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

// Each test starts the command line a few times: room for a 2-core machine under load.
setDefaultTimeout(30_000);

function lab() {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-example-state-"));
  const temp = join(dir, "tmp");
  mkdirSync(temp, { mode: 0o700 });
  const run = (...args: string[]) =>
    runCli([process.execPath, MAIN, ...args], {
      cwd: dir,
      env: { XDG_STATE_HOME: join(dir, "xdg"), TMPDIR: temp },
    });
  return { dir, temp, run, stateOfLab: join(dir, "xdg", "kubehyve", "lab") };
}

describe("the example", () => {
  test("render and plan --offline leave no state dir, no key and no temporary folder", () => {
    const { run, temp, stateOfLab } = lab();
    expect(run("render", "--example", "-o", "out").code).toBe(0);
    expect(run("plan", "--example", "--offline").code).toBe(0);
    expect(run("plan", "--example", "--offline", "--json").code).toBe(0);
    expect(existsSync(stateOfLab)).toBe(false);
    expect(readdirSync(temp)).toEqual([]);
  });

  test("does not touch the state dir of a real cluster called lab", () => {
    const { run, stateOfLab, dir } = lab();
    expect(run("init").code).toBe(0);
    expect(run("render", "-o", join(dir, "real")).code).toBe(0);
    const before = readdirSync(stateOfLab).sort();
    const journal = readFileSync(join(stateOfLab, "journal.ndjson"), "utf8");
    expect(run("render", "--example", "-o", join(dir, "example")).code).toBe(0);
    expect(readdirSync(stateOfLab).sort()).toEqual(before);
    expect(readFileSync(join(stateOfLab, "journal.ndjson"), "utf8")).toBe(journal);
  });
});

describe.skipIf(!have("ssh-keygen", "openssh-client"))("a real cluster file", () => {
  test("gets its key from its first render, kept and used again by the next", () => {
    const { run, stateOfLab, dir } = lab();
    expect(run("init").code).toBe(0);
    expect(run("render", "-o", join(dir, "out")).code).toBe(0);
    const key = join(stateOfLab, "ssh", "id_ed25519");
    const pub = readFileSync(`${key}.pub`, "utf8");
    const inode = statSync(key).ino;
    expect(readFileSync(join(dir, "out", "os", "cp1.ign"), "utf8")).toContain(pub.trim().split(" ")[1]!);
    expect(run("render", "-o", join(dir, "out")).code).toBe(0);
    expect(run("plan", "--offline").code).toBe(0);
    expect(statSync(key).ino).toBe(inode);
    expect(readFileSync(`${key}.pub`, "utf8")).toBe(pub);
  });
});
