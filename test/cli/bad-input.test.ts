/**
 * What a careless or hostile user types at the commands that touch no host: each gets a message
 * naming what and where, the documented exit code, and nothing half-done. In process, through
 * test/lab/cli.ts runInProcess, as the binary would run.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runInProcess } from "../lab/cli.ts";
import { adminConf } from "../lab/kube/kubeconfig.ts";

/** A fresh directory with a plugin folder that `loadPlugins` trusts (0755, files 0644). */
function workdir() {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-bad-input-"));
  const plugins = join(dir, "plugins");
  mkdirSync(plugins, { mode: 0o755 });
  chmodSync(plugins, 0o755);
  const plugin = (name: string, text: string) => {
    writeFileSync(join(plugins, name), text);
    chmodSync(join(plugins, name), 0o644);
    return join(plugins, name);
  };
  return { dir, plugins, plugin, run: (args: string[]) => runInProcess(args, { cwd: dir }) };
}

describe("kubehyve plugins", () => {
  test("says why a file was not loaded, not only that it was not", async () => {
    const { plugins, plugin, run } = workdir();
    const file = plugin("broken.ts", 'throw new Error("the vendor forgot a file");\n');
    const r = await run(["plugins", "--plugin-dir", plugins]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      `  ✖ plugin file ${file} failed to load\n      the vendor forgot a file\n      → fix the file, or move it out of the plugin path\n`,
    );
  });
  test("a plugin directory that does not exist is a warning, and the listing still exits 0", async () => {
    const { dir, run } = workdir();
    const r = await run(["plugins", "--plugin-dir", join(dir, "plugin")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      `  ⚠ plugin directory ${join(dir, "plugin")} does not exist, so no plugin is loaded from it\n      → create it, or correct --plugin-dir or $KUBEHYVE_PLUGIN_PATH\n`,
    );
  });

  test("a file name or a message with escape sequences or line breaks reaches the terminal escaped", async () => {
    const { plugins, plugin, run } = workdir();
    const named = plugin("evil\x1b]0;owned\x07\nline.ts", "export default 1;\n");
    plugin("loud.ts", 'throw new Error("red \\x1b[31malert\\x1b[0m\\nsecond line");\n');
    const r = await run(["plugins", "--plugin-dir", plugins]);
    expect(r.code).toBe(1);
    expect(r.out).not.toContain("\x1b");
    expect(r.out).not.toContain("\x07");
    const shown = "evil\\u001b]0;owned\\u0007\\u000aline.ts";
    expect(r.stdout).toContain(`✖ ${shown}`);
    expect(r.stdout).toContain(
      `  ✖ plugin file ${plugins}/${shown} is not loaded: its default export is not a plugin object`,
    );
    expect(r.stdout).toContain("      red \\u001b[31malert\\u001b[0m\n      second line\n");
    expect(named).toContain("\n");
  });
});

describe("config validate with a broken file in the plugin path", () => {
  const CLUSTER =
    "name: lab\nnetwork:\n  gateway: 10.9.0.1\n  subnet: 10.9.0.0/24\nnodes:\n  - name: n1\n    role: control-plane\n    address: 10.9.0.10\nstages:\n  marker:\n    plugin: file\n";
  const MARKER = `import { definePlugin } from "kubehyve";
export default definePlugin({ id: "marker/file", title: "m", apiVersion: 1, async check() { return { changes: [], diagnostics: [] }; } });
`;

  test("a file the cluster file does not use is named with what is wrong, as a warning: the file stays valid", async () => {
    const { dir, plugins, plugin, run } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), CLUSTER);
    plugin("marker.ts", MARKER);
    const broken = plugin("broken.ts", 'throw new Error("the vendor forgot a file");\n');
    const r = await run(["config", "validate", "--plugin-dir", plugins]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("kubehyve.yaml is valid: cluster lab, 1 nodes, stages marker/file");
    expect(r.stderr).toContain(
      `WARN  plugin file ${broken} failed to load: the vendor forgot a file (fix the file, or move it out of the plugin path)`,
    );
    const json = await run(["config", "validate", "--json", "--plugin-dir", plugins]);
    expect(json.code).toBe(0);
    const events = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events.map((e) => e.type)).toEqual(["diagnostic", "config.valid"]);
    expect(events[0]).toMatchObject({
      stage: "plugins",
      code: "plugin.load-failed",
      detail: "the vendor forgot a file",
    });
  });

  test("a stage's warning reaches the terminal escaped", async () => {
    const { dir, plugins, plugin, run } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), CLUSTER);
    plugin(
      "marker.ts",
      MARKER.replace(
        "async check()",
        'validate() { return [{ code: "marker.odd", severity: "warn", summary: "odd \\u001b]0;owned\\u0007 title" }]; }, async check()',
      ),
    );
    const r = await run(["config", "validate", "--plugin-dir", plugins]);
    expect(r.code).toBe(0);
    expect(r.out).not.toContain("\x1b");
    expect(r.stderr).toContain("odd \\u001b]0;owned\\u0007 title");
  });

  test("the file the cluster file uses, broken, is exit 2 naming the file and what is wrong with it", async () => {
    const { dir, plugins, plugin, run } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), CLUSTER);
    const file = plugin(
      "marker.ts",
      MARKER.replace("async check()", "hooks: { marker: () => 1 }, async check()"),
    );
    const r = await run(["config", "validate", "--plugin-dir", plugins]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(
      `stages.marker.plugin: plugin marker/file in ${file} is not loaded: its hooks names "marker", which is no hook name (slot:what, such as os:node-files)`,
    );
  });
});

