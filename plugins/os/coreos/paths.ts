/**
 * Where this stage keeps its files on the hypervisor host, and how bhyve is told where the Ignition
 * config is.
 */
import { join } from "node:path";
import { KubehyveError, type NodeSpec, type PluginContext, plainPathProblem } from "kubehyve";
import type { CoreosOptions } from "./options.ts";

export type Ctx = PluginContext<CoreosOptions>;

/** The fw_cfg file name Fedora CoreOS reads on the qemu platform (fedora-coreos-docs provisioning-qemu.adoc). */
export const FWCFG_NAME = "opt/com.coreos/config";

export type PathCtx = Pick<Ctx, "dir" | "cluster" | "options">;

export function isRemote(ctx: Pick<Ctx, "cluster">): boolean {
  return ctx.cluster.host.kind !== "local";
}

/**
 * The stage's directory on the hypervisor host, where bhyve and vm-bhyve read the golden image and
 * the Ignition configs: the state dir when kubehyve runs on the host, `hostDir` over ssh.
 */
export function hostDirOf(ctx: PathCtx): string {
  if (!isRemote(ctx)) return ctx.dir;
  return ctx.options.hostDir ?? `/var/db/kubehyve/${ctx.cluster.name}/os`;
}

export function imagesDirOf(ctx: PathCtx): string {
  return join(hostDirOf(ctx), "images");
}

export function ignitionDirOf(ctx: PathCtx): string {
  return join(hostDirOf(ctx), "ignition");
}

export function ignitionPathOf(ctx: PathCtx, node: Pick<NodeSpec, "name">): string {
  return join(ignitionDirOf(ctx), `${node.name}.ign`);
}

/** Where a remote host keeps its verified copy of a download (the local cache's counterpart). */
export function hostCacheDirOf(ctx: PathCtx): string {
  return join(hostDirOf(ctx), "cache");
}

/** bhyve(8): `-o lpc.fwcfg=qemu` selects QEMU's fw_cfg, `-f name,file=PATH` adds a file to it. */
export function fwcfgBhyveOptions(ignitionPath: string): string {
  // vm-bhyve's vm-run expands bhyve_options unquoted (`set -- ${_opts}`): a blank would split the
  // path, a glob character could expand it, and bhyve's -f splits at the comma.
  const problem = plainPathProblem(ignitionPath, 1024);
  if (problem) {
    throw new KubehyveError(
      `the Ignition config path ${JSON.stringify(ignitionPath)} ${problem}`,
      1,
      "use a state dir (with an ssh:// host, a hostDir) made of letters, digits and . _ + -",
    );
  }
  return `-o lpc.fwcfg=qemu -f name=${FWCFG_NAME},file=${ignitionPath}`;
}
