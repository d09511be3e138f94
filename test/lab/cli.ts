/**
 * Runs the command line the way a user's shell would without a terminal: a child process with
 * NO_COLOR, stdin closed, HOME pointing at the test's own directory and nothing else inherited but PATH.
 */
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout then stderr, for text that may land on either. */
  out: string;
}

/**
 * PATH, HOME and NO_COLOR: nothing from the test runner's environment leaks into the command. The
 * host lock of `up` and `down` lives in HOME too: tests running side by side on one machine are
 * different hosts, not rivals for /var/run/kubehyve.lock.
 */
export function userEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    NO_COLOR: "1",
    KUBEHYVE_HOST_LOCK: join(home, "host.lock"),
    ...extra,
  };
}

/** `argv` is the whole command: the binary, or the runtime and src/main.ts, then the arguments. */
export function runCli(argv: string[], opts: { cwd: string; env?: Record<string, string> }): CliResult {
  const proc = Bun.spawnSync(argv, {
    cwd: opts.cwd,
    env: userEnv(opts.cwd, opts.env),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const stdout = proc.stdout.toString();
  const stderr = proc.stderr.toString();
  return { code: proc.exitCode, stdout, stderr, out: stdout + stderr };
}

/**
 * A fresh directory for a run with drop-in plugins: `plugins/` (0755, the given files 0644, as the
 * loader demands) and a kubehyve.yaml naming one node on 10.9.0.0/24 and the stages (YAML text
 * indented under `stages:`, given the directory). The state dir is `state/` inside it, not created.
 */
export function dropInLab(opts: {
  prefix: string;
  name: string;
  plugins: Record<string, string>;
  stages: (dir: string) => string;
}): {
  dir: string;
  plugins: string;
  state: string;
} {
  const dir = mkdtempSync(join(tmpdir(), opts.prefix));
  const plugins = join(dir, "plugins");
  mkdirSync(plugins, { mode: 0o755 });
  chmodSync(plugins, 0o755);
  for (const [file, content] of Object.entries(opts.plugins)) {
    writeFileSync(join(plugins, file), content);
    chmodSync(join(plugins, file), 0o644);
  }
  writeFileSync(
    join(dir, "kubehyve.yaml"),
    `name: ${opts.name}\nnetwork:\n  gateway: 10.9.0.1\n  subnet: 10.9.0.0/24\nnodes:\n  - name: n1\n    role: control-plane\n    address: 10.9.0.10\nstages:\n${opts.stages(dir)}`,
  );
  return { dir, plugins, state: join(dir, "state") };
}

/**
 * Runs a command in this process, as nuxt/cli's tests call citty's runCommand: the same parser,
 * commands, engine and plugins as the binary, with its output captured instead of printed, and the
 * working directory and environment a shell would give it (those of userEnv, nothing else of the
 * runner's). Signals and what only the compiled binary shows stay with the child-process tests.
 */
export async function runInProcess(
  args: string[],
  opts: { cwd: string; env?: Record<string, string>; stdoutTerminal?: boolean },
): Promise<CliResult> {
  const [{ runCli: run }, { withOutput }, { provideBuiltins }] = await Promise.all([
    import("../../src/cli/index.ts"),
    import("../../src/cli/output.ts"),
    import("../../src/cli/builtins.ts"),
  ]);
  provideBuiltins(async () => (await import("../../plugins/index.ts")).builtinPlugins);
  const savedEnv = { ...process.env };
  const savedCwd = process.cwd();
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, userEnv(opts.cwd, opts.env));
  process.chdir(opts.cwd);
  let stdout = "";
  let stderr = "";
  try {
    const capture = {
      stdout(text: string) {
        stdout += text;
      },
      stderr(text: string) {
        stderr += text;
      },
      interactive: false,
      stdoutTerminal: opts.stdoutTerminal,
    };
    const code = await withOutput(capture, () => run(args));
    return { code, stdout, stderr, out: stdout + stderr };
  } finally {
    process.chdir(savedCwd);
    for (const key of Object.keys(process.env)) delete process.env[key];
    Object.assign(process.env, savedEnv);
  }
}
