/**
 * End to end with the compiled Linux binary, as a user runs it: NO_COLOR, a fresh working
 * directory, exit codes and exact text.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { dropInLab, runCli } from "../lab/cli.ts";

const ROOT = join(import.meta.dir, "../..");
const BIN = join(ROOT, "dist/kubehyve-linux-x64");
const FIXTURES = join(ROOT, "test/fixtures/plugins");

beforeAll(() => {
  // Always test the binary of the code under test, never a stale one.
  const build = Bun.spawnSync([process.execPath, "build.ts", "--target", "linux-x64"], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  if (!build.success) throw new Error(`build failed: ${build.stderr.toString()}`);
}, 120_000);

function kubehyve(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const home = opts.cwd ?? mkdtempSync(join(tmpdir(), "kubehyve-e2e-"));
  return runCli([BIN, ...args], { cwd: home, env: { XDG_STATE_HOME: join(home, "state"), ...opts.env } });
}

describe("the compiled binary", () => {
  test("--version prints the package version and the commit", () => {
    const r = kubehyve(["--version"]);
    expect(r.code).toBe(0);
    const commit = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: ROOT })
      .stdout.toString()
      .trim();
    expect(r.stdout).toMatch(
      new RegExp(
        `^kubehyve ${pkg.version.replaceAll(".", "\\.")} \\(commit ${commit}(-dirty)?, bun [\\d.]+, linux-x64\\)\\n$`,
      ),
    );
  });

  test("does not pick up a bunfig.toml or .env from the working directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-e2e-"));
    writeFileSync(join(dir, "bunfig.toml"), 'preload = ["./evil.ts"]\n');
    writeFileSync(join(dir, "evil.ts"), 'console.log("EVIL");\n');
    writeFileSync(join(dir, ".env"), "KUBEHYVE_PLUGIN_PATH=/nonexistent-from-dotenv\n");
    const r = kubehyve(["plugins"], { cwd: dir });
    expect(r.out).not.toContain("EVIL");
    expect(r.out).not.toContain("nonexistent-from-dotenv");
  });

  test("init writes a commented example that validates, and refuses to overwrite it", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-e2e-"));
    const first = kubehyve(["init"], { cwd: dir });
    expect(first.code).toBe(0);
    const text = readFileSync(join(dir, "kubehyve.yaml"), "utf8");
    expect(text).toStartWith("# kubehyve cluster file");
    const again = kubehyve(["init"], { cwd: dir });
    expect(again.code).toBe(2);
    expect(again.stderr).toBe(
      `✖ ${join(dir, "kubehyve.yaml")} exists already; nothing was written\n  → keep it, or overwrite it with kubehyve init --force\n`,
    );
    expect(readFileSync(join(dir, "kubehyve.yaml"), "utf8")).toBe(text);
    const valid = kubehyve(["config", "validate"], { cwd: dir });
    expect(valid.code).toBe(0);
    expect(valid.out).toContain(`${join(dir, "kubehyve.yaml")} is valid: cluster lab, 3 nodes`);
  });

  test("config validate names file:line:column and exits 2 on a broken file", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-e2e-"));
    writeFileSync(
      join(dir, "k.yaml"),
      "name: lab\nnetwork:\n  gateway: 192.168.1.1\n  subnet: 192.168.1.0/24\nnodes:\n  - name: cp1\n    role: boss\n    address: 192.168.1.2\n",
    );
    const r = kubehyve(["config", "validate", "-c", "k.yaml"], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${join(dir, "k.yaml")}:7:11: nodes[0].role: must be "control-plane" or "worker"`,
    );
    expect(r.stderr).not.toContain("    at ");
  });

  test("a missing cluster file is bad input with a way forward", () => {
    const r = kubehyve(["plan"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /cluster file .*kubehyve\.yaml does not exist\n {2}→ write one with `kubehyve init`/,
    );
  });

  test("plan --example --offline plans the example lab without touching anything", () => {
    const r = kubehyve(["plan", "--example", "--offline"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("plan lab:");
    expect(r.out).toMatch(/plan: \d+ changes?/);
  });

  test("render --example writes the generated files per slot", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-e2e-"));
    const r = kubehyve(["render", "--example", "-o", "out"], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/rendered \d+ files into /);
  });

  test("render and plan --offline of a real cluster file need no program beside the binary", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-e2e-"));
    expect(kubehyve(["init"], { cwd: dir }).code).toBe(0);
    // An empty PATH: no ssh-keygen, no sh, nothing a minimal system might lack.
    const env = { PATH: join(dir, "empty-path") };
    const render = kubehyve(["render", "-o", "out"], { cwd: dir, env });
    expect(render.stderr).toBe("");
    expect(render.code).toBe(0);
    const key = join(dir, "state", "kubehyve", "lab", "ssh", "id_ed25519");
    expect(statSync(key).mode & 0o777).toBe(0o600);
    expect(readFileSync(`${key}.pub`, "utf8")).toMatch(/^ssh-ed25519 \S+ kubehyve@lab\n$/);
    const made = readFileSync(key, "utf8");
    const plan = kubehyve(["plan", "--offline"], { cwd: dir, env });
    expect(plan.code).toBe(0);
    // The key render made is the cluster's key from now on: plan did not replace it.
    expect(readFileSync(key, "utf8")).toBe(made);
  });

  test("the example leaves nothing behind: no state dir, no key, no temporary folder", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-e2e-"));
    const temp = join(dir, "tmp");
    mkdirSync(temp, { mode: 0o700 });
    const env = { TMPDIR: temp };
    expect(kubehyve(["render", "--example", "-o", "out"], { cwd: dir, env }).code).toBe(0);
    expect(kubehyve(["plan", "--example", "--offline"], { cwd: dir, env }).code).toBe(0);
    expect(kubehyve(["plan", "--example", "--offline", "--json"], { cwd: dir, env }).code).toBe(0);
    // The state dir a real cluster called `lab` would have is untouched.
    expect(existsSync(join(dir, "state"))).toBe(false);
    expect(readdirSync(temp)).toEqual([]);
    // The rendered files did get their (throwaway) cluster key.
    expect(readFileSync(join(dir, "out", "os", "cp1.ign"), "utf8")).toContain("ssh-ed25519 ");
  });

  test("--json writes only NDJSON events on stdout", () => {
    const r = kubehyve(["plan", "--example", "--offline", "--json"]);
    expect(r.code).toBe(0);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events[0]).toMatchObject({ v: 1, type: "run.start", command: "plan", cluster: "lab" });
    expect(events.at(-1)).toMatchObject({ v: 1, type: "run.end", status: "ok", exitCode: 0 });
  });

  test("a mistyped command or flag gets a suggestion and exit code 2", () => {
    const cmd = kubehyve(["doctr"]);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toBe('✖ unknown command "doctr" for kubehyve\n  → did you mean `kubehyve doctor`?\n');
    const flag = kubehyve(["plan", "--ofline"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toBe("✖ unknown flag --ofline for kubehyve plan\n  → did you mean --offline?\n");
  });
});

describe("a drop-in plugin", () => {
  function lab() {
    const greetingIn = (dir: string) => join(dir, "greeting.txt");
    const { dir, plugins, state } = dropInLab({
      prefix: "kubehyve-dropin-",
      name: "dropin",
      plugins: { "greeter.ts": readFileSync(join(FIXTURES, "greeter.ts"), "utf8") },
      stages: (dir) => `  greeter:\n    plugin: hello\n    message: hi there\n    file: ${greetingIn(dir)}\n`,
    });
    return { dir, plugins, greeting: greetingIn(dir), state };
  }

  test("is loaded by the compiled binary, listed with its origin and version, and run by up", () => {
    const { dir, plugins, greeting, state } = lab();
    const list = kubehyve(["plugins", "--plugin-dir", plugins], { cwd: dir });
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(
      new RegExp(`✔ greeter/hello +1\\.2\\.3 +loaded +${join(plugins, "greeter.ts")}`),
    );

    const up = kubehyve(["up", "--plugin-dir", plugins, "--state-dir", state], { cwd: dir });
    expect(up.code).toBe(0);
    expect(readFileSync(greeting, "utf8")).toBe("hi there");
    expect(up.out).toContain("greeter apply done");

    const again = kubehyve(["up", "--plugin-dir", plugins, "--state-dir", state], { cwd: dir });
    expect(again.code).toBe(0);
    expect(again.out).toContain("greeter check up-to-date");
    expect(again.out).not.toContain("greeter apply");

    // The plugin's state is persisted privately.
    expect(statSync(state).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(join(state, "state/greeter.json"), "utf8"))).toEqual({
      written: "hi there",
    });
    expect(statSync(join(state, "state/greeter.json")).mode & 0o777).toBe(0o600);
  });

  test("is refused in a world-writable directory, and the stage then names the plugin path", () => {
    const { dir, plugins, greeting, state } = lab();
    chmodSync(plugins, 0o777);
    const list = kubehyve(["plugins", "--plugin-dir", plugins], { cwd: dir });
    expect(list.code).toBe(1);
    expect(list.stdout).toContain(
      `✖ no plugin is loaded from ${plugins} (1 file): it is writable by group or others`,
    );
    expect(list.stdout).toContain(`→ chmod go-w ${plugins}`);
    const up = kubehyve(["up", "--plugin-dir", plugins, "--state-dir", state], { cwd: dir });
    expect(up.code).toBe(2);
    expect(up.stderr).toContain(
      `stages.greeter.plugin: no plugin greeter/hello is built in or found in the plugin path: ${plugins}`,
    );
    expect(existsSync(greeting)).toBe(false);
  });

  test("written for another plugin API version is refused with a diagnostic, not a crash", () => {
    const { dir, plugins } = lab();
    copyFileSync(join(FIXTURES, "broken-api.ts"), join(plugins, "broken-api.ts"));
    const list = kubehyve(["plugins", "--plugin-dir", plugins], { cwd: dir });
    expect(list.code).toBe(1);
    expect(list.stdout).toContain("plugin future/thing");
    expect(list.stdout).toContain("needs plugin API 2; this kubehyve speaks 1");
    expect(list.stdout).toMatch(/✔ greeter\/hello/);
  });

  test("loads what it imports from a safe folder, and refuses what others could have written", () => {
    const { dir, plugins } = lab();
    mkdirSync(join(plugins, "lib"), { mode: 0o755 });
    writeFileSync(join(plugins, "lib", "title.ts"), 'export const title = "titled by a helper";\n');
    chmodSync(join(plugins, "lib", "title.ts"), 0o644);
    const helped = (id: string, from: string) =>
      `import { definePlugin } from "kubehyve";\nimport { title } from "${from}";\nexport default definePlugin({ id: "${id}", title, apiVersion: 1, async check() { return { changes: [], diagnostics: [] }; } });\n`;
    writeFileSync(join(plugins, "helped.ts"), helped("helped/one", "./lib/title.ts"));
    mkdirSync(join(plugins, "open"));
    chmodSync(join(plugins, "open"), 0o777);
    writeFileSync(join(plugins, "open", "title.ts"), 'export const title = "anyone";\n');
    writeFileSync(join(plugins, "opened.ts"), helped("opened/one", "./open/title.ts"));
    // A package in a node_modules above the plugin folder: a bare import would find it.
    mkdirSync(join(dir, "node_modules", "evil"), { recursive: true });
    writeFileSync(join(dir, "node_modules", "evil", "package.json"), '{"name":"evil","main":"index.js"}');
    writeFileSync(join(dir, "node_modules", "evil", "index.js"), 'exports.title = "EVIL";\n');
    writeFileSync(join(plugins, "bare.ts"), helped("bare/one", "evil"));
    for (const f of ["helped.ts", "opened.ts", "bare.ts", "open/title.ts"])
      chmodSync(join(plugins, f), 0o644);

    const list = kubehyve(["plugins", "--plugin-dir", plugins, "--json"], { cwd: dir });
    expect(list.code).toBe(1);
    const events = list.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events.find((e) => e.id === "helped/one")).toMatchObject({
      status: "loaded",
      title: "titled by a helper",
    });
    expect(events.filter((e) => e.origin?.endsWith("opened.ts") || e.origin?.endsWith("bare.ts"))).toEqual([
      expect.objectContaining({ status: "refused", origin: join(plugins, "bare.ts") }),
      expect.objectContaining({ status: "refused", origin: join(plugins, "opened.ts") }),
    ]);
    const summaries = events.filter((e) => e.type === "diagnostic").map((e) => e.summary);
    expect(summaries).toEqual([
      `plugin file ${join(plugins, "bare.ts")} is not loaded: it imports "evil", but a drop-in plugin imports only from "kubehyve" and node: built-ins`,
      `plugin file ${join(plugins, "opened.ts")} is not loaded: ${join(plugins, "open", "title.ts")}, which it loads: its directory ${join(plugins, "open")} is writable by group or others`,
    ]);
    expect(list.stdout).not.toContain("EVIL");
    expect(list.stdout).not.toContain('"anyone"');
  });

  test("that fails to import is a diagnostic naming the file", () => {
    const { dir, plugins } = lab();
    writeFileSync(join(plugins, "syntax.ts"), "export default definePlugin({ id: \n");
    chmodSync(join(plugins, "syntax.ts"), 0o644);
    const list = kubehyve(["plugins", "--plugin-dir", plugins], { cwd: dir });
    expect(list.code).toBe(1);
    expect(list.stdout).toContain(`plugin file ${join(plugins, "syntax.ts")} failed to load`);
  });
});
