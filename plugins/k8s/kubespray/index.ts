/**
 * k8s/kubespray: turns the Fedora CoreOS nodes into a Kubernetes cluster with Kubespray's playbooks
 * and hands over the admin kubeconfig. See README.md. One topic per file:
 *
 * - options.ts, validate.ts, topology.ts: the options block, its rules, the control planes and etcd
 * - release.ts, runner.ts: the pinned Kubespray tree and the Ansible that runs it
 * - inventory.ts: the inventory and group vars; play.ts: the playbooks, their progress and failures
 * - inspect.ts, nodes.ts, certificates.ts, kubeconfig.ts: what check and verify read, the handover
 */
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  type Change,
  type Diagnostic,
  definePlugin,
  diag,
  findingOfFailure,
  type KubeClient,
  KubehyveError,
  type KubeObject,
  notAList,
  type PluginContext,
  type RenderedFile,
  UnreachableError,
  v,
} from "kubehyve";
import { certificateFindings } from "./certificates.ts";
import { writeStageFiles } from "./files.ts";
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
import { meta } from "./meta.ts";
import { verifyNodes } from "./nodes.ts";
import { type KubesprayOptions, resolvedRelease } from "./options.ts";
import { logFileOf, type Prepared, playbooksFor, runWithProgress } from "./play.ts";
import { ensureKubespray, treeRequestOf } from "./release.ts";
import { createRunner, knownHostsFileOf, runnerDirDiagnostics } from "./runner.ts";
import {
  addControlPlaneProcedure,
  type EtcdRecord,
  removeControlPlaneProcedure,
  resolveTopology,
  STATE_KEY,
  type Topology,
} from "./topology.ts";
import { checkKubesprayVars, screenHookAnswers } from "./validate.ts";

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

declare module "kubehyve" {
  interface HookTypes {
    /** Group vars other stages need (MetalLB: kube_proxy_strict_arp); the user's extraVars win. */
    [HOOK]: { payload: undefined; answer: Record<string, unknown> | undefined };
  }
}

function inventoryDirOf(ctx: Ctx): string {
  return join(ctx.dir, "inventory");
}

/** The control planes' order and etcd names: recorded in state, never taken from the file's order. */
function topologyOf(ctx: Ctx): Topology {
  return resolveTopology(
    ctx.cluster.nodes,
    ctx.state.get<EtcdRecord>(STATE_KEY),
    ctx.state.get<Installed>("installed")?.nodes,
  );
}

