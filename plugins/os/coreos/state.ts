/** What this stage keeps in its state (`state/os.json`), and the small helpers that read and add to it. */
import type { NodeSpec } from "kubehyve";
import type { PinnedImage } from "./image.ts";
import type { Ctx } from "./paths.ts";

/** The release new nodes get: pinned on the first run, moved only by --upgrade. */
export const STATE_IMAGE = "image";
/** Where the golden image lives (a GoldenPlace). */
export const STATE_PLACE = "golden";
/**
 * Each node's VM directory, as the hypervisor named it in `hypervisor:node-boot`: destroy keeps a
 * node's Ignition config while `<vmDir>/<node>.conf` (the VM) exists, since bhyve reads the config
 * at every start of the VM.
 */
export const STATE_VM_DIRS = "vmDirs";
/** The golden image files built on the host, so destroy removes those and nothing else. */
export const STATE_GOLDEN_FILES = "goldenFiles";

/** Where a golden image lives: a file, or a zvol in the ZFS datastore the hypervisor uses. */
export type GoldenPlace = { kind: "file" } | { kind: "zfs"; dataset: string };

export function pinnedImage(ctx: Ctx): PinnedImage | undefined {
  return ctx.state.get<PinnedImage>(STATE_IMAGE);
}

export function placeOf(ctx: Ctx): GoldenPlace {
  return ctx.state.get<GoldenPlace>(STATE_PLACE) ?? { kind: "file" };
}

/** Recorded before the build starts, so an interrupted build's leftovers are ours to remove too. */
export async function rememberGoldenFile(ctx: Ctx, path: string): Promise<void> {
  const known = ctx.state.get<string[]>(STATE_GOLDEN_FILES) ?? [];
  if (!known.includes(path)) await ctx.state.set(STATE_GOLDEN_FILES, [...known, path]);
}

export async function rememberVmDir(ctx: Ctx, node: NodeSpec, vmDir: string): Promise<void> {
  const known = ctx.state.get<Record<string, string>>(STATE_VM_DIRS) ?? {};
  if (known[node.name] !== vmDir) await ctx.state.set(STATE_VM_DIRS, { ...known, [node.name]: vmDir });
}

/** The VM directory the hypervisor named for a node, if it ever asked for the node's boot. */
export function vmDirOf(ctx: Ctx, node: Pick<NodeSpec, "name">): string | undefined {
  return ctx.state.get<Record<string, string>>(STATE_VM_DIRS)?.[node.name];
}
