/**
 * hypervisor/bhyve: makes the FreeBSD host a bhyve hypervisor through vm-bhyve and keeps one VM per
 * node as the cluster file declares it. Runs on the host itself or drives it over ssh (ctx.host).
 */
import {
  type Change,
  type CheckResult,
  CommandError,
  type Diagnostic,
  definePlugin,
  diag,
  mapLimit,
  type PluginContext,
  type RenderedFile,
  readTargetFile,
  runOk,
  type Target,
  writeTargetFile,
} from "kubehyve";
import { readTextFiles } from "./files.ts";
import {
  type Datastore,
  datastorePath,
  datastoreSpec,
  type HostFacts,
  inspectHost,
  readDatastore,
} from "./inspect.ts";
import { type BhyveOptions, bhyveOptionsSchema } from "./options.ts";
import {
  parseGuestLog,
  parseIfconfig,
  parseRcVars,
  parseSwitchList,
  parseVmList,
  tapsOf,
  type VmListEntry,
} from "./parse.ts";
import {
  autostartChange,
  type ChangeData,
  guestDirOf,
  hostChanges,
  mergeNodeBoot,
  NODE_BOOT_HOOK,
  type NodeBoot,
  type NodeBootPayload,
  type VmObservation,
  vmChanges,
} from "./plan.ts";
import { hostPreflight } from "./preflight.ts";
import { diskDevOf, renderVmConfig, renderVmTemplate } from "./vmconfig.ts";

export type { NodeBoot, NodeBootPayload } from "./plan.ts";

type Ctx = PluginContext<BhyveOptions>;

/** How many guests are worked on at once (their starts still take turns, see apply). */
const PARALLEL_VMS = 4;
const POLL_MS = 250;

async function nodeBoot(ctx: Ctx, node: Ctx["cluster"]["nodes"][number], vmDir: string): Promise<NodeBoot> {
  const payload: NodeBootPayload = { node, vmDir };
  return mergeNodeBoot(await ctx.hooks.call<NodeBoot>(NODE_BOOT_HOOK, payload));
}

async function observeVms(ctx: Ctx, facts: HostFacts): Promise<VmObservation[]> {
  const listed = new Map((facts.vms ?? []).map((vm) => [vm.name, vm]));
  const configPath = (name: string) => `${guestDirOf(facts.datastore, name)}/${name}.conf`;
  const [configs, boots] = await Promise.all([
    readTextFiles(
      ctx.host,
      ctx.cluster.nodes.filter((n) => listed.has(n.name)).map((n) => configPath(n.name)),
    ),
    Promise.all(ctx.cluster.nodes.map((node) => nodeBoot(ctx, node, guestDirOf(facts.datastore, node.name)))),
  ]);
  return ctx.cluster.nodes.map((node, i) => {
    const text = configs.get(configPath(node.name));
    return {
      node,
      dir: guestDirOf(facts.datastore, node.name),
      listed: listed.get(node.name),
      config: text === undefined ? undefined : parseRcVars(text),
      boot: boots[i]!,
    };
  });
}

/**
 * The plan when nothing may be inspected (`plan --offline`): a host with nothing on it, so every
 * host step and every VM is planned. Only shown; `up` inspects the host for real.
 */
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
    ...hostChanges(empty, ctx.options, target),
    ...vmChanges(ctx.cluster, ctx.options, observed).changes,
  ];
  const autostart = autostartChange(empty, ctx.cluster, ctx.options, target);
  if (autostart) changes.push(autostart);
  return { changes, diagnostics: [] };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  if (ctx.upstreamPending) return freshInstall(ctx);
  const target = ctx.host.name;
  const facts = await inspectHost(ctx.host, ctx.options);
  const diagnostics = hostPreflight(facts, ctx.cluster, ctx.options, target);
  const changes: Change[] = hostChanges(facts, ctx.options, target);
  if (facts.vms === undefined) {
    // Without the list of guests, every VM would look missing: plan nothing for them.
    diagnostics.push(
      diag.error("bhyve.vm-list-failed", "cannot list the VMs on the host", {
        target,
        detail: facts.vmListError,
        hint: "fix the findings above, then: vm list",
      }),
    );
    return { changes, diagnostics };
  }
  const vms = vmChanges(ctx.cluster, ctx.options, await observeVms(ctx, facts));
  changes.push(...vms.changes);
  diagnostics.push(...vms.diagnostics);
  const autostart = autostartChange(facts, ctx.cluster, ctx.options, target);
  if (autostart) changes.push(autostart);
  return { changes, diagnostics };
}

