/** One guest's life through vm-bhyve: made under a temporary name, finished, started, stopped. */
import {
  CancelledError,
  CommandError,
  CommandTimeoutError,
  KubehyveError,
  type PluginContext,
  pending,
  poll,
  readTargetFile,
  runOk,
  type Target,
} from "kubehyve";
import { writeHostFile } from "./files.ts";
import type { Datastore } from "./inspect.ts";
import { templateName } from "./marks.ts";
import { configPathOf, nodeBoot, templatePathOf } from "./observe.ts";
import type { BhyveOptions } from "./options.ts";
import { parseGuestLog, parseVmList, type VmListEntry } from "./parse.ts";
import { guestDirOf, type NodeBoot } from "./plan.ts";
import {
  cloneImageToZvol,
  copyImageToFile,
  copyImageToZvol,
  createFileDisk,
  createFromTemplate,
  createZvol,
} from "./provision.ts";
import { type DiskPlan, diskDevOf, disksOf, renderVmConfig, renderVmTemplate } from "./vmconfig.ts";

type Ctx = PluginContext<BhyveOptions>;

const POLL_MS = 250;

export async function vmList(host: Target): Promise<Map<string, VmListEntry>> {
  const result = await runOk(host, ["vm", "list"]);
  return new Map(parseVmList(result.stdout).map((vm) => [vm.name, vm]));
}

/** Whether `vm list` still shows the guest running. */
export async function isRunning(host: Target, name: string): Promise<boolean> {
  return (await vmList(host)).get(name)?.state.kind === "running";
}

export function waitStopped(ctx: Ctx, name: string, timeoutMs: number): Promise<true> {
  return poll(
    `VM ${name} to stop`,
    async () => ((await isRunning(ctx.host, name)) ? pending("vm list still shows it running") : true),
    { timeoutMs, intervalMs: POLL_MS, signal: ctx.signal },
  );
}

/** `vm stop` only sends the ACPI shutdown; wait for the guest to be down, power it off after the timeout. */
export async function stopVm(ctx: Ctx, name: string): Promise<void> {
  await runOk(ctx.host, ["vm", "stop", name]);
  try {
    await waitStopped(ctx, name, ctx.options.stopTimeoutSec * 1000);
    return;
  } catch (error) {
    // Only the wait running out means the guest would not go down: a vm list that failed or hung
    // says nothing of it, and is no reason to pull its plug.
    if (
      error instanceof CancelledError ||
      error instanceof CommandError ||
      error instanceof CommandTimeoutError
    )
      throw error;
  }
  ctx.log.warn(
    `${ctx.host.name}: ${name} did not shut down within ${ctx.options.stopTimeoutSec} s; powering it off`,
  );
  // -f: vm-bhyve asks first otherwise, and with nothing on stdin its util::confirm takes that for yes.
  await runOk(ctx.host, ["vm", "poweroff", "-f", name]);
  await waitStopped(ctx, name, 10_000);
}

/** `vm start` returns before the guest boots: the outcome is in the guest's vm-bhyve.log. */
export async function startVm(ctx: Ctx, ds: Datastore, name: string): Promise<void> {
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

export function configInput(
  ctx: Ctx,
  node: Ctx["cluster"]["nodes"][number],
  bhyveOptions: string | undefined,
) {
  return { cluster: ctx.cluster.name, clusterId: ctx.clusterId, node, options: ctx.options, bhyveOptions };
}

/**
 * A node whose VM is made anew or destroyed is a new machine at its address, with host keys of its
 * own: the key pinned for the old one is forgotten, or the next connection would be refused as a
 * changed key (a `down` and `up` of the lab).
 */
export async function forgetNodeKey(ctx: Ctx, name: string): Promise<void> {
  if (ctx.cluster.nodes.some((n) => n.name === name)) await ctx.node(name).forgetHostKey?.();
}

/**
 * Creates the VM from a template that carries the marks (the dataset gets them at creation), then
 * its boot disk and its config. The config without vm create's CONFIG_CREATING is written last: a
 * run stopped before that leaves a VM that check recognises as unfinished.
 */
export async function createVm(
  ctx: Ctx,
  ds: Datastore,
  name: string,
  boot: NodeBoot,
  replaceDataset?: string,
) {
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
  await forgetNodeKey(ctx, name);
  const dev = diskDevOf(ctx.options);
  const missing = finalBoot.bootImage ? disksOf(node, dev).filter((d) => d.index === 0) : [];
  await finishVm(ctx, ds, name, finalBoot, missing, true);
}

/** Makes the missing disks (the boot disk from the boot image when there is one), then the config. */
export async function finishVm(
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
