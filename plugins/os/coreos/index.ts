/**
 * os/coreos: every VM boots Fedora CoreOS's qemu image with its Ignition config handed over through
 * bhyve's QEMU fw_cfg device, so a node comes up configured and reachable over SSH with no installer.
 * See README.md for the route and the upstream facts it rests on.
 */
import { dirname, join } from "node:path";
import {
  type Change,
  type CheckResult,
  type Diagnostic,
  definePlugin,
  diag,
  formatSize,
  mapLimit,
  type NodeSpec,
  type PluginContext,
  type RenderedFile,
  readTargetFile,
  runOk,
  writeTargetFile,
} from "kubehyve";
import { resolveA } from "./dns.ts";
import { renderIgnition, serializeIgnition } from "./ignition.ts";
import {
  artifactOf,
  buildGoldenImage,
  buildGoldenZvol,
  copyVerifiedToHost,
  fetchStreamImage,
  goldenImagePath,
  goldenZvolOf,
  HOST_TOOLS,
  hostHasFile,
  hostHasSnapshot,
  hostSha256,
  type PinnedImage,
  sha256ToolOf,
  zfsDatasetAt,
} from "./image.ts";
import { type CoreosOptions, CoreosOptionsSchema, streamUrlOf } from "./options.ts";
import {
  isFedoraCoreos,
  NO_FWCFG_CONFIG,
  PROBE_SCRIPT,
  parseIpAddresses,
  parseMemTotal,
  parseOsRelease,
  parseTimedatectl,
  splitProbe,
} from "./probe.ts";

type Ctx = PluginContext<CoreosOptions>;

/** What the hypervisor stage's "hypervisor:node-boot" hook gets back. */
export interface NodeBoot {
  bhyveOptions?: string;
  bootImage?: { kind: "file"; path: string } | { kind: "zfs-snapshot"; snapshot: string };
}

const STATE_IMAGE = "image";
/** Where the golden image lives: a file, or a zvol in the ZFS datastore the hypervisor uses. */
const STATE_PLACE = "golden";

export type GoldenPlace = { kind: "file" } | { kind: "zfs"; dataset: string };
type BootImage = NonNullable<NodeBoot["bootImage"]>;
const SSH_WAIT_MS = 10 * 60_000;
const PROBE_TIMEOUT_MS = 60_000;
/** The fw_cfg file name Fedora CoreOS reads on the qemu platform (fedora-coreos-docs provisioning-qemu.adoc). */
export const FWCFG_NAME = "opt/com.coreos/config";
/** Writable on Fedora CoreOS (under /var), unlike Kubespray's default under /usr. */
export const FLEXVOLUME_DIR = "/var/lib/kubelet/volumeplugins";

type PathCtx = Pick<Ctx, "dir" | "cluster" | "options">;

function isRemote(ctx: Pick<Ctx, "cluster">): boolean {
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
  // path and a glob character could expand it.
  if (/[\s*?[\]]/.test(ignitionPath)) {
    throw new Error(
      `the Ignition config path ${JSON.stringify(ignitionPath)} contains white space or a glob character, which vm-bhyve's bhyve_options would split or expand: use a state dir (with an ssh:// host, a hostDir) without them`,
    );
  }
  return `-o lpc.fwcfg=qemu -f name=${FWCFG_NAME},file=${ignitionPath}`;
}

export async function renderNodeIgnition(ctx: Ctx, node: NodeSpec): Promise<string> {
  const key = await ctx.clusterKey();
  return serializeIgnition(
    renderIgnition({ cluster: ctx.cluster, node, options: ctx.options, clusterPublicKey: key.publicKey }),
  );
}

interface ImagePlan {
  image: PinnedImage;
  /** Where `image` comes from: the pinned release, or the stream (first run, upgrade, new stream). */
  source: "state" | "stream";
  latest?: PinnedImage;
  latestError?: string;
}

// One stream lookup per context: the hook runs once per node and all must get the same release.
const plans = new WeakMap<object, Promise<ImagePlan>>();

