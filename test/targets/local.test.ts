import { describe, expect, spyOn, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CancelledError } from "../../src/lib/errors.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import { FALLBACK_TIMEOUT_MS, MAX_OUTPUT_BYTES, runOk, TIMEOUT_EXIT } from "../../src/targets/target.ts";

const local = new LocalTarget();

/** Runs a command that prints each of its arguments followed by a NUL, and splits the output back. */
async function echoWords(words: string[]): Promise<string[]> {
  const result = await runOk(local, ["printf", "%s\\0", ...words]);
  return result.stdout.split("\0").slice(0, -1);
}

describe("LocalTarget", () => {
  test("is named local", () => {
    expect(local.name).toBe("local");
  });

  test("passes every argv word to the program verbatim, with no shell in between", async () => {
    const words = [
      "two words",
      "it's",
      '"double"',
      "$(touch /tmp/kubehyve-pwned)",
      "`id`",
      "line1\nline2",
      "*",
      ";",
      "-n",
      "ünïcødé ✓",
      "",
    ];
    expect(await echoWords(words)).toEqual(words);
    expect(await Bun.file("/tmp/kubehyve-pwned").exists()).toBe(false);
  });

  test("returns the exit code, stdout and stderr of the command", async () => {
    const result = await local.run(["sh", "-c", "echo out; echo err >&2; exit 7"]);
    expect(result).toEqual({ code: 7, stdout: "out\n", stderr: "err\n" });
  });

  test("reports death by a signal as 128 plus the signal number, as a shell does", async () => {
    const result = await local.run(["sh", "-c", "kill -KILL $$"]);
    expect(result.code).toBe(128 + 9);
  });

  test("feeds stdin from a string and from bytes", async () => {
    expect((await local.run(["cat"], { stdin: "from a string\n" })).stdout).toBe("from a string\n");
    const bytes = new Uint8Array([0x68, 0x69, 0x0a]);
    expect((await local.run(["od", "-An", "-tx1"], { stdin: bytes })).stdout.trim()).toBe("68 69 0a");
  });

  test("gives the command an empty stdin when none is passed, so it never waits for input", async () => {
    const result = await local.run(["cat"], { timeoutMs: 5000 });
    expect(result).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  test("gives it an empty stdin also when kubehyve's own stdin is a pipe left open", async () => {
    // kubehyve from cron or ssh may have a stdin nobody ever closes: the command must not read it.
    const module = join(import.meta.dir, "../../src/targets/local.ts");
    const proc = Bun.spawn(
      [
        process.execPath,
        "-e",
        `const { LocalTarget } = await import(${JSON.stringify(module)}); const r = await new LocalTarget().run(["cat"], { timeoutMs: 5000 }); console.log(r.code);`,
      ],
      { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
    );
    try {
      expect(await new Response(proc.stdout).text()).toBe("0\n");
    } finally {
      proc.stdin.end();
      await proc.exited;
    }
  }, 30_000);

  test("merges env over the environment of kubehyve itself", async () => {
    const result = await local.run(["sh", "-c", 'printf "%s|%s" "$KUBEHYVE_TEST_VAR" "$HOME"'], {
      env: { KUBEHYVE_TEST_VAR: "a value with spaces" },
    });
    expect(result.stdout).toBe(`a value with spaces|${process.env.HOME ?? ""}`);
  });

  test("removes a name set to undefined from the environment it inherits", async () => {
    const result = await local.run(["sh", "-c", "printenv HOME || echo unset"], { env: { HOME: undefined } });
    expect(result.stdout).toBe("unset\n");
  });

  test("finds programs through the PATH given in env", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-shim-"));
    try {
      await writeFile(join(dir, "kubehyve-shim-probe"), "#!/bin/sh\necho shim ran\n", { mode: 0o755 });
      const result = await local.run(["kubehyve-shim-probe"], { env: { PATH: `${dir}:/usr/bin:/bin` } });
      expect(result).toEqual({ code: 0, stdout: "shim ran\n", stderr: "" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("runs in the given working directory", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-cwd-"));
    try {
      expect((await local.run(["pwd", "-P"], { cwd: dir })).stdout.trim()).toBe(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("refuses a working directory that does not exist, naming it", async () => {
    await expect(local.run(["true"], { cwd: "/nonexistent/kubehyve-dir" })).rejects.toThrow(
      "working directory /nonexistent/kubehyve-dir does not exist",
    );
  });

  test("answers a missing program with code 127 and a clear message instead of throwing", async () => {
    const result = await local.run(["kubehyve-no-such-program", "--flag"]);
    expect(result.code).toBe(127);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe("local: kubehyve-no-such-program: command not found in PATH\n");
    const byPath = await local.run(["/nonexistent/bin/tool"]);
    expect(byPath.code).toBe(127);
    expect(byPath.stderr).toBe("local: /nonexistent/bin/tool: no such file\n");
  });

  test("answers a file that cannot be executed with code 126", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-noexec-"));
    try {
      const plain = join(dir, "plain");
      await writeFile(plain, "echo hi\n", { mode: 0o644 });
      const notExecutable = await local.run([plain]);
      expect(notExecutable.code).toBe(126);
      expect(notExecutable.stderr).toBe(`local: ${plain}: permission denied (not an executable file)\n`);
      const garbage = join(dir, "garbage");
      await writeFile(garbage, new Uint8Array([0x7f, 0x00, 0x01, 0x02]), { mode: 0o755 });
      const unknownFormat = await local.run([garbage]);
      expect(unknownFormat.code).toBe(126);
      expect(unknownFormat.stderr).toBe(
        `local: ${garbage}: cannot execute (not a program or script this system runs)\n`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("refuses an empty command", async () => {
    await expect(local.run([])).rejects.toThrow("cannot run an empty command");
  });

  test("kills a command at its timeout and reports code 124 with the time in stderr", async () => {
    const started = Date.now();
    const result = await local.run(["sh", "-c", "echo started; sleep 30; echo never"], { timeoutMs: 300 });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(result.code).toBe(TIMEOUT_EXIT);
    expect(result.stdout).toBe("started\n");
    expect(result.stderr).toContain("timed out after 0.3s");
    expect(result.stderr).toContain("`sh -c echo started; sleep 30; echo never`");
  });

  test("a timeout also ends the processes the command started", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-timeout-"));
    try {
      const pidFile = join(dir, "pid");
      // The grandchild writes its pid, then would outlive a kill aimed at the shell alone.
      const result = await local.run(["sh", "-c", `sleep 30 & echo $! > ${pidFile}; wait`], {
        timeoutMs: 300,
      });
      expect(result.code).toBe(TIMEOUT_EXIT);
      const pid = Number((await Bun.file(pidFile).text()).trim());
      await Bun.sleep(100);
      expect(isAlive(pid)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a command that ignores SIGTERM is killed with SIGKILL shortly after its timeout", async () => {
    const started = Date.now();
    const result = await local.run(["sh", "-c", 'trap "" TERM; echo ready; while :; do sleep 0.1; done'], {
      timeoutMs: 200,
    });
    const elapsed = Date.now() - started;
    expect(result.code).toBe(TIMEOUT_EXIT);
    expect(result.stdout).toBe("ready\n");
    expect(elapsed).toBeGreaterThanOrEqual(2000);
    expect(elapsed).toBeLessThan(6000);
  });

  test("gives a command that was given no limit the fallback one, so that nothing runs forever", async () => {
    // The fallback is three hours: what is checked is that its timer is armed, not that it fires.
    const timer = spyOn(globalThis, "setTimeout");
    try {
      await local.run(["true"]);
      expect(timer.mock.calls.map((c) => c[1])).toContain(FALLBACK_TIMEOUT_MS);
    } finally {
      timer.mockRestore();
    }
  });

  test("does not touch a command that finishes before its timeout", async () => {
    const result = await local.run(["sh", "-c", "echo quick"], { timeoutMs: 5000 });
    expect(result).toEqual({ code: 0, stdout: "quick\n", stderr: "" });
  });

  test("an abort kills the command and rejects with CancelledError", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const started = Date.now();
    const run = local.run(["sleep", "30"], { signal: controller.signal });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    await run.catch(() => {});
    expect(Date.now() - started).toBeLessThan(3000);
  });

  test("an already aborted signal runs nothing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-abort-"));
    try {
      const marker = join(dir, "ran");
      await expect(local.run(["touch", marker], { signal: AbortSignal.abort() })).rejects.toThrow(
        "interrupted `touch",
      );
      await Bun.sleep(50);
      expect(await Bun.file(marker).exists()).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a command that writes without end is killed once its output passes the cap, and says so", async () => {
    // Output a host could print forever (a broken `vm list`): held whole, it would fill memory
    // long before the command's limit. yes(1) writes fast even on a loaded machine, so the cap is
    // reached long before the limit; the message says which of the two ended it.
    const result = await local.run(["sh", "-c", "yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | cat"], {
      timeoutMs: 60_000,
    });
    expect(result.code).not.toBe(0);
    expect(result.stdout.length).toBeLessThanOrEqual(MAX_OUTPUT_BYTES);
    expect(result.stderr).toEndWith(
      `local: \`sh -c yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | cat\` wrote more than ${MAX_OUTPUT_BYTES / 1024 / 1024} MiB to stdout and was killed\n`,
    );
  });

  test("a command killed for its output fails even when it answers SIGTERM by exiting 0", async () => {
    // Cut short, its output is not what it meant to say: a code of 0 would pass it off as complete.
    const result = await local.run(["sh", "-c", "trap 'exit 0' TERM; yes aaaaaaaaaaaaaaaa & wait"], {
      timeoutMs: 60_000,
    });
    expect(result.code).toBe(128 + 15);
    expect(result.stderr).toContain(
      `wrote more than ${MAX_OUTPUT_BYTES / 1024 / 1024} MiB to stdout and was killed`,
    );
  });

  test("returns soon after the command exits, though something it left in the background holds its output open", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-drain-"));
    const pidFile = join(dir, "pid");
    try {
      const started = Date.now();
      const result = await local.run(["sh", "-c", `echo done; sleep 60 & echo $! > ${pidFile}`], {
        timeoutMs: 120_000,
      });
      expect(result).toEqual({ code: 0, stdout: "done\n", stderr: "" });
      // The pipes stay open for 60 s; what was read is kept after 2 s.
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      const pid = Number(
        (
          await Bun.file(pidFile)
            .text()
            .catch(() => "")
        ).trim(),
      );
      if (pid > 0) process.kill(pid, "SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);

  test("a streamed command's output past the cap still reaches its callback, and the command runs on", async () => {
    let streamed = 0;
    const bytes = MAX_OUTPUT_BYTES + 1024 * 1024;
    const result = await local.run(["sh", "-c", `head -c ${bytes} /dev/zero`], {
      timeoutMs: 60_000,
      onStdout: (chunk) => {
        streamed += chunk.length;
      },
    });
    expect(result.code).toBe(0);
    expect(streamed).toBe(bytes);
    expect(result.stdout.length).toBe(MAX_OUTPUT_BYTES);
  });

  test("streams stdout and stderr to callbacks while the command runs", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-stream-"));
    try {
      const go = join(dir, "go");
      const seen: string[] = [];
      // The command goes on only once the callback has seen its first line: without streaming it
      // would wait until its timeout.
      const script = `echo one; while [ ! -e "$1" ]; do sleep 0.02; done; echo two; echo oops >&2`;
      const result = await local.run(["sh", "-c", script, "sh", go], {
        timeoutMs: 5000,
        onStdout: (chunk) => {
          seen.push(chunk);
          if (chunk.includes("one")) writeFileSync(go, "");
        },
        onStderr: (chunk) => seen.push(`err:${chunk}`),
      });
      expect(result).toEqual({ code: 0, stdout: "one\ntwo\n", stderr: "oops\n" });
      expect(seen.filter((c) => !c.startsWith("err:")).join("")).toBe("one\ntwo\n");
      expect(seen.filter((c) => c.startsWith("err:")).join("")).toBe("err:oops\n");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("keeps a multi-byte character whole when its bytes arrive in different chunks", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-utf8-"));
    try {
      const go = join(dir, "go");
      const chunks: string[] = [];
      // "é" is 0xC3 0xA9: the second byte is written only after the first chunk was delivered.
      const script = `printf 'a\\303'; while [ ! -e "$1" ]; do sleep 0.02; done; printf '\\251'`;
      const result = await local.run(["sh", "-c", script, "sh", go], {
        timeoutMs: 5000,
        onStdout: (chunk) => {
          chunks.push(chunk);
          writeFileSync(go, "");
        },
      });
      expect(result).toEqual({ code: 0, stdout: "aé", stderr: "" });
      expect(chunks).toEqual(["a", "é"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("keeps a byte-order mark at the start of the output, streamed or not", async () => {
    // A file read with `cat` and written back must keep its first bytes: TextDecoder drops a
    // leading BOM unless told not to.
    const script = "printf '\\357\\273\\277bom'";
    const chunks: string[] = [];
    expect((await local.run(["sh", "-c", script])).stdout).toBe("\ufeffbom");
    const streamed = await local.run(["sh", "-c", script], { onStdout: (chunk) => chunks.push(chunk) });
    expect(streamed.stdout).toBe("\ufeffbom");
    expect(chunks.join("")).toBe("\ufeffbom");
  });

  test("close() is harmless and can be called twice", async () => {
    const target = new LocalTarget();
    await target.close();
    await target.close();
    expect((await target.run(["true"])).code).toBe(0);
  });
});

/** True while the process runs; a zombie (killed, not yet reaped by its new parent) counts as gone. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}
