/**
 * Entry point of the kubehyve binary: hands the built-in plugins to the core (lazily, so --version
 * stays fast) and runs the command line.
 */
import { provideBuiltins } from "./cli/builtins.ts";
import { runCli } from "./cli/index.ts";

provideBuiltins(async () => (await import("../plugins/index.ts")).builtinPlugins);

const code = await runCli(process.argv.slice(2));
// Writes to a pipe are asynchronous: let them drain, then exit explicitly so that nothing left
// open (an ssh ControlPersist master, a keep-alive socket) keeps the process waiting.
const drain = (stream: NodeJS.WriteStream) =>
  new Promise<void>((resolve) => stream.write("", () => resolve()));
await Promise.all([drain(process.stdout), drain(process.stderr)]);
process.exit(code);