function planImage(ctx: Ctx): Promise<ImagePlan> {
  let plan = plans.get(ctx);
  if (!plan) {
    plan = computePlan(ctx);
    plans.set(ctx, plan);
    plan.catch(() => plans.delete(ctx));
  }
  return plan;
}

async function computePlan(ctx: Ctx): Promise<ImagePlan> {
  const pinned = ctx.state.get<PinnedImage>(STATE_IMAGE);
  const streamUrl = streamUrlOf(ctx.options);
  if (pinned && pinned.streamUrl === streamUrl && !ctx.upgrade) {
    try {
      return {
        image: pinned,
        source: "state",
        latest: await fetchStreamImage(ctx.artifacts, streamUrl, ctx.signal),
      };
    } catch (error) {
      return { image: pinned, source: "state", latestError: (error as Error).message };
    }
  }
  const latest = await fetchStreamImage(ctx.artifacts, streamUrl, ctx.signal);
  return { image: latest, source: "stream", latest };
}

function placeOf(ctx: Ctx): GoldenPlace {
  return ctx.state.get<GoldenPlace>(STATE_PLACE) ?? { kind: "file" };
}

export function goldenOf(ctx: Ctx, release: string, place: GoldenPlace): BootImage {
  return place.kind === "zfs"
    ? { kind: "zfs-snapshot", snapshot: `${goldenZvolOf(place.dataset, release)}@golden` }
    : { kind: "file", path: goldenImagePath(imagesDirOf(ctx), release) };
}

function goldenExists(ctx: Ctx, boot: BootImage): Promise<boolean> {
  return boot.kind === "file" ? hostHasFile(ctx.host, boot.path) : hostHasSnapshot(ctx.host, boot.snapshot);
}

function describeGolden(boot: BootImage): string {
  return boot.kind === "file" ? boot.path : `zvol snapshot ${boot.snapshot}`;
}

// The hypervisor creates several VMs at once and asks for each one's boot image: one build (and
// one copy to a remote host) per golden image and context, which the others wait for.
const builds = new WeakMap<object, Map<string, Promise<void>>>();

/** Downloads (verified while streaming) and converts the release once; returns the golden image. */
async function ensureGoldenImage(
  ctx: Ctx,
  image: PinnedImage,
  place: GoldenPlace = placeOf(ctx),
): Promise<BootImage> {
  const boot = goldenOf(ctx, image.release, place);
  let running = builds.get(ctx);
  if (!running) {
    running = new Map();
    builds.set(ctx, running);
  }
  const key = describeGolden(boot);
  let build = running.get(key);
  if (!build) {
    build = buildGolden(ctx, image, boot);
    running.set(key, build);
    const inContext = running;
    build.catch(() => inContext.delete(key));
  }
  await build;
  const pinned = ctx.state.get<PinnedImage>(STATE_IMAGE);
  if (pinned?.release !== image.release || pinned?.streamUrl !== image.streamUrl)
    await ctx.state.set(STATE_IMAGE, image);
  if (JSON.stringify(ctx.state.get(STATE_PLACE)) !== JSON.stringify(place))
    await ctx.state.set(STATE_PLACE, place);
  return boot;
}

async function buildGolden(ctx: Ctx, image: PinnedImage, boot: BootImage): Promise<void> {
  if (await goldenExists(ctx, boot)) return;
  const compressed = isRemote(ctx) ? await ensureHostCopy(ctx, image) : await download(ctx, image);
  await ctx.wet(
    `build the golden image ${describeGolden(boot)}`,
    async () => {
      if (boot.kind === "file") await buildGoldenImage(ctx.host, compressed, boot.path, ctx.signal);
      else await buildGoldenZvol(ctx.host, compressed, boot.snapshot.replace(/@golden$/, ""), ctx.signal);
    },
    { target: ctx.host.name },
  );
}

/** Into the artifact cache where kubehyve runs, verified while it streams; returns the local path. */
async function download(ctx: Ctx, image: PinnedImage): Promise<string> {
  const artifact = artifactOf(image);
  await ctx.wet(`download Fedora CoreOS ${image.release} (${image.location}, sha256 ${image.sha256})`, () =>
    ctx.artifacts.fetch(artifact, {
      signal: ctx.signal,
      onProgress: (done, total) => ctx.log.progress(`download Fedora CoreOS ${image.release}`, done, total),
    }),
  );
  return ctx.artifacts.pathOf(artifact);
}

