/**
 * The cluster's identity names what is this cluster's on every host: its file must never be left
 * empty by a power cut, and a write that fails (a full disk) must say so and leave nothing behind.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { syncsAndRenames } from "../lab/durability.ts";
import { canMount, onFullDisk } from "../lab/full-disk.ts";
import { have } from "../lab/prereq.ts";

setDefaultTimeout(30_000);

const MODULE = join(import.meta.dir, "../../src/core/identity.ts");

describe("the cluster's identity", () => {
  test.skipIf(!canMount)(
    "on a full disk is not written: the error names the file and the full disk, and nothing is left beside it",
    () => {
      const result = onFullDisk(
        "mkdir -m 0700 state",
        `const { clusterIdentity } = await import(${JSON.stringify(MODULE)});
         const { readdirSync } = await import("node:fs");
         let outcome;
         try { clusterIdentity("state", true); outcome = { wrote: true }; }
         catch (e) { outcome = { name: e.name, exitCode: e.exitCode, message: e.message, hint: e.hint }; }
         console.log(JSON.stringify({ ...outcome, left: readdirSync("state") }));`,
      );
      expect(result.code).toBe(0);
      const outcome = JSON.parse(result.stdout);
      expect(outcome).toEqual({
        name: "KubehyveError",
        exitCode: 1,
        message:
          "cannot write the cluster's identity state/cluster-id: ENOSPC: no space left on device, write",
        hint: "make room on the file system of state, then run the command again",
        left: [],
      });
    },
  );

  test.skipIf(!have("strace", "strace"))(
    "is synced before its rename, and its directory after, so a power cut after the first up never leaves it empty",
    () => {
      const dir = mkdtempSync(join(tmpdir(), "kubehyve-identity-"));
      try {
        const state = join(dir, "state");
        const { exitCode, calls } = syncsAndRenames(
          `const { clusterIdentity } = await import(${JSON.stringify(MODULE)}); clusterIdentity(${JSON.stringify(state)}, true);`,
          dir,
        );
        expect(exitCode).toBe(0);
        expect(readFileSync(join(state, "cluster-id"), "utf8")).toMatch(/^[0-9a-f-]{36}\n$/);
        const renameAt = calls.findIndex((line) => /rename\w*\(/.test(line) && line.includes("cluster-id."));
        expect(renameAt).toBeGreaterThan(0);
        expect(
          calls.slice(0, renameAt).some((line) => /f(data)?sync\(\d+<[^>]*\/cluster-id\.[^>]*>\)/.test(line)),
        ).toBe(true);
        expect(
          calls.slice(renameAt + 1).some((line) => new RegExp(`f(data)?sync\\(\\d+<${state}>\\)`).test(line)),
        ).toBe(true);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
