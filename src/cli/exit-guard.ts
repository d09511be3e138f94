/**
 * kubehyve alone decides when it exits. A plugin runs in this process: one that calls
 * `process.exit(0)` in the middle of its apply (code copied from a script) would end the run with
 * "success", the host half-changed, no journal line and no cleanups. Once plugins may run,
 * `process.exit` throws instead, naming where it was called, and the phase fails as for any other
 * error; the CLI exits through `exitNow`.
 */
import { ExitCode, KubehyveError } from "../lib/errors.ts";

const realExit: (code?: number) => never = process.exit.bind(process);

/** Ends the process with `code`: the CLI's own way out. */
export function exitNow(code: number): never {
  return realExit(code);
}

/** The first frame of the stack that is not this module's, as `file:line:column`. */
function caller(stack: string | undefined): string | undefined {
  const frames = (stack ?? "").split("\n").slice(1);
  const frame = frames.find((f) => !f.includes("exit-guard"));
  return frame?.trim().replace(/^at\s+/, "");
}

export function guardProcessExit(): void {
  process.exit = ((code?: number | string | null) => {
    const where = caller(new Error().stack);
    throw new KubehyveError(
      `process.exit(${code ?? ""}) was called by a plugin${where ? `, at ${where}` : ""}: only kubehyve ends the run`,
      ExitCode.phaseFailed,
      "a plugin ends its phase by returning, or by throwing KubehyveError for a failure",
    );
  }) as typeof process.exit;
}
