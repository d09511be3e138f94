/**
 * What is on the host for each node's VM: its config and mark, its disks, and what an interrupted
 * run left, read in as few host commands as can be.
 */
import type { PluginContext } from "kubehyve";
import { listFiles, notRegular, readTextFiles } from "./files.ts";
import { type Datastore, datastorePath, type GuestDataset, type HostFacts } from "./inspect.ts";
import { CONFIG_MARK, CONFIG_MARK_NAME, ownerOf, TEMP_SUFFIX, templateName } from "./marks.ts";
import type { BhyveOptions } from "./options.ts";
import { parseRcVars } from "./parse.ts";
import {
  type DiskFact,
  guestDirOf,
  mergeNodeBoot,
  NODE_BOOT_HOOK,
  type NodeBoot,
  type NodeBootPayload,
  type VmObservation,
} from "./plan.ts";
import { diskDevOf, disksOf } from "./vmconfig.ts";

type Ctx = PluginContext<BhyveOptions>;

/** What the os stage (hypervisor:node-boot) gives a node to boot: its firmware config files, its boot disk. */
export async function nodeBoot(
  ctx: Ctx,
  node: Ctx["cluster"]["nodes"][number],
  vmDir: string,
): Promise<NodeBoot> {
  const payload: NodeBootPayload = { node, vmDir };
  return mergeNodeBoot(await ctx.hooks.call(NODE_BOOT_HOOK, payload));
}

export const configPathOf = (ds: Datastore, name: string) => `${guestDirOf(ds, name)}/${name}.conf`;
export const templatePathOf = (ds: Datastore, clusterId: string, name: string) =>
  `${datastorePath(ds)}/.templates/${templateName(clusterId, name)}.conf`;

export interface Observed {
  vms: VmObservation[];
  /** The extra text files asked for, read in the same command. */
  texts: Map<string, string | undefined>;
  /** What interrupted runs of this cluster left on the host. */
  leftovers: { paths: string[]; datasets: string[] };
  /** The other guests in the datastore, named after no node, with their configs (for marks and MACs). */
  others: { name: string; conf: string; config?: Map<string, string> }[];
  /** Files or zvols whose state could not be read. */
  unreadable?: string;
}

/**
 * Everything known of each node's VM, from the host facts plus one `grep` of the configs and the
 * names an interrupted run may have left, and for a directory datastore one `ls` of the disks.
 */
