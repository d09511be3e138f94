/**
 * The answer to the hypervisor stage's `hypervisor:node-boot`: how a node's VM boots (the bhyve
 * options that hand it its Ignition config) and from which image. A plan gets the options only; a
 * real run builds the golden image and writes the node's config before the VM is created.
 */
import { dirname } from "node:path";
import { type HookAnswer, type HookPayload, KubehyveError, type NodeSpec } from "kubehyve";
import { writeIgnition } from "./configs.ts";
import { ensureGoldenImage, planImage } from "./golden.ts";
import { zfsDatasetAt } from "./image.ts";
import { type Ctx, fwcfgBhyveOptions, ignitionPathOf } from "./paths.ts";
import { rememberVmDir } from "./state.ts";

/** What the hypervisor stage's "hypervisor:node-boot" hook gets back (declared by that stage). */
export type NodeBoot = NonNullable<HookAnswer<"hypervisor:node-boot">>;

function parseBootPayload(ctx: Ctx, payload: unknown): NodeSpec {
  const name = (payload as { node?: { name?: unknown } } | undefined)?.node?.name;
  const node = ctx.cluster.nodes.find((n) => n.name === name);
  if (!node)
    throw new KubehyveError(
      `hypervisor:node-boot was called for ${JSON.stringify(name)}, which is not a node of this cluster`,
    );
  return node;
}

// The payload is typed, and still checked: it comes from another stage's code.
export async function nodeBoot(ctx: Ctx, payload: HookPayload<"hypervisor:node-boot">): Promise<NodeBoot> {
  const node = parseBootPayload(ctx, payload);
  const vmDir: unknown = payload.vmDir;
  if (typeof vmDir !== "string" || !vmDir.startsWith("/")) {
    throw new KubehyveError(
      `hypervisor:node-boot for ${node.name} needs the VM's directory as an absolute vmDir`,
    );
  }
  // Before anything is built: a path bhyve_options cannot carry fails every node alike.
  const bhyveOptions = fwcfgBhyveOptions(ignitionPathOf(ctx, node));
  // A plan (or render) needs only how the VM boots, to compare configs; from which image is
  // decided when the VM is created. Nothing is inspected or downloaded for it.
  if (ctx.dryRun || ctx.upstreamPending) return { bhyveOptions };
  const { image } = await planImage(ctx);
  // A ZFS datastore (its directory is a dataset's mountpoint) gets a zvol the nodes are cloned from.
  const dataset = await zfsDatasetAt(ctx.host, dirname(vmDir));
  const bootImage = await ensureGoldenImage(
    ctx,
    image,
    dataset ? { kind: "zfs", dataset } : { kind: "file" },
  );
  await rememberVmDir(ctx, node, vmDir);
  await writeIgnition(ctx, node);
  return { bhyveOptions, bootImage };
}
