/**
 * hypervisor/bhyve: makes the FreeBSD host a bhyve hypervisor through vm-bhyve and keeps one VM per
 * node as the cluster file declares it. Runs on the host itself or drives it over ssh (ctx.host).
 * It acts only on what carries this cluster's mark (marks.ts): a VM of the same name made by hand
 * or by another cluster is refused by `up` and left alone by `down`.
 */
import {
  CancelledError,
  type Change,
  type CheckResult,
  CommandError,
  type Diagnostic,
  definePlugin,
  diag,
  KubehyveError,
  mapLimit,
  type PluginContext,
  pending,
  poll,
  type RenderedFile,
  readTargetFile,
  runOk,
  type Target,
} from "kubehyve";
import { listFiles, readTextFiles, writeHostFile } from "./files.ts";
import {
  type Datastore,
  datastorePath,
  datastoreSpec,
  type GuestDataset,
  type HostFacts,
  inspectHost,
  readDatastore,
} from "./inspect.ts";
import { l2HostCheck } from "./l2.ts";
import {
  answerOf,
  CONFIG_MARK,
  CONFIG_MARK_NAME,
  describeOwner,
  type Owner,
  ownerOf,
  TEMP_SUFFIX,
  templateName,
} from "./marks.ts";
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
  cleanupChange,
  type DiskFact,
  guestDirOf,
  hostChanges,
  mergeNodeBoot,
  NODE_BOOT_HOOK,
  type NodeBoot,
  type NodeBootPayload,
  type SwitchRecords,
  type VmObservation,
  vmChanges,
} from "./plan.ts";
import { hostPreflight } from "./preflight.ts";
import {
  cloneImageToZvol,
  copyImageToFile,
  copyImageToZvol,
  createFileDisk,
  createFromTemplate,
  createZvol,
} from "./provision.ts";
import { validateCluster } from "./validate.ts";
import { type DiskPlan, diskDevOf, disksOf, renderVmConfig, renderVmTemplate } from "./vmconfig.ts";

export type { NodeBoot, NodeBootPayload } from "./plan.ts";

type Ctx = PluginContext<BhyveOptions>;

/** How many guests are worked on at once (their starts still take turns, see apply). */
const PARALLEL_VMS = 4;
const POLL_MS = 250;
const SWITCHES_KEY = "switches";

async function nodeBoot(ctx: Ctx, node: Ctx["cluster"]["nodes"][number], vmDir: string): Promise<NodeBoot> {
  const payload: NodeBootPayload = { node, vmDir };
  return mergeNodeBoot(await ctx.hooks.call(NODE_BOOT_HOOK, payload));
}

const configPathOf = (ds: Datastore, name: string) => `${guestDirOf(ds, name)}/${name}.conf`;
const templatePathOf = (ds: Datastore, clusterId: string, name: string) =>
  `${datastorePath(ds)}/.templates/${templateName(clusterId, name)}.conf`;

interface Observed {
  vms: VmObservation[];
  /** The extra text files asked for, read in the same command. */
  texts: Map<string, string | undefined>;
  /** What interrupted runs of this cluster left on the host. */
  leftovers: { paths: string[]; datasets: string[] };
  /** Files or zvols whose state could not be read. */
  unreadable?: string;
}

/**
 * Everything known of each node's VM, from the host facts plus one `grep` of the configs and the
 * names an interrupted run may have left, and for a directory datastore one `ls` of the disks.
 */
