/**
 * Where the upstream oracle data lives: shared/oracles beside the checkout (see its README for the
 * source and commit of every file), or $KUBEHYVE_ORACLES. Tests read it from there and never copy it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

export const ORACLES = process.env.KUBEHYVE_ORACLES ?? join(import.meta.dir, "../../../shared/oracles");

if (!existsSync(ORACLES)) {
  throw new Error(
    `the upstream oracle data is not at ${ORACLES}: it belongs in shared/oracles beside the checkout (or set KUBEHYVE_ORACLES)`,
  );
}

/** A path inside the oracle data. */
export function oracle(...parts: string[]): string {
  return join(ORACLES, ...parts);
}
