/**
 * hypervisor/bhyve: makes the FreeBSD host a bhyve hypervisor through vm-bhyve and keeps one VM per
 * node as the cluster file declares it. Runs on the host itself or drives it over ssh (ctx.host).
 * It acts only on what carries this cluster's mark (marks.ts): a VM of the same name made by hand
 * or by another cluster is refused by `up` and left alone by `down`. One topic per file:
 *
 * - options.ts, validate.ts: the options block and its rules; marks.ts: how this cluster's things
 *   are marked and told from anyone else's
 * - inspect.ts, parse.ts, preflight.ts: what check reads on the host and what it makes of it
 * - observe.ts: each node's VM as found (config, disks, leftovers); plan.ts: what would change
 * - vms.ts, provision.ts, files.ts, vmconfig.ts: making, starting and stopping guests, their disks
 *   and files, whole or not at all
 * - verify.ts: whether the VMs run and booted; l2.ts: the lb:l2-host hook
 */
import {
  type Change,
  type CheckResult,
  CommandError,
  definePlugin,
  diag,
  KubehyveError,
  mapLimit,
  type PluginContext,
  type RenderedFile,
  runOk,
} from "kubehyve";
import { foreignContents } from "./contents.ts";
import { writeHostFile } from "./files.ts";
import { type Datastore, datastoreSpec, type HostFacts, inspectHost, readDatastore } from "./inspect.ts";
import { l2HostCheck } from "./l2.ts";
import { CONFIG_MARK, CONFIG_MARK_NAME, describeOwner, ownerOf, ZFS_MARK } from "./marks.ts";
import { meta } from "./meta.ts";
import { configPathOf, nodeBoot, observeVms } from "./observe.ts";
import type { BhyveOptions } from "./options.ts";
import { parseRcVars, parseVmList } from "./parse.ts";
import {
  autostartChange,
  type ChangeData,
  cleanupChange,
  guestDirOf,
  hostChanges,
  NODE_BOOT_HOOK,
  nodeBootAnswer,
  otherGuestDiagnostics,
  type SwitchRecords,
  type VmObservation,
  vmChanges,
} from "./plan.ts";
import { hostPreflight, nodeMemoryDiagnostics } from "./preflight.ts";
import { verify } from "./verify.ts";
import { renderVmConfig } from "./vmconfig.ts";
import { configInput, createVm, finishVm, forgetNodeKey, startVm, stopVm } from "./vms.ts";

export type { NodeBoot, NodeBootPayload } from "./plan.ts";

type Ctx = PluginContext<BhyveOptions>;

/** How many guests are worked on at once (their starts still take turns, see apply). */
const PARALLEL_VMS = 4;
const SWITCHES_KEY = "switches";

function freshInstall(ctx: Ctx): CheckResult {
  const target = ctx.host.name;
  const spec = datastoreSpec(ctx.options);
  const datastore: Datastore =
    spec.kind === "zfs" ? { ...spec, exists: false, mounted: false } : { ...spec, exists: false };
  const empty = { rc: new Map<string, string>(), datastore } as HostFacts;
  const observed: VmObservation[] = ctx.cluster.nodes.map((node) => ({
    node,
    dir: guestDirOf(datastore, node.name),
    boot: {},
  }));
  const changes = [
    ...hostChanges(empty, ctx.options, target).changes,
    ...vmChanges(ctx.cluster, ctx.clusterId, ctx.options, observed).changes,
  ];
  const autostart = autostartChange(empty, ctx.cluster, ctx.options, target);
  if (autostart) changes.push(autostart);
  return { changes, diagnostics: nodeMemoryDiagnostics(ctx.cluster) };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  if (ctx.upstreamPending) return freshInstall(ctx);
  const target = ctx.host.name;
  const facts = await inspectHost(ctx.host, ctx.options);
  const diagnostics = hostPreflight(facts, ctx.cluster, ctx.options, target);
  const host = hostChanges(facts, ctx.options, target, ctx.state.get<SwitchRecords>(SWITCHES_KEY));
  const changes: Change[] = host.changes;
  diagnostics.push(...host.diagnostics);
  if (facts.vms === undefined) {
    // Without the list of guests, every VM would look missing: plan nothing for them.
    diagnostics.push(
      diag.error("bhyve.vm-list-failed", "cannot list the VMs on the host", {
        target,
        detail: facts.vmListError ?? facts.datastore.error,
        hint: "fix the findings above, then: vm list",
      }),
    );
    return { changes, diagnostics };
  }
  const observed = await observeVms(ctx, facts);
  if (observed.unreadable) {
    diagnostics.push(
      diag.error("bhyve.host-read-failed", "could not read the VMs' disk files", {
        target,
        detail: observed.unreadable,
        hint: "the command failed rather than answered; run it on the host to see why, then: kubehyve plan",
      }),
    );
  }
  // A dataset of ours without a config is destroyed and made again: first, what else it holds.
  const again = observed.vms.filter(
    (v) =>
      !v.listed && v.dataset && ownerOf(v.dataset.mark, v.dataset.markName, ctx.clusterId).kind === "ours",
  );
  if (again.length) {
    const foreign = await foreignContents(
      ctx,
      facts.datastore,
      again.map((v) => ({ name: v.node.name })),
    );
    for (const v of again) v.foreign = foreign.get(v.node.name);
  }
  const cleanup = cleanupChange(observed.leftovers, target);
  if (cleanup) changes.push(cleanup);
  const vms = vmChanges(ctx.cluster, ctx.clusterId, ctx.options, observed.vms);
  changes.push(...vms.changes);
  diagnostics.push(...vms.diagnostics);
  diagnostics.push(...otherGuestDiagnostics(ctx.cluster, ctx.clusterId, observed.others, target));
  const autostart = autostartChange(facts, ctx.cluster, ctx.options, target);
  if (autostart) changes.push(autostart);
  return { changes, diagnostics };
}

