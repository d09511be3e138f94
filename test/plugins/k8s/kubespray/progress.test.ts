import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { formatFailureReport, kubesprayHint } from "../../../../plugins/k8s/kubespray/failures.ts";
import {
  type AnsibleEvent,
  countListedTasks,
  formatProgress,
  parseAnsibleEvent,
  RunProgress,
} from "../../../../plugins/k8s/kubespray/progress.ts";

const fixture = (name: string) => readFileSync(join(import.meta.dir, "fixtures", name), "utf8");

function events(text: string): AnsibleEvent[] {
  return text
    .split("\n")
    .map(parseAnsibleEvent)
    .filter((e): e is AnsibleEvent => e !== undefined);
}

function fold(text: string, total?: number): RunProgress {
  const progress = new RunProgress(total);
  for (const e of events(text)) progress.feed(e);
  return progress;
}

const hc = {
  addresses: { cp1: "192.168.1.21", gone: "127.0.0.1" },
  sshUser: "core",
  privateKeyPath: "/state/ssh/id_ed25519",
  knownHostsFile: "/state/k8s/known_hosts",
  sshPort: 22,
  logFile: "/state/k8s/logs/x.log",
};

describe("parseAnsibleEvent", () => {
  test("skips the profile_tasks timing lines mixed into stdout and reads every JSON line", () => {
    const text = fixture("cluster-assert-failed.jsonl.txt");
    const lines = text.split("\n").filter(Boolean);
    const json = lines.filter((l) => l.startsWith("{"));
    expect(lines.length).toBeGreaterThan(json.length);
    expect(events(text).length).toBe(json.length);
  });

  test("reads a failed result with its host, task name, task path and module result", () => {
    const failed = events(fixture("cluster-assert-failed.jsonl.txt")).filter(
      (e) => e.type === "result" && e.status === "failed",
    );
    expect(failed).toHaveLength(1);
    const f = failed[0]!;
    if (f.type !== "result") throw new Error("unreachable");
    expect(f.host).toBe("cp1");
    expect(f.task.name).toBe("kubernetes/preinstall : Stop if memory is too small for control plane nodes");
    expect(f.task.path).toMatch(/roles\/kubernetes\/preinstall\/tasks\/main\.yml:\d+$/);
    expect(f.result.msg).toBe("Assertion failed");
  });

  test("tells changed from ok by the module result", () => {
    const results = events(fixture("ignored-then-failed.jsonl.txt")).filter((e) => e.type === "result");
    expect(results.map((e) => (e.type === "result" ? e.status : ""))).toEqual([
      "changed",
      "failed",
      "failed",
    ]);
  });

  test("returns nothing for text, broken JSON and events it does not know", () => {
    expect(parseAnsibleEvent("PLAY [all] ****")).toBeUndefined();
    expect(parseAnsibleEvent('{"_event": "v2_runner_on_ok", ')).toBeUndefined();
    expect(parseAnsibleEvent('{"_event":"v2_playbook_on_include"}')).toBeUndefined();
    expect(parseAnsibleEvent("[1,2]")).toBeUndefined();
  });
});

describe("RunProgress", () => {
  test("counts each task once and ends with the recap's per-host counts", () => {
    const progress = fold(fixture("cluster-assert-failed.jsonl.txt"), 21);
    const s = progress.snapshot();
    expect(s.task).toBe(15);
    expect(s.total).toBe(21);
    expect(s.currentTask).toBe("kubernetes/preinstall : Stop if memory is too small for control plane nodes");
    // Figures of the PLAY RECAP in the same run's stats event.
    const stats = events(fixture("cluster-assert-failed.jsonl.txt")).find((e) => e.type === "stats");
    if (stats?.type !== "stats") throw new Error("no stats event in the fixture");
    expect(s.hosts.cp1).toEqual({
      ok: stats.stats.cp1!.ok,
      changed: stats.stats.cp1!.changed,
      failed: 1,
      unreachable: 0,
      skipped: stats.stats.cp1!.skipped,
    });
    expect(s.hosts.w1?.failed).toBe(0);
  });

  test("reports the failure that stopped a host, not one that ignore_errors let pass", () => {
    const failures = fold(fixture("ignored-then-failed.jsonl.txt")).failures();
    expect(failures).toEqual([
      expect.objectContaining({
        host: "n1",
        task: "assert memory",
        message: "Assertion failed",
        unreachable: false,
      }),
    ]);
    expect(failures[0]!.detail).toContain("assertion: ansible_memtotal_mb|default(100) >= 1500");
  });

  test("a host that stopped answering is reported as unreachable with ssh's message", () => {
    const failures = fold(fixture("unreachable.jsonl.txt")).failures();
    expect(failures).toEqual([
      expect.objectContaining({
        host: "gone",
        unreachable: true,
        message: expect.stringContaining("Connection refused"),
      }),
    ]);
  });

  test("a successful run leaves no failures", () => {
    const progress = fold(fixture("reset-ok.jsonl.txt"));
    expect(progress.failures()).toEqual([]);
    expect(progress.tasksStarted).toBeGreaterThan(0);
  });
});

