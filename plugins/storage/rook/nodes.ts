/**
 * What check asks each node, over ctx.node(name), read-only: are the data disks free, does the rbd
 * module load, do the clocks agree, and is a FlexVolume directory still configured under /usr.
 */
import {
  checkEach,
  type Diagnostic,
  diag,
  formatSize,
  type NodeSpec,
  type PluginContext,
  parseYaml,
} from "kubehyve";
import {
  assessDisk,
  type BlockDevice,
  blkidArgv,
  LSBLK,
  parseBlkidUdev,
  parseLsblk,
  parseWipefs,
  wipeCommand,
  wipefsArgv,
} from "./disks.ts";
import { dataDiskDevice, MIN_OSD_DISK, nodesWithDisks, poolReplicas } from "./sizing.ts";

type Ctx = PluginContext<unknown>;
const TIMEOUT = { timeoutMs: 20_000 };

function flatten(devices: BlockDevice[]): BlockDevice[] {
  return devices.flatMap((d) => [d, ...flatten(d.children)]);
}

/** Every data disk of every node, judged; then whether enough hosts have a usable one. */
export async function checkDataDisks(ctx: Ctx, osdExpected: boolean): Promise<Diagnostic[]> {
  const usableOn = new Set<string>();
  const out = await checkEach(
    ctx,
    nodesWithDisks(ctx.cluster),
    async (node) => {
      const target = ctx.node(node.name);
      const out: Diagnostic[] = [];
      const lsblk = await target.run(LSBLK, TIMEOUT);
      if (lsblk.code !== 0) {
        out.push(
          diag.error(
            "rook.lsblk-failed",
            `cannot list the block devices of ${node.name}: ${lsblk.stderr.trim()}`,
            {
              target: node.name,
              hint: `ssh core@${node.address} ${LSBLK.join(" ")}   # what the check runs`,
            },
          ),
        );
        return out;
      }
      let devices: BlockDevice[];
      try {
        devices = flatten(parseLsblk(lsblk.stdout));
      } catch (error) {
        out.push(
          diag.error("rook.lsblk-failed", `${node.name}: ${(error as Error).message}`, {
            target: node.name,
            hint: `ssh core@${node.address} ${LSBLK.join(" ")}   # what the check reads`,
          }),
        );
        return out;
      }
      let usable = 0;
      for (const [i, disk] of node.disks.entries()) {
        const path = `/dev/${dataDiskDevice(ctx.cluster, i)}`;
        const device = devices.find((d) => d.path === path);
        const wipefs = device ? await target.run(wipefsArgv(path), TIMEOUT) : undefined;
        const blkid = device ? await target.run(blkidArgv(path), TIMEOUT) : undefined;
        // blkid exits 2 when it finds nothing; anything else unread means the disk was not looked at.
        const unread = [
          wipefs?.code === 0 ? undefined : wipefs,
          blkid && [0, 2].includes(blkid.code) ? undefined : blkid,
        ]
          .filter((r) => r !== undefined)
          .map((r) => r.stderr.trim() || `exit ${r.code}`);
        if (device && unread.length) {
          out.push(
            diag.error(
              "rook.disk-unread",
              `cannot read the signatures on ${path} of ${node.name}: ${unread.join("; ")}`,
              {
                target: node.name,
                hint: "check runs `sudo -n wipefs` and `sudo -n blkid` as core, which needs sudo without a password",
              },
            ),
          );
          continue;
        }
        const verdict = assessDisk(
          {
            device,
            signatures: wipefs?.code === 0 ? parseWipefs(wipefs.stdout) : [],
            // blkid exits 2 when it finds nothing.
            probe: blkid?.code === 0 ? parseBlkidUdev(blkid.stdout) : {},
          },
          MIN_OSD_DISK,
          osdExpected,
        );
        const what = `data disk ${disk.name} (${formatSize(disk.size)}) of ${node.name} at ${path}`;
        if (verdict.ours) {
          usable++;
          out.push(diag.ok("rook.disk-in-use", `${what} holds this cluster's OSD`, { target: node.name }));
        } else if (verdict.free) {
          usable++;
          out.push(diag.ok("rook.disk-free", `${what} is empty: an OSD will take it`, { target: node.name }));
        } else if (!device) {
          out.push(
            diag.error("rook.disk-missing", `${what}: no such block device on the node`, {
              target: node.name,
              detail: `block devices: ${devices.map((d) => d.path).join(", ")}`,
              hint: "the VM has fewer disks than the cluster file says: kubehyve plan shows the hypervisor stage's drift",
            }),
          );
        } else {
          out.push(
            diag.warn(
              "rook.disk-not-empty",
              `${what} ${verdict.reasons.join("; ")}: Rook will not put an OSD on it`,
              {
                target: node.name,
                detail: [wipefs?.stdout.trim(), blkid?.stdout.trim()].filter(Boolean).join("\n"),
                hint: `if nothing on it is needed: ${wipeCommand(node.name, path)}`,
              },
            ),
          );
        }
      }
      if (usable > 0) usableOn.add(node.name);
      return out;
    },
    {
      id: "rook.disk-checks",
      title: (node) => `the data disk checks of node ${node.name}`,
      target: (node) => node.name,
      concurrency: 4,
    },
  );
  const hosts = usableOn.size;
  const replicas = poolReplicas(ctx.cluster);
  if (hosts < replicas) {
    out.push(
      diag.error(
        "rook.too-few-disks",
        `${hosts} node(s) have a usable data disk, and pools keep ${replicas} copies on different hosts`,
        { hint: "free the disks above, then run kubehyve up again" },
      ),
    );
  }
  return out;
}

