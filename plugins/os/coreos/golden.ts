/**
 * The golden image on the hypervisor host: which release new nodes get (pinned in state, the stream
 * asked once per run), and the one build of it per release that every node's disk is copied or
 * cloned from. The steps on the host themselves are in image.ts.
 */
import { join } from "node:path";
import { type Change, type CheckResult, type Diagnostic, diag, KubehyveError, runOk } from "kubehyve";
import {
  artifactOf,
  buildGoldenImage,
  buildGoldenZvol,
  copyVerifiedToHost,
  fetchStreamImage,
  goldenImagePath,
  goldenZvolOf,
  hostHasFile,
  hostHasSnapshot,
  hostSha256,
  type PinnedImage,
  sha256ToolOf,
} from "./image.ts";
import { streamUrlOf } from "./options.ts";
import { type Ctx, hostCacheDirOf, imagesDirOf, isRemote } from "./paths.ts";
import {
  type GoldenPlace,
  pinnedImage,
  placeOf,
  rememberGoldenFile,
  STATE_GOLDEN_FILES,
  STATE_IMAGE,
  STATE_PLACE,
} from "./state.ts";

/** What a node boots from: a file to copy, or a ZFS snapshot to clone. */
export type BootImage = { kind: "file"; path: string } | { kind: "zfs-snapshot"; snapshot: string };

interface ImagePlan {
  image: PinnedImage;
  /** Where `image` comes from: the pinned release, or the stream (first run, upgrade, new stream). */
  source: "state" | "stream";
  latest?: PinnedImage;
  latestError?: string;
}

// One stream lookup per context: the hook runs once per node and all must get the same release.
const plans = new WeakMap<object, Promise<ImagePlan>>();

export function planImage(ctx: Ctx): Promise<ImagePlan> {
  let plan = plans.get(ctx);
  if (!plan) {
    plan = computePlan(ctx);
    plans.set(ctx, plan);
    plan.catch(() => plans.delete(ctx));
  }
  return plan;
}

async function computePlan(ctx: Ctx): Promise<ImagePlan> {
  const pinned = pinnedImage(ctx);
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

export function goldenOf(ctx: Ctx, release: string, place: GoldenPlace): BootImage {
  return place.kind === "zfs"
    ? { kind: "zfs-snapshot", snapshot: `${goldenZvolOf(place.dataset, release)}@golden` }
    : { kind: "file", path: goldenImagePath(imagesDirOf(ctx), release) };
}

export function goldenExists(ctx: Ctx, boot: BootImage): Promise<boolean> {
  return boot.kind === "file" ? hostHasFile(ctx.host, boot.path) : hostHasSnapshot(ctx.host, boot.snapshot);
}

function describeGolden(boot: BootImage): string {
  return boot.kind === "file" ? boot.path : `zvol snapshot ${boot.snapshot}`;
}

// The hypervisor creates several VMs at once and asks for each one's boot image: one build (and
// one copy to a remote host) per golden image and context, which the others wait for.
const builds = new WeakMap<object, Map<string, Promise<void>>>();

/** Downloads (verified while streaming) and converts the release once; returns the golden image. */
export async function ensureGoldenImage(
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
  const pinned = pinnedImage(ctx);
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
      if (boot.kind === "file") {
        await rememberGoldenFile(ctx, boot.path);
        await buildGoldenImage(ctx.host, compressed, boot.path, ctx.signal);
      } else await buildGoldenZvol(ctx.host, compressed, boot.snapshot.replace(/@golden$/, ""), ctx.signal);
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
    throw new KubehyveError(
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

/** The image part of check: the release to use, and whether its golden image is in place. */
export async function checkImage(ctx: Ctx): Promise<CheckResult> {
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
  const pinned = pinnedImage(ctx);
  if (plan.latestError) {
    diagnostics.push(
      diag.info("coreos.stream-unchecked", `could not look for a newer release: ${plan.latestError}`, {
        hint: `the nodes keep their pinned release; curl -sI ${ctx.options.streamUrl ?? "the stream URL"} says whether the stream answers`,
      }),
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
 * The golden image files this stage built, by name (not the whole images directory, which under a
 * hostDir might hold something else); the verified download stays (the local cache, or the copy on
 * a remote host), so bringing the lab back needs no new download or copy.
 */
export async function removeGoldenFiles(ctx: Ctx): Promise<void> {
  const pinned = pinnedImage(ctx);
  const files = new Set(ctx.state.get<string[]>(STATE_GOLDEN_FILES) ?? []);
  if (pinned) files.add(goldenImagePath(imagesDirOf(ctx), pinned.release));
  const present: string[] = [];
  for (const file of files) {
    if ((await hostHasFile(ctx.host, file)) || (await hostHasFile(ctx.host, `${file}.part`)))
      present.push(file);
  }
  if (present.length) {
    await ctx.wet(
      `remove the golden image${present.length === 1 ? "" : "s"} ${present.join(", ")}`,
      async () => {
        await runOk(ctx.host, ["rm", "-f", ...present.flatMap((f) => [f, `${f}.part`])]);
      },
      { target: ctx.host.name },
    );
  }
  if (!ctx.dryRun) {
    await ctx.host.run(["rmdir", imagesDirOf(ctx)]).catch(() => undefined);
    await ctx.state.delete(STATE_GOLDEN_FILES);
  }
}
