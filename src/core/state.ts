/** Per-plugin key/value state, one JSON file per slot in the state dir. */
import { dirname, join } from "node:path";
import { KubehyveError } from "../lib/errors.ts";
import { ensurePrivateDir, readPrivateFile, writeFileAtomic } from "../lib/fsutil.ts";
import type { StateStore } from "./contract.ts";

export function stateFileOf(stateDir: string, slot: string): string {
  return join(stateDir, "state", `${slot}.json`);
}

export function openStateStore(stateDir: string, slot: string, dryRun: boolean): StateStore {
  const file = stateFileOf(stateDir, slot);
  let data: Record<string, unknown> = {};
  // Never through a link, nor a file someone else could have written: the state steers the stages.
  const text = readPrivateFile(file);
  if (text !== undefined) {
    let parsed: unknown;
    let problem: string | undefined;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      problem = `is not valid JSON: ${(error as Error).message}`;
    }
    // `null` or a list parses fine but would break every get and set.
    if (!problem && (!parsed || typeof parsed !== "object" || Array.isArray(parsed)))
      problem = "does not hold a JSON object";
    if (problem)
      throw new KubehyveError(
        `state file ${file} ${problem}`,
        1,
        `move it aside and re-run: mv ${file} ${file}.broken`,
      );
    data = parsed as Record<string, unknown>;
  }
  // Writes go one after the other, each with the data as it is then: two sets in parallel (one per
  // node) must not let the older snapshot land last and drop the other's key.
  let writing: Promise<void> = Promise.resolve();
  const persist = () => {
    if (dryRun) return Promise.resolve();
    const write = async () => {
      // The state may hold secrets: its directory is made private, or refused if others can write it.
      await ensurePrivateDir(dirname(file));
      await writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, 0o600);
    };
    writing = writing.then(write, write);
    return writing;
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
