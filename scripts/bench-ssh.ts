/**
 * A read-only command (`uname -a`) on 3 nodes through kubehyve's ssh target (src/targets/ssh.ts:
 * one ControlMaster per node) against `ansible all -m command -a "uname -a"`, on the same real
 * sshd on loopback (test/lab/sshd.ts): the 3 nodes are 3 inventory names for that one server.
 * Target: kubehyve at least 10× faster.
 *
 * Two figures, the two tools alternating, median of N rounds each:
 * - cold: no connection open yet (a fresh state dir for kubehyve, a fresh ControlPath directory for
 *   Ansible, whose ssh plugin keeps ControlPersist masters too);
 * - warm: the connections from the round before still open, as on every command but the first of
 *   a kubehyve run.
 *
 *   bun scripts/bench-ssh.ts [--runs 5]
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SshTarget } from "../src/targets/ssh.ts";
import { startSshd } from "../test/lab/sshd.ts";
import { header, load, median, verdict } from "./bench-common.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" } } });
const runs = Number(values.runs);
const NODES = ["node1", "node2", "node3"];
const COMMAND = ["uname", "-a"];

const sshd = await startSshd();
const dir = mkdtempSync(join(tmpdir(), "kubehyve-bench-ssh-"));
const inventory = join(dir, "hosts.yaml");
writeFileSync(
  inventory,
  `all:\n  hosts:\n${NODES.map(
    (n) =>
      `    ${n}:\n      ansible_host: 127.0.0.1\n      ansible_port: ${sshd.port}\n      ansible_user: ${sshd.user}\n      ansible_ssh_private_key_file: ${sshd.identityFile}\n`,
  ).join("")}`,
);

header(`${COMMAND.join(" ")} on ${NODES.length} nodes (one loopback sshd), median of ${runs} rounds`);

async function kubehyve(stateDir: string): Promise<{ ms: number; targets: SshTarget[] }> {
  const targets = NODES.map(
    (name) =>
      new SshTarget({
        user: sshd.user,
        host: sshd.host,
        port: sshd.port,
        identityFile: sshd.identityFile,
        // A state dir (and so a master connection) per node, as for nodes at different addresses:
        // one dir for all would share one master, since all three are the same user@host:port.
        stateDir: join(stateDir, name),
        name,
      }),
  );
  const ms = await warmKubehyve(targets);
  return { ms, targets };
}

async function warmKubehyve(targets: SshTarget[]): Promise<number> {
  const t0 = performance.now();
  const results = await Promise.all(targets.map((t) => t.run(COMMAND)));
  const ms = performance.now() - t0;
  for (const r of results) if (r.code !== 0) throw new Error(`kubehyve's ssh target failed: ${r.stderr}`);
  return ms;
}

async function ansible(controlDir: string): Promise<number> {
  const t0 = performance.now();
  const p = Bun.spawn(["ansible", "all", "-i", inventory, "-m", "command", "-a", COMMAND.join(" "), "-o"], {
    env: {
      ...process.env,
      ANSIBLE_HOST_KEY_CHECKING: "False",
      ANSIBLE_SSH_CONTROL_PATH_DIR: controlDir,
      ANSIBLE_NOCOLOR: "1",
      ANSIBLE_PYTHON_INTERPRETER: "auto_silent",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  const ms = performance.now() - t0;
  if (code !== 0 || (out.match(/CHANGED|SUCCESS/g) ?? []).length !== NODES.length)
    throw new Error(`ansible failed (exit ${code}): ${out}${err}`);
  return ms;
}

/**
 * Plain OpenSSH, one new connection per node, for scale: what no tool that opens connections beats.
 * `kex` fixes the key exchange, to show what the client's default (OpenSSH 9.2: sntrup761x25519, a
 * post-quantum hybrid whose key generation is costly) adds to a handshake; kubehyve keeps the default.
 */
async function plainSsh(kex?: string): Promise<number> {
  const t0 = performance.now();
  const codes = await Promise.all(
    NODES.map(
      () =>
        Bun.spawn(
          [
            "ssh",
            ...[
              "-o",
              "BatchMode=yes",
              "-o",
              "StrictHostKeyChecking=no",
              "-o",
              "UserKnownHostsFile=/dev/null",
            ],
            ...["-o", "LogLevel=ERROR", "-i", sshd.identityFile, "-p", String(sshd.port)],
            ...(kex ? ["-o", `KexAlgorithms=${kex}`] : []),
            `${sshd.user}@${sshd.host}`,
            ...COMMAND,
          ],
          { stdout: "ignore", stderr: "ignore" },
        ).exited,
    ),
  );
  if (codes.some((c) => c !== 0)) throw new Error("plain ssh failed");
  return performance.now() - t0;
}

const plain: number[] = [];
const plainCurve: number[] = [];
const times = {
  kubehyveCold: [] as number[],
  kubehyveWarm: [] as number[],
  ansibleCold: [] as number[],
  ansibleWarm: [] as number[],
};
for (let round = 0; round < runs; round++) {
  const state = mkdtempSync(join(dir, "state-"));
  const cold = await kubehyve(state);
  times.kubehyveCold.push(cold.ms);
  const control = mkdtempSync(join(dir, "cp-"));
  times.ansibleCold.push(await ansible(control));
  times.kubehyveWarm.push(await warmKubehyve(cold.targets));
  times.ansibleWarm.push(await ansible(control));
  plain.push(await plainSsh());
  plainCurve.push(await plainSsh("curve25519-sha256"));
  await Promise.all(cold.targets.map((t) => t.close()));
}
await sshd.stop();

const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)])) as Record<
  keyof typeof times,
  number
>;
console.log(`kubehyve ssh target, cold   ${m.kubehyveCold.toFixed(0).padStart(6)} ms`);
console.log(`ansible all -m command, cold ${m.ansibleCold.toFixed(0).padStart(6)} ms`);
console.log(`(plain ssh, a new connection per node, ${median(plain).toFixed(0)} ms;`);
console.log(` the same with KexAlgorithms=curve25519-sha256, ${median(plainCurve).toFixed(0)} ms)`);
console.log(`kubehyve ssh target, warm   ${m.kubehyveWarm.toFixed(0).padStart(6)} ms`);
console.log(`ansible all -m command, warm ${m.ansibleWarm.toFixed(0).padStart(6)} ms`);
const met = [
  verdict(
    `cold: kubehyve ${(m.ansibleCold / m.kubehyveCold).toFixed(1)}× faster (target ≥ 10×)`,
    m.ansibleCold / m.kubehyveCold >= 10,
  ),
  verdict(
    `warm: kubehyve ${(m.ansibleWarm / m.kubehyveWarm).toFixed(1)}× faster (target ≥ 10×)`,
    m.ansibleWarm / m.kubehyveWarm >= 10,
  ),
];
console.log(`load average at the end: ${load()}`);
process.exit(met.every(Boolean) ? 0 : 1);