describe("formatProgress", () => {
  test("shows task N of about M, the current task and each host's counts", () => {
    const line = formatProgress({
      task: 12,
      total: 540,
      currentTask: "download : Download_file | Download item",
      hosts: {
        cp1: { ok: 10, changed: 2, failed: 0, unreachable: 0, skipped: 3 },
        w1: { ok: 9, changed: 1, failed: 1, unreachable: 0, skipped: 0 },
      },
    });
    expect(line).toBe(
      "task 12 of ~540: download : Download_file | Download item — cp1 ok 10 changed 2, w1 ok 9 changed 1 failed 1",
    );
  });

  test("never shows fewer tasks to go than were run when the estimate was low", () => {
    expect(formatProgress({ task: 30, total: 21, hosts: {} })).toBe("task 30 of ~30");
    expect(formatProgress({ task: 3, hosts: {} })).toBe("task 3");
  });
});

describe("countListedTasks", () => {
  test("counts the tasks of every play in --list-tasks output", () => {
    expect(countListedTasks(fixture("cluster-list-tasks.txt"))).toBe(21);
  });
  test("counts nothing in output without a tasks section", () => {
    expect(countListedTasks("\nplaybook: x.yml\n\n  play #1 (all): x\tTAGS: []\n")).toBe(0);
  });
});

describe("Kubespray hints", () => {
  const failure = (task: string, message = "Assertion failed", unreachable = false) => ({
    host: "cp1",
    task,
    message,
    unreachable,
  });

  test("explain the bare 'Assertion failed' of the memory asserts", () => {
    expect(
      kubesprayHint(
        failure("kubernetes/preinstall : Stop if memory is too small for control plane nodes"),
        hc,
      ),
    ).toContain("at least 1500 MB");
    expect(
      kubesprayHint(failure("kubernetes/preinstall : Stop if memory is too small for nodes"), hc),
    ).toContain("at least 1024 MB of memory on a worker");
  });

  test("point an unreachable node at Kubespray's reboot and at the login to try", () => {
    const hint = kubesprayHint(failure("x", "Failed to connect to the host via ssh", true), hc);
    expect(hint).toContain(
      "If Kubespray rebooted it to layer packages, the run was already started once more",
    );
    expect(hint).toContain("ssh -i /state/ssh/id_ed25519 core@192.168.1.21 true");
  });

  test("leave unknown failures without a guess", () => {
    expect(
      kubesprayHint(
        failure("etcd : Configure | Check if etcd cluster is healthy", "non-zero return code"),
        hc,
      ),
    ).toBeUndefined();
  });

  test("a report without a task failure still names the log", () => {
    const report = formatFailureReport("cluster.yml", 250, [], hc);
    expect(report).toBe(
      "cluster.yml failed (ansible-playbook exited 250)\nno task failure was reported; the log shows why Ansible stopped\nfull log: /state/k8s/logs/x.log",
    );
  });
});

describe("Kubespray's rpm-ostree reboot in the events", () => {
  test("counts a host as rebooted when the reboot task ran on it, not when it was skipped", () => {
    const progress = new RunProgress();
    const task = (name: string) => ({ id: name, name: `bootstrap_os : ${name}` });
    progress.feed({
      type: "result",
      status: "changed",
      host: "cp1",
      task: task("Reboot immediately for updated ostree"),
      result: {},
    });
    progress.feed({
      type: "result",
      status: "skipped",
      host: "w1",
      task: task("Reboot immediately for updated ostree"),
      result: {},
    });
    progress.feed({
      type: "result",
      status: "unreachable",
      host: "w2",
      task: task("Reboot immediately for updated ostree"),
      result: {},
    });
    expect(progress.rebooted()).toEqual(["cp1", "w2"]);
  });
});
