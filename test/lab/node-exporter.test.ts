/**
 * The node_exporter harness itself: an exporter a test forgot to stop does not outlive the test
 * process, which would leave it listening after the run.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { haveNodeExporter } from "./node-exporter.ts";

/** The state letter of /proc/PID/stat, or undefined when there is no such process. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0];
  } catch {
    return undefined;
  }
}

describe.skipIf(!haveNodeExporter())("startNodeExporter", () => {
  test("an exporter that a test never stops ends with the test process", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-node-exporter-harness-"));
    const file = join(dir, "forgets.test.ts");
    writeFileSync(
      file,
      `import { test } from "bun:test";
import { startNodeExporter } from ${JSON.stringify(join(import.meta.dir, "node-exporter.ts"))};
test("starts one and forgets it", async () => {
  const exporter = await startNodeExporter(${JSON.stringify(join(dir, "textfile"))});
  console.log(JSON.stringify({ pid: exporter.pid, url: exporter.url }));
});
`,
    );
    // A bun test run of its own, as a test file of the suite is; what it leaves in TMPDIR (the
    // log of the exporter it never stopped) goes with this test's directory.
    const child = Bun.spawn([process.execPath, "test", file], {
      cwd: dir,
      env: { ...process.env, TMPDIR: dir },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
    });
    const [code, out, err] = await Promise.all([
      child.exited,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    expect(code, err).toBe(0);
    const line = `${out}\n${err}`.split("\n").find((l) => l.startsWith('{"pid":'));
    expect(line, `${out}\n${err}`).toBeDefined();
    const { pid, url } = JSON.parse(line!) as { pid: number; url: string };
    const gone = () => ["Z", undefined].includes(processState(pid));
    try {
      // Killed at once by the kernel; a zombie waiting for a parent that is gone is no server.
      const deadline = Date.now() + 5000;
      while (!gone() && Date.now() < deadline) await Bun.sleep(20);
      expect(gone()).toBe(true);
      const answered = await fetch(`${url}/`, { signal: AbortSignal.timeout(2000) }).then(
        () => true,
        () => false,
      );
      expect(answered).toBe(false);
    } finally {
      // When it failed: the exporter is this test's to end.
      if (!gone()) process.kill(pid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