describe("a command line without a command", () => {
  test("a command group without its subcommand shows the group's usage on stderr and exits 2", async () => {
    const { run } = workdir();
    const r = await run(["config"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("USAGE kubehyve config schema|validate");
    expect(r.stderr).not.toContain("bug");
    const help = await run(["config", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("USAGE kubehyve config schema|validate");
  });

  test("no command at all is usage on stderr with exit 2; with --json one error event, nothing else", async () => {
    const { run } = workdir();
    const bare = await run([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe("");
    expect(bare.stderr).toContain("USAGE kubehyve init|plan|up");
    const json = await run(["--json"]);
    expect(json.code).toBe(2);
    expect(
      json.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
    ).toEqual([
      {
        v: 1,
        ts: expect.any(String),
        type: "error",
        message: "no command given",
        hint: "kubehyve --help lists the commands",
        problems: [],
        exitCode: 2,
      },
    ]);
  });

  test("--version next to other flags is the version, as it is alone", async () => {
    const { run } = workdir();
    const verbose = await run(["--verbose", "--version"]);
    expect(verbose.code).toBe(0);
    expect(verbose.stdout).toMatch(/^kubehyve \d+\.\d+\.\d+ \(commit [^)]+\)\n$/);
    const json = await run(["--version", "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ v: 1, type: "version" });
  });

  test("--version from source with a git that never answers still answers, the commit unknown", () => {
    // From source the commit comes from `git rev-parse`, which a stale lock or a hung network file
    // system can keep from answering; the command must not wait for it.
    const { dir } = workdir();
    const bin = join(dir, "bin");
    mkdirSync(bin);
    writeFileSync(join(bin, "git"), "#!/bin/sh\nexec sleep 120\n", { mode: 0o755 });
    const r = Bun.spawnSync([process.execPath, join(import.meta.dir, "../../src/main.ts"), "--version"], {
      env: { PATH: `${bin}:${process.env.PATH}`, HOME: process.env.HOME ?? "/root" },
      timeout: 25_000,
    });
    expect(r.stdout.toString()).toMatch(/^kubehyve \d+\.\d+\.\d+ \(commit unknown, /);
    expect(r.exitCode).toBe(0);
  }, 30_000);
});

describe("words and flags the command line would get wrong", () => {
  test("plan offline (a flag without its dashes) is refused before the cluster file is read or a state dir made", async () => {
    const { dir, run } = workdir();
    const r = await run(["plan", "offline", "--state-dir", join(dir, "state")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "✖ kubehyve plan takes no arguments, but got: offline\n  → see kubehyve plan --help\n",
    );
    expect(existsSync(join(dir, "state"))).toBe(false);
  });

  test("--example with -c FILE is refused: the file would be ignored without a word", async () => {
    const { dir, run } = workdir();
    writeFileSync(join(dir, "mine.yaml"), BARE);
    const r = await run(["config", "validate", "--example", "-c", "mine.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "✖ --example and -c mine.yaml name two cluster files; nothing was done\n  → give one of them\n",
    );
  });

  test("two different cluster files for one run are refused, not the last one taken", async () => {
    const { run } = workdir();
    const r = await run(["config", "validate", "-c", "a.yaml", "-c", "b.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith('✖ --config was given twice, as "a.yaml" and "b.yaml"; nothing was done\n');
  });
});

describe("a cluster file whose text reaches the messages", () => {
  test("each problem is one line on stderr: line breaks and escape sequences from the file come out escaped", async () => {
    const { dir, run } = workdir();
    writeFileSync(
      join(dir, "kubehyve.yaml"),
      [
        "name: lab",
        '"fake\\n  kubehyve.yaml:1:1: all fine\\e[2J": 1',
        "network: { gateway: 127.0.0.1, subnet: 127.0.0.0/24 }",
        "nodes:",
        '  - { name: "a\\nb", role: control-plane, address: 127.0.0.10 }',
        '  - { name: "a\\nb", role: worker, address: 127.0.0.11 }',
        "",
      ].join("\n"),
    );
    const r = await run(["config", "validate"]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines[0]).toBe(`✖ ${join(dir, "kubehyve.yaml")} has 4 problems`);
    expect(lines).toHaveLength(5);
    for (const line of lines) expect(line).not.toMatch(/\p{Cc}/u);
    expect(lines).toContain(
      `  ${join(dir, "kubehyve.yaml")}:6:13: nodes[1].name: "a\\nb" is also the name of nodes[0]`,
    );
  });
});

describe("a stage's own rule that the file breaks", () => {
  test("is shown with the fix the stage gives, on the terminal and in --json", async () => {
    const { dir, run } = workdir();
    const { exampleText } = await import("../../src/cli/_shared.ts");
    // A Kubespray release kubehyve knows no content digest of: validate() says what to set.
    writeFileSync(join(dir, "kubehyve.yaml"), exampleText.replace("version: v2.31.0", "version: v2.30.0"));
    const r = await run(["config", "validate"]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split("\n");
    const at = lines.findIndex((l) =>
      l.includes("stages.k8s.release.tree-sha256-v1: no tree-sha256-v1 digest"),
    );
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]).toBe(
      "    → set stages.k8s.release.tree-sha256-v1 (README.md of the k8s/kubespray stage shows how to compute it from the tag with git)",
    );
    const json = await run(["config", "validate", "--json"]);
    const problem = JSON.parse(json.stdout).problems.find(
      (p: { path: string }) => p.path === "stages.k8s.release.tree-sha256-v1",
    );
    expect(problem.hint).toStartWith("set stages.k8s.release.tree-sha256-v1");
  });
});

describe("a stage's warnings beside the file's errors", () => {
  test("are shown with the errors, on the terminal and in --json", async () => {
    const { dir, run } = workdir();
    const { exampleText } = await import("../../src/cli/_shared.ts");
    // A release kubehyve was not tested with (a warning) and knows no digest of (an error).
    writeFileSync(join(dir, "kubehyve.yaml"), exampleText.replace("version: v2.31.0", "version: v2.30.0"));
    const r = await run(["config", "validate"]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toContain(
      "  ⚠ stages.k8s.version: kubehyve was tested with Kubespray v2.31.0, not v2.30.0",
    );
    expect(lines.some((l) => l.includes("stages.k8s.release.tree-sha256-v1: no tree-sha256-v1 digest"))).toBe(
      true,
    );
    const json = await run(["config", "validate", "--json"]);
    expect(json.code).toBe(2);
    const event = JSON.parse(json.stdout);
    expect(event.type).toBe("error");
    expect(event.warnings).toEqual([
      expect.objectContaining({
        code: "kubespray.release-unknown",
        severity: "warn",
        path: "stages.k8s.version",
        summary: "kubehyve was tested with Kubespray v2.31.0, not v2.30.0",
      }),
    ]);
  });

  test("are not guessed at when the core checks failed and no stage's rules could run", async () => {
    const { dir, run } = workdir();
    const { exampleText } = await import("../../src/cli/_shared.ts");
    const broken = exampleText
      .replace("version: v2.31.0", "version: v2.30.0")
      .replace(/^name: .*$/m, "name: 'not a name!'");
    expect(broken).not.toBe(exampleText.replace("version: v2.31.0", "version: v2.30.0"));
    writeFileSync(join(dir, "kubehyve.yaml"), broken);
    const r = await run(["config", "validate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("name: must be a DNS label");
    expect(r.stderr).not.toContain("⚠");
    expect(r.stderr).not.toContain("tested with Kubespray");
    const json = await run(["config", "validate", "--json"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout).warnings).toBeUndefined();
  });
});

/** A cluster file of one node on loopback and no stages: nothing in it reaches any host. */
const BARE = `name: probe
network: { gateway: 127.0.0.1, subnet: 127.0.0.0/24 }
nodes:
  - { name: n1, role: control-plane, address: 127.0.0.10 }
`;

describe("paths that cannot be used", () => {
  const long = "x".repeat(300);

  test("a state dir whose name is too long is refused with exit 2, naming it as the state dir", async () => {
    const { dir, run } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), BARE);
    const state = join(dir, long, "state");
    const r = await run(["plan", "--offline", "--state-dir", state]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ state dir ${state} cannot be made: ENAMETOOLONG: name too long\n  → choose a shorter path\n`,
    );
  });

  test("a state dir that is a device is refused without a hint to move the device", async () => {
    const { dir, run } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), BARE);
    const r = await run(["plan", "--offline", "--state-dir", "/dev/null"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "✖ state dir /dev/null is a character device, not a directory\n  → choose another path: /dev/null is not kubehyve's to move\n",
    );
  });

  test("render -o below a file is refused before anything is rendered or a cluster key made", async () => {
    const { dir, run } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), BARE);
    writeFileSync(join(dir, "a-file"), "mine\n");
    const out = join(dir, "a-file", "out");
    const r = await run(["render", "-o", out, "--state-dir", join(dir, "state")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ render output ${out} cannot be made: ${join(dir, "a-file")} is not a directory; nothing was written\n  → kubehyve render -o NEW-DIR\n`,
    );
    expect(existsSync(join(dir, "state"))).toBe(false);
  });

  test("render -o with a name too long is refused the same way, exit 2", async () => {
    const { dir, run } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), BARE);
    const out = join(dir, long);
    const r = await run(["render", "-o", out, "--state-dir", join(dir, "state")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith(`✖ render output ${out} cannot be used: ENAMETOOLONG`);
    expect(existsSync(join(dir, "state"))).toBe(false);
  });

  test("init -c DIR --force refuses the directory and leaves it as it was", async () => {
    const { dir, run } = workdir();
    mkdirSync(join(dir, "conf"));
    writeFileSync(join(dir, "conf", "keep.txt"), "mine\n");
    const r = await run(["init", "-c", join(dir, "conf"), "--force"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ ${join(dir, "conf")} is a directory, not a cluster file; nothing was written\n  → name the file to write: kubehyve init -c ${join(dir, "conf", "kubehyve.yaml")}\n`,
    );
    expect(readdirSync(join(dir, "conf"))).toEqual(["keep.txt"]);
  });

  test("init names the file it could not write, not its temporary name", async () => {
    const { dir, run } = workdir();
    const target = join(dir, long);
    const r = await run(["init", "-c", target]);
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith(`✖ cannot write ${target}: ENAMETOOLONG`);
    expect(r.stderr).not.toContain(".tmp");
  });
});

describe("kubehyve kubeconfig", () => {
  test("--overwrite without --merge is refused: it would be silently ignored", async () => {
    const { dir, run } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), BARE);
    const r = await run(["kubeconfig", "--overwrite", "--state-dir", join(dir, "state")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "✖ --overwrite only means something with --merge; nothing was done\n  → kubehyve kubeconfig --merge --overwrite\n",
    );
  });

  test("a $KUBECONFIG below a file is named as the kubeconfig it could not write, exit 2", async () => {
    const { dir } = workdir();
    writeFileSync(join(dir, "kubehyve.yaml"), BARE);
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    writeFileSync(join(state, "kubeconfig"), adminConf(), { mode: 0o600 });
    writeFileSync(join(dir, "a-file"), "");
    const target = join(dir, "a-file", "config");
    const r = await runInProcess(["kubeconfig", "--merge", "--state-dir", state], {
      cwd: dir,
      env: { KUBECONFIG: target },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ cannot merge into ${target}: ENOTDIR: not a directory\n  → a file stands where a directory is expected on the way to ${target}\n`,
    );
  });
});

describe("hints that must work when typed as given", () => {
  test("a missing cluster file named with -c is to be written there, not in ./kubehyve.yaml", async () => {
    const { dir, run } = workdir();
    const r = await run(["config", "validate", "-c", "labs/my lab.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ cluster file ${join(dir, "labs/my lab.yaml")} does not exist\n  → write one with \`kubehyve init -c '${join(dir, "labs/my lab.yaml")}'\`, or name another with -c FILE\n`,
    );
    const here = await run(["config", "validate"]);
    expect(here.stderr).toContain("→ write one with `kubehyve init`, or name another with -c FILE");
  });

  test("init -c FILE says to plan with -c FILE", async () => {
    const { dir, run } = workdir();
    const r = await run(["init", "-c", "other.yaml"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      `wrote ${join(dir, "other.yaml")}: edit the nodes and network, then run kubehyve plan -c other.yaml`,
    );
  });
});
