/**
 * Per-test set-up for the bhyve stage's test files, kept out of lab.ts, which the benchmarks import
 * outside the test runner.
 */
import { afterEach, beforeEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFreebsdHost, type FreebsdHost } from "../../../lab/freebsd/host.ts";

/**
 * A fresh simulated host for each test of the calling file, and fresh state dirs (named after
 * `prefix`), all removed after it.
 */
export function perTestHost(prefix: string): { host(): FreebsdHost; stateDir(): string } {
  let host: FreebsdHost | undefined;
  const dirs: string[] = [];
  beforeEach(() => {
    host = createFreebsdHost({ stopDelayMs: 100 });
  });
  afterEach(() => {
    host?.cleanup();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  return {
    host: () => host!,
    stateDir: () => {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(dir);
      return dir;
    },
  };
}