export async function observeVms(
  ctx: Ctx,
  facts: Pick<HostFacts, "vms" | "datastore">,
  opts: { boot?: boolean; texts?: string[] } = {},
): Promise<Observed> {
  const withBoot = opts.boot ?? true;
  const ds = facts.datastore;
  const clusterId = ctx.clusterId;
  const dev = diskDevOf(ctx.options);
  const listed = new Map((facts.vms ?? []).map((vm) => [vm.name, vm]));
  const nodes = ctx.cluster.nodes;
  const templates = ds.exists
    ? nodes.flatMap((n) => {
        const t = templatePathOf(ds, clusterId, n.name);
        return [t, `${t}${TEMP_SUFFIX}`];
      })
    : [];
  const configs = nodes.filter((n) => listed.has(n.name)).map((n) => configPathOf(ds, n.name));
  // A guest renamed by hand keeps its config and the MAC in it: read too, so that no node is made
  // with a MAC a guest on the same switch already has.
  const nodeNames = new Set(nodes.map((n) => n.name));
  const others = [...listed.values()]
    .filter((vm) => !nodeNames.has(vm.name) && (!vm.datastore || vm.datastore === "default"))
    .map((vm) => ({ name: vm.name, conf: configPathOf(ds, vm.name) }));
  const fileDisks =
    dev === "file" && ds.exists
      ? nodes.flatMap((n) =>
          listed.has(n.name)
            ? disksOf(n, dev).flatMap((d) => {
                const path = `${guestDirOf(ds, n.name)}/${d.name}`;
                return [path, `${path}${TEMP_SUFFIX}`];
              })
            : ds.kind === "dir"
              ? [guestDirOf(ds, n.name)]
              : [],
        )
      : [];
  const [texts, files, boots] = await Promise.all([
    readTextFiles(ctx.host, [
      ...configs,
      ...configs.map((c) => `${c}${TEMP_SUFFIX}`),
      ...templates,
      ...others.map((o) => o.conf),
      ...(opts.texts ?? []),
    ]),
    // The configs too: one that is not a regular file (a link, a FIFO) is no config kubehyve wrote.
    listFiles(ctx.host, [...configs, ...fileDisks]),
    withBoot
      ? Promise.all(nodes.map((node) => nodeBoot(ctx, node, guestDirOf(ds, node.name))))
      : nodes.map(() => ({}) as NodeBoot),
  ]);
  const leftovers = { paths: [] as string[], datasets: [] as string[] };
  for (const t of templates) if (texts.get(t) !== undefined) leftovers.paths.push(t);

  const vms = await Promise.all(
    nodes.map(async (node, i): Promise<VmObservation> => {
      const dir = guestDirOf(ds, node.name);
      const conf = configPathOf(ds, node.name);
      const confFact = files.files.get(conf);
      const configProblem = confFact && notRegular(confFact);
      // Never read as ours: a link leads to another VM's config (its mark too), a FIFO reads empty.
      const text = configProblem ? undefined : texts.get(conf);
      const config = text === undefined ? undefined : parseRcVars(text);
      const dataset = ds.kind === "zfs" ? ds.guests?.get(node.name) : undefined;
      const ours =
        ownerOf(config?.get(CONFIG_MARK), config?.get(CONFIG_MARK_NAME), clusterId).kind === "ours";
      if (ours && texts.get(`${conf}${TEMP_SUFFIX}`) !== undefined)
        leftovers.paths.push(`${conf}${TEMP_SUFFIX}`);
      let disks: Map<number, DiskFact> | undefined;
      let dirInUse: boolean | undefined;
      if (dev !== "file") {
        // zvols: in the datastore's one zfs get (inspect.ts).
        if (dataset) disks = zvolFacts(node, dev, dataset);
        if (dataset && ours && ownerOf(dataset.mark, dataset.markName, clusterId).kind === "ours")
          for (const name of dataset.volumes.keys())
            if (name.endsWith(TEMP_SUFFIX)) leftovers.datasets.push(`${dataset.name}/${name}`);
      } else if (listed.has(node.name)) {
        // A listing that failed says nothing of the disks: they are unknown then, not missing
        // (check reports the failure, and stops the stage on it).
        if (!files.failed)
          disks = new Map(
            disksOf(node, dev).map((d) => {
              const fact = files.files.get(`${dir}/${d.name}`);
              return [
                d.index,
                fact ? { present: true, size: fact.size, mode: fact.mode } : { present: false },
              ];
            }),
          );
        if (ours)
          for (const d of disksOf(node, dev))
            if (files.files.get(`${dir}/${d.name}${TEMP_SUFFIX}`))
              leftovers.paths.push(`${dir}/${d.name}${TEMP_SUFFIX}`);
      } else if (ds.kind === "dir" && files.files.get(dir)) {
        // A directory without a config: vm create would use it, and vm destroy remove it whole.
        const inside = await ctx.host.run(["ls", "-A", "--", dir]);
        dirInUse = inside.code !== 0 || inside.stdout.trim() !== "";
      }
      return {
        node,
        dir,
        listed: listed.get(node.name),
        config,
        ...(configProblem ? { configProblem: `is ${configProblem}, not a regular file` } : {}),
        boot: boots[i]!,
        dataset,
        disks,
        dirInUse,
      };
    }),
  );
  const otherConfigs = others.map((o) => {
    const text = texts.get(o.conf);
    return { ...o, ...(text === undefined ? {} : { config: parseRcVars(text) }) };
  });
  return { vms, texts, leftovers, others: otherConfigs, unreadable: files.failed };
}

export function zvolFacts(
  node: Ctx["cluster"]["nodes"][number],
  dev: "sparse-zvol" | "zvol",
  dataset: GuestDataset,
): Map<number, DiskFact> {
  return new Map(
    disksOf(node, dev).map((d) => {
      const volume = dataset.volumes.get(d.name);
      const fact: DiskFact = volume
        ? { present: true, size: volume.volsize, blocksize: volume.volblocksize }
        : { present: false };
      return [d.index, fact];
    }),
  );
}

/**
 * The plan when nothing may be inspected (`plan --offline`): a host with nothing on it, so every
 * host step and every VM is planned. Only shown; `up` inspects the host for real.
 */