// --- apply -----------------------------------------------------------------------------------

async function vmList(host: Target): Promise<Map<string, VmListEntry>> {
  const result = await runOk(host, ["vm", "list"]);
  return new Map(parseVmList(result.stdout).map((vm) => [vm.name, vm]));
}

async function poll<T>(
  signal: AbortSignal,
  timeoutMs: number,
  read: () => Promise<T | undefined>,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== undefined || Date.now() >= deadline) return value;
    if (signal.aborted) throw signal.reason ?? new Error("aborted");
    await Bun.sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
}

/** `vm stop` only sends the ACPI shutdown; wait for the guest to be down, power it off after the timeout. */
async function stopVm(ctx: Ctx, name: string): Promise<void> {
  await runOk(ctx.host, ["vm", "stop", name]);
  const stopped = await poll(ctx.signal, ctx.options.stopTimeoutSec * 1000, async () =>
    (await vmList(ctx.host)).get(name)?.state.kind === "running" ? undefined : true,
  );
  if (stopped) return;
  ctx.log.warn(
    `${ctx.host.name}: ${name} did not shut down within ${ctx.options.stopTimeoutSec} s; powering it off`,
  );
  await runOk(ctx.host, ["vm", "poweroff", "-f", name]);
  const off = await poll(ctx.signal, 10_000, async () =>
    (await vmList(ctx.host)).get(name)?.state.kind === "running" ? undefined : true,
  );
  if (!off) throw new Error(`${ctx.host.name}: VM ${name} is still running after vm poweroff -f`);
}

/** `vm start` returns before the guest boots: the outcome is in the guest's vm-bhyve.log. */
async function startVm(ctx: Ctx, ds: Datastore, name: string): Promise<void> {
  await runOk(ctx.host, ["vm", "start", name]);
  const logPath = `${guestDirOf(ds, name)}/vm-bhyve.log`;
  const run = await poll(ctx.signal, ctx.options.startTimeoutSec * 1000, async () => {
    const log = parseGuestLog((await readTargetFile(ctx.host, logPath)) ?? "");
    return log.errors.length || log.booted || log.ended ? log : undefined;
  });
  if (!run)
    throw new Error(
      `${ctx.host.name}: VM ${name} did not reach "starting bhyve" within ${ctx.options.startTimeoutSec} s; see ${logPath}`,
    );
  if (run.errors.length)
    throw new Error(
      `${ctx.host.name}: VM ${name} failed to start: ${run.errors.join("; ")} (from ${logPath})`,
    );
}

async function createVm(ctx: Ctx, ds: Datastore, name: string, boot: NodeBoot): Promise<void> {
  const node = ctx.cluster.nodes.find((n) => n.name === name)!;
  const dir = guestDirOf(ds, name);
  // The os stage may need the real directory now that the datastore exists.
  const finalBoot = { ...boot, ...(await nodeBoot(ctx, node, dir)) };
  const input = {
    cluster: ctx.cluster.name,
    node,
    options: ctx.options,
    bhyveOptions: finalBoot.bhyveOptions,
  };
  const templateName = `kubehyve-${ctx.cluster.name}-${name}`;
  const template = `${datastorePath(ds)}/.templates/${templateName}.conf`;
  await writeTargetFile(ctx.host, template, renderVmTemplate(input));
  try {
    await runOk(ctx.host, ["vm", "create", "-t", templateName, name]);
  } finally {
    await ctx.host.run(["rm", "-f", template]);
  }
  // vm create adds a random uuid and MAC; ours are derived from the names, so rebuilt nodes keep them.
  await writeTargetFile(ctx.host, `${dir}/${name}.conf`, renderVmConfig(input), "0644");
  if (finalBoot.bootImage) await installBootImage(ctx, ds, name, node.disk, finalBoot.bootImage);
}

async function installBootImage(
  ctx: Ctx,
  ds: Datastore,
  name: string,
  size: number,
  image: NonNullable<NodeBoot["bootImage"]>,
): Promise<void> {
  const dev = diskDevOf(ctx.options);
  const host = ctx.host;
  if (image.kind === "zfs-snapshot") {
    if (ds.kind !== "zfs" || dev === "file")
      throw new Error(
        `${host.name}: VM ${name}: a ZFS snapshot boot image needs a zvol disk (vmDir zfs:…, diskDev zvol or sparse-zvol)`,
      );
    const disk0 = `${ds.dataset}/${name}/disk0`;
    await runOk(host, ["zfs", "destroy", disk0]);
    await runOk(host, ["zfs", "clone", image.snapshot, disk0]);
    await runOk(host, ["zfs", "set", `volsize=${size}`, disk0]);
    return;
  }
  // dd's conv=sparse keeps the copy thin on both FreeBSD and GNU dd; bs in bytes, as their suffixes differ.
  const destination =
    dev === "file"
      ? `${guestDirOf(ds, name)}/disk0.img`
      : `/dev/zvol/${(ds as { dataset: string }).dataset}/${name}/disk0`;
  await runOk(host, ["dd", `if=${image.path}`, `of=${destination}`, "bs=1048576", "conv=sparse"], {
    kind: "long",
  });
  if (dev === "file") await runOk(host, ["truncate", "-s", String(size), destination]);
}

