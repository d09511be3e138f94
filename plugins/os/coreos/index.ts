/**
 * os/coreos: every VM boots Fedora CoreOS's qemu image with its Ignition config handed over through
 * bhyve's QEMU fw_cfg device, so a node comes up configured and reachable over SSH with no installer.
 * See README.md for the route and the upstream facts it rests on. One topic per file:
 *
 * - options.ts, allowlists.ts: the options block and what each value may hold
 * - paths.ts: where the stage's files live on the hypervisor host
 * - state.ts: what the stage remembers between runs
 * - golden.ts (image.ts, stream.ts): the release and the golden image every disk starts from
 * - ignition.ts, node-files.ts, configs.ts: each node's Ignition config, and the file bhyve reads
 * - boot.ts: the answer to the hypervisor's `hypervisor:node-boot`
 * - plan.ts, ssh.ts, tools.ts: what check plans, and what apply waits for
 * - health.ts (probe.ts): what verify calls a healthy node, as a list of checks
 */
import { type Change, checkEach, type Diagnostic, definePlugin, mapLimit, type RenderedFile } from "kubehyve";
import { nodeBoot } from "./boot.ts";
import { destroyIgnitionConfigs, renderNodeIgnition, verifyIgnitionFiles, writeIgnition } from "./configs.ts";
import { checkImage, ensureGoldenImage, removeGoldenFiles } from "./golden.ts";
import {
  duplicateIdentities,
  identityOf,
  type NodeFacts,
  type NodeIdentity,
  verifyDns,
  verifyNode,
} from "./health.ts";
import { goldenZvolOf, type PinnedImage } from "./image.ts";
import { meta } from "./meta.ts";
import { NODE_FILES_HOOK, nodeFilesAnswer } from "./node-files.ts";
import { freshInstall, nodeChanges } from "./plan.ts";
import { waitForSsh } from "./ssh.ts";
import { type GoldenPlace, pinnedImage, placeOf, STATE_IMAGE, STATE_PLACE } from "./state.ts";
import { checkHostTools } from "./tools.ts";

export type { NodeBoot } from "./boot.ts";

export default definePlugin({
  ...meta,
  hookAnswers: { [NODE_FILES_HOOK]: nodeFilesAnswer },

  async check(ctx) {
    const changes: Change[] = [];
    const diagnostics: Diagnostic[] = [];
    if (ctx.upstreamPending) return { changes: freshInstall(ctx), diagnostics };
    diagnostics.push(...(await checkHostTools(ctx)));

    const image = await checkImage(ctx);
    changes.push(...image.changes);
    diagnostics.push(...image.diagnostics);

    // Nodes are looked at side by side: an unreachable one costs its SSH timeout once, not per node.
    const perNode = await mapLimit(ctx.cluster.nodes, 8, (node) => nodeChanges(ctx, node), ctx.signal);
    changes.push(...perNode.flat());
    return { changes, diagnostics };
  },

  async apply(ctx, changes) {
    for (const change of changes) {
      if (change.kind === "image.golden" || change.kind === "image.pin") {
        const { image, place } = change.data as { image: PinnedImage; place: GoldenPlace };
        await ensureGoldenImage(ctx, image, place);
      }
    }
    const nodeOf = (change: Change) =>
      ctx.cluster.nodes.find((n) => n.name === (change.data as { node: string }).node)!;
    for (const change of changes.filter((c) => c.kind === "ignition.write"))
      await writeIgnition(ctx, nodeOf(change));
    await mapLimit(
      changes.filter((c) => c.kind === "ssh.wait"),
      8,
      (change) => waitForSsh(ctx, nodeOf(change)),
      ctx.signal,
    );
  },

  async verify(ctx) {
    // Each node under its own limit: one that hangs or cannot be reached is one finding about it.
    const identities: NodeIdentity[] = [];
    const collect = (facts: NodeFacts) => identities.push(identityOf(facts));
    const perNode = await checkEach(
      ctx,
      ctx.cluster.nodes,
      (node) => verifyNode(ctx, node, undefined, collect),
      {
        id: "coreos.node",
        title: (node) => `the checks of node ${node.name}`,
        target: (node) => node.name,
        concurrency: 4,
      },
    );
    // In the cluster file's order, whichever node answered first.
    const order = (n: NodeIdentity) => ctx.cluster.nodes.indexOf(n.node);
    identities.sort((a, b) => order(a) - order(b));
    return [
      ...(await verifyIgnitionFiles(ctx)),
      ...perNode,
      ...duplicateIdentities(identities),
      ...(await verifyDns(ctx)),
    ];
  },

  async render(ctx): Promise<RenderedFile[]> {
    const files: RenderedFile[] = [];
    for (const node of ctx.cluster.nodes) {
      files.push({ path: `${node.name}.ign`, content: await renderNodeIgnition(ctx, node), mode: 0o600 });
    }
    return files;
  },

  async destroy(ctx) {
    await removeGoldenFiles(ctx);
    const place = placeOf(ctx);
    const pinned = pinnedImage(ctx);
    if (place.kind === "zfs" && pinned) {
      // The VMs' disks are clones of its snapshot and go with the hypervisor stage, after this one.
      const zvol = goldenZvolOf(place.dataset, pinned.release);
      ctx.log.warn(
        `the golden zvol ${zvol} stays: the VM disks are clones of it. Once they are gone: zfs destroy -r ${zvol}`,
      );
    }
    await ctx.state.delete(STATE_IMAGE);
    await ctx.state.delete(STATE_PLACE);
    await destroyIgnitionConfigs(ctx);
  },

  hooks: {
    "hypervisor:node-boot": nodeBoot,
  },
});
