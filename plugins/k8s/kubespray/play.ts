/**
 * Running Kubespray's playbooks: which ones a change needs, each with progress lines and a failure
 * report that names the task, the node and what to do, and the one rerun Fedora CoreOS needs after
 * rpm-ostree's reboot.
 */
import { join } from "node:path";
import { type Change, KubehyveError, type PluginContext } from "kubehyve";
import { failedByBootstrapReboot, formatFailureReport, type HintContext } from "./failures.ts";
import type { KubesprayOptions } from "./options.ts";
import { countListedTasks, formatProgress, RunProgress, type TaskFailure } from "./progress.ts";
import {
  type AnsibleRunner,
  knownHostsFileOf,
  type PlaybookRequest,
  playbookArgv,
  playbookEnv,
  runPlaybook,
} from "./runner.ts";

type Ctx = PluginContext<KubesprayOptions>;

/** The playbooks one change needs, in order. */
export function playbooksFor(
  change: Change,
): { playbook: string; limit?: string[]; extraVars?: Record<string, string | boolean> }[] {
  switch (change.kind) {
    case "kubespray.scale": {
      const nodes = (change.data as { nodes: string[] }).nodes;
      // Kubespray: "Before using --limit run playbook facts.yml without the limit" (docs/operations/nodes.md).
      return [{ playbook: "playbooks/facts.yml" }, { playbook: "scale.yml", limit: nodes }];
    }
    case "kubespray.upgrade":
      return [{ playbook: "upgrade-cluster.yml" }];
    default:
      return [{ playbook: "cluster.yml" }];
  }
}

function hintContext(ctx: Ctx, privateKeyPath: string, logFile: string): HintContext {
  return {
    addresses: Object.fromEntries(ctx.cluster.nodes.map((n) => [n.name, n.address])),
    sshUser: ctx.options.ssh.user,
    privateKeyPath,
    knownHostsFile: nodePins(ctx) ?? knownHostsFileOf(ctx.dir),
    sshPort: ctx.options.ssh.port,
    logFile,
  };
}

/** "About M tasks": the count of the last run of this playbook, else `--list-tasks`. */
async function estimateTasks(
  ctx: Ctx,
  runner: AnsibleRunner,
  req: PlaybookRequest,
): Promise<number | undefined> {
  const counts = ctx.state.get<Record<string, number>>("taskCounts") ?? {};
  const recorded = counts[`${ctx.options.version}/${req.playbook}`];
  if (recorded) return recorded;
  const argv = [...playbookArgv(runner, req), "--list-tasks"];
  const r = await runner.target.run(argv, { cwd: req.kubesprayDir, env: playbookEnv(req), kind: "long" });
  return r.code === 0 ? countListedTasks(r.stdout) || undefined : undefined;
}

/** What prepare() leaves for a run: the runner, the unpacked tree, the inventory and the key the nodes accept. */
export interface Prepared {
  runner: AnsibleRunner;
  kubesprayDir: string;
  inventoryDir: string;
  privateKeyPath: string;
  groupVars: string;
}

/**
 * One playbook on the prepared tree and inventory, with progress lines and a failure report. A run
 * that failed only because Kubespray rebooted Fedora CoreOS nodes for rpm-ostree is started once
 * more by itself, as Kubespray's docs/operating_systems/fcos.md asks ("Restart playbook again").
 */
export async function runWithProgress(
  ctx: Ctx,
  prepared: Prepared,
  step: Pick<PlaybookRequest, "playbook" | "limit" | "extraVars" | "logFile">,
): Promise<void> {
  const first = await runOnce(ctx, prepared, step);
  if (!first) return;
  if (!failedByBootstrapReboot(first.failures, first.rebooted)) throw new KubehyveError(first.report);
  const hosts = ctx.cluster.nodes
    .map((n) => n.name)
    .filter((h) => first.rebooted.includes(h) && first.failures.some((f) => f.host === h));
  ctx.log.info(
    `${step.playbook}: ${hosts.join(", ")} rebooted to apply the packages rpm-ostree layered (Kubespray's bootstrap_os), and the run lost ${hosts.length > 1 ? "them" : "it"} while ${hosts.length > 1 ? "they" : "it"} restarted; running ${step.playbook} once more, as Kubespray's docs/operating_systems/fcos.md says`,
  );
  const again = await runOnce(ctx, prepared, {
    ...step,
    logFile: step.logFile.replace(/\.log$/, "-again.log"),
  });
  if (again) throw new KubehyveError(again.report);
}

/**
 * The file that pins the nodes' host keys for their targets, when they share one: Ansible keeps its
 * pins there too, so a node made anew, whose pin the hypervisor stage forgot, is not refused by
 * Ansible alone. Nodes whose targets keep no such file leave Ansible a file of its own.
 */
function nodePins(ctx: Ctx): string | undefined {
  const files = new Set(ctx.cluster.nodes.map((n) => ctx.node(n.name).knownHostsFile));
  const [file] = files;
  return files.size === 1 ? file : undefined;
}

/** Runs a playbook; undefined when it succeeded, else what its failure was. */
async function runOnce(
  ctx: Ctx,
  prepared: Prepared,
  step: Pick<PlaybookRequest, "playbook" | "limit" | "extraVars" | "logFile">,
): Promise<{ report: string; failures: TaskFailure[]; rebooted: string[] } | undefined> {
  const { runner, privateKeyPath } = prepared;
  const req: PlaybookRequest = {
    kubesprayDir: prepared.kubesprayDir,
    inventoryDir: prepared.inventoryDir,
    workDir: ctx.dir,
    knownHostsFile: nodePins(ctx),
    signal: ctx.signal,
    ...step,
  };
  const total = await estimateTasks(ctx, runner, req);
  const progress = new RunProgress(total);
  ctx.log.info(`${req.playbook}: log in ${req.logFile}`);
  const result = await runPlaybook(runner, {
    ...req,
    onEvent: (event) => {
      progress.feed(event);
      if (event.type === "task" || (event.type === "result" && event.status === "failed")) {
        const s = progress.snapshot();
        ctx.log.progress(formatProgress(s), s.task, s.total);
      }
    },
  });
  const s = progress.snapshot();
  ctx.log.info(`${req.playbook}: ${formatProgress({ ...s, currentTask: undefined })}`);
  if (result.code !== 0) {
    // Task paths relative to the Kubespray tree read as they do in Kubespray's repository.
    const failures = progress
      .failures()
      .map((f) => ({ ...f, path: f.path?.replace(`${req.kubesprayDir}/`, "") }));
    return {
      report: formatFailureReport(
        req.playbook,
        result.code,
        failures,
        hintContext(ctx, privateKeyPath, req.logFile),
      ),
      failures,
      rebooted: progress.rebooted(),
    };
  }
  const counts = ctx.state.get<Record<string, number>>("taskCounts") ?? {};
  await ctx.state.set("taskCounts", {
    ...counts,
    [`${ctx.options.version}/${req.playbook}`]: progress.tasksStarted,
  });
  return undefined;
}

export function logFileOf(ctx: Ctx, playbook: string): string {
  const stamp = new Date().toISOString().replaceAll(":", "").replace(/\..*$/, "");
  return join(ctx.dir, "logs", `${stamp}-${playbook.replaceAll("/", "_").replace(/\.yml$/, "")}.log`);
}
