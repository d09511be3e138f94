/**
 * A disk that is full for real: a tiny tmpfs in a mount namespace of the test's own, gone with
 * the process. Needs root (or CAP_SYS_ADMIN) and unshare and mount.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findTool, have } from "./prereq.ts";

/**
 * Runs `script` with bun in a mount namespace of its own, with a 64 KiB tmpfs at `mnt` whose
 * space is used up once `prepare` (a shell line) has run. Needs root (or CAP_SYS_ADMIN): where the
 * mount cannot be made the test fails under CI and is skipped elsewhere, never passed.
 */
export function onFullDisk(
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

export const canMount = (() => {
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
