/** The programs the image pipeline needs on the hypervisor host, as check reports them. */
import { type Diagnostic, diag } from "kubehyve";
import { HOST_TOOLS, sha256ToolOf } from "./image.ts";
import { type Ctx, isRemote } from "./paths.ts";

export async function checkHostTools(ctx: Ctx): Promise<Diagnostic[]> {
  const out: Diagnostic[] = [];
  if (isRemote(ctx) && !(await sha256ToolOf(ctx.host, ctx.signal))) {
    out.push(
      diag.error("coreos.tool-missing", `neither sha256 nor sha256sum is available on ${ctx.host.name}`, {
        hint: "sha256 is part of the FreeBSD base system (md5(1)): reinstall it or put it on PATH",
        target: ctx.host.name,
      }),
    );
  }
  for (const tool of HOST_TOOLS) {
    const result = await ctx.host.run(tool.argv).catch(() => ({ code: 127, stdout: "", stderr: "" }));
    if (result.code !== 0) {
      out.push(
        diag.error("coreos.tool-missing", `${tool.name} is not available on ${ctx.host.name}`, {
          hint: tool.hint,
          target: ctx.host.name,
        }),
      );
    }
  }
  return out;
}
