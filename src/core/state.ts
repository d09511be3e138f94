/** Per-plugin key/value state, one JSON file per slot in the state dir. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { StateStore } from "./contract.ts";
import { writeFileAtomic } from "./fsutil.ts";
import { KubehyveError } from "./errors.ts";

export function stateFileOf(stateDir: string, slot: string): string {
  return join(stateDir, "state", `${slot}.json`);
}

export function openStateStore(stateDir: string, slot: string, dryRun: boolean): StateStore {
  const file = stateFileOf(stateDir, slot);
  let data: Record<string, unknown> = {};
  if (existsSync(file)) {
    try {
      data = JSON.parse(readFileSync(file, "utf8"));
    } catch (error) {
      throw new KubehyveError(
        `state file ${file} is not valid JSON: ${(error as Error).message}`,
        1,
        `move it aside and re-run: mv ${file} ${file}.broken`,
      );
    }
  }
  const persist = async () => {
    if (!dryRun) await writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, 0o600);
  };
  return {
    get: <T>(key: string) => data[key] as T | undefined,
    async set(key, value) {
      data = { ...data, [key]: value };
      await persist();
    },
    async delete(key) {
      const { [key]: _removed, ...rest } = data;
      data = rest;
      await persist();
    },
  };
}
