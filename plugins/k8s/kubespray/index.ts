/**
 * k8s/kubespray: turns the Fedora CoreOS nodes into a Kubernetes cluster with Kubespray's playbooks
 * and hands over the admin kubeconfig. See README.md.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  type Change,
  type Diagnostic,
  definePlugin,
  diag,
  type KubeClient,
  type KubeObject,
  type PluginContext,
  type RenderedFile,
} from "kubehyve";
import { formatFailureReport, type HintContext } from "./failures.ts";
import { type Assessment, assessCluster, verifyCluster } from "./inspect.ts";
import {
  baseGroupVars,
  GROUP_VARS_FILE,
  INVENTORY_FILE,
  mergeGroupVars,
  renderGroupVars,
  renderInventory,
} from "./inventory.ts";
import { adminConfPathOf, handOverKubeconfig } from "./kubeconfig.ts";
import { type KubesprayOptions, optionsSchema, resolvedRelease } from "./options.ts";
import { countListedTasks, formatProgress, RunProgress } from "./progress.ts";
import { ensureKubespray, kubesprayDirOf } from "./release.ts";
import {
  type AnsibleRunner,
  createRunner,
  type PlaybookRequest,
  playbookArgv,
  playbookEnv,
  runPlaybook,
} from "./runner.ts";

type Ctx = PluginContext<KubesprayOptions>;

/** What the last successful run installed, kept in this stage's state. */
interface Installed {
  kubesprayVersion: string;
  kubernetesVersion: string;
  nodes: string[];
  /** The group vars file of that run: a difference means Kubespray must run again. */
  groupVars: string;
}

const HOOK = "k8s:kubespray-vars";

function inventoryDirOf(ctx: Ctx): string {
  return join(ctx.dir, "inventory");
}

async function renderFiles(ctx: Ctx): Promise<{ files: RenderedFile[]; diagnostics: Diagnostic[] }> {
  const key = await ctx.clusterKey();
  const answers = await ctx.hooks.call<Record<string, unknown>>(HOOK);
  const merged = mergeGroupVars(baseGroupVars(ctx.cluster, ctx.options), answers, ctx.options.extraVars);
  return {
    files: [
      {
        path: `inventory/${INVENTORY_FILE}`,
        content: renderInventory({
          cluster: ctx.cluster,
          options: ctx.options,
          privateKeyPath: key.privateKeyPath,
        }),
      },
      { path: `inventory/${GROUP_VARS_FILE}`, content: renderGroupVars(merged.vars) },
    ],
    diagnostics: merged.diagnostics,
  };
}

function groupVarsOf(files: RenderedFile[]): string {
  return String(files.find((f) => f.path.endsWith(GROUP_VARS_FILE))?.content ?? "");
}

