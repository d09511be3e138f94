/**
 * More of what a careless or hostile user gives the commands that touch no host: odd names, odd
 * environments, odd places to write. Each gets a clear message and exit code, and nothing is written
 * where it was not asked for. In process through runInProcess, but for what only a process shows
 * (the runtime's decoding of argv, the --version fast path).
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runInProcess } from "../lab/cli.ts";

const ROOT = join(import.meta.dir, "../..");
const _MAIN = join(ROOT, "src/main.ts");

/** A cluster file of one node on loopback and no stages: nothing in it reaches any host. */
const BARE = `name: probe
network: { gateway: 127.0.0.1, subnet: 127.0.0.0/24 }
nodes:
  - { name: n1, role: control-plane, address: 127.0.0.10 }
`;

function workdir() {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-misuse-"));
  writeFileSync(join(dir, "kubehyve.yaml"), BARE);
  return {
    dir,
    run: (args: string[], env?: Record<string, string>) => runInProcess(args, { cwd: dir, env }),
  };
}

describe("a cluster file without stages", () => {
  test("plan and render run, saying there are no stages, rather than blaming --from and --until nobody gave", async () => {
    const { dir, run } = workdir();
    const plan = await run(["plan", "--offline", "--state-dir", join(dir, "state")]);
    expect(plan.stderr).toBe("");
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain("plan probe: no stages (dry run)");
    const render = await run(["render", "-o", join(dir, "out"), "--state-dir", join(dir, "state")]);
    expect(render.stderr).toBe("");
    expect(render.code).toBe(0);
    expect(render.stdout).toContain(`rendered 0 files into ${join(dir, "out")}`);
  });
});

describe("names that would drive the terminal", () => {
  test("a success line naming a file with escape sequences in its name shows them escaped", async () => {
    const { dir, run } = workdir();
    const name = "lab\x1b[2J\x1b]0;owned\x07.yaml";
    const init = await run(["init", "-c", name]);
    expect(init.code).toBe(0);
    expect(existsSync(join(dir, name))).toBe(true);
    expect(init.out).not.toMatch(/\p{Cc}(?<!\n)/u);
    expect(init.stdout).toContain(`wrote ${join(dir, "lab\\u001b[2J\\u001b]0;owned\\u0007.yaml")}`);
    const valid = await run(["config", "validate", "-c", name]);
    expect(valid.code).toBe(0);
    expect(valid.out).not.toMatch(/\p{Cc}(?<!\n)/u);
    expect(valid.stdout).toContain("lab\\u001b[2J");
  });

  test("the plugin path in kubehyve plugins is shown escaped", async () => {
    const { run } = workdir();
    const r = await run(["plugins", "--plugin-dir", "/nowhere\x1b[31m"]);
    expect(r.out).not.toMatch(/\p{Cc}(?<!\n)/u);
    expect(r.stdout).toContain("plugin path: /nowhere\\u001b[31m:");
  });
});
