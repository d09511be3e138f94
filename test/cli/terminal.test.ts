/**
 * What the CLI prints reaches a terminal, a pipe or a file as each needs: colours only on a terminal
 * (and never with NO_COLOR), every byte to a pipe however slow or non-blocking it is, and a reader
 * that goes away is no failure. The output layer writes to the descriptors itself (cli/output.ts),
 * so these run real processes on a real pseudo-terminal (util-linux's script) and real pipes.
 */
import { describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli, userEnv } from "../lab/cli.ts";
import { findTool, have } from "../lab/prereq.ts";

const ROOT = join(import.meta.dir, "../..");
const MAIN = join(ROOT, "src/main.ts");
const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;

/** `argv` run on a pseudo-terminal: script(1) gives it one for stdin, stdout and stderr alike. */
function onTerminal(argv: string[], env: Record<string, string>): { code: number | null; text: string } {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-tty-"));
  const proc = Bun.spawnSync(
    [findTool("script")!, "--quiet", "--return", "--command", argv.map(quote).join(" "), "/dev/null"],
    {
      cwd: dir,
      env: { ...userEnv(dir), TERM: "xterm", ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  // The terminal turns each line feed into CR LF.
  return { code: proc.exitCode, text: proc.stdout.toString().replaceAll("\r\n", "\n") };
}

/** The environment of runCli without NO_COLOR, plus `env`. */
function colourable(env: Record<string, string> = {}): Record<string, string> {
  return { NO_COLOR: "", ...env };
}

const GREEN_TICK = "\x1b[32m✔\x1b[39m <built-in example lab> is valid";

describe("colours", () => {
  test.skipIf(!have("script", "bsdutils"))(
    "a terminal gets the lines in colour, as consola's fancy reporter draws them",
    () => {
      const r = onTerminal([process.execPath, MAIN, "config", "validate", "--example"], colourable());
      expect(r.code).toBe(0);
      expect(r.text).toStartWith(GREEN_TICK);
    },
  );

  test.skipIf(!have("script", "bsdutils"))("NO_COLOR keeps a terminal's lines plain", () => {
    const r = onTerminal([process.execPath, MAIN, "config", "validate", "--example"], { NO_COLOR: "1" });
    expect(r.code).toBe(0);
    expect(r.text).toStartWith("✔ <built-in example lab> is valid");
    expect(r.text).not.toContain("\x1b[");
  });

  test("a pipe gets plain lines, and FORCE_COLOR colours them anyway", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-pipe-"));
    const plain = runCli([process.execPath, MAIN, "config", "validate", "--example"], {
      cwd: dir,
      env: colourable(),
    });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toStartWith("✔ <built-in example lab> is valid");
    expect(plain.out).not.toContain("\x1b[");
    const forced = runCli([process.execPath, MAIN, "config", "validate", "--example"], {
      cwd: dir,
      env: colourable({ FORCE_COLOR: "1" }),
    });
    expect(forced.stdout).toStartWith(GREEN_TICK);
  });

  test("FORCE_COLOR colours a pipe only for the values Node takes as asking for colours", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-pipe-"));
    const seen = (value: string) =>
      runCli([process.execPath, MAIN, "config", "validate", "--example"], {
        cwd: dir,
        env: colourable({ FORCE_COLOR: value }),
      }).stdout.startsWith(GREEN_TICK);
    expect(["", "true"].filter(seen)).toEqual(["", "true"]);
    expect(["0", "false"].filter(seen)).toEqual([]);
  });

  test.skipIf(!have("script", "bsdutils"))(
    "--help is styled on a terminal and plain text on a pipe or in a file",
    () => {
      const styled = onTerminal([process.execPath, MAIN, "--help"], colourable());
      expect(styled.code).toBe(0);
      expect(styled.text).toContain("\x1b[4m\x1b[1mUSAGE");
      const dir = mkdtempSync(join(tmpdir(), "kubehyve-pipe-"));
      const piped = runCli([process.execPath, MAIN, "--help"], { cwd: dir, env: colourable() });
      expect(piped.code).toBe(0);
      expect(piped.stdout).toContain("USAGE kubehyve init|plan|up");
      expect(piped.stdout).not.toContain("\x1b[");
    },
  );
});

describe("the descriptors themselves", () => {
  const child = (body: string) => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-out-"));
    const file = join(dir, "child.ts");
    writeFileSync(
      file,
      `import { constants, openSync } from "node:fs";\nimport { isTerminal, writeFully } from ${JSON.stringify(join(ROOT, "src/cli/output.ts"))};\n${body}\n`,
    );
    return file;
  };

  test.skipIf(!have("script", "bsdutils"))("a terminal is told from a pipe on each descriptor", () => {
    const file = child("writeFully(1, JSON.stringify([0, 1, 2].map(isTerminal)) + '\\n');");
    expect(onTerminal([process.execPath, file], {}).text.trim()).toBe("[true,true,true]");
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-pipe-"));
    expect(runCli([process.execPath, file], { cwd: dir }).stdout.trim()).toBe("[false,false,false]");
  });

  test("every byte reaches a pipe its parent made non-blocking, in order, however slow its reader", async () => {
    // A second open of the pipe with O_NONBLOCK: a full pipe answers EAGAIN there, as it does to a
    // child whose parent (Node, for one) made its end non-blocking.
    const file = child(`
const fd = openSync("/proc/self/fd/1", constants.O_WRONLY | constants.O_NONBLOCK);
for (let i = 0; i < 4096; i++) writeFully(fd, String(i).padStart(8, "0") + "x".repeat(1015) + "\\n");
writeFully(2, "wrote all\\n");`);
    // A kernel pipe (Bun's own "pipe" is a socket pair), which nobody reads until the writer has
    // long filled its 64 KiB.
    const proc = Bun.spawn(["bash", "-c", '"$@" | { sleep 1.5; cat; }', "bash", process.execPath, file], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    expect(err).toBe("wrote all\n");
    expect(code).toBe(0);
    const lines = out.split("\n").slice(0, -1);
    expect(lines).toHaveLength(4096);
    expect(lines.every((line, i) => line.startsWith(String(i).padStart(8, "0")))).toBe(true);
  });

  test("a reader that goes away is no failure: the rest goes nowhere and the command goes on", () => {
    const file = child(`
for (let i = 0; i < 4096; i++) writeFully(1, "x".repeat(1023) + "\\n");
writeFully(2, "went on\\n");`);
    const proc = Bun.spawnSync(
      [
        "bash",
        "-c",
        `${quote(process.execPath)} ${quote(file)} | head -c 100 >/dev/null; echo "exit \${PIPESTATUS[0]}"`,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    expect(proc.stderr.toString()).toBe("went on\n");
    expect(proc.stdout.toString()).toBe("exit 0\n");
  });

  // --version alone takes a fast path of its own in main.ts, and must fail as `kubehyve version` does.
  for (const args of [
    ["config", "validate", "--example"],
    ["plan", "--example", "--offline", "--json"],
    ["--version"],
    ["version"],
  ])
    test(`stdout on a full disk fails \`${args.join(" ")}\` with one line saying so, after the run, not a crash`, () => {
      const dir = mkdtempSync(join(tmpdir(), "kubehyve-full-"));
      const full = openSync("/dev/full", "w");
      try {
        const proc = Bun.spawnSync([process.execPath, MAIN, ...args], {
          cwd: dir,
          env: userEnv(dir),
          stdin: "ignore",
          stdout: full,
          stderr: "pipe",
        });
        expect(proc.stderr.toString()).toBe(
          "✖ kubehyve could not write all of its output to stdout: ENOSPC: no space left on device, write\n",
        );
        expect(proc.exitCode).toBe(1);
      } finally {
        closeSync(full);
      }
    });
});

describe("a terminal that cannot move its cursor", () => {
  test.skipIf(!have("script", "bsdutils"))(
    "TERM=dumb gets no line redrawn in place, nor any other escape sequence",
    () => {
      const dir = mkdtempSync(join(tmpdir(), "kubehyve-dumb-"));
      writeFileSync(
        join(dir, "kubehyve.yaml"),
        "name: probe\nnetwork: { gateway: 127.0.0.1, subnet: 127.0.0.0/24 }\nnodes:\n  - { name: n1, role: control-plane, address: 127.0.0.10 }\n",
      );
      const args = [
        process.execPath,
        MAIN,
        "doctor",
        "-c",
        join(dir, "kubehyve.yaml"),
        "--state-dir",
        join(dir, "state"),
      ];
      // On a terminal that can, the line saying what doctor looks at is drawn and then cleared.
      const xterm = onTerminal(args, colourable());
      expect(xterm.code).toBe(0);
      expect(xterm.text).toContain("doctor: looking at nothing…\r\x1b[2K");
      const dumb = onTerminal(args, colourable({ TERM: "dumb" }));
      expect(dumb.code).toBe(0);
      expect(dumb.text).toStartWith("doctor probe: no stages");
      expect(dumb.text).not.toContain("\x1b");
    },
  );
});
