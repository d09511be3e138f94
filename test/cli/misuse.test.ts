/**
 * More of what a careless or hostile user gives the commands that touch no host: odd names, odd
 * environments, odd places to write. Each gets a clear message and exit code, and nothing is written
 * where it was not asked for. In process through runInProcess, but for what only a process shows
 * (the runtime's decoding of argv, the --version fast path).
 */
import { describe, expect, test } from "bun:test";
import { once } from "node:events";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runInProcess, userEnv } from "../lab/cli.ts";

const ROOT = join(import.meta.dir, "../..");
const MAIN = join(ROOT, "src/main.ts");

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

  test("a line break in a name cannot forge a line of the error: message and hint stay one line each", async () => {
    const { dir, run } = workdir();
    const r = await run(["config", "validate", "-c", "lab.yaml\n✔ all fine"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ cluster file ${join(dir, "lab.yaml")}\\n✔ all fine does not exist\n  → write one with \`kubehyve init -c '${join(dir, "lab.yaml")}\\n✔ all fine'\`, or name another with -c FILE\n`,
    );
  });

  test("the plugin path in kubehyve plugins is shown escaped", async () => {
    const { run } = workdir();
    const r = await run(["plugins", "--plugin-dir", "/nowhere\x1b[31m"]);
    expect(r.out).not.toMatch(/\p{Cc}(?<!\n)/u);
    expect(r.stdout).toContain("plugin path: /nowhere\\u001b[31m:");
  });
});