async function renderFiles(ctx: Ctx): Promise<{ files: RenderedFile[]; diagnostics: Diagnostic[] }> {
  const key = await ctx.clusterKey();
  const screened = screenHookAnswers(await ctx.hooks.call(HOOK));
  const merged = mergeGroupVars(
    baseGroupVars(ctx.cluster, ctx.options),
    screened.answers,
    ctx.options.extraVars,
  );
  // Other stages' answers are only known now; what the user set was checked by validate() already.
  const diagnostics = [
    ...screened.diagnostics,
    ...merged.diagnostics,
    ...checkKubesprayVars(merged.vars, {
      extraVarKeys: new Set(Object.keys(ctx.options.extraVars)),
      nodeCount: ctx.cluster.nodes.length,
      kubesprayVersion: ctx.options.version,
    }).filter((d) => !d.path?.startsWith("stages.k8s.extraVars.") && !d.path?.startsWith("network.")),
  ];
  return {
    files: [
      {
        path: `inventory/${INVENTORY_FILE}`,
        content: renderInventory({
          cluster: ctx.cluster,
          options: ctx.options,
          privateKeyPath: key.privateKeyPath,
          etcd: topologyOf(ctx),
        }),
      },
      { path: `inventory/${GROUP_VARS_FILE}`, content: renderGroupVars(merged.vars) },
    ],
    diagnostics,
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
    // Nothing can be inspected yet: plan the full install. The runner directory is on this machine,
    // so whether it may be taken is said now (no program runs: a plan may be offline), so that the
    // plan does not hide what will stop `up`.
    return { changes: [install], diagnostics: runnerDirDiagnostics(ctx.options, ctx.dir, ctx.clusterId) };
  }
  const runner = createRunner(ctx.options, ctx.dir, ctx.local, ctx.clusterId);
  diagnostics.push(...(await runner.prerequisites()));
  const rendered = await renderFiles(ctx);
  diagnostics.push(...rendered.diagnostics);

  {
    const { nodes, error } = await registeredNodes(ctx);
    // A cluster that was installed keeps its etcd members, whether or not its API answers now.
    if (ctx.state.get<Installed>("installed") || nodes) {
      const refused = etcdMembershipProblems(ctx, nodes);
      if (refused.length > 0) return { changes: [], diagnostics: [...diagnostics, ...refused] };
    }
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
  return { changes, diagnostics };
}

/**
 * Kubespray cannot add or remove etcd members with a plain cluster.yml (docs/operations/nodes.md),
 * so a control plane that the recorded cluster lacks, or one that left the cluster file while it is
 * still registered, stops check with the procedure spelled out. Once the user has carried it out
 * (the node registered, or gone), the order follows. `registered` is undefined when the API does
 * not answer.
 */
function etcdMembershipProblems(ctx: Ctx, registered: readonly KubeObject[] | undefined): Diagnostic[] {
  const topology = topologyOf(ctx);
  // Without an answer from the API, nothing counts as done: every change is refused.
  const names = registered && new Set(registered.map((n) => n.metadata.name));
  const added = topology.added.filter((n) => !names?.has(n));
  const removed = topology.removed.filter((n) => !names || names.has(n));
  const found: Diagnostic[] = [];
  const runner = createRunner(ctx.options, ctx.dir, ctx.local, ctx.clusterId);
  const where = {
    kubesprayDir: ctx.artifacts.treePathOf(treeRequestOf(pinnedRelease(ctx), ctx.options.version)),
    inventory: join(inventoryDirOf(ctx), INVENTORY_FILE),
    ansiblePlaybook: runner.command().join(" "),
  };
  if (added.length > 0) {
    found.push(
      diag.error(
        "kubespray.control-plane-add",
        `adding control plane${added.length > 1 ? "s" : ""} ${added.join(", ")} to a running cluster is not done by kubehyve`,
        {
          detail: addControlPlaneProcedure({
            added,
            existing: topology.order.length - topology.added.length,
            ...where,
          }),
          hint: "follow the procedure above, or remove the new control planes from the cluster file",
          path: "nodes",
        },
      ),
    );
  }
  if (removed.length > 0) {
    const record = ctx.state.get<EtcdRecord>(STATE_KEY);
    found.push(
      diag.error(
        "kubespray.control-plane-remove",
        `removing control plane${removed.length > 1 ? "s" : ""} ${removed.join(", ")} from a running cluster is not done by kubehyve`,
        {
          detail: removeControlPlaneProcedure({
            removed,
            first: record?.order[0] !== undefined && removed.includes(record.order[0]),
            ...where,
          }),
          hint: "follow the procedure above, or put the control planes back into the cluster file",
          path: "nodes",
        },
      ),
    );
  }
  return found;
}

/** The release with its content pin; validate() has refused a version without one. */
function pinnedRelease(ctx: Ctx) {
  const release = resolvedRelease(ctx.options);
  if (!release.treeSha256V1) {
    throw new KubehyveError(
      `no tree-sha256-v1 digest is known for Kubespray ${ctx.options.version}`,
      2,
      "set stages.k8s.release.tree-sha256-v1",
    );
  }
  return { ...release, treeSha256V1: release.treeSha256V1 };
}

/** Writes the inventory, fetches Kubespray and prepares the runner; returns what a run needs. */
async function prepare(ctx: Ctx): Promise<Prepared | undefined> {
  const tree = treeRequestOf(pinnedRelease(ctx), ctx.options.version);
  const { files } = await renderFiles(ctx);
  const key = await ctx.clusterKey();
  const inventoryDir = inventoryDirOf(ctx);
  await ctx.wet(`write the Kubespray inventory to ${inventoryDir}`, () => writeStageFiles(ctx.dir, files));
  // Recorded before the first playbook: from then on etcd members may exist under these names.
  const topology = topologyOf(ctx);
  await ctx.wet(`record the control planes' order ${topology.order.join(", ")} and etcd member names`, () =>
    ctx.state.set(STATE_KEY, { order: topology.order, names: topology.names } satisfies EtcdRecord),
  );
  const kubesprayDir = ctx.artifacts.treePathOf(tree);
  await ctx.wet(
    `fetch Kubespray ${ctx.options.version} into ${kubesprayDir}, verified by its tree-sha256-v1 ${tree.treeSha256V1}`,
    () => ensureKubespray(ctx.artifacts, tree, ctx.signal),
  );
  const runner = createRunner(ctx.options, ctx.dir, ctx.local, ctx.clusterId);
  if (!(await runner.isPrepared(kubesprayDir))) {
    await ctx.wet(`create the Ansible ${runner.kind} for Kubespray ${ctx.options.version}`, () =>
      runner.prepare(kubesprayDir),
    );
  }
  if (ctx.dryRun) return undefined;
  return {
    runner,
    kubesprayDir,
    inventoryDir,
    privateKeyPath: key.privateKeyPath,
    groupVars: groupVarsOf(files),
  };
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
  if (!controlPlane) throw new KubehyveError("the cluster file declares no control-plane node");
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
  const adminConf = adminConfPathOf(inventoryDirOf(ctx));
  const knownHosts = knownHostsFileOf(ctx.dir);
  await ctx.wet(
    `remove the admin kubeconfig ${ctx.kubeconfigPath} and Kubespray's copy ${adminConf}`,
    async () => {
      await rm(ctx.kubeconfigPath, { force: true });
      await rm(adminConf, { force: true });
      await ctx.state.delete("installed");
    },
  );
  // Ansible pins the nodes' keys in their targets' file, which the hypervisor stage forgets a node's
  // pin in when it makes or destroys its VM; a file of the stage's own (earlier versions kept one)
  // would refuse the next cluster's nodes on these addresses.
  if (existsSync(knownHosts))
    await ctx.wet(`forget the nodes' host keys Ansible pinned in ${knownHosts}`, () =>
      rm(knownHosts, { force: true }),
    );
}

export const kubesprayPlugin = definePlugin({
  ...meta,
  hookAnswers: {
    [HOOK]: v.optional(
      notAList(
        v.record(v.string(), v.unknown(), "a map of Kubespray variables"),
        "a map of Kubespray variables",
      ),
    ),
  },
  check,
  apply,
  async verify(ctx) {
    let kube: KubeClient;
    try {
      kube = await ctx.kube();
    } catch (error) {
      // Nothing was installed yet, so there is nothing on the nodes to look at either.
      return [
        diag.error("kubespray.no-kubeconfig", "there is no admin kubeconfig to reach the cluster with", {
          detail: (error as Error).message,
          hint: "kubehyve up",
        }),
      ];
    }
    const kubeconfig = await readFile(ctx.kubeconfigPath, "utf8").catch(() => undefined);
    const certificates = kubeconfig ? certificateFindings(kubeconfig, ctx.kubeconfigPath) : [];
    const nodes = [
      ...certificates,
      ...(await verifyNodes(ctx.cluster.nodes, (name) => ctx.node(name), ctx.signal)),
    ];
    try {
      return [...(await verifyCluster(kube, ctx.cluster.nodes, ctx.options.kubernetesVersion)), ...nodes];
    } catch (error) {
      // Doctor reports an API no request reached once, and the checks that needed it as skipped.
      if (error instanceof UnreachableError)
        return [
          ...nodes,
          findingOfFailure("kubespray.cluster", "the cluster's nodes and kube-system", error),
        ];
      return [
        ...nodes,
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
