/** What check plans per node, and the plan of a fresh install when nothing may be inspected yet. */

import type { NodeSpec } from "kubehyve";
import { type Change, readTargetFile } from "kubehyve";
import { renderNodeIgnition } from "./configs.ts";
import { type Ctx, ignitionPathOf } from "./paths.ts";
import { answersSsh } from "./ssh.ts";

/** The node's Ignition config as it should be on the host, and whether the node answers yet. */
export async function nodeChanges(ctx: Ctx, node: NodeSpec): Promise<Change[]> {
  const found: Change[] = [];
  const want = await renderNodeIgnition(ctx, node);
  const path = ignitionPathOf(ctx, node);
  const have = await readTargetFile(ctx.host, path);
  if (have !== want) {
    found.push({
      kind: "ignition.write",
      target: node.name,
      summary:
        have === undefined
          ? `write the Ignition config of ${node.name} to ${path}`
          : `update the Ignition config of ${node.name} (Ignition runs on first boot only: it applies when the VM is re-created)`,
      data: { node: node.name },
    });
  }
  if (!(await answersSsh(ctx, node)).ok) {
    found.push({
      kind: "ssh.wait",
      target: node.name,
      summary: `wait for ${node.name} to answer over SSH as core`,
      data: { node: node.name },
    });
  }
  return found;
}

/**
 * The plan while an earlier stage still has work to do (or nothing may be inspected): every node
 * gets everything. These changes are only shown; `up` checks again once the VMs exist.
 */
export function freshInstall(ctx: Ctx): Change[] {
  return [
    {
      kind: "image.golden",
      target: ctx.host.name,
      summary: `download the newest Fedora CoreOS ${ctx.options.stream} release and build the golden image`,
    },
    ...ctx.cluster.nodes.flatMap((node): Change[] => [
      { kind: "ignition.write", target: node.name, summary: `write the Ignition config of ${node.name}` },
      { kind: "ssh.wait", target: node.name, summary: `wait for ${node.name} to answer over SSH as core` },
    ]),
  ];
}
