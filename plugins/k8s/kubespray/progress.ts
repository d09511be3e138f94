/**
 * Progress and failures of an ansible-playbook run, from the events of the `ansible.posix.jsonl`
 * stdout callback (one JSON object per line, written by ansible.posix's plugins/callback/jsonl.py).
 *
 * jsonl rather than the default callback's screen text: each event is one line of JSON with the host
 * name, the task name and the module result as data, so a message with a colon or a multi-line
 * stderr cannot break the parsing. It ships with the `ansible` package that Kubespray's requirements
 * pin and with Debian's ansible. Lines that are not JSON (warnings, profile_tasks banners enabled by
 * Kubespray's ansible.cfg) are kept in the log and skipped here.
 */

export type HostStatus = "ok" | "changed" | "failed" | "skipped" | "unreachable";

export type AnsibleEvent =
  | { type: "play"; name: string }
  | { type: "task"; id: string; name: string; path?: string; handler: boolean }
  | {
      type: "result";
      status: HostStatus;
      host: string;
      task: { id: string; name: string; path?: string };
      result: Record<string, unknown>;
    }
  | { type: "stats"; stats: Record<string, HostStats> };

export interface HostStats {
  ok: number;
  changed: number;
  failures: number;
  unreachable: number;
  skipped: number;
  rescued: number;
  ignored: number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function taskOf(data: Record<string, unknown>): { id: string; name: string; path?: string } | undefined {
  const task = data.task;
  if (!isRecord(task)) return undefined;
  const id = str(task.id);
  if (id === undefined) return undefined;
  return { id, name: str(task.name) ?? "", path: str(task.path) };
}

/** One line of jsonl output as an event; undefined for anything else (text, unknown events). */
export function parseAnsibleEvent(line: string): AnsibleEvent | undefined {
  const text = line.trim();
  if (!text.startsWith("{")) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(data)) return undefined;
  const event = str(data._event);
  switch (event) {
    case "v2_playbook_on_play_start": {
      const play = isRecord(data.play) ? data.play : {};
      return { type: "play", name: str(play.name) ?? "" };
    }
    case "v2_playbook_on_task_start":
    case "v2_playbook_on_handler_task_start":
    case "v2_runner_on_start": {
      const task = taskOf(data);
      if (!task) return undefined;
      return { type: "task", ...task, handler: event === "v2_playbook_on_handler_task_start" };
    }
    case "v2_runner_on_ok":
    case "v2_runner_on_failed":
    case "v2_runner_on_skipped":
    case "v2_runner_on_unreachable": {
      const task = taskOf(data);
      const hosts = data.hosts;
      if (!task || !isRecord(hosts)) return undefined;
      const [host, result] = Object.entries(hosts)[0] ?? [];
      if (host === undefined || !isRecord(result)) return undefined;
      let status: HostStatus;
      if (event === "v2_runner_on_failed") status = "failed";
      else if (event === "v2_runner_on_skipped") status = "skipped";
      else if (event === "v2_runner_on_unreachable") status = "unreachable";
      else status = result.changed === true ? "changed" : "ok";
      return { type: "result", status, host, task, result };
    }
    case "v2_playbook_on_stats": {
      if (!isRecord(data.stats)) return undefined;
      const stats: Record<string, HostStats> = {};
      for (const [host, s] of Object.entries(data.stats)) {
        if (!isRecord(s)) continue;
        const n = (k: string) => (typeof s[k] === "number" ? (s[k] as number) : 0);
        stats[host] = {
          ok: n("ok"),
          changed: n("changed"),
          failures: n("failures"),
          unreachable: n("unreachable"),
          skipped: n("skipped"),
          rescued: n("rescued"),
          ignored: n("ignored"),
        };
      }
      return { type: "stats", stats };
    }
    default:
      return undefined;
  }
}

export interface HostTally {
  ok: number;
  changed: number;
  failed: number;
  unreachable: number;
  skipped: number;
}

export interface TaskFailure {
  host: string;
  task: string;
  /** Where the task is defined (`roles/…/tasks/main.yml:12`). */
  path?: string;
  message: string;
  /** Evidence: the assertion, stderr, stdout tail. */
  detail?: string;
  unreachable: boolean;
}

export interface ProgressSnapshot {
  /** Tasks started so far (one per task, not per host). */
  task: number;
  total?: number;
  currentTask?: string;
  play?: string;
  hosts: Record<string, HostTally>;
}

const emptyTally = (): HostTally => ({ ok: 0, changed: 0, failed: 0, unreachable: 0, skipped: 0 });

/** The human message of a failed module result. */
export function failureMessage(result: Record<string, unknown>): { message: string; detail?: string } {
  const msg = str(result.msg) ?? str(result.message) ?? "";
  const details: string[] = [];
  const assertion = result.assertion;
  if (typeof assertion === "string") details.push(`assertion: ${assertion}`);
  for (const stream of ["stderr", "stdout", "module_stderr", "module_stdout"] as const) {
    const text = str(result[stream])?.trim();
    if (text) details.push(`${stream}: ${text.split("\n").slice(-10).join("\n")}`);
  }
  if (typeof result.rc === "number" && result.rc !== 0) details.push(`exit code ${result.rc}`);
  const message = msg.trim() || details[0] || "failed without a message";
  return { message, detail: details.length > 0 ? details.join("\n") : undefined };
}