describe("arguments that are not UTF-8", () => {
  test("an argument the runtime could not decode is refused, and no file of another name is written", async () => {
    const { dir, run } = workdir();
    const r = await run(["init", "-c", "lab\uFFFD.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      '✖ the argument "lab\uFFFD.yaml" is not valid UTF-8 (or holds U+FFFD), so kubehyve cannot know which file or name it means; nothing was done\n  → give names in UTF-8: rename the file, or reach it through a link with a UTF-8 name\n',
    );
    expect(readdirSync(dir)).toEqual(["kubehyve.yaml"]);
  });

  test("bytes that are not UTF-8 in a process's argv are refused the same way (the runtime makes them U+FFFD)", () => {
    const { dir } = workdir();
    // bash puts the raw byte 0xff into argv, which a spawn from here (strings) cannot.
    const proc = Bun.spawnSync(
      ["bash", "-c", `"$@" init -c $'lab\\xff.yaml'`, "bash", process.execPath, MAIN],
      {
        cwd: dir,
        env: userEnv(dir),
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    expect(proc.stderr.toString()).toStartWith('✖ the argument "lab\uFFFD.yaml" is not valid UTF-8');
    expect(proc.exitCode).toBe(2);
    expect(readdirSync(dir).filter((f) => f.startsWith("lab"))).toEqual([]);
  });
});

describe("kubehyve init", () => {
  test("--force replaces a regular file only: not a socket, device or FIFO, nor a link, dangling or not", async () => {
    const { dir, run } = workdir();
    const socket = join(dir, "socket.yaml");
    const server = createServer().listen(socket);
    await once(server, "listening");
    symlinkSync(join(dir, "kubehyve.yaml"), join(dir, "link.yaml"));
    symlinkSync(join(dir, "nowhere.yaml"), join(dir, "dangling.yaml"));
    try {
      const r = await run(["init", "-c", socket, "--force"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `✖ ${socket} is not a regular file (a device, a FIFO or a socket); nothing was written\n  → name a file to write: kubehyve init -c FILE\n`,
      );
      expect(lstatSync(socket).isSocket()).toBe(true);
      for (const [name, to] of [
        ["link.yaml", join(dir, "kubehyve.yaml")],
        ["dangling.yaml", join(dir, "nowhere.yaml")],
      ] as const)
        for (const force of [["--force"], []]) {
          const l = await run(["init", "-c", name, ...force]);
          expect(l.code).toBe(2);
          expect(l.stderr).toStartWith(
            `✖ ${join(dir, name)} is a symbolic link (to ${to}); init replaces only a regular file, never a link; nothing was written\n`,
          );
          expect(lstatSync(join(dir, name)).isSymbolicLink()).toBe(true);
        }
      expect(readFileSync(join(dir, "kubehyve.yaml"), "utf8")).toBe(BARE);
      expect(existsSync(join(dir, "nowhere.yaml"))).toBe(false);
    } finally {
      server.close();
    }
  });

  test("a file in a directory that does not exist is refused, and no directory is made for it", async () => {
    const { dir, run } = workdir();
    const target = join(dir, "typo", "deeper", "kubehyve.yaml");
    const r = await run(["init", "-c", target]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ the directory ${join(dir, "typo", "deeper")} does not exist, so ${target} cannot be written; nothing was written\n  → make it first (mkdir -p ${join(dir, "typo", "deeper")}), or name a file in a directory that is there\n`,
    );
    expect(existsSync(join(dir, "typo"))).toBe(false);
  });
});

describe("--help", () => {
  test("a subcommand's usage names the whole command, kubehyve included", async () => {
    const { run } = workdir();
    for (const sub of ["validate", "schema"]) {
      const r = await run(["config", sub, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`USAGE kubehyve config ${sub} [OPTIONS]`);
      expect(r.stdout).toContain(`(kubehyve config ${sub})`);
    }
  });

  test("a long alias is shown with two dashes, as the command line takes it", async () => {
    const { dir, run } = workdir();
    const help = await run(["plan", "--help"]);
    expect(help.stdout).toContain("--upgrade-image, --upgrade ");
    expect(help.stdout).not.toContain(" -upgrade-image");
    expect(help.stdout).toContain("-c, --config=<FILE>");
    const typed = await run(["plan", "--offline", "--upgrade-image", "--state-dir", join(dir, "state")]);
    expect(typed.code).toBe(0);
  });
  test("--state-dir says where the state dir is without it", async () => {
    const { run } = workdir();
    const help = await run(["plan", "--help"]);
    expect(help.stdout).toMatch(
      /--state-dir=<DIR> +.*\(default: \/var\/db\/kubehyve\/NAME on FreeBSD, \$XDG_STATE_HOME\/kubehyve\/NAME elsewhere\)/,
    );
  });

  test("init's -c is the file it writes, which is never the system-wide one", async () => {
    const { run } = workdir();
    const help = await run(["init", "--help"]);
    expect(help.stdout).toMatch(
      /-c, --config=<FILE> +The cluster file to write \(default: \.\/kubehyve\.yaml\)/,
    );
    expect(help.stdout).not.toContain("/usr/local/etc");
  });

  test("what a command cannot run without is shown as required, though it is checked with the rest", async () => {
    const { run } = workdir();
    const expose = await run(["expose", "--help"]);
    expect(expose.stdout).toContain("USAGE kubehyve expose [OPTIONS] <SERVICE> --host=<NAME>");
    expect(expose.stdout).toMatch(/--host=<NAME> +The name clients use .*\(Required\)/);
    const render = await run(["render", "--help"]);
    expect(render.stdout).toContain("USAGE kubehyve render [OPTIONS] --output=<DIR>");
    // Still every problem at once, not citty's first one.
    const bare = await run(["expose"]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain("SERVICE: the Service to expose is needed");
    expect(bare.stderr).toContain("--host: the name clients use is needed");
  });
});

describe("a very long value", () => {
  test("is cut in the message on the terminal, and kept whole in --json", async () => {
    const { run } = workdir();
    const long = "a".repeat(120_000);
    const r = await run(["plan", "--offline", "--only", long]);
    expect(r.code).toBe(2);
    expect(r.stderr.length).toBeLessThan(10_000);
    expect(r.stderr).toStartWith(`✖ no stage "${"a".repeat(100)}`);
    expect(r.stderr).toContain("… (");
    expect(r.stderr).toContain(" characters more)\n");
    const json = await run(["plan", "--offline", "--json", "--only", long]);
    expect(JSON.parse(json.stdout).message).toBe(`no stage "${long}" in this cluster file`);
  });
});

describe("the environment", () => {
  test("a relative HOME is refused rather than taken as a state dir below the working directory", async () => {
    const { dir, run } = workdir();
    const r = await run(["plan", "--offline"], { HOME: "rel" });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      '✖ HOME is "rel", not an absolute path, so the state dir of probe cannot be found by it; nothing was done\n  → set HOME to your home directory, or pass --state-dir DIR\n',
    );
    expect(existsSync(join(dir, "rel"))).toBe(false);
    // What needs no state dir of the cluster's does not ask HOME for one.
    for (const args of [
      ["config", "validate"],
      ["plan", "--offline", "--example"],
    ]) {
      const none = await run(args, { HOME: "rel" });
      expect(none.stderr).toBe("");
      expect(none.code).toBe(0);
    }
    // An absolute XDG_STATE_HOME, or --state-dir, needs no HOME.
    const xdg = await run(["plan", "--offline"], { HOME: "rel", XDG_STATE_HOME: join(dir, "xdg") });
    expect(xdg.code).toBe(0);
    expect(existsSync(join(dir, "xdg", "kubehyve", "probe"))).toBe(true);
  });
});

describe("render -o and the state dir", () => {
  test("the state dir itself, or a directory inside it, even through a link, is refused before anything is written", async () => {
    const { dir, run } = workdir();
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    symlinkSync(state, join(dir, "link"));
    for (const [out, inside] of [
      [state, ""],
      [join(state, "render"), "inside "],
      [join(dir, "link", "a"), "inside "],
    ] as const) {
      const r = await run(["render", "--force", "-o", out, "--state-dir", state]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `✖ render output ${out} is ${inside}the state dir ${state}; nothing was written\n  → kubehyve render -o DIR, somewhere outside the state dir\n`,
      );
    }
    expect(readdirSync(state)).toEqual([]);
  });

  test("an output whose stage folder would be the state dir, or hold it, is refused; one beside it is fine", async () => {
    const { dir, run } = workdir();
    for (const state of [join(dir, "os"), join(dir, "os", "lab")]) {
      const r = await run(["render", "--example", "--force", "-o", dir, "--state-dir", state]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `✖ render output ${dir} would put the os stage's files in ${join(dir, "os")}, where the state dir ${state} is; nothing was written\n  → kubehyve render -o DIR, where no stage's folder is the state dir\n`,
      );
      expect(existsSync(join(dir, "os"))).toBe(false);
    }
    const beside = await run([
      "render",
      "--example",
      "--force",
      "-o",
      dir,
      "--state-dir",
      join(dir, "state"),
    ]);
    expect(beside.code).toBe(0);
    expect(readdirSync(join(dir, "os")).sort()).toEqual(["cp1.ign", "w1.ign", "w2.ign"]);
  });
});

describe("switches and short flags citty would misread", () => {
  test('init -c=FILE is refused rather than writing a file named "=FILE"', async () => {
    const { dir, run } = workdir();
    const r = await run(["init", "-c=lab.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith('✖ -c=lab.yaml: a short flag takes its value after a space, not after "="');
    expect(readdirSync(dir)).toEqual(["kubehyve.yaml"]);
  });

  test("--offline=false or --no-offline next to --offline is refused before the cluster file is read or a state dir made", async () => {
    const { dir, run } = workdir();
    for (const args of [["--offline=false"], ["--offline", "--no-offline"]]) {
      const r = await run(["plan", ...args, "--state-dir", join(dir, "state")]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(existsSync(join(dir, "state"))).toBe(false);
    }
  });
});

describe("two commands on one cluster at once", () => {
  test("a doctor beside a doctor --watch, whose log is rewritten through a temporary file every round, never fails on it", async () => {
    const { dir, run } = workdir();
    const state = join(dir, "state");
    expect((await run(["doctor", "--state-dir", state])).code).toBe(0);
    const watch = Bun.spawn(
      [
        process.execPath,
        MAIN,
        "doctor",
        "--watch",
        "0.1",
        "--state-dir",
        state,
        "-o",
        join(dir, "report.txt"),
      ],
      { cwd: dir, env: userEnv(dir), stdin: "ignore", stdout: "ignore", stderr: "pipe" },
    );
    try {
      // The watch's rounds have begun once its report is there.
      while (!existsSync(join(dir, "report.txt"))) await Bun.sleep(10);
      const failures: string[] = [];
      const until = Date.now() + 4_000;
      while (Date.now() < until) {
        const r = await run(["doctor", "--state-dir", state]);
        if (r.code !== 0) failures.push(r.stderr);
      }
      expect(failures).toEqual([]);
    } finally {
      watch.kill("SIGTERM");
      expect(await watch.exited).toBe(130);
      expect(await new Response(watch.stderr).text()).toBe("terminated: stopping after the current step\n");
    }
  });
});

describe("a state dir that is the root of the system", () => {
  test('is refused as such (`--state-dir "$DIR/"` with DIR unset), not for a folder in it, and nothing is written', async () => {
    const { dir, run } = workdir();
    const before = readdirSync("/").sort();
    for (const state of ["/", join(dir, "..", "..", "..", "..", "..", "..", "..")]) {
      const r = await run(["plan", "--offline", "--state-dir", state]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        "✖ state dir / is the root directory; nothing was done\n  → --state-dir DIR, a directory of the cluster's own\n",
      );
    }
    expect(readdirSync("/").sort()).toEqual(before);
  });
});

describe("a state dir that is a directory of other things", () => {
  test("is refused before anything is written into it (--state-dir ~, --state-dir /usr)", async () => {
    const { dir, run } = workdir();
    const home = join(dir, "home");
    mkdirSync(join(home, "projects"), { recursive: true, mode: 0o700 });
    writeFileSync(join(home, ".profile"), "", { mode: 0o600 });
    const r = await run(["plan", "--offline", "--state-dir", home]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ state dir ${home} holds 2 entries (".profile", "projects") but nothing of kubehyve's (no journal or logs), so it is not a state dir; nothing was done\n  → pass --state-dir DIR: a new or empty directory, or one kubehyve has used before\n`,
    );
    expect(readdirSync(home).sort()).toEqual([".profile", "projects"]);
  });

  test("a shared directory (sticky, writable by all) in a state dir is not to be chmod-ed: the hint says so", async () => {
    const { dir, run } = workdir();
    const state = join(dir, "state");
    expect((await run(["plan", "--offline", "--state-dir", state])).code).toBe(0);
    mkdirSync(join(state, "tmp"));
    chmodSync(join(state, "tmp"), 0o1777);
    const r = await run(["plan", "--offline", "--state-dir", state]);
    expect(r.code).toBe(2);
    expect(r.stderr).toEndWith(
      `  → ${join(state, "tmp")} is a shared directory (sticky, writable by everyone), so ${state} is no cluster's own: pass --state-dir DIR, a directory of the cluster's own\n`,
    );
  });

  test("a new, an empty, and a used state dir are fine, and so is one a refused run left only its logs in", async () => {
    const { dir, run } = workdir();
    const empty = join(dir, "empty");
    mkdirSync(empty, { mode: 0o700 });
    mkdirSync(join(empty, "lost+found"), { mode: 0o700 });
    expect((await run(["plan", "--offline", "--state-dir", empty])).code).toBe(0);
    expect((await run(["plan", "--offline", "--state-dir", empty])).code).toBe(0);
    const refused = join(dir, "refused");
    expect(
      (await run(["plan", "--offline", "--example", "--only", "bogus", "--state-dir", refused])).code,
    ).toBe(2);
    expect(readdirSync(refused)).toEqual(["logs"]);
    const again = await run(["plan", "--offline", "--example", "--state-dir", refused]);
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
  });
});