/** The RBD CSI driver maps volumes with the kernel's rbd module: it must be there to load. */
export async function checkRbdModule(ctx: Ctx, node: NodeSpec): Promise<Diagnostic> {
  const r = await ctx.node(node.name).run(["sudo", "-n", "modprobe", "--dry-run", "rbd"], TIMEOUT);
  return r.code === 0
    ? diag.ok("rook.rbd-module", `the rbd kernel module loads on ${node.name}`, { target: node.name })
    : diag.error("rook.rbd-module", `the rbd kernel module cannot be loaded on ${node.name}`, {
        target: node.name,
        detail: r.stderr.trim(),
        hint: "Fedora CoreOS ships it in kernel-modules; an older or custom image may not",
      });
}

/** Ceph's mon_clock_drift_allowed default: 0.05 s (src/common/options/mon.yaml.in). */
export const CLOCK_DRIFT_ALLOWED_MS = 50;

export interface ClockReading {
  node: string;
  /** Node clock minus ours, in ms, at the midpoint of the round trip. */
  offsetMs: number;
  /** Half the round trip: how far off the reading itself may be. */
  uncertaintyMs: number;
}

/** `date +%s.%N` on the node, between two readings of our own clock. */
export async function readClock(ctx: Ctx, node: NodeSpec): Promise<ClockReading | Diagnostic> {
  const before = Date.now();
  const r = await ctx.node(node.name).run(["date", "+%s.%N"], TIMEOUT);
  const after = Date.now();
  const seconds = Number(r.stdout.trim());
  if (r.code !== 0 || !Number.isFinite(seconds)) {
    return diag.warn(
      "rook.clock-unread",
      `cannot read the clock of ${node.name}: ${r.stderr.trim() || r.stdout.trim()}`,
      {
        target: node.name,
        hint: `ssh core@${node.address} date +%s.%N   # what the check runs`,
      },
    );
  }
  return {
    node: node.name,
    offsetMs: seconds * 1000 - (before + after) / 2,
    uncertaintyMs: (after - before) / 2,
  };
}

/** Pure: do the node clocks agree within what Ceph's mons allow, beyond what the readings can tell? */
export function clockSkew(readings: ClockReading[]): Diagnostic {
  if (readings.length < 2) return diag.ok("rook.clocks", "clock skew: one node, nothing to compare");
  const sorted = [...readings].sort((a, b) => a.offsetMs - b.offsetMs);
  const lo = sorted[0]!;
  const hi = sorted[sorted.length - 1]!;
  const skew = hi.offsetMs - lo.offsetMs - hi.uncertaintyMs - lo.uncertaintyMs;
  if (skew > CLOCK_DRIFT_ALLOWED_MS) {
    return diag.error(
      "rook.clock-skew",
      `the clocks of ${hi.node} and ${lo.node} are ${Math.round(hi.offsetMs - lo.offsetMs)} ms apart: Ceph's mons report MON_CLOCK_SKEW beyond ${CLOCK_DRIFT_ALLOWED_MS} ms`,
      {
        hint: `ssh core@${hi.node} chronyc tracking; ssh core@${lo.node} chronyc tracking   # both should follow the same NTP server`,
      },
    );
  }
  return diag.ok("rook.clocks", `node clocks agree within ${CLOCK_DRIFT_ALLOWED_MS} ms`);
}

/** Kubespray's kubelet configuration, where `volumePluginDir` says where FlexVolume drivers go. */
export const KUBELET_CONFIG = "/etc/kubernetes/kubelet-config.yaml";
export const KUBELET_ENV = "/etc/kubernetes/kubelet.env";

/** Pure: FlexVolume directories under /usr in a kubelet config and environment file. */
export function flexVolumeUnderUsr(config: string | undefined, env: string | undefined): string[] {
  const found: string[] = [];
  if (config) {
    try {
      const dir = (parseYaml(config) as { volumePluginDir?: unknown } | null)?.volumePluginDir;
      if (typeof dir === "string" && /^\/usr(\/|$)/.test(dir))
        found.push(`${KUBELET_CONFIG}: volumePluginDir: ${dir}`);
    } catch {
      // Not YAML: the kubelet would not start either; nothing to say about FlexVolume.
    }
  }
  for (const m of (env ?? "").matchAll(/--volume-plugin-dir[= ](\S+)/g)) {
    const dir = m[1]!.replace(/["']/g, "");
    if (/^\/usr(\/|$)/.test(dir)) found.push(`${KUBELET_ENV}: --volume-plugin-dir=${dir}`);
  }
  return found;
}

/** doctor: on Fedora CoreOS /usr is read-only, so a FlexVolume directory there cannot be written. */
export async function checkFlexVolume(ctx: Ctx, node: NodeSpec): Promise<Diagnostic | undefined> {
  const target = ctx.node(node.name);
  const read = async (path: string) => {
    const r = await target.run(["cat", "--", path], TIMEOUT);
    return r.code === 0 ? r.stdout : undefined;
  };
  const found = flexVolumeUnderUsr(await read(KUBELET_CONFIG), await read(KUBELET_ENV));
  if (!found.length) return undefined;
  return diag.warn(
    "rook.flexvolume-under-usr",
    `${node.name} has its FlexVolume directory under /usr, which is read-only on Fedora CoreOS`,
    {
      target: node.name,
      detail: found.join("\n"),
      hint: "Rook's CSI driver needs no FlexVolume; for other drivers set stages.k8s extraVars kubelet_flexvolumes_plugins_dir: /var/lib/kubelet/volumeplugins",
    },
  );
}
