/**
 * How this stage marks what it creates on the host with the cluster's identity (ctx.clusterId), and
 * how it tells its own things from a hand-made VM or another cluster's: a name alone is not
 * ownership.
 *
 * - A VM: variables in its vm-bhyve config. vm-bhyve reads a config with config::load (lib/vm-config,
 *   lines 15-22), keeps every `name=value` line and only ever looks keys up by name (config::get), so
 *   a key it does not know is carried along untouched: `vm create` copies the template whole
 *   (lib/vm-core line 200), `vm start` only reads it (config::set writes `uuid` when it is missing,
 *   lib/vm-run lines 51-55), `vm configure` opens it in $EDITOR. The keys it rewrites are uuid,
 *   networkN_mac, cpu, memory and diskN_* (config::set/config::remove callers in lib/vm-core and
 *   lib/vm-run): ours are none of those.
 * - Its ZFS dataset: the user properties `kubehyve:cluster` and `kubehyve:cluster-name`, given at
 *   creation through the template's `zfs_dataset_opts` (zfs::make_dataset, lib/vm-zfs lines 48-57,
 *   `zfs create -o …`), so a dataset never exists unmarked; its zvols inherit them.
 * - Switches: recorded in this stage's state when it creates them, with the ports it gave them; a
 *   switch still counts as ours only while vm-bhyve still lists it with no other ports (a mark in
 *   .config/system.conf would outlive `vm switch destroy`, which removes only the keys it knows,
 *   lib/vm-switch lines 157-161, and then claim a switch someone made again by hand).
 * - Temporary files and zvols: named after the thing they become plus TEMP_SUFFIX, inside a VM of
 *   ours, so a later run finds and removes what an interrupted one left.
 */
import type { RunResult } from "kubehyve";

/** The cluster's id in a VM config (and the template it was made from). */
export const CONFIG_MARK = "kubehyve_cluster";
/** The cluster's name beside it, so a refusal can name the owner. */
export const CONFIG_MARK_NAME = "kubehyve_cluster_name";
/**
 * Only in the template: a config that still has it is the copy `vm create` made, not yet replaced
 * by ours, so the VM was interrupted while being created.
 */
export const CONFIG_CREATING = "kubehyve_state";

export const ZFS_MARK = "kubehyve:cluster";
export const ZFS_MARK_NAME = "kubehyve:cluster-name";
/** On a datastore dataset kubehyve created: who made it (it is shared by every guest, never destroyed). */
export const ZFS_DATASTORE_MARK = "kubehyve:datastore-of";

/** A file or zvol being written: renamed to its final name only once complete. */
export const TEMP_SUFFIX = ".kubehyve-new";

/** The `vm create -t` template of a node; the id keeps two clusters of one name apart. */
export function templateName(clusterId: string, node: string): string {
  return `kubehyve-${clusterId}-${node}`;
}

export type Owner =
  | { kind: "ours" }
  /** Made by hand or by another tool, or by a kubehyve older than the marks. */
  | { kind: "unmarked" }
  | { kind: "other"; id: string; name?: string };

export function ownerOf(mark: string | undefined, name: string | undefined, clusterId: string): Owner {
  if (mark === undefined || mark === "" || mark === "-") return { kind: "unmarked" };
  if (mark === clusterId) return { kind: "ours" };
  return { kind: "other", id: mark, name: name && name !== "-" ? name : undefined };
}

/** "belongs to cluster lab2 (id …)" or "carries no kubehyve mark (made by hand or by another tool)". */
export function describeOwner(owner: Owner): string {
  switch (owner.kind) {
    case "ours":
      return "belongs to this cluster";
    case "unmarked":
      return "carries no kubehyve mark: it was made by hand, by another tool or by an older kubehyve";
    case "other":
      return `belongs to another cluster${owner.name ? `, ${owner.name},` : ""} (id ${owner.id})`;
  }
}

/**
 * Whether a failed read means "no" or "could not tell". Commands answer a negative with one exit
 * code (kldstat and test(1): 1, "the module is not loaded" or "false"); any other code, a timeout
 * (124) among them, is a failure that says nothing about the host.
 */
export function answerOf(result: RunResult, negative = 1): "yes" | "no" | "failed" {
  if (result.code === 0) return "yes";
  if (result.code === negative) return "no";
  return "failed";
}