// --- apply -----------------------------------------------------------------------------------

async function applyHostChange(ctx: Ctx, data: ChangeData): Promise<void> {
  const host = ctx.host;
  const ds = datastoreSpec(ctx.options);
  switch (data.kind) {
    case "host.rcconf":
      await runOk(host, ["sysrc", ...Object.entries(data.vars).map(([k, v]) => `${k}=${v}`)]);
      return;
    case "host.datastore":
      await runOk(
        host,
        ds.kind === "zfs"
          ? ["zfs", "create", "-p", "-o", `kubehyve:datastore-of=${ctx.clusterId}`, ds.dataset]
          : ["mkdir", "-p", ds.path],
      );
      return;
    case "host.init":
      await runOk(host, ["vm", "init"]);
      return;
    case "host.switch-create": {
      // Recorded before it exists: a run stopped in between still knows the switch is its own.
      await recordSwitch(ctx, data.switchName, data.nic);
      await runOk(host, ["vm", "switch", "create", ...(data.nic ? ["-i", data.nic] : []), data.switchName]);
      return;
    }
    case "host.switch-add":
      await recordSwitch(ctx, data.switchName, data.nic);
      await runOk(host, ["vm", "switch", "add", data.switchName, data.nic]);
      return;
    case "host.cleanup":
      if (data.paths.length) await runOk(host, ["rm", "-f", "--", ...data.paths]);
      for (const dataset of data.datasets) await runOk(host, ["zfs", "destroy", dataset]);
      return;
    case "host.autostart":
      await runOk(host, ["sysrc", `vm_list=${data.vmList.join(" ")}`]);
      return;
  }
}

async function recordSwitch(ctx: Ctx, name: string, nic: string | undefined): Promise<void> {
  const records = ctx.state.get<SwitchRecords>(SWITCHES_KEY) ?? {};
  const ports = [...new Set([...(records[name]?.ports ?? []), ...(nic ? [nic] : [])])];
  await ctx.state.set(SWITCHES_KEY, { ...records, [name]: { ports } });
}