async function observeVms(
  ctx: Ctx,
  facts: Pick<HostFacts, "vms" | "datastore">,
  opts: { boot?: boolean; texts?: string[] } = {},
): Promise<Observed> {
  const withBoot = opts.boot ?? true;
  const ds = facts.datastore;
  const clusterId = ctx.clusterId;
  const dev = diskDevOf(ctx.options);
  const listed = new Map((facts.vms ?? []).map((vm) => [vm.name, vm]));
  const nodes = ctx.cluster.nodes;
  const templates = ds.exists
    ? nodes.flatMap((n) => {
        const t = templatePathOf(ds, clusterId, n.name);
        return [t, `${t}${TEMP_SUFFIX}`];
      })
    : [];
  const configs = nodes.filter((n) => listed.has(n.name)).map((n) => configPathOf(ds, n.name));
  const fileDisks =
    dev === "file" && ds.exists
      ? nodes.flatMap((n) =>
          listed.has(n.name)
            ? disksOf(n, dev).flatMap((d) => {
                const path = `${guestDirOf(ds, n.name)}/${d.name}`;
                return [path, `${path}${TEMP_SUFFIX}`];
              })
            : ds.kind === "dir"
              ? [guestDirOf(ds, n.name)]
              : [],
        )
      : [];
  const [texts, files, boots] = await Promise.all([
    readTextFiles(ctx.host, [
      ...configs,
      ...configs.map((c) => `${c}${TEMP_SUFFIX}`),
      ...templates,
      ...(opts.texts ?? []),
    ]),
    listFiles(ctx.host, fileDisks),
    withBoot
      ? Promise.all(nodes.map((node) => nodeBoot(ctx, node, guestDirOf(ds, node.name))))
      : nodes.map(() => ({}) as NodeBoot),
  ]);
  const leftovers = { paths: [] as string[], datasets: [] as string[] };
  for (const t of templates) if (texts.get(t) !== undefined) leftovers.paths.push(t);

  const vms = await Promise.all(
    nodes.map(async (node, i): Promise<VmObservation> => {
      const dir = guestDirOf(ds, node.name);
      const conf = configPathOf(ds, node.name);
      const text = texts.get(conf);
      const config = text === undefined ? undefined : parseRcVars(text);
      const dataset = ds.kind === "zfs" ? ds.guests?.get(node.name) : undefined;
      const ours =
        ownerOf(config?.get(CONFIG_MARK), config?.get(CONFIG_MARK_NAME), clusterId).kind === "ours";
      if (ours && texts.get(`${conf}${TEMP_SUFFIX}`) !== undefined)
        leftovers.paths.push(`${conf}${TEMP_SUFFIX}`);
      let disks: Map<number, DiskFact> | undefined;
      let dirInUse: boolean | undefined;
      if (dev !== "file") {
        // zvols: in the datastore's one zfs get (inspect.ts).
        if (dataset) disks = zvolFacts(node, dev, dataset);
        if (dataset && ours && ownerOf(dataset.mark, dataset.markName, clusterId).kind === "ours")
          for (const name of dataset.volumes.keys())
            if (name.endsWith(TEMP_SUFFIX)) leftovers.datasets.push(`${dataset.name}/${name}`);
      } else if (listed.has(node.name)) {
        disks = new Map(
          disksOf(node, dev).map((d) => {
            const fact = files.files.get(`${dir}/${d.name}`);
            return [d.index, fact ? { present: true, size: fact.size, mode: fact.mode } : { present: false }];
          }),
        );
        if (ours)
          for (const d of disksOf(node, dev))
            if (files.files.get(`${dir}/${d.name}${TEMP_SUFFIX}`))
              leftovers.paths.push(`${dir}/${d.name}${TEMP_SUFFIX}`);
      } else if (ds.kind === "dir" && files.files.get(dir)) {
        // A directory without a config: vm create would use it, and vm destroy remove it whole.
        const inside = await ctx.host.run(["ls", "-A", "--", dir]);
        dirInUse = inside.code !== 0 || inside.stdout.trim() !== "";
      }
      return { node, dir, listed: listed.get(node.name), config, boot: boots[i]!, dataset, disks, dirInUse };
    }),
  );
  return { vms, texts, leftovers, unreadable: files.failed };
}