/**
 * Folds events into progress. A failure is only final when the host takes no further part: with
 * `ignore_errors` or a `rescue` block the host goes on, and jsonl does not say which was the case
 * (Ansible's own recap counts those as ignored or rescued, not failed).
 */
export class RunProgress {
  private taskCount = 0;
  private seenTasks = new Set<string>();
  private current?: string;
  private play?: string;
  private tally: Record<string, HostTally> = {};
  /** Per host, its last failure that nothing has followed yet. */
  private pending = new Map<string, TaskFailure>();
  private stats?: Record<string, HostStats>;
  /** Hosts that ran Kubespray's rpm-ostree reboot in this run (roles/bootstrap_os/tasks/fedora-coreos.yml). */
  private rebootedHosts = new Set<string>();

  constructor(private total?: number) {}

  feed(event: AnsibleEvent): void {
    switch (event.type) {
      case "play":
        this.play = event.name;
        return;
      case "task":
        // Free strategies announce a task once per host; it is still one task.
        if (!this.seenTasks.has(event.id)) {
          this.seenTasks.add(event.id);
          this.taskCount++;
        }
        this.current = event.name;
        return;
      case "result": {
        const t = this.tally[event.host] ?? emptyTally();
        this.tally[event.host] = t;
        this.pending.delete(event.host);
        if (REBOOT_TASK.test(event.task.name) && event.status !== "skipped")
          this.rebootedHosts.add(event.host);
        if (event.status === "failed" || event.status === "unreachable") {
          const { message, detail } = failureMessage(event.result);
          this.pending.set(event.host, {
            host: event.host,
            task: event.task.name,
            path: event.task.path,
            message,
            detail,
            unreachable: event.status === "unreachable",
          });
        }
        // Counted as Ansible's recap counts: a changed result is also ok.
        if (event.status === "changed") t.ok++;
        t[event.status]++;
        return;
      }
      case "stats":
        this.stats = event.stats;
        return;
    }
  }

  snapshot(): ProgressSnapshot {
    const hosts: Record<string, HostTally> = {};
    for (const [host, t] of Object.entries(this.tally)) hosts[host] = { ...t };
    // Once the recap is in, its counts are authoritative (they leave out ignored failures).
    if (this.stats) {
      for (const [host, s] of Object.entries(this.stats)) {
        hosts[host] = {
          ok: s.ok,
          changed: s.changed,
          failed: s.failures,
          unreachable: s.unreachable,
          skipped: s.skipped,
        };
      }
    }
    return { task: this.taskCount, total: this.total, currentTask: this.current, play: this.play, hosts };
  }

  /** The failures that ended a host's part in the run. */
  failures(): TaskFailure[] {
    const pending = [...this.pending.values()];
    if (!this.stats) return pending;
    return pending.filter((f) => {
      const s = this.stats?.[f.host];
      return s === undefined || s.failures > 0 || s.unreachable > 0;
    });
  }

  get tasksStarted(): number {
    return this.taskCount;
  }

  /** The hosts Kubespray rebooted for rpm-ostree in this run. */
  rebooted(): string[] {
    return [...this.rebootedHosts];
  }
}

/** The task of roles/bootstrap_os/tasks/fedora-coreos.yml that reboots a node after rpm-ostree install. */
export const REBOOT_TASK = /(^|: )Reboot immediately for updated ostree$/;
/** The task right after it, which fails when the node is not back within its timeout. */
export const REBOOT_WAIT_TASK = /(^|: )Wait for the reboot to complete$/;

/** "task 12 of ~540: kubernetes/preinstall : Stop if … — cp1 ok 10 changed 2, w1 ok 9 failed 1" */
export function formatProgress(s: ProgressSnapshot): string {
  const of = s.total ? ` of ~${Math.max(s.total, s.task)}` : "";
  const hosts = Object.entries(s.hosts)
    .map(([host, t]) => {
      const parts = [`ok ${t.ok}`, `changed ${t.changed}`];
      if (t.failed) parts.push(`failed ${t.failed}`);
      if (t.unreachable) parts.push(`unreachable ${t.unreachable}`);
      return `${host} ${parts.join(" ")}`;
    })
    .join(", ");
  return `task ${s.task}${of}${s.currentTask ? `: ${s.currentTask}` : ""}${hosts ? ` — ${hosts}` : ""}`;
}

/**
 * Number of tasks in `ansible-playbook --list-tasks` output (ansible/cli/playbook.py prints, per play,
 * a "tasks:" line and then one indented line per task). Tasks of dynamic includes are not listed, so
 * this is an estimate, shown as "about".
 */
export function countListedTasks(output: string): number {
  let count = 0;
  let inTasks = false;
  let tasksIndent = 0;
  for (const raw of output.split("\n")) {
    const line = raw.replace(/\s+$/, "");
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    if (line.trim() === "tasks:") {
      inTasks = true;
      tasksIndent = indent;
      continue;
    }
    if (inTasks && indent > tasksIndent) count++;
    else inTasks = false;
  }
  return count;
}
