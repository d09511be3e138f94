/**
 * Entry point of the kubehyve binary: hands the built-in plugins to the core (lazily, so --version
 * stays fast) and runs the command line.
 */
import { writeSync } from "node:fs";
import { exitNow, guardProcessExit } from "./cli/exit-guard.ts";
import { restoreJitPolicyAfter } from "./cli/jit-policy.ts";
import { versionLine } from "./cli/version-info.ts";

const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
  // The fast path scripts and health checks hit: no command parser, no plugins, and a write to the
  // descriptor rather than process.stdout, whose stream machinery alone doubles Bun's start-up
  // time. console.log would drop a failed write without a word: `--version > /dev/full` exiting 0
  // with nothing written, where `kubehyve version` fails.
  try {
    writeSync(1, `${versionLine()}\n`);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EPIPE") {
      try {
        writeSync(2, `✖ kubehyve could not write all of its output to stdout: ${(error as Error).message}\n`);
      } catch {}
      process.exitCode = 1;
    }
  }
} else {
  // Start-up code runs once: it stays interpreted until the command proves a long one.
  restoreJitPolicyAfter();
  guardProcessExit();
  const [{ provideBuiltins }, { runCli }, { lostOutput, processStreamsMade, writeFully }] = await Promise.all(
    [import("./cli/builtins.ts"), import("./cli/index.ts"), import("./cli/output.ts")],
  );
  provideBuiltins(async () => (await import("../plugins/index.ts")).builtinPlugins);
  let code = await runCli(argv);
  // Output that could not be written (stdout on a full disk) is a failure of the command, said
  // last, where it cannot be missed among the lines that did get through.
  const lost = lostOutput();
  if (lost) {
    writeFully(2, `✖ kubehyve could not write all of its output to ${lost}\n`);
    code ||= 1;
  }
  // What the CLI prints is written synchronously (cli/output.ts). Only if something made
  // process.stdout or process.stderr (a question asked at the terminal) are there writes that may
  // still be queued: end()'s callback waits for them (an empty write's callback comes at once, and
  // process.exit then cut off output past a pipe's 64 KiB). Then exit explicitly, so that nothing
  // left open (an ssh ControlPersist master, a keep-alive socket) keeps the process waiting.
  if (processStreamsMade()) {
    const drain = (stream: NodeJS.WriteStream) =>
      new Promise<void>((resolve) => {
        stream.once("error", () => resolve());
        stream.end(() => resolve());
      });
    await Promise.all([drain(process.stdout), drain(process.stderr)]);
  }
  exitNow(code);
}