/** Reads the cluster's nodes; neither field when there is no cluster to ask (no kubeconfig yet). */
async function registeredNodes(ctx: Ctx): Promise<{ nodes?: KubeObject[]; error?: string }> {
  let kube: KubeClient;
  try {
    kube = await ctx.kube();
  } catch {
    return {};
  }
  try {
    return { nodes: await kube.list("v1", "Node") };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

function changeFor(a: Exclude<Assessment, { kind: "up-to-date" }>, ctx: Ctx): Change {
  const target = ctx.options.version;
  switch (a.kind) {
    case "scale":
      return {
        kind: "kubespray.scale",
        summary: `add node${a.nodes.length > 1 ? "s" : ""} ${a.nodes.join(", ")} with Kubespray ${target} (scale.yml)`,
        data: { nodes: a.nodes },
      };
    case "upgrade":
      return {
        kind: "kubespray.upgrade",
        summary: `upgrade Kubernetes ${a.from.join(", ")} -> ${a.to} with Kubespray ${target} (upgrade-cluster.yml)`,
        disruptive: true,
        data: a,
      };
    case "converge":
      return {
        kind: "kubespray.converge",
        summary: `run Kubespray ${target} cluster.yml again: ${a.reason}`,
      };
  }
}

async function check(ctx: Ctx): Promise<{ changes: Change[]; diagnostics: Diagnostic[] }> {
  const diagnostics: Diagnostic[] = [];
  const changes: Change[] = [];
  const install: Change = {
    kind: "kubespray.install",
    summary: `install Kubernetes ${ctx.options.kubernetesVersion} on ${ctx.cluster.nodes.map((n) => n.name).join(", ")} with Kubespray ${ctx.options.version} (cluster.yml)`,
  };
  if (ctx.upstreamPending) {
    // Nothing can be inspected yet: plan the full install. A missing pin is said now, as a warning,
    // so that the plan does not hide what will stop `up` when it reaches this stage.
    const missing = resolvedRelease(ctx.options).sha256
      ? []
      : [{ ...missingSha256(ctx), severity: "warn" as const }];
    return { changes: [install], diagnostics: missing };
  }
  const runner = createRunner(ctx.options, ctx.dir, ctx.local);
  diagnostics.push(...(await runner.prerequisites()));
  const rendered = await renderFiles(ctx);
  diagnostics.push(...rendered.diagnostics);

  {
    const { nodes, error } = await registeredNodes(ctx);
    if (error !== undefined) {
      diagnostics.push(
        diag.warn("kubespray.api-unreachable", "the Kubernetes API does not answer", {
          detail: error,
          hint: "kubehyve up runs cluster.yml again",
        }),
      );
      changes.push({
        kind: "kubespray.converge",
        summary: `run Kubespray ${ctx.options.version} cluster.yml again: the API does not answer`,
      });
    } else if (nodes === undefined) {
      changes.push(install);
    } else {
      const a = assessCluster(ctx.cluster.nodes, nodes, ctx.options.kubernetesVersion);
      if (a.kind !== "up-to-date") changes.push(changeFor(a, ctx));
      else {
        const installed = ctx.state.get<Installed>("installed");
        if (installed && installed.groupVars !== groupVarsOf(rendered.files)) {
          changes.push({
            kind: "kubespray.converge",
            summary: `run Kubespray ${ctx.options.version} cluster.yml again: its variables changed`,
            detail: groupVarsOf(rendered.files),
          });
        }
      }
    }
  }
  if (changes.length > 0 && !resolvedRelease(ctx.options).sha256) diagnostics.push(missingSha256(ctx));
  return { changes, diagnostics };
}

function missingSha256(ctx: Ctx): Diagnostic {
  const { url } = resolvedRelease(ctx.options);
  return diag.error(
    "kubespray.release-sha256-missing",
    `the sha256 of the Kubespray ${ctx.options.version} tarball is not set`,
    {
      detail: `kubehyve verifies every download; no hash of ${url} is pinned in this release of kubehyve`,
      hint: `fetch ${url} once, check it, and set stages.k8s.release.sha256 to the output of: sha256sum kubespray-${ctx.options.version}.tar.gz`,
      path: "stages.k8s.release.sha256",
    },
  );
}

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

/** What prepare() leaves for a run: the runner, the unpacked tree and the key the nodes accept. */
interface Prepared {
  runner: AnsibleRunner;
  kubesprayDir: string;
  privateKeyPath: string;
  groupVars: string;
}

/** One playbook on the prepared tree and inventory, with progress lines and a failure report. */
async function runWithProgress(
  ctx: Ctx,
  prepared: Prepared,
  step: Pick<PlaybookRequest, "playbook" | "limit" | "extraVars" | "logFile">,
): Promise<void> {
  const { runner, privateKeyPath } = prepared;
  const req: PlaybookRequest = {
    kubesprayDir: prepared.kubesprayDir,
    inventoryDir: inventoryDirOf(ctx),
    workDir: ctx.dir,
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
    throw new Error(
      formatFailureReport(req.playbook, result.code, failures, hintContext(ctx, privateKeyPath, req.logFile)),
    );
  }
  const counts = ctx.state.get<Record<string, number>>("taskCounts") ?? {};
  await ctx.state.set("taskCounts", {
    ...counts,
    [`${ctx.options.version}/${req.playbook}`]: progress.tasksStarted,
  });
}

async function writeRendered(dir: string, files: RenderedFile[]): Promise<void> {
  for (const f of files) {
    const path = join(dir, f.path);
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(path, f.content, { mode: f.mode ?? 0o600 });
  }
}

function logFileOf(ctx: Ctx, playbook: string): string {
  const stamp = new Date().toISOString().replaceAll(":", "").replace(/\..*$/, "");
  return join(ctx.dir, "logs", `${stamp}-${playbook.replaceAll("/", "_").replace(/\.yml$/, "")}.log`);
}

/** Writes the inventory, fetches Kubespray and prepares the runner; returns what a run needs. */
async function prepare(ctx: Ctx): Promise<Prepared | undefined> {
  const release = resolvedRelease(ctx.options);
  if (!release.sha256) {
    const d = missingSha256(ctx);
    throw new Error(`${d.summary}: ${d.hint}`);
  }
  const sha256 = release.sha256;
  const { files } = await renderFiles(ctx);
  const key = await ctx.clusterKey();
  const inventoryDir = inventoryDirOf(ctx);
  await ctx.wet(`write the Kubespray inventory to ${inventoryDir}`, () => writeRendered(ctx.dir, files));
  const kubesprayDir = kubesprayDirOf(ctx.dir, ctx.options.version);
  await ctx.wet(`fetch Kubespray ${ctx.options.version} and unpack it into ${kubesprayDir}`, () =>
    ensureKubespray(
      ctx.local,
      ctx.artifacts,
      { ...release, sha256, version: ctx.options.version },
      kubesprayDir,
      ctx.signal,
    ),
  );
  const runner = createRunner(ctx.options, ctx.dir, ctx.local);
  if (!(await runner.isPrepared(kubesprayDir))) {
    await ctx.wet(`create the Ansible ${runner.kind} for Kubespray ${ctx.options.version}`, () =>
      runner.prepare(kubesprayDir),
    );
  }
  if (ctx.dryRun) return undefined;
  return { runner, kubesprayDir, privateKeyPath: key.privateKeyPath, groupVars: groupVarsOf(files) };
}

function strongest(changes: Change[]): Change | undefined {
  const order = ["kubespray.upgrade", "kubespray.install", "kubespray.converge", "kubespray.scale"];
  return [...changes]
    .filter((c) => c.kind && order.includes(c.kind))
    .sort((a, b) => order.indexOf(a.kind!) - order.indexOf(b.kind!))[0];
}

async function apply(ctx: Ctx, changes: Change[]): Promise<void> {
  const change = strongest(changes);
  if (!change) return;
  // An upgrade is marked disruptive: the engine has asked before apply runs (unless --yes).
  const prepared = await prepare(ctx);
  const controlPlane = ctx.cluster.nodes.find((n) => n.role === "control-plane");
  for (const step of playbooksFor(change)) {
    const logFile = logFileOf(ctx, step.playbook);
    const where = step.limit ? ` on ${step.limit.join(", ")}` : "";
    await ctx.wet(
      `run ansible-playbook ${step.playbook}${where} (Kubespray ${ctx.options.version})`,
      async () => {
        if (prepared) await runWithProgress(ctx, prepared, { logFile, ...step });
      },
    );
  }
  if (!controlPlane) throw new Error("the cluster file declares no control-plane node");
  await ctx.wet(
    `copy the admin kubeconfig to ${ctx.kubeconfigPath} (server on ${controlPlane.address})`,
    () => handOverKubeconfig(adminConfPathOf(inventoryDirOf(ctx)), ctx.kubeconfigPath, controlPlane.address),
  );
  if (prepared) {
    const installed: Installed = {
      kubesprayVersion: ctx.options.version,
      kubernetesVersion: ctx.options.kubernetesVersion,
      nodes: ctx.cluster.nodes.map((n) => n.name),
      groupVars: prepared.groupVars,
    };
    await ctx.state.set("installed", installed);
  }
}

async function destroy(ctx: Ctx): Promise<void> {
  const installed = ctx.state.get<Installed>("installed");
  if (!installed) {
    ctx.log.info("Kubespray never completed a run here: nothing to reset");
    return;
  }
  // `down` has asked before any stage is destroyed (unless --yes).
  const prepared = await prepare(ctx);
  const logFile = logFileOf(ctx, "reset.yml");
  await ctx.wet(`run ansible-playbook reset.yml (Kubespray ${ctx.options.version})`, async () => {
    if (!prepared) return;
    // reset.yml pauses for a typed "yes" unless reset_confirmation is set; `down` asked already.
    await runWithProgress(ctx, prepared, {
      logFile,
      playbook: "reset.yml",
      extraVars: { reset_confirmation: "yes" },
    });
  });
  await ctx.wet(`remove the admin kubeconfig ${ctx.kubeconfigPath}`, async () => {
    await rm(ctx.kubeconfigPath, { force: true });
    await ctx.state.delete("installed");
  });
}

export const kubesprayPlugin = definePlugin({
  id: "k8s/kubespray",
  title: "Kubernetes by Kubespray",
  apiVersion: 1,
  options: optionsSchema,
  check,
  apply,
  async verify(ctx) {
    let kube: KubeClient;
    try {
      kube = await ctx.kube();
    } catch (error) {
      return [
        diag.error("kubespray.no-kubeconfig", "there is no admin kubeconfig to reach the cluster with", {
          detail: (error as Error).message,
          hint: "kubehyve up",
        }),
      ];
    }
    try {
      return await verifyCluster(kube, ctx.cluster.nodes, ctx.options.kubernetesVersion);
    } catch (error) {
      return [
        diag.error("kubespray.api-unreachable", `the Kubernetes API at ${kube.server} does not answer`, {
          detail: (error as Error).message,
          hint: "check that the control plane VMs run: kubehyve doctor",
        }),
      ];
    }
  },
  async render(ctx) {
    return (await renderFiles(ctx)).files;
  },
  destroy,
});

export default kubesprayPlugin;