function zvolFacts(
  node: Ctx["cluster"]["nodes"][number],
  dev: "sparse-zvol" | "zvol",
  dataset: GuestDataset,
): Map<number, DiskFact> {
  return new Map(
    disksOf(node, dev).map((d) => {
      const volume = dataset.volumes.get(d.name);
      const fact: DiskFact = volume
        ? { present: true, size: volume.volsize, blocksize: volume.volblocksize }
        : { present: false };
      return [d.index, fact];
    }),
  );
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
    ...hostChanges(empty, ctx.options, target).changes,
    ...vmChanges(ctx.cluster, ctx.clusterId, ctx.options, observed).changes,
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
  const cleanup = cleanupChange(observed.leftovers, target);
  if (cleanup) changes.push(cleanup);
  const vms = vmChanges(ctx.cluster, ctx.clusterId, ctx.options, observed.vms);
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

/** Whether `vm list` still shows the guest running. */
async function isRunning(host: Target, name: string): Promise<boolean> {
  return (await vmList(host)).get(name)?.state.kind === "running";
}

function waitStopped(ctx: Ctx, name: string, timeoutMs: number): Promise<true> {
  return poll(
    `VM ${name} to stop`,
    async () => ((await isRunning(ctx.host, name)) ? pending("vm list still shows it running") : true),
    { timeoutMs, intervalMs: POLL_MS, signal: ctx.signal },
  );
}

/** `vm stop` only sends the ACPI shutdown; wait for the guest to be down, power it off after the timeout. */
async function stopVm(ctx: Ctx, name: string): Promise<void> {
  await runOk(ctx.host, ["vm", "stop", name]);
  try {
    await waitStopped(ctx, name, ctx.options.stopTimeoutSec * 1000);
    return;
  } catch (error) {
    if (error instanceof CancelledError) throw error;
  }
  ctx.log.warn(
    `${ctx.host.name}: ${name} did not shut down within ${ctx.options.stopTimeoutSec} s; powering it off`,
  );
  // -f: vm-bhyve asks first otherwise, and with nothing on stdin its util::confirm takes that for yes.
  await runOk(ctx.host, ["vm", "poweroff", "-f", name]);
  await waitStopped(ctx, name, 10_000);
}

/** `vm start` returns before the guest boots: the outcome is in the guest's vm-bhyve.log. */
async function startVm(ctx: Ctx, ds: Datastore, name: string): Promise<void> {
  await runOk(ctx.host, ["vm", "start", name]);
  const logPath = `${guestDirOf(ds, name)}/vm-bhyve.log`;
  const run = await poll(
    `VM ${name} to reach "starting bhyve" in ${logPath}`,
    async () => {
      const log = parseGuestLog((await readTargetFile(ctx.host, logPath)) ?? "");
      return log.errors.length || log.booted || log.ended ? log : pending("the log has no such line yet");
    },
    { timeoutMs: ctx.options.startTimeoutSec * 1000, intervalMs: POLL_MS, signal: ctx.signal },
  );
  if (run.errors.length)
    throw new KubehyveError(
      `${ctx.host.name}: VM ${name} failed to start: ${run.errors.join("; ")} (from ${logPath})`,
    );
}

function configInput(ctx: Ctx, node: Ctx["cluster"]["nodes"][number], bhyveOptions: string | undefined) {
  return { cluster: ctx.cluster.name, clusterId: ctx.clusterId, node, options: ctx.options, bhyveOptions };
}

/**
 * Creates the VM from a template that carries the marks (the dataset gets them at creation), then
 * its boot disk and its config. The config without vm create's CONFIG_CREATING is written last: a
 * run stopped before that leaves a VM that check recognises as unfinished.
 */
async function createVm(ctx: Ctx, ds: Datastore, name: string, boot: NodeBoot, replaceDataset?: string) {
  const node = ctx.cluster.nodes.find((n) => n.name === name)!;
  // The os stage may need the real directory now that the datastore exists.
  const finalBoot = { ...boot, ...(await nodeBoot(ctx, node, guestDirOf(ds, name))) };
  // Made by an interrupted run of this cluster (check saw its mark) and holding no config.
  if (replaceDataset) await runOk(ctx.host, ["zfs", "destroy", "-r", replaceDataset]);
  const input = configInput(ctx, node, finalBoot.bhyveOptions);
  await createFromTemplate(
    ctx.host,
    templatePathOf(ds, ctx.clusterId, name),
    templateName(ctx.clusterId, name),
    name,
    renderVmTemplate({ ...input, bootImage: finalBoot.bootImage !== undefined }),
  );
  const dev = diskDevOf(ctx.options);
  const missing = finalBoot.bootImage ? disksOf(node, dev).filter((d) => d.index === 0) : [];
  await finishVm(ctx, ds, name, finalBoot, missing, true);
}

/** Makes the missing disks (the boot disk from the boot image when there is one), then the config. */
async function finishVm(
  ctx: Ctx,
  ds: Datastore,
  name: string,
  boot: NodeBoot,
  missing: DiskPlan[],
  writeConfig: boolean,
): Promise<void> {
  const node = ctx.cluster.nodes.find((n) => n.name === name)!;
  const dev = diskDevOf(ctx.options);
  const host = ctx.host;
  for (const disk of missing) {
    const image = disk.index === 0 ? boot.bootImage : undefined;
    if (ds.kind === "zfs" && dev !== "file") {
      const zvol = `${ds.dataset}/${name}/${disk.name}`;
      if (image?.kind === "zfs-snapshot") await cloneImageToZvol(host, image.snapshot, zvol, disk.size);
      else if (image) await copyImageToZvol(host, image.path, zvol, disk.size, dev === "sparse-zvol");
      else await createZvol(host, zvol, disk.size, dev === "sparse-zvol");
    } else {
      if (image?.kind === "zfs-snapshot")
        throw new KubehyveError(
          `${host.name}: VM ${name}: a ZFS snapshot boot image needs a zvol disk (vmDir zfs:…, diskDev zvol or sparse-zvol)`,
        );
      const path = `${guestDirOf(ds, name)}/${disk.name}`;
      if (image) await copyImageToFile(host, image.path, path, disk.size);
      else await createFileDisk(host, path, disk.size);
    }
  }
  // vm create gave the VM a random uuid and MAC; ours are derived from the names, so rebuilt nodes keep them.
  if (writeConfig)
    await writeHostFile(
      host,
      configPathOf(ds, name),
      renderVmConfig(configInput(ctx, node, boot.bhyveOptions)),
    );
}

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

// --- verify ----------------------------------------------------------------------------------

async function verify(ctx: Ctx): Promise<Diagnostic[]> {
  const host = ctx.host;
  // vm-bhyve loads vmm.ko for any subcommand (util::check_bhyve_support): verify only looks, so
  // without vmm it does not run vm at all (check says what to do about vmm).
  const kldstat = await host.run(["kldstat", "-q", "-m", "vmm"]);
  const vmm = answerOf(kldstat);
  if (vmm !== "yes") {
    return [
      diag.skip(
        "bhyve.vms",
        vmm === "no"
          ? "the VMs were not looked at: the vmm kernel module is not loaded, and vm would load it"
          : "the VMs were not looked at: whether the vmm kernel module is loaded is not known",
        {
          target: host.name,
          detail:
            vmm === "no"
              ? undefined
              : (kldstat.stderr || kldstat.stdout).trim() || `kldstat exited ${kldstat.code}`,
          hint: vmm === "no" ? "kldload vmm && sysrc kld_list+=vmm" : "kubehyve doctor --stage hypervisor",
        },
      ),
    ];
  }
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
  const listedNodes = ctx.cluster.nodes.filter((n) => vms.has(n.name));
  const observed = await observeVms(
    ctx,
    { vms: [...vms.values()], datastore: ds },
    { boot: false, texts: listedNodes.map((n) => logPath(n.name)) },
  );
  const logs = observed.texts;
  const byNode = new Map(observed.vms.map((o) => [o.node.name, o]));
  const dev = diskDevOf(ctx.options);
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
    const seen = byNode.get(node.name)!;
    const owner: Owner = ownerOf(
      seen.config?.get(CONFIG_MARK),
      seen.config?.get(CONFIG_MARK_NAME),
      ctx.clusterId,
    );
    if (owner.kind !== "ours") {
      out.push(
        diag.error("bhyve.vm-not-ours", `the VM named ${node.name} ${describeOwner(owner)}`, {
          ...at,
          hint: "kubehyve plan says what to do about it",
        }),
      );
      return out;
    }
    const missing = disksOf(node, dev).filter((d) => seen.disks?.get(d.index)?.present === false);
    if (missing.length) {
      out.push(
        diag.error(
          "bhyve.vm-disk-missing",
          `VM ${node.name} lacks ${missing.map((d) => d.name).join(", ")} (an interrupted run, or removed by hand)`,
          { ...at, hint: "kubehyve up makes them" },
        ),
      );
    }
    if (vm.state.kind !== "running") {
      out.push(
        diag.error(
          "bhyve.vm-not-running",
          `VM ${node.name} is not running (${vm.state.kind === "other" ? vm.state.text : vm.state.kind === "locked" ? `locked by ${vm.state.host}` : vm.state.kind})`,
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
      } else if (!run.errors.length && !missing.length) {
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
      ctx.log.warn(`${ctx.host.name}: left alone: the VM named ${name} ${describeOwner(owner)}`);
      continue;
    }
    if (zfsDatastore && datasetOwner?.kind !== "ours") {
      ctx.log.warn(
        `${ctx.host.name}: left alone: VM ${name} carries this cluster's mark, its dataset ${seen.dataset ? describeOwner(datasetOwner!) : "does not exist"}`,
      );
      continue;
    }
    ours.push(name);
  }
  const current = (rc.get("vm_list") ?? "").split(/\s+/).filter(Boolean);
  const remaining = current.filter((n) => !ours.includes(n));
  const leftovers = observed.leftovers.paths;
  if (!ours.length && !halfMade.length && !leftovers.length && remaining.length === current.length) return;
  // `down` has asked before any stage is destroyed (unless --yes).
  if (remaining.length !== current.length) {
    await ctx.wet(
      `stop starting the cluster's VMs at boot: sysrc vm_list="${remaining.join(" ")}"`,
      () => runOk(ctx.host, ["sysrc", `vm_list=${remaining.join(" ")}`]),
      { target: ctx.host.name },
    );
  }
  const refused: string[] = [];
  await mapLimit(
    ours,
    PARALLEL_VMS,
    async (name) => {
      const state = vms.get(name)?.state;
      if (state?.kind === "locked") {
        // vm destroy refuses a locked guest (vm::confirm_stopped): it may run on that host.
        refused.push(
          `VM ${name} is locked by host ${state.host} (run.lock): if that host does not run it, rm ${guestDirOf(ds, name)}/run.lock, then kubehyve down again`,
        );
        return;
      }
      // Stopped before it is destroyed: bhyve reads the files the VM's config names at every start.
      if (state?.kind === "running")
        await ctx.wet(`stop VM ${name}`, () => stopVm(ctx, name), { target: name });
      // -f: vm destroy asks first otherwise, and with nothing on stdin util::confirm takes that for yes.
      await ctx.wet(
        `destroy VM ${name} and its disks`,
        () => runOk(ctx.host, ["vm", "destroy", "-f", name]),
        { target: name },
      );
    },
    ctx.signal,
  );
  for (const dataset of halfMade)
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
  id: "hypervisor/bhyve",
  title: "bhyve VMs through vm-bhyve",
  apiVersion: 1,
  options: bhyveOptionsSchema,
  validate: validateCluster,
  check,
  apply,
  verify,
  destroy,
  render,
  hooks: {
    // The lb stage asks what on this host keeps layer-2 announcements from reaching the LAN.
    "lb:l2-host": l2HostCheck,
  },
});

export default bhyvePlugin;
