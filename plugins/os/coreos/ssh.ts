/** Whether a node answers over SSH as core, and waiting until it does after its first boot. */
import { CancelledError, KubehyveError, type NodeSpec, pending, poll } from "kubehyve";
import type { Ctx } from "./paths.ts";

const SSH_WAIT_MS = 10 * 60_000;
const REACH_TIMEOUT_MS = 20_000;

/** One `true` over the node's ssh target: the node is up and takes the cluster key. */
export async function answersSsh(ctx: Ctx, node: NodeSpec): Promise<{ ok: boolean; error: string }> {
  const result = await ctx
    .node(node.name)
    .run(["true"], { timeoutMs: REACH_TIMEOUT_MS, signal: ctx.signal, cancellable: true })
    .catch((error: Error) => ({ code: -1, stdout: "", stderr: error.message }));
  return { ok: result.code === 0, error: result.stderr.trim() };
}

/** After a VM's first boot: up to 10 minutes, one try every 5 s; the error names the last failure. */
export async function waitForSsh(ctx: Ctx, node: NodeSpec): Promise<void> {
  try {
    await poll(
      `${node.name} (${node.address}) to answer over SSH as core`,
      async () => {
        const answer = await answersSsh(ctx, node);
        return answer.ok ? true : pending(answer.error || "no answer");
      },
      { timeoutMs: SSH_WAIT_MS, intervalMs: 5_000, signal: ctx.signal },
    );
  } catch (error) {
    if (error instanceof CancelledError) throw error;
    throw new KubehyveError(`${(error as Error).message}; watch its console: vm console ${node.name}`);
  }
}