async function apply(ctx: Ctx, changes: Change[]): Promise<void> {
  const dataOf = (c: Change) => c.data as ChangeData;
  const nodeOf = (c: Change) => (c.data as { node: string }).node;
  // Host set-up first, in plan order; autostart last, once the VMs it names exist.
  for (const c of changes.filter(
    (c) => dataOf(c).kind.startsWith("host.") && dataOf(c).kind !== "host.autostart",
  )) {
    await ctx.wet(c.summary, () => applyHostChange(ctx, dataOf(c)), { target: c.target });
  }

  const vmWork = changes.filter((c) => dataOf(c).kind.startsWith("vm."));
  // Restarts are disruptive changes: the engine has asked before apply runs (unless --yes).

  // The datastore may have been created a moment ago: its mountpoint is read now.
  const ds = vmWork.length ? await readDatastore(ctx.host, ctx.options) : datastoreSpecOnly(ctx);
  // Guests start one at a time, each until bhyve runs: vm.8 (startall) warns that a guest starting
  // too soon after another may not get its null modem device. Creating and stopping run in parallel.
  let starting: Promise<unknown> = Promise.resolve();
  const startInTurn = (name: string) => {
    const turn = starting.then(() => startVm(ctx, ds, name));
    starting = turn.catch(() => undefined);
    return turn;
  };
  const perNode = new Map<string, Change[]>();
  for (const c of vmWork) perNode.set(nodeOf(c), [...(perNode.get(nodeOf(c)) ?? []), c]);
  await mapLimit(
    [...perNode.values()],
    PARALLEL_VMS,
    async (list) => {
      for (const c of list) {
        const data = dataOf(c);
        const at = { target: c.target };
        if (data.kind === "vm.create")
          await ctx.wet(c.summary, () => createVm(ctx, ds, data.node, data.boot, data.replaceDataset), at);
        else if (data.kind === "vm.repair")
          await ctx.wet(
            c.summary,
            async () => {
              const node = ctx.cluster.nodes.find((n) => n.name === data.node)!;
              const boot = { ...data.boot, ...(await nodeBoot(ctx, node, guestDirOf(ds, data.node))) };
              await finishVm(ctx, ds, data.node, boot, data.missing, data.writeConfig);
            },
            at,
          );
        else if (data.kind === "vm.chmod")
          await ctx.wet(c.summary, () => runOk(ctx.host, ["chmod", "600", "--", ...data.paths]), at);
        else if (data.kind === "vm.start") await ctx.wet(c.summary, () => startInTurn(data.node), at);
        else if (data.kind === "vm.reconfigure") {
          await ctx.wet(
            c.summary,
            async () => {
              const node = ctx.cluster.nodes.find((n) => n.name === data.node)!;
              if (data.running) await stopVm(ctx, data.node);
              await writeHostFile(
                ctx.host,
                configPathOf(ds, data.node),
                renderVmConfig(configInput(ctx, node, data.boot.bhyveOptions)),
              );
              if (data.running) await startInTurn(data.node);
            },
            at,
          );
        }
      }
    },
    ctx.signal,
  );

  for (const c of changes.filter((c) => dataOf(c).kind === "host.autostart")) {
    await ctx.wet(c.summary, () => applyHostChange(ctx, dataOf(c)), { target: c.target });
  }
}

function datastoreSpecOnly(ctx: Ctx): Datastore {
  const spec = datastoreSpec(ctx.options);
  return spec.kind === "zfs" ? { ...spec, exists: false, mounted: false } : { ...spec, exists: false };
}

