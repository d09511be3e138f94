/**
 * Entry point of the kubehyve binary: hands the built-in plugins to the core (lazily, so --version
 * stays fast) and runs the command line.
 */
import { runCli } from "./cli/index.ts";
import { provideBuiltins } from "./cli/builtins.ts";

provideBuiltins(async () => (await import("../plugins/index.ts")).builtinPlugins);

const code = await runCli(process.argv.slice(2));
// Exit explicitly: an ssh ControlPersist master or a keep-alive socket must not keep us waiting.
process.exit(code);
