/**
 * What a failed Kubespray run means, in words a person can act on. Kubespray's asserts often print
 * only "Assertion failed"; the task name says which one it was (the names below are those of
 * roles/kubernetes/preinstall/tasks/0040-verify-settings.yml and playbooks/ansible_version.yml).
 */
import { REBOOT_WAIT_TASK, type TaskFailure } from "./progress.ts";

/** roles/kubernetes/preinstall/defaults/main.yml */
export const MINIMAL_CONTROL_PLANE_MEMORY_MB = 1500;
export const MINIMAL_NODE_MEMORY_MB = 1024;

export interface HintContext {
  /** Node name to its address, for ssh hints. */
  addresses: Record<string, string>;
  sshUser: string;
  privateKeyPath: string;
  /** Where Ansible pins the nodes' host keys (runner.ts playbookEnv), and the port it reaches them on. */
  knownHostsFile: string;
  sshPort: number;
  logFile: string;
}

export function kubesprayHint(failure: TaskFailure, hc: HintContext): string | undefined {
  const task = failure.task;
  const text = `${failure.message}\n${failure.detail ?? ""}`;
  if (task.includes("Stop if memory is too small for control plane nodes")) {
    return `Kubespray needs at least ${MINIMAL_CONTROL_PLANE_MEMORY_MB} MB of memory on a control plane node (as the node reports it, which is a little less than the VM's size): raise its memory in the cluster file, e.g. nodes[].memory: 4GiB`;
  }
  if (task.includes("Stop if memory is too small for nodes")) {
    return `Kubespray needs at least ${MINIMAL_NODE_MEMORY_MB} MB of memory on a worker node (as the node reports it, which is a little less than the VM's size): raise its memory in the cluster file, e.g. nodes[].memory: 2GiB`;
  }
  if (task.includes("Stop if the os does not support")) {
    return "Kubespray does not know this operating system: the nodes must run Fedora CoreOS from the os stage";
  }
  if (REBOOT_WAIT_TASK.test(task)) {
    return "the node did not come back within Kubespray's 240 s after its rpm-ostree reboot: check its console (vm console), then run kubehyve up again";
  }
  if (task.includes("Stop if ip var does not match local ips")) {
    return "the node's address in the cluster file is not configured on the node: check the os stage's network settings";
  }
  if (text.includes("Ansible must be between")) {
    return "the Ansible that ran is not the version this Kubespray release requires: recreate the runner (remove the venv directory in the state dir and run kubehyve up again)";
  }
  if (text.includes("Python netaddr is not present")) {
    return "the runner lacks python netaddr: recreate the venv (remove it from the state dir and run kubehyve up again)";
  }
  // OpenSSH's words for a key that differs from the pinned one (sshconnect.c, warn_changed_key).
  if (
    failure.unreachable &&
    /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/.test(text)
  ) {
    const address = hc.addresses[failure.host] ?? failure.host;
    const entry = hc.sshPort === 22 ? address : `[${address}]:${hc.sshPort}`;
    return `the node's SSH host key is not the one pinned for it in ${hc.knownHostsFile} (the node was re-created, or someone is intercepting the connection); if it was re-created, forget the old key: ssh-keygen -f ${hc.knownHostsFile} -R '${entry}', then run kubehyve up again`;
  }
  if (failure.unreachable) {
    const address = hc.addresses[failure.host];
    const login = address ? `ssh -i ${hc.privateKeyPath} ${hc.sshUser}@${address} true` : "ssh to the node";
    return `the node did not answer over SSH. If Kubespray rebooted it to layer packages, the run was already started once more; otherwise wait for it to come back and run kubehyve up again; to test the login: ${login}`;
  }
  if (/rpm-ostree/.test(text)) {
    return "rpm-ostree could not layer packages; Kubespray reboots the node afterwards. Run kubehyve up again once the node is back";
  }
  return undefined;
}

/**
 * True when a failed run failed only because Kubespray rebooted Fedora CoreOS nodes during bootstrap:
 * every failure is on a host that ran the rpm-ostree reboot in this run, and is that host being
 * unreachable (a task ran while it restarted) or the wait for it timing out. Kubespray's
 * docs/operating_systems/fcos.md: "playbook may fail while bootstrap. Restart playbook again."
 */
export function failedByBootstrapReboot(
  failures: readonly TaskFailure[],
  rebooted: readonly string[],
): boolean {
  if (failures.length === 0) return false;
  return failures.every((f) => rebooted.includes(f.host) && (f.unreachable || REBOOT_WAIT_TASK.test(f.task)));
}

/** The closing lines of a failed run: host, task, message, hint, and where the whole log is. */
export function formatFailureReport(
  playbook: string,
  exitCode: number,
  failures: readonly TaskFailure[],
  hc: HintContext,
): string {
  const lines = [`${playbook} failed (ansible-playbook exited ${exitCode})`];
  if (failures.length === 0) lines.push("no task failure was reported; the log shows why Ansible stopped");
  for (const f of failures) {
    lines.push(
      `${f.host}: task "${f.task}"${f.path ? ` (${f.path})` : ""} ${f.unreachable ? "unreachable" : "failed"}: ${f.message}`,
    );
    if (f.detail) lines.push(...f.detail.split("\n").map((l) => `  ${l}`));
    const hint = kubesprayHint(f, hc);
    if (hint) lines.push(`  hint: ${hint}`);
  }
  lines.push(`full log: ${hc.logFile}`);
  return lines.join("\n");
}