async function applyHostChange(ctx: Ctx, data: ChangeData): Promise<void> {
  const host = ctx.host;
  const ds = datastoreSpec(ctx.options);
  switch (data.kind) {
    case "host.rcconf":
      await runOk(host, ["sysrc", ...Object.entries(data.vars).map(([k, v]) => `${k}=${v}`)]);
      return;
    case "host.datastore":
      await runOk(host, ds.kind === "zfs" ? ["zfs", "create", "-p", ds.dataset] : ["mkdir", "-p", ds.path]);
      return;
    case "host.init":
      await runOk(host, ["vm", "init"]);
      return;
    case "host.switch-create":
      await runOk(host, ["vm", "switch", "create", data.switchName]);
      if (data.nic) await runOk(host, ["vm", "switch", "add", data.switchName, data.nic]);
      return;
    case "host.switch-add":
      await runOk(host, ["vm", "switch", "add", data.switchName, data.nic]);
      return;
    case "host.autostart":
      await runOk(host, ["sysrc", `vm_list=${data.vmList.join(" ")}`]);
      return;
  }
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
  const ds = await readDatastore(ctx.host, ctx.options);
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
        if (data.kind === "vm.create")
          await ctx.wet(c.summary, () => createVm(ctx, ds, data.node, data.boot), { target: c.target });
        else if (data.kind === "vm.start")
          await ctx.wet(c.summary, () => startInTurn(data.node), { target: c.target });
        else if (data.kind === "vm.reconfigure") {
          await ctx.wet(
            c.summary,
            async () => {
              const node = ctx.cluster.nodes.find((n) => n.name === data.node)!;
              if (data.running) await stopVm(ctx, data.node);
              await writeTargetFile(
                ctx.host,
                `${guestDirOf(ds, data.node)}/${data.node}.conf`,
                renderVmConfig({
                  cluster: ctx.cluster.name,
                  node,
                  options: ctx.options,
                  bhyveOptions: data.boot.bhyveOptions,
                }),
                "0644",
              );
              if (data.running) await startInTurn(data.node);
            },
            { target: c.target },
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

// --- verify ----------------------------------------------------------------------------------

async function verify(ctx: Ctx): Promise<Diagnostic[]> {
  const host = ctx.host;
  const [list, switches, ifconfig, ds] = await Promise.all([
    host.run(["vm", "list"]),
    host.run(["vm", "switch", "list"]),
    host.run(["ifconfig"]),
    readDatastore(host, ctx.options),
  ]);
  if (list.code !== 0) {
    return [
      diag.error("bhyve.vm-list-failed", "vm list failed on the host", {
        target: host.name,
        detail: (list.stderr || list.stdout).trim(),
        hint: "kubehyve plan shows what the host still lacks",
      }),
    ];
  }
  const vms = new Map(parseVmList(list.stdout).map((vm) => [vm.name, vm]));
  const bridge = parseSwitchList(switches.stdout).find((s) => s.name === ctx.options.switch)?.iface;
  const interfaces = parseIfconfig(ifconfig.stdout);
  const logPath = (name: string) => `${guestDirOf(ds, name)}/vm-bhyve.log`;
  const logs = await readTextFiles(
    host,
    ctx.cluster.nodes.filter((n) => vms.has(n.name)).map((n) => logPath(n.name)),
  );
  return ctx.cluster.nodes.flatMap((node) => {
    const out: Diagnostic[] = [];
    const vm = vms.get(node.name);
    const at = { target: node.name };
    if (!vm) {
      out.push(
        diag.error("bhyve.vm-missing", `VM ${node.name} does not exist`, { ...at, hint: "kubehyve up" }),
      );
      return out;
    }
    if (vm.state.kind !== "running") {
      out.push(
        diag.error(
          "bhyve.vm-not-running",
          `VM ${node.name} is not running (${vm.state.kind === "other" ? vm.state.text : vm.state.kind})`,
          { ...at, hint: `vm start ${node.name}, then read ${logPath(node.name)}` },
        ),
      );
    }
    const run = parseGuestLog(logs.get(logPath(node.name)) ?? "");
    if (run.errors.length) {
      out.push(
        diag.error(
          "bhyve.vm-log-error",
          `VM ${node.name} logged errors since it started${run.startedAt ? ` at ${run.startedAt}` : ""}`,
          { ...at, detail: run.errors.join("\n"), hint: `less ${logPath(node.name)}` },
        ),
      );
    }
    if (vm.state.kind === "running") {
      const taps = tapsOf(interfaces, node.name).filter((t) => t.switchName === ctx.options.switch);
      const attached = bridge ? taps.filter((t) => interfaces.get(bridge)?.members.includes(t.tap)) : [];
      if (!attached.length) {
        out.push(
          diag.error(
            "bhyve.vm-tap-detached",
            `VM ${node.name} has no tap interface on switch ${ctx.options.switch}${bridge ? ` (bridge ${bridge})` : " (its bridge does not exist)"}`,
            {
              ...at,
              detail: taps.length ? `taps: ${taps.map((t) => t.tap).join(" ")}` : undefined,
              hint: bridge
                ? `ifconfig ${bridge} addm ${taps[0]?.tap ?? "tapN"}`
                : `vm init && vm restart ${node.name}`,
            },
          ),
        );
      } else if (!run.errors.length) {
        out.push(
          diag.ok(
            "bhyve.vm-running",
            `VM ${node.name} running (pid ${vm.state.pid}), ${attached[0]!.tap} on ${bridge}`,
            at,
          ),
        );
      }
    }
    return out;
  });
}

// --- destroy and render ------------------------------------------------------------------------

async function destroy(ctx: Ctx): Promise<void> {
  const [list, sysrc] = await Promise.all([
    ctx.host.run(["vm", "list"]),
    runOk(ctx.host, ["sysrc", "-e", "-i", "vm_enable", "vm_list"]),
  ]);
  const rc = parseRcVars(sysrc.stdout);
  // A host where vm-bhyve was never enabled has no VMs of ours to remove.
  if (list.code !== 0 && !/^(yes|true|on|1)$/i.test(rc.get("vm_enable") ?? "")) return;
  if (list.code !== 0) throw new CommandError(ctx.host.name, ["vm", "list"], list);
  const vms = new Map(parseVmList(list.stdout).map((vm) => [vm.name, vm]));
  const ours = ctx.cluster.nodes.map((n) => n.name).filter((n) => vms.has(n));
  const current = (rc.get("vm_list") ?? "").split(/\s+/).filter(Boolean);
  const remaining = current.filter((n) => !ctx.cluster.nodes.some((node) => node.name === n));
  if (!ours.length && remaining.length === current.length) return;
  // `down` has asked before any stage is destroyed (unless --yes).
  if (remaining.length !== current.length) {
    await ctx.wet(
      `stop starting the cluster's VMs at boot: sysrc vm_list="${remaining.join(" ")}"`,
      () => runOk(ctx.host, ["sysrc", `vm_list=${remaining.join(" ")}`]),
      { target: ctx.host.name },
    );
  }
  await mapLimit(
    ours,
    PARALLEL_VMS,
    async (name) => {
      if (vms.get(name)?.state.kind === "running")
        await ctx.wet(`stop VM ${name}`, () => stopVm(ctx, name), { target: name });
      await ctx.wet(
        `destroy VM ${name} and its disks`,
        () => runOk(ctx.host, ["vm", "destroy", "-f", name]),
        { target: name },
      );
    },
    ctx.signal,
  );
}

async function render(ctx: Ctx): Promise<RenderedFile[]> {
  const spec = datastoreSpec(ctx.options);
  const base = spec.kind === "zfs" ? `/${spec.dataset}` : spec.path;
  return Promise.all(
    ctx.cluster.nodes.map(async (node) => {
      const boot = await nodeBoot(ctx, node, `${base}/${node.name}`);
      return {
        path: `${node.name}/${node.name}.conf`,
        content: renderVmConfig({
          cluster: ctx.cluster.name,
          node,
          options: ctx.options,
          bhyveOptions: boot.bhyveOptions,
        }),
      };
    }),
  );
}

export const bhyvePlugin = definePlugin({
  id: "hypervisor/bhyve",
  title: "bhyve VMs through vm-bhyve",
  apiVersion: 1,
  options: bhyveOptionsSchema,
  check,
  apply,
  verify,
  destroy,
  render,
});

export default bhyvePlugin;
