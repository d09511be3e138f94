import { describe, expect, test } from "bun:test";
import { CancelledError } from "../../src/lib/errors.ts";
import { RecordingTarget } from "../../src/targets/recording.ts";
import { CommandError, readTargetFile, runOk, writeTargetFile } from "../../src/targets/target.ts";

describe("RecordingTarget", () => {
  test("records every argv in order, including the ones no rule answers", async () => {
    const target = new RecordingTarget([{ match: ["vm", "list"], result: { stdout: "NAME\n" } }]);
    await target.run(["vm", "list"]);
    await target.run(["sysrc", "-n", "vm_enable"]);
    expect(target.argvs).toEqual([
      ["vm", "list"],
      ["sysrc", "-n", "vm_enable"],
    ]);
  });

  test("answers a command no rule matches with code 127 naming the command", async () => {
    const target = new RecordingTarget();
    expect(await target.run(["zpool", "list", "-H"])).toEqual({
      code: 127,
      stdout: "",
      stderr: "recording: no rule for `zpool list -H`\n",
    });
  });

  test("matches an argv prefix word by word, never a prefix of a word", async () => {
    const target = new RecordingTarget([{ match: ["zfs", "list"], result: { stdout: "zroot\n" } }]);
    expect((await target.run(["zfs", "list", "-H", "-o", "name"])).stdout).toBe("zroot\n");
    expect((await target.run(["zfs", "listsnapshots"])).code).toBe(127);
    expect((await target.run(["zfs"])).code).toBe(127);
  });

  test("lets the first matching rule answer", async () => {
    const target = new RecordingTarget()
      .on(["vm", "start", "cp1"], { code: 1, stderr: "already running\n" })
      .on(["vm", "start"], { code: 0 });
    expect((await target.run(["vm", "start", "cp1"])).code).toBe(1);
    expect((await target.run(["vm", "start", "w1"])).code).toBe(0);
  });

  test("matches with a predicate and answers from a function of argv and options", async () => {
    const target = new RecordingTarget([
      {
        match: (argv) => argv[0] === "cat",
        result: (argv, opts) => ({ stdout: `${argv.slice(1).join(",")}:${String(opts.stdin ?? "")}` }),
      },
      { match: ["slow"], result: async () => ({ stdout: "waited" }) },
    ]);
    expect((await target.run(["cat", "a", "b"], { stdin: "in" })).stdout).toBe("a,b:in");
    expect((await target.run(["slow"])).stdout).toBe("waited");
  });

  test("fills in a partial result: code 0 and empty output by default", async () => {
    const target = new RecordingTarget([{ match: ["true"], result: {} }]);
    expect(await target.run(["true"])).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  test("keeps the options of each call and a copy of argv the caller cannot change later", async () => {
    const target = new RecordingTarget([{ match: () => true, result: {} }]);
    const argv = ["sh", "-c", "x"];
    await target.run(argv, { timeoutMs: 5000, cwd: "/tmp" });
    argv[2] = "changed";
    expect(target.calls).toEqual([{ argv: ["sh", "-c", "x"], opts: { timeoutMs: 5000, cwd: "/tmp" } }]);
  });

  test("passes the answer to the streaming callbacks", async () => {
    const target = new RecordingTarget([
      { match: ["build"], result: { stdout: "progress\n", stderr: "warn\n" } },
    ]);
    const out: string[] = [];
    await target.run(["build"], {
      onStdout: (c) => out.push(`out:${c}`),
      onStderr: (c) => out.push(`err:${c}`),
    });
    expect(out).toEqual(["out:progress\n", "err:warn\n"]);
  });

  test("refuses to run once the signal is aborted, like the real targets", async () => {
    const target = new RecordingTarget([{ match: () => true, result: {} }]);
    await expect(target.run(["true"], { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(
      CancelledError,
    );
  });

  test("works with the helpers that build on Target", async () => {
    const files = new Map<string, string>();
    const target = new RecordingTarget([
      {
        match: ["cat", "--"],
        result: (argv) => {
          const content = files.get(argv[2] ?? "");
          return content === undefined
            ? { code: 1, stderr: "No such file or directory\n" }
            : { stdout: content };
        },
      },
      {
        match: ["sh", "-c"],
        result: (argv, opts) => {
          files.set(argv[4] ?? "", String(opts.stdin));
          return {};
        },
      },
    ]);
    await writeTargetFile(target, "/usr/local/etc/kubehyve.conf", "a=1\n", "0600");
    expect(await readTargetFile(target, "/usr/local/etc/kubehyve.conf")).toBe("a=1\n");
    expect(await readTargetFile(target, "/missing")).toBeUndefined();
    expect(target.argvs[0]?.slice(-2)).toEqual(["/usr/local/etc/kubehyve.conf", "0600"]);
    await expect(runOk(target, ["kldload", "vmm"])).rejects.toBeInstanceOf(CommandError);
  });

  test("is named recording unless told otherwise, and remembers being closed", async () => {
    const target = new RecordingTarget([], "dry-run@hv1");
    expect(target.name).toBe("dry-run@hv1");
    expect(target.closed).toBe(false);
    await target.close();
    await target.close();
    expect(target.closed).toBe(true);
    expect(new RecordingTarget().name).toBe("recording");
  });
});
