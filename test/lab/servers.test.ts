/**
 * The lab's servers do not outlive the test file that started them (test/lab/servers.ts), and
 * what a test file leaves in the temp dir goes with it (test/setup.ts). Each case runs a test
 * file of its own in a child `bun test` that starts servers and never stops them.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { haveNodeExporter } from "./node-exporter.ts";
import { have } from "./prereq.ts";
import { haveSetpriv } from "./servers.ts";

/** The state letter of /proc/PID/stat, or undefined when there is no such process. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0];
  } catch {
    return undefined;
  }
}

/** Gone: no such process, or a zombie waiting for a parent that is gone, which serves nothing. */
const gone = (pid: number) => ["Z", undefined].includes(processState(pid));

async function waitGone(pids: number[]): Promise<boolean> {
  const deadline = Date.now() + 5000;
  while (!pids.every(gone) && Date.now() < deadline) await Bun.sleep(20);
  return pids.every(gone);
}

/**
 * Runs `body` as the one test of a file in a child `bun test`, in a directory of its own; the test
 * prints a JSON line of what it started. With `setup`, the child preloads test/setup.ts as the
 * suite does; without, nothing but the kernel can end what it leaves.
 */
async function forgetfulRun(body: string, setup: boolean) {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-servers-"));
  const file = join(dir, "forgets.test.ts");
  const lab = (name: string) => JSON.stringify(join(import.meta.dir, name));
  writeFileSync(
    file,
    `import { test } from "bun:test";
import { tmpdir } from "node:os";
import { startDnsmasq } from ${lab("dnsmasq.ts")};
import { startNodeExporter } from ${lab("node-exporter.ts")};
import { startSshd } from ${lab("sshd.ts")};
/** The pids of the processes whose command line contains \`text\`. */
async function pidsOf(text: string): Promise<number[]> {
  const ps = await Bun.$\`ps -eo pid=,args=\`.quiet().text();
  return ps.split("\\n").filter((l) => l.includes(text) && !l.includes(" ps ")).map((l) => Number(l.trim().split(" ")[0]));
}
test("starts servers and forgets them", async () => {
${body}
});
`,
  );
  // Its own TMPDIR, and no host lock from this run: the child's setup makes its own.
  const env: Record<string, string | undefined> = { ...process.env, TMPDIR: dir, KUBEHYVE_HOST_LOCK: "" };
  const child = Bun.spawn(
    [
      process.execPath,
      "test",
      ...(setup ? ["--preload", join(import.meta.dir, "..", "setup.ts")] : []),
      file,
    ],
    { cwd: dir, env, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 60_000 },
  );
  const [code, out, err] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  const line = `${out}\n${err}`.split("\n").find((l) => l.startsWith("{"));
  return {
    dir,
    code,
    output: `${out}\n${err}`,
    started: line ? (JSON.parse(line) as { pids: number[]; tmp?: string }) : undefined,
  };
}

describe.skipIf(!(have("sshd", "openssh-server") && haveNodeExporter() && haveSetpriv()))(
  "servers a test forgets",
  () => {
    test("die with the test process even when no hook runs: the kernel's parent-death signal", async () => {
      const run = await forgetfulRun(
        `  const sshd = await startSshd();
  const exporter = await startNodeExporter(tmpdir() + "/textfile");
  console.log(JSON.stringify({ pids: [...(await pidsOf(sshd.dir + "/sshd_config")), exporter.pid] }));`,
        false,
      );
      try {
        expect(run.code, run.output).toBe(0);
        expect(run.started, run.output).toBeDefined();
        expect(run.started!.pids).toHaveLength(2);
        expect(await waitGone(run.started!.pids)).toBe(true);
      } finally {
        for (const pid of run.started?.pids ?? []) if (!gone(pid)) process.kill(pid, "SIGKILL");
        rmSync(run.dir, { recursive: true, force: true });
      }
    });
  },
);

describe.skipIf(!(have("dnsmasq", "dnsmasq-base") && have("sshd", "openssh-server") && haveSetpriv()))(
  "with the suite's setup",
  () => {
    test("a forgotten server is killed after the file's tests, and the file's temp dir is removed", async () => {
      // A root dnsmasq becomes nobody, which clears the parent-death signal: only the hook ends it.
      const run = await forgetfulRun(
        `  const dns = await startDnsmasq({ lines: ["address=/forgotten.test/127.0.0.9"] });
  const sshd = await startSshd();
  const pids = [...(await pidsOf(sshd.dir + "/sshd_config")), ...(await pidsOf("--port=" + dns.port))];
  console.log(JSON.stringify({ pids, tmp: tmpdir() }));`,
        true,
      );
      try {
        expect(run.code, run.output).toBe(0);
        expect(run.started, run.output).toBeDefined();
        const { pids, tmp } = run.started!;
        expect(pids).toHaveLength(2);
        expect(await waitGone(pids)).toBe(true);
        // The file's TMPDIR was a directory of its own inside the one it was given, and is gone.
        expect(tmp!.startsWith(join(run.dir, "kubehyve-test-"))).toBe(true);
        expect(existsSync(tmp!)).toBe(false);
        expect(readdirSync(run.dir).sort()).toEqual(["forgets.test.ts"]);
      } finally {
        for (const pid of run.started?.pids ?? []) if (!gone(pid)) process.kill(pid, "SIGKILL");
        rmSync(run.dir, { recursive: true, force: true });
      }
    });
  },
);