/**
 * The verified download on a remote host, copied from the local cache unless a copy with the
 * release's sha256 is there already. The copy is hashed on the host again before each build, so a
 * damaged one is found and replaced rather than turned into a golden image.
 */
async function ensureHostCopy(ctx: Ctx, image: PinnedImage): Promise<string> {
  const artifact = artifactOf(image);
  const path = join(hostCacheDirOf(ctx), artifact.name);
  const tool = await sha256ToolOf(ctx.host, ctx.signal);
  if (!tool) {
    throw new Error(
      `${ctx.host.name} has neither sha256 nor sha256sum, so the copy of Fedora CoreOS ${image.release} cannot be checked there`,
    );
  }
  const have = await hostSha256(ctx.host, tool, path, ctx.signal);
  if (have === image.sha256) return path;
  if (have !== undefined)
    ctx.log.warn(`${ctx.host.name}: ${path} has sha256 ${have}, not ${image.sha256}: it is copied again`);
  const local = await download(ctx, image);
  await ctx.wet(
    `copy ${artifact.name} to ${ctx.host.name}:${path} and check its sha256 there`,
    () => copyVerifiedToHost(ctx.host, tool, local, path, image.sha256, ctx.signal),
    { target: ctx.host.name },
  );
  return path;
}

async function writeIgnition(ctx: Ctx, node: NodeSpec): Promise<string> {
  const path = ignitionPathOf(ctx, node);
  const content = await renderNodeIgnition(ctx, node);
  if ((await readTargetFile(ctx.host, path)) !== content) {
    await ctx.wet(
      `write the Ignition config of ${node.name} to ${path}`,
      async () => {
        await runOk(ctx.host, ["mkdir", "-p", "-m", "0700", ignitionDirOf(ctx)]);
        await writeTargetFile(ctx.host, path, content, "0600");
      },
      { target: ctx.host.name },
    );
  }
  return path;
}

function parseBootPayload(ctx: Ctx, payload: unknown): NodeSpec {
  const name = (payload as { node?: { name?: unknown } } | undefined)?.node?.name;
  const node = ctx.cluster.nodes.find((n) => n.name === name);
  if (!node)
    throw new Error(
      `hypervisor:node-boot was called for ${JSON.stringify(name)}, which is not a node of this cluster`,
    );
  return node;
}

async function waitForSsh(ctx: Ctx, node: NodeSpec): Promise<void> {
  const deadline = Date.now() + SSH_WAIT_MS;
  let last = "";
  while (Date.now() < deadline) {
    if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error("aborted");
    const result = await ctx
      .node(node.name)
      .run(["true"], { timeoutMs: 20_000, signal: ctx.signal, cancellable: true })
      .catch((error: Error) => ({ code: -1, stdout: "", stderr: error.message }));
    if (result.code === 0) return;
    last = result.stderr.trim();
    await Bun.sleep(5_000);
  }
  throw new Error(
    `${node.name} (${node.address}) did not answer over SSH as core within ${SSH_WAIT_MS / 60_000} minutes${last ? `: ${last}` : ""}; watch its console: vm console ${node.name}`,
  );
}

