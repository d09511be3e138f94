/**
 * A flag given an empty value is nearly always an unset variable (`-c "$CLUSTER"`). Taken as "no
 * value", `down --yes -c ""` tore down whatever ./kubehyve.yaml names, and `--state-dir ""` made
 * the working directory the state dir. Every flag that takes a value refuses an empty one, with
 * exit 2, before anything runs. The command line from source, with a drop-in plugin whose destroy
 * removes a file, so that a teardown would show.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ArgsDef } from "citty";
import { checkFlags, commands } from "../../src/cli/index.ts";
import { InputError } from "../../src/lib/errors.ts";
import { dropInLab, runCli } from "../lab/cli.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

// Each test starts the command line a few times: room for a 2-core machine under load.
setDefaultTimeout(30_000);

const PLUGIN = `import { definePlugin } from "kubehyve";
import { rmSync } from "node:fs";
export default definePlugin({
  id: "marker/file",
  title: "a file the cluster owns",
  apiVersion: 1,
  async check() { return { changes: [], diagnostics: [] }; },
  async destroy(ctx) {
    await ctx.wet("remove " + ctx.options.file, async () => rmSync(ctx.options.file, { force: true }));
  },
});
`;

function lab() {
  const { dir, plugins } = dropInLab({
    prefix: "kubehyve-empty-",
    name: "emptylab",
    plugins: { "marker.ts": PLUGIN },
    stages: (dir) => `  marker:\n    plugin: file\n    file: ${join(dir, "marker.txt")}\n`,
  });
  writeFileSync(join(dir, "marker.txt"), "the cluster's");
  const run = (args: string[]) =>
    runCli([process.execPath, MAIN, ...args, "--plugin-dir", plugins], {
      cwd: dir,
      env: { XDG_STATE_HOME: join(dir, "xdg") },
    });
  return { dir, run, marker: join(dir, "marker.txt") };
}

describe("an empty value", () => {
  test('down --yes -c "" tears nothing down: it is refused before ./kubehyve.yaml is read', () => {
    const { run, marker } = lab();
    for (const args of [["-c", ""], ["--config="], ["--config", " "]]) {
      const r = run(["down", "--yes", ...args]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(existsSync(marker)).toBe(true);
    }
    const r = run(["down", "--yes", "-c", ""]);
    expect(r.stderr).toBe(
      '✖ -c was given an empty value (""); nothing was done\n  → give -c a value, or leave the flag out: see kubehyve down --help\n',
    );
    // The same file, named, is torn down: the refusal above was about the empty value alone.
    expect(run(["down", "--yes", "-c", "kubehyve.yaml"]).code).toBe(0);
    expect(existsSync(marker)).toBe(false);
  });

  test("is refused for --state-dir, --only, --from, --until and --plugin-dir, and nothing is made", () => {
    const { run, dir } = lab();
    const cases: [string[], string][] = [
      [["--state-dir", ""], '--state-dir was given an empty value ("")'],
      [["--state-dir="], "--state-dir was given an empty value;"],
      [["--only", ""], '--only was given an empty value ("")'],
      [["--only="], "--only was given an empty value;"],
      [["--only", ","], '--only "," has an empty item'],
      [["--only", "marker,"], '--only "marker," has an empty item'],
      [["--from", ""], '--from was given an empty value ("")'],
      [["--until", ""], '--until was given an empty value ("")'],
      [["--until= "], "--until was given an empty value;"],
      [["--plugin-dir", ""], '--plugin-dir was given an empty value ("")'],
    ];
    for (const [args, message] of cases) {
      const r = run(["plan", ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toStartWith(`✖ ${message}`);
    }
    expect(
      readdirSync(dir)
        .filter((f) => f !== ".bun")
        .sort(),
    ).toEqual(["kubehyve.yaml", "marker.txt", "plugins"]);
  });

  test("is refused for every flag of every command that takes a value", async () => {
    const cases: { path: string[]; flag: string }[] = [];
    for (const [name, load] of Object.entries(commands)) {
      const cmd = await load();
      const subs = cmd.subCommands ? Object.entries(await cmd.subCommands) : [[undefined, cmd] as const];
      for (const [sub, def] of subs) {
        const resolved = typeof def === "function" ? await (def as () => Promise<typeof cmd>)() : def;
        const args = (await (resolved as typeof cmd).args) ?? {};
        for (const [flag, spec] of Object.entries(args))
          if (spec.type === "string") cases.push({ path: sub ? [name, sub] : [name], flag });
      }
    }
    // Not an empty loop: the flags the issue names are among them.
    expect(cases.map((c) => `${c.path.join(" ")} --${c.flag}`)).toEqual(
      expect.arrayContaining([
        "down --config",
        "plan --state-dir",
        "plan --only",
        "render --output",
        "doctor --timeout",
      ]),
    );
    // The command line's own check, on each command's real flag definitions: an empty value is
    // refused whether it is the next word or after "=".
    for (const { path, flag } of cases) {
      const args = (await argsOf(path)) as ArgsDef;
      for (const raw of [[`--${flag}`, ""], [`--${flag}=`]]) {
        let thrown: unknown;
        try {
          checkFlags(raw, args, path.join(" "));
        } catch (error) {
          thrown = error;
        }
        expect({
          command: path.join(" "),
          raw,
          refused:
            thrown instanceof InputError &&
            (thrown as Error).message.startsWith(`--${flag} was given an empty value`),
        }).toEqual({ command: path.join(" "), raw, refused: true });
      }
    }
  });
});

async function argsOf(path: string[]): Promise<unknown> {
  const cmd = await commands[path[0]!]!();
  if (path.length === 1) return cmd.args;
  const subs = (await cmd.subCommands) as Record<string, { args?: unknown }>;
  return subs[path[1]!]!.args;
}
