/**
 * The version: package.json's, plus the git commit the binary was built from. build.ts defines
 * both as constants; run from source, the commit is asked of git.
 */
import pkg from "../../package.json" with { type: "json" };

declare const KUBEHYVE_COMMIT: string | undefined;

export function version(): { version: string; commit: string; bun: string; platform: string } {
  let commit = typeof KUBEHYVE_COMMIT === "string" ? KUBEHYVE_COMMIT : "";
  if (!commit) {
    try {
      const git = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], {
        cwd: import.meta.dir,
        stderr: "ignore",
        // Run from source only; a git that hangs (a lock, a network file system) must not hang --version.
        timeout: 5000,
      });
      commit = git.success ? `${git.stdout.toString().trim()}-source` : "unknown";
    } catch {
      commit = "unknown"; // no git, or not run from a checkout
    }
  }
  return { version: pkg.version, commit, bun: Bun.version, platform: `${process.platform}-${process.arch}` };
}

export function versionLine(): string {
  const v = version();
  return `kubehyve ${v.version} (commit ${v.commit}, bun ${v.bun}, ${v.platform})`;
}
