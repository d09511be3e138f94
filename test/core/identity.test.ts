/**
 * The cluster's identity names what is this cluster's on every host: its file must never be left
 * empty by a power cut, and a write that fails (a full disk) must say so and leave nothing behind.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findTool, have } from "../lab/prereq.ts";

setDefaultTimeout(30_000);

const MODULE = join(import.meta.dir, "../../src/core/identity.ts");

/**
 * Runs `script` with bun in a mount namespace of its own, with a 64 KiB tmpfs at `mnt` whose
 * space is used up once `prepare` (a shell line) has run. Needs root (or CAP_SYS_ADMIN): where the
 * mount cannot be made the test fails under CI and is skipped elsewhere, never passed.
 */
function onFullDisk(
  prepare: string,
  script: string,
): { code: number | null; stdout: string; stderr: string } {
  const mnt = mkdtempSync(join(tmpdir(), "kubehyve-full-"));
  try {
    const proc = Bun.spawnSync([
      findTool("unshare")!,
      "-m",
      "sh",
      "-c",
      'mount -t tmpfs -o size=64k,mode=0755 kubehyve-full "$1" || exit 99; cd "$1" && eval "$2" && dd if=/dev/zero of=fill bs=4k >/dev/null 2>&1; exec "$3" -e "$4"',
      "sh",
      mnt,
      prepare,
      process.execPath,
      script,
    ]);
    return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
  } finally {
    rmSync(mnt, { recursive: true, force: true });
  }
}

const canMount = (() => {
  if (!have("unshare", "util-linux") || !have("mount", "mount")) return false;
  const proc = Bun.spawnSync([
    findTool("unshare")!,
    "-m",
    "sh",
    "-c",
    'd=$(mktemp -d) && mount -t tmpfs -o size=64k kubehyve-probe "$d"; r=$?; rmdir "$d"; exit $r',
  ]);
  if (proc.exitCode === 0) return true;
  const why = `cannot mount a tmpfs in a mount namespace (unshare -m, as root): ${proc.stderr.toString().trim()}`;
  if (process.env.CI) throw new Error(why);
  console.warn(`skipping: ${why}`);
  return false;
})();

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
        const log = join(dir, "strace.log");
        const state = join(dir, "state");
        const proc = Bun.spawnSync([
          findTool("strace")!,
          "-f",
          "-y",
          "-e",
          "trace=fsync,fdatasync,rename,renameat,renameat2",
          "-o",
          log,
          process.execPath,
          "-e",
          `const { clusterIdentity } = await import(${JSON.stringify(MODULE)}); clusterIdentity(${JSON.stringify(state)}, true);`,
        ]);
        expect(proc.exitCode).toBe(0);
        expect(readFileSync(join(state, "cluster-id"), "utf8")).toMatch(/^[0-9a-f-]{36}\n$/);
        const calls = readFileSync(log, "utf8")
          .split("\n")
          .filter((line) => /\b(fsync|fdatasync|rename\w*)\(/.test(line) && !line.includes("unfinished"));
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