async function checkHostTools(ctx: Ctx): Promise<Diagnostic[]> {
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

function dnsmasqLine(ctx: Ctx, node: NodeSpec): string {
  return `host-record=${node.name}.${ctx.cluster.network.domain},${node.name},${node.address}`;
}

export async function verifyDns(ctx: Ctx): Promise<Diagnostic[]> {
  const { network, nodes } = ctx.cluster;
  const port = ctx.options.dnsPort;
  const missing: { node: NodeSpec; server: string; got: string }[] = [];
  for (const server of network.dns) {
    for (const node of nodes) {
      const fqdn = `${node.name}.${network.domain}`;
      let got: string;
      try {
        const answer = await resolveA(server, port, fqdn);
        if (answer.addresses.includes(node.address)) continue;
        got = answer.addresses.length
          ? `answers ${answer.addresses.join(", ")}`
          : answer.status === "NXDOMAIN"
            ? "answers NXDOMAIN"
            : answer.status === "refused"
              ? "refuses the query"
              : "has no A record";
      } catch (error) {
        got = (error as Error).message;
      }
      missing.push({ node, server, got });
    }
  }
  if (!missing.length) {
    return [
      diag.ok("coreos.dns", `every node name resolves to its address through ${network.dns.join(", ")}`),
    ];
  }
  return missing.map((m) =>
    diag.error(
      "coreos.dns-missing",
      `${m.node.name}.${network.domain} does not resolve to ${m.node.address} through ${m.server}:${port} (it ${m.got})`,
      {
        target: m.node.name,
        hint: `add to the router's dnsmasq configuration and reload it: ${dnsmasqLine(ctx, m.node)}`,
      },
    ),
  );
}

export async function verifyNode(ctx: Ctx, node: NodeSpec): Promise<Diagnostic[]> {
  const at = { target: node.name };
  const result = await ctx
    .node(node.name)
    .run(["sh", "-c", PROBE_SCRIPT], { timeoutMs: PROBE_TIMEOUT_MS, signal: ctx.signal, cancellable: true })
    .catch((error: Error) => ({ code: -1, stdout: "", stderr: error.message }));
  if (!result.stdout.includes("@@end")) {
    return [
      diag.error("coreos.ssh", `cannot run commands on ${node.name} (${node.address}) over SSH as core`, {
        ...at,
        detail: result.stderr.trim() || `exit ${result.code}`,
        hint: `look at its console: vm console ${node.name}`,
      }),
    ];
  }
  const s = splitProbe(result.stdout);
  const out: Diagnostic[] = [];

  const os = parseOsRelease(s["os-release"] ?? "");
  if (!isFedoraCoreos(os)) {
    out.push(
      diag.error(
        "coreos.not-coreos",
        `${node.name} runs ${os.PRETTY_NAME ?? os.NAME ?? "an unknown system"}, not Fedora CoreOS`,
        at,
      ),
    );
  }

  const hostname = (s.hostname ?? "").trim();
  if (hostname !== node.name && hostname !== `${node.name}.${ctx.cluster.network.domain}`) {
    out.push(
      diag.error("coreos.hostname", `${node.name} calls itself ${JSON.stringify(hostname)}`, {
        ...at,
        hint: "the Ignition config sets /etc/hostname on first boot only: re-create the VM to apply it",
      }),
    );
  }

  const addresses = parseIpAddresses(s.addresses ?? "");
  const prefix = Number(ctx.cluster.network.subnet.split("/")[1]);
  if (!addresses.some((a) => a.address === node.address && a.prefix === prefix)) {
    out.push(
      diag.error("coreos.address", `${node.name} does not have ${node.address}/${prefix}`, {
        ...at,
        detail: `addresses: ${addresses.map((a) => `${a.ifname} ${a.address}/${a.prefix}`).join(", ") || "none"}`,
        hint: `the NetworkManager keyfile matches the NIC by MAC: compare \`vm info ${node.name}\` with /etc/NetworkManager/system-connections/kubehyve.nmconnection`,
      }),
    );
  }

  if (parseTimedatectl(s.time ?? "").NTPSynchronized !== "yes") {
    out.push(
      diag.warn("coreos.time", `${node.name}'s clock is not synchronised`, {
        ...at,
        hint: `ssh core@${node.address} chronyc sources`,
      }),
    );
  }

  const memory = parseMemTotal(s.meminfo ?? "");
  const minimum = ctx.options.minMemory ?? Math.floor(node.memory * 0.9);
  if (memory === undefined || memory < minimum) {
    out.push(
      diag.error(
        "coreos.memory",
        `${node.name} sees ${memory === undefined ? "no" : formatSize(memory)} memory, less than ${formatSize(minimum)}`,
        {
          ...at,
          hint: `check the VM's memory: vm info ${node.name}`,
        },
      ),
    );
  }

  const journal = s["ignition-journal"] ?? "";
  if (journal.includes(NO_FWCFG_CONFIG)) {
    out.push(
      diag.error(
        "coreos.ignition-no-config",
        `the Ignition config never reached ${node.name}: "${NO_FWCFG_CONFIG}" is in its journal`,
        {
          ...at,
          hint: `bhyve must run with ${fwcfgBhyveOptions(ignitionPathOf(ctx, node))} (FreeBSD 14.0 or later): check bhyve_options in \`vm configure ${node.name}\``,
        },
      ),
    );
  } else if (!/^\d+$/.test((s["ignition-result"] ?? "").trim())) {
    out.push(
      diag.warn(
        "coreos.ignition-unknown",
        `${node.name} has no /etc/.ignition-result.json: cannot tell whether Ignition ran`,
        at,
      ),
    );
  }

  if (!out.some((d) => d.severity === "error")) {
    out.push(
      diag.ok(
        "coreos.node",
        `${node.name}: ${os.PRETTY_NAME ?? "Fedora CoreOS"}, ${node.address}, ${memory ? formatSize(memory) : "?"}`,
        at,
      ),
    );
  }
  return out;
}

/** The image part of check: the release to use, and whether its golden image is in place. */
async function checkImage(ctx: Ctx): Promise<CheckResult> {
  const changes: Change[] = [];
  const diagnostics: Diagnostic[] = [];
  let plan: ImagePlan;
  try {
    plan = await planImage(ctx);
  } catch (error) {
    diagnostics.push(
      diag.error("coreos.stream", (error as Error).message, {
        hint: `check the network, or set stages.os.streamUrl; the stream is ${streamUrlOf(ctx.options)}`,
      }),
    );
    return { changes, diagnostics };
  }
  const { image } = plan;
  const pinned = ctx.state.get<PinnedImage>(STATE_IMAGE);
  if (plan.latestError) {
    diagnostics.push(
      diag.info("coreos.stream-unchecked", `could not look for a newer release: ${plan.latestError}`),
    );
  }
  if (plan.source === "state" && plan.latest && plan.latest.release !== image.release) {
    diagnostics.push(
      diag.info(
        "coreos.newer-release",
        `Fedora CoreOS ${plan.latest.release} is out; new nodes get ${image.release}`,
        {
          hint: "kubehyve up --upgrade",
        },
      ),
    );
  }
  const place = placeOf(ctx);
  if (!(await goldenExists(ctx, goldenOf(ctx, image.release, place)))) {
    const from =
      pinned && pinned.release !== image.release
        ? ` (was ${pinned.release}; running nodes keep theirs, Zincati updates them)`
        : "";
    changes.push({
      kind: "image.golden",
      target: ctx.host.name,
      summary: `download Fedora CoreOS ${image.stream} ${image.release} and build the golden image${from}`,
      data: { image, place },
    });
  } else if (pinned?.release !== image.release || pinned?.streamUrl !== image.streamUrl) {
    changes.push({
      kind: "image.pin",
      summary: `use Fedora CoreOS ${image.release} for new nodes`,
      data: { image, place },
    });
  }
  return { changes, diagnostics };
}

/**
 * The plan while an earlier stage still has work to do (or nothing may be inspected): every node
 * gets everything. These changes are only shown; `up` checks again once the VMs exist.
 */
function freshInstall(ctx: Ctx): Change[] {
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

export default definePlugin({
  id: "os/coreos",
  title: "Fedora CoreOS on every node",
  apiVersion: 1,
  after: ["hypervisor"],
  options: CoreosOptionsSchema,

  async check(ctx) {
    const changes: Change[] = [];
    const diagnostics: Diagnostic[] = [];
    if (ctx.upstreamPending) return { changes: freshInstall(ctx), diagnostics };
    diagnostics.push(...(await checkHostTools(ctx)));

    const image = await checkImage(ctx);
    changes.push(...image.changes);
    diagnostics.push(...image.diagnostics);

    // Nodes are looked at side by side: an unreachable one costs its SSH timeout once, not per node.
    const perNode = await mapLimit(
      ctx.cluster.nodes,
      8,
      async (node): Promise<Change[]> => {
        const found: Change[] = [];
        const want = await renderNodeIgnition(ctx, node);
        const have = await readTargetFile(ctx.host, ignitionPathOf(ctx, node));
        if (have !== want) {
          found.push({
            kind: "ignition.write",
            target: node.name,
            summary:
              have === undefined
                ? `write the Ignition config of ${node.name}`
                : `update the Ignition config of ${node.name} (Ignition runs on first boot only: it applies when the VM is re-created)`,
            data: { node: node.name },
          });
        }
        const reach = await ctx
          .node(node.name)
          .run(["true"], { timeoutMs: 20_000, signal: ctx.signal, cancellable: true })
          .catch((error: Error) => ({ code: -1, stdout: "", stderr: error.message }));
        if (reach.code !== 0) {
          found.push({
            kind: "ssh.wait",
            target: node.name,
            summary: `wait for ${node.name} to answer over SSH as core`,
            data: { node: node.name },
          });
        }
        return found;
      },
      ctx.signal,
    );
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
    const perNode = await mapLimit(ctx.cluster.nodes, 4, (node) => verifyNode(ctx, node), ctx.signal);
    return [...perNode.flat(), ...(await verifyDns(ctx))];
  },

  async render(ctx): Promise<RenderedFile[]> {
    const files: RenderedFile[] = [];
    for (const node of ctx.cluster.nodes) {
      files.push({ path: `${node.name}.ign`, content: await renderNodeIgnition(ctx, node), mode: 0o600 });
    }
    return files;
  },

  async destroy(ctx) {
    // The verified download stays (the local cache, or the copy on a remote host), so bringing the
    // lab back needs no new download or copy.
    await ctx.wet(
      `remove the golden images and Ignition configs in ${hostDirOf(ctx)}`,
      async () => {
        await runOk(ctx.host, ["rm", "-rf", imagesDirOf(ctx), ignitionDirOf(ctx)]);
      },
      { target: ctx.host.name },
    );
    const place = placeOf(ctx);
    const pinned = ctx.state.get<PinnedImage>(STATE_IMAGE);
    if (place.kind === "zfs" && pinned) {
      // The VMs' disks are clones of its snapshot and go with the hypervisor stage, after this one.
      const zvol = goldenZvolOf(place.dataset, pinned.release);
      ctx.log.warn(
        `the golden zvol ${zvol} stays: the VM disks are clones of it. Once they are gone: zfs destroy -r ${zvol}`,
      );
    }
    await ctx.state.delete(STATE_IMAGE);
    await ctx.state.delete(STATE_PLACE);
  },

  hooks: {
    /**
     * Fedora CoreOS mounts /usr read-only, and Kubespray's default flexvolume directory is under
     * /usr/libexec: add-ons that install volume drivers there (Calico's, Rook's) would fail. The
     * kubelet is pointed at a writable directory instead.
     */
    async "k8s:kubespray-vars"() {
      return { kubelet_flexvolumes_plugins_dir: FLEXVOLUME_DIR };
    },
    async "hypervisor:node-boot"(ctx, payload): Promise<NodeBoot> {
      const node = parseBootPayload(ctx, payload);
      const vmDir = (payload as { vmDir?: unknown }).vmDir;
      if (typeof vmDir !== "string" || !vmDir.startsWith("/")) {
        throw new Error(
          `hypervisor:node-boot for ${node.name} needs the VM's directory as an absolute vmDir`,
        );
      }
      // A plan (or render) needs only how the VM boots, to compare configs; from which image is
      // decided when the VM is created. Nothing is inspected or downloaded for it.
      if (ctx.dryRun || ctx.upstreamPending)
        return { bhyveOptions: fwcfgBhyveOptions(ignitionPathOf(ctx, node)) };
      const { image } = await planImage(ctx);
      // A ZFS datastore (its directory is a dataset's mountpoint) gets a zvol the nodes are cloned from.
      const dataset = await zfsDatasetAt(ctx.host, dirname(vmDir));
      const bootImage = await ensureGoldenImage(
        ctx,
        image,
        dataset ? { kind: "zfs", dataset } : { kind: "file" },
      );
      const ignition = await writeIgnition(ctx, node);
      return { bhyveOptions: fwcfgBhyveOptions(ignition), bootImage };
    },
  },
});