async function destroy(ctx: Ctx): Promise<void> {
  const [list, sysrc, ds] = await Promise.all([
    ctx.host.run(["vm", "list"]),
    runOk(ctx.host, ["sysrc", "-e", "-i", "vm_enable", "vm_list"]),
    readDatastore(ctx.host, ctx.options),
  ]);
  const rc = parseRcVars(sysrc.stdout);
  // A host where vm-bhyve was never enabled has no VMs of ours to remove.
  if (list.code !== 0 && !/^(yes|true|on|1)$/i.test(rc.get("vm_enable") ?? "")) return;
  if (list.code !== 0) throw new CommandError(ctx.host.name, ["vm", "list"], list);
  if (ds.error) throw new KubehyveError(`${ctx.host.name}: cannot read the VM datastore: ${ds.error}`);
  const vms = new Map(parseVmList(list.stdout).map((vm) => [vm.name, vm]));
  const observed = await observeVms(ctx, { vms: [...vms.values()], datastore: ds }, { boot: false });
  const zfsDatastore = ds.kind === "zfs";

  // Ours: the config carries this cluster's mark, and on ZFS its dataset does too.
  const ours: string[] = [];
  const halfMade: string[] = [];
  for (const seen of observed.vms) {
    const name = seen.node.name;
    const datasetOwner = seen.dataset && ownerOf(seen.dataset.mark, seen.dataset.markName, ctx.clusterId);
    if (!seen.listed) {
      if (datasetOwner?.kind === "ours") halfMade.push(seen.dataset!.name);
      continue;
    }
    const owner = ownerOf(seen.config?.get(CONFIG_MARK), seen.config?.get(CONFIG_MARK_NAME), ctx.clusterId);
    if (owner.kind !== "ours") {
      const why = seen.configProblem
        ? `has a config that ${seen.configProblem} (${configPathOf(ds, name)})`
        : describeOwner(owner);
      ctx.log.warn(`${ctx.host.name}: left alone: the VM named ${name} ${why}`);
      continue;
    }
    if (zfsDatastore && datasetOwner?.kind !== "ours") {
      ctx.log.warn(
        `${ctx.host.name}: left alone: VM ${name} carries this cluster's mark, its dataset ${seen.dataset ? describeOwner(datasetOwner!) : "does not exist"}; find out who made it (zfs get -r ${ZFS_MARK} ${seen.dataset?.name ?? ds.dataset}) and, if it is not needed: vm destroy -f ${name}`,
      );
      continue;
    }
    ours.push(name);
  }
  // Refused before anything changes, so that a VM down leaves is left as it was (vm_list too).
  const refused: string[] = [];
  const configOf = new Map(observed.vms.map((v) => [v.node.name, v.config]));
  const halfMadeGuest = (dataset: string) => dataset.slice(dataset.lastIndexOf("/") + 1);
  const foreign = await foreignContents(ctx, ds, [
    ...ours.map((name) => ({ name, config: configOf.get(name) })),
    ...halfMade.map((dataset) => ({ name: halfMadeGuest(dataset) })),
  ]);
  const keep = (name: string, where: string) => {
    const things = foreign.get(name) ?? [];
    if (!things.length) return false;
    refused.push(
      `${where} holds what this cluster did not make, which would go with it: ${things.join(", ")}; move those elsewhere (or remove them if they are not needed), then kubehyve down again`,
    );
    return true;
  };
  const destroyable = ours.filter((name) => {
    const state = vms.get(name)?.state;
    if (state?.kind === "locked") {
      // vm destroy refuses a locked guest (vm::confirm_stopped): it may run on that host.
      refused.push(
        `VM ${name} is locked by host ${state.host} (run.lock): if that host does not run it, rm ${guestDirOf(ds, name)}/run.lock, then kubehyve down again`,
      );
      return false;
    }
    return !keep(name, `VM ${name}`);
  });
  const halfMadeDestroyable = halfMade.filter((dataset) => !keep(halfMadeGuest(dataset), dataset));
  for (const other of observed.others)
    if (
      ownerOf(other.config?.get(CONFIG_MARK), other.config?.get(CONFIG_MARK_NAME), ctx.clusterId).kind ===
      "ours"
    )
      ctx.log.warn(
        `${ctx.host.name}: left alone: VM ${other.name} carries this cluster's mark but is no node of the cluster file (renamed by hand, or dropped from the file); if it is not needed: vm stop ${other.name}; vm destroy -f ${other.name}`,
      );
  const current = (rc.get("vm_list") ?? "").split(/\s+/).filter(Boolean);
  const remaining = current.filter((n) => !destroyable.includes(n));
  const leftovers = observed.leftovers.paths;
  const nothing =
    !destroyable.length &&
    !halfMadeDestroyable.length &&
    !leftovers.length &&
    remaining.length === current.length;
  if (nothing && !refused.length) return;
  // `down` has asked before any stage is destroyed (unless --yes).
  if (remaining.length !== current.length) {
    await ctx.wet(
      `stop starting the cluster's VMs at boot: sysrc vm_list="${remaining.join(" ")}"`,
      () => runOk(ctx.host, ["sysrc", `vm_list=${remaining.join(" ")}`]),
      { target: ctx.host.name },
    );
  }
  await mapLimit(
    destroyable,
    PARALLEL_VMS,
    async (name) => {
      const state = vms.get(name)?.state;
      // Stopped before it is destroyed: bhyve reads the files the VM's config names at every start.
      if (state?.kind === "running")
        await ctx.wet(`stop VM ${name}`, () => stopVm(ctx, name), { target: name });
      // -f: vm destroy asks first otherwise, and with nothing on stdin util::confirm takes that for yes.
      await ctx.wet(
        `destroy VM ${name} and its disks`,
        async () => {
          await runOk(ctx.host, ["vm", "destroy", "-f", name]);
          await forgetNodeKey(ctx, name);
        },
        { target: name },
      );
    },
    ctx.signal,
  );
  for (const dataset of halfMadeDestroyable)
    await ctx.wet(
      `destroy ${dataset}, left by an interrupted run`,
      () => runOk(ctx.host, ["zfs", "destroy", "-r", dataset]),
      { target: ctx.host.name },
    );
  if (leftovers.length)
    await ctx.wet(
      `remove what an interrupted run left: ${leftovers.join(", ")}`,
      () => runOk(ctx.host, ["rm", "-f", "--", ...leftovers]),
      { target: ctx.host.name },
    );
  if (refused.length) throw new KubehyveError(`${ctx.host.name}: not destroyed: ${refused.join("; ")}`);
}

async function render(ctx: Ctx): Promise<RenderedFile[]> {
  const spec = datastoreSpec(ctx.options);
  const base = spec.kind === "zfs" ? `/${spec.dataset}` : spec.path;
  return Promise.all(
    ctx.cluster.nodes.map(async (node) => {
      const boot = await nodeBoot(ctx, node, `${base}/${node.name}`);
      return {
        path: `${node.name}/${node.name}.conf`,
        content: renderVmConfig(configInput(ctx, node, boot.bhyveOptions)),
      };
    }),
  );
}

export const bhyvePlugin = definePlugin({
  ...meta,
  check,
  apply,
  verify,
  destroy,
  render,
  hookAnswers: { [NODE_BOOT_HOOK]: nodeBootAnswer },
  hooks: {
    // The lb stage asks what on this host keeps layer-2 announcements from reaching the LAN.
    "lb:l2-host": l2HostCheck,
  },
});

export default bhyvePlugin;
