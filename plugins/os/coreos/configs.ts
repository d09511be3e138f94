/**
 * Each node's Ignition config as a file on the hypervisor host: rendered (with what other stages ask
 * for through os:node-files), written, checked for, and removed once its VM is gone. bhyve opens
 * the file at every start of the VM (see README, "The Ignition file lives as long as its VM").
 */

import { join } from "node:path";
import { type Diagnostic, diag, type NodeSpec, readTargetFile, runOk, writeTargetFile } from "kubehyve";
import { OWN_FILE_PATHS, renderIgnition, serializeIgnition } from "./ignition.ts";
import { hostHasFile } from "./image.ts";
import { collectNodeFiles, NODE_FILES_HOOK, type NodeFilesPayload } from "./node-files.ts";
import { type Ctx, FWCFG_NAME, ignitionDirOf, ignitionPathOf } from "./paths.ts";
import { STATE_VM_DIRS, vmDirOf } from "./state.ts";

export async function renderNodeIgnition(ctx: Ctx, node: NodeSpec): Promise<string> {
  const key = await ctx.clusterKey();
  const payload: NodeFilesPayload = { node };
  const nodeFiles = collectNodeFiles(node, await ctx.hooks.call(NODE_FILES_HOOK, payload), OWN_FILE_PATHS);
  return serializeIgnition(
    renderIgnition({
      cluster: ctx.cluster,
      node,
      options: ctx.options,
      clusterPublicKey: key.publicKey,
      nodeFiles,
    }),
  );
}

export async function writeIgnition(ctx: Ctx, node: NodeSpec): Promise<string> {
  const path = ignitionPathOf(ctx, node);
  const content = await renderNodeIgnition(ctx, node);
  if ((await readTargetFile(ctx.host, path)) !== content) {
    await ctx.wet(
      `write the Ignition config of ${node.name} to ${path}`,
      async () => {
        await runOk(ctx.host, ["mkdir", "-p", "-m", "0700", ignitionDirOf(ctx)]);
        await writeTargetFile(ctx.host, path, content, "0600");
      },
      { target: ctx.host.name },
    );
  }
  return path;
}

/**
 * Whether the VM that reads a node's Ignition config still exists: vm-bhyve knows a guest by its
 * `<dir>/<name>.conf` (lib/vm-datastore, datastore::get_guest), which `vm destroy` removes with the
 * directory (lib/vm-core, core::destroy). A node the hypervisor never asked about has no VM of ours.
 */
async function vmExists(ctx: Ctx, node: NodeSpec): Promise<boolean> {
  const vmDir = vmDirOf(ctx, node);
  return vmDir !== undefined && hostHasFile(ctx.host, join(vmDir, `${node.name}.conf`));
}

/**
 * Removes the Ignition config of every node whose VM is gone (and the directory, once empty);
 * returns the nodes whose config stays because their VM still exists.
 */
export async function removeIgnitionOfGoneVms(ctx: Ctx): Promise<NodeSpec[]> {
  const kept: NodeSpec[] = [];
  for (const node of ctx.cluster.nodes) {
    const path = ignitionPathOf(ctx, node);
    if (!(await hostHasFile(ctx.host, path))) continue;
    if (await vmExists(ctx, node)) {
      kept.push(node);
      continue;
    }
    await ctx.wet(
      `remove the Ignition config of ${node.name} (${path}): its VM is gone`,
      async () => {
        await runOk(ctx.host, ["rm", "-f", path]);
      },
      { target: ctx.host.name },
    );
  }
  if (!kept.length && !ctx.dryRun) {
    // rmdir removes only an empty directory: anything else in it stays.
    await ctx.host.run(["rmdir", ignitionDirOf(ctx)]).catch(() => undefined);
    await ctx.state.delete(STATE_VM_DIRS);
  }
  return kept;
}

/**
 * bhyve opens every `-f` file when the VM starts, each time: without its Ignition config a VM that
 * runs now cannot start again (bhyve exits 64, and vm-bhyve's log does not say why).
 */
export async function verifyIgnitionFiles(ctx: Ctx): Promise<Diagnostic[]> {
  const out: Diagnostic[] = [];
  for (const node of ctx.cluster.nodes) {
    const path = ignitionPathOf(ctx, node);
    if (await hostHasFile(ctx.host, path)) continue;
    out.push(
      diag.error(
        "coreos.ignition-missing",
        `the Ignition config of ${node.name} is missing: ${ctx.host.name}:${path}`,
        {
          target: node.name,
          detail: `bhyve reads it at every start of VM ${node.name} (bhyve_options -f name=${FWCFG_NAME},file=${path}), so the VM cannot start again without it`,
          hint: "kubehyve up writes it again",
        },
      ),
    );
  }
  return out;
}

/**
 * destroy's part for the configs. Stages are destroyed backwards, so the VMs still exist when this
 * runs, and bhyve reads each config at every start of its VM: configs of VMs that are gone go now,
 * the others once the hypervisor stage has destroyed their VMs, on the way out of this run.
 */
export async function destroyIgnitionConfigs(ctx: Ctx): Promise<void> {
  const kept = await removeIgnitionOfGoneVms(ctx);
  if (!kept.length) return;
  if (ctx.dryRun) {
    await ctx.wet(
      `remove the Ignition configs of ${kept.map((n) => n.name).join(", ")} in ${ignitionDirOf(ctx)} once their VMs are destroyed`,
      async () => undefined,
      { target: ctx.host.name },
    );
    return;
  }
  ctx.onCleanup(async () => {
    for (const node of await removeIgnitionOfGoneVms(ctx)) {
      ctx.log.warn(
        `kept ${ignitionPathOf(ctx, node)}: VM ${node.name} still exists, and bhyve reads the file at every start of it; \`kubehyve down\` removes it once the VM is gone`,
      );
    }
  });
}
