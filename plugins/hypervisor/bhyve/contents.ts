/**
 * What a guest of this cluster holds that neither vm-bhyve nor kubehyve made. `vm destroy` removes
 * the guest whole (core::destroy, lib/vm-core lines 1105-1106: `zfs destroy -rf DATASET/NAME`, then
 * `rm -R DIR/NAME`), with every snapshot, child dataset and file in it: a snapshot the operator took
 * before an upgrade, a backup copied next to the disk. Such a guest is not destroyed; the refusal
 * names each of those things.
 */
import { CommandError, type PluginContext } from "kubehyve";
import type { Datastore } from "./inspect.ts";
import { TEMP_SUFFIX } from "./marks.ts";
import type { BhyveOptions } from "./options.ts";
import { guestDirOf } from "./plan.ts";
import { diskDevOf, disksOf } from "./vmconfig.ts";

type Ctx = PluginContext<BhyveOptions>;

/**
 * The files vm-bhyve itself keeps in a guest's directory (lib/vm-run: the logs, the console list,
 * the locks, the UEFI variables, the restart flag) besides its config, its disks, its virtio
 * consoles' sockets (vtcon.*) and a suspended guest's state (NAME.save*).
 */
const VM_BHYVE_FILES = [
  "vm-bhyve.log",
  "bhyve.log",
  "console",
  "run.lock",
  "suspending.lock",
  "restart",
  "uefi-vars.fd",
];

export interface Guest {
  name: string;
  /** Its config as read from the host, for the disks it names. */
  config?: Map<string, string>;
}

/** Per guest, what it holds that is no one's but the operator's: paths, datasets, snapshots. */
export async function foreignContents(
  ctx: Ctx,
  ds: Datastore,
  guests: Guest[],
): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>(guests.map((g) => [g.name, []]));
  if (!guests.length) return found;
  const dev = diskDevOf(ctx.options);
  const disksOfGuest = (g: Guest) => {
    const node = ctx.cluster.nodes.find((n) => n.name === g.name);
    const names = new Set(node ? disksOf(node, dev).map((d) => d.name) : []);
    // What the config on the host names counts too: the cluster file may declare fewer disks by now.
    for (const [key, value] of g.config ?? []) if (/^disk\d+_name$/.test(key)) names.add(value);
    for (const name of [...names]) names.add(`${name}${TEMP_SUFFIX}`);
    return names;
  };
  const datasets = ds.kind === "zfs" ? guests.filter((g) => ds.guests?.has(g.name)) : [];
  const snapshotArgv = [
    "zfs",
    "list",
    "-H",
    "-o",
    "name",
    "-t",
    "snapshot",
    "-r",
    ...datasets.map((g) => `${(ds as { dataset: string }).dataset}/${g.name}`),
  ];
  const [listings, snapshots] = await Promise.all([
    Promise.all(
      guests.map(async (g) => {
        const dir = guestDirOf(ds, g.name);
        const argv = ["ls", "-A", "--", dir];
        const result = await ctx.host.run(argv);
        if (result.code === 0) return result.stdout.split("\n").filter(Boolean);
        if (/No such file or directory/.test(result.stderr)) return [];
        // What cannot be looked at is not destroyed.
        throw new CommandError(ctx.host.name, argv, result);
      }),
    ),
    datasets.length ? ctx.host.run(snapshotArgv) : undefined,
  ]);
  if (snapshots && snapshots.code !== 0) throw new CommandError(ctx.host.name, snapshotArgv, snapshots);
  for (const [i, g] of guests.entries()) {
    const dir = guestDirOf(ds, g.name);
    const disks = disksOfGuest(g);
    const dataset = ds.kind === "zfs" ? ds.guests?.get(g.name) : undefined;
    const fileDisks = dev === "file" ? disks : new Set<string>();
    const mine = new Set([...VM_BHYVE_FILES, `${g.name}.conf`, `${g.name}.conf${TEMP_SUFFIX}`]);
    const list = found.get(g.name)!;
    for (const file of listings[i]!) {
      // A child dataset's mountpoint shows as a directory: it is named as the dataset below.
      if (dataset?.children.has(file)) continue;
      // A suspended guest's state: bhyve's -r file and the .kern and .meta it writes beside it.
      const saved = file === `${g.name}.save` || file.startsWith(`${g.name}.save.`);
      if (mine.has(file) || fileDisks.has(file) || file.startsWith("vtcon.") || saved) continue;
      list.push(`${dir}/${file}`);
    }
    if (dataset) {
      const zvols = dev === "file" ? new Set<string>() : disks;
      for (const child of [...dataset.children].sort())
        if (!zvols.has(child) || dataset.volumes.get(child) === undefined)
          list.push(`${dataset.name}/${child} (a dataset)`);
    }
  }
  for (const line of snapshots?.stdout.split("\n") ?? []) {
    if (!line.includes("@") || ds.kind !== "zfs") continue;
    const guest = line.slice(ds.dataset.length + 1).split(/[/@]/)[0]!;
    found.get(guest)?.push(`${line} (a snapshot)`);
  }
  return found;
}
