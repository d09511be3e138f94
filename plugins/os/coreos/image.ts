/**
 * The image pipeline: stream metadata -> verified qcow2.xz in the download cache -> one golden raw
 * image on the host (`xz` from the base system, `qemu-img` from qemu-tools). Each node's boot disk is
 * a copy or a ZFS clone of it, made by the hypervisor stage.
 */
import { dirname, join } from "node:path";
import { type ArtifactCache, KubehyveError, runOk, type Target, urlWithoutCredentials } from "kubehyve";
import { parseStreamMetadata, type StreamImage } from "./stream.ts";

/** What the state records, so a re-run uses the same release until an upgrade is asked for. */
export interface PinnedImage extends StreamImage {
  streamUrl: string;
}

const RELEASE = /^[0-9A-Za-z][0-9A-Za-z._-]*$/;

export async function fetchStreamImage(
  artifacts: ArtifactCache,
  streamUrl: string,
  signal?: AbortSignal,
): Promise<PinnedImage> {
  const url = artifacts.resolveUrl?.(streamUrl) ?? streamUrl;
  const shown = url === streamUrl ? url : `${urlWithoutCredentials(url)} (mirror of ${streamUrl})`;
  // config validate refuses these already; a caller that skipped it must not read file: or http.
  if (url === streamUrl && new URL(url).protocol !== "https:")
    throw new KubehyveError(`stream metadata ${shown} is not an https URL, and no mirror serves it`, 2);
  // Through the cache, for its timeouts, size limit and redirect rules (none away from https).
  let text: string;
  try {
    text = await artifacts.readDocument(streamUrl, { signal });
  } catch (error) {
    if (!(error instanceof KubehyveError)) throw error;
    throw new KubehyveError(`cannot read stream metadata: ${error.message}`, error.exitCode, error.hint);
  }
  const image = parseStreamMetadata(text, shown);
  if (!RELEASE.test(image.release))
    throw new KubehyveError(
      `stream metadata ${shown}: release ${JSON.stringify(image.release)} is not a release name`,
    );
  return { ...image, streamUrl };
}

export function artifactOf(image: PinnedImage) {
  return {
    url: image.location,
    sha256: image.sha256,
    // The stream metadata gives no size; the compressed qemu image has under 1 GiB. A mirror that
    // sends without end stops here rather than at the download cache's 16 GiB.
    maxBytes: 4 * 1024 ** 3,
    name: `fedora-coreos-${image.release}-qemu.x86_64.qcow2.xz`,
  };
}

export function goldenImagePath(imagesDir: string, release: string): string {
  return join(imagesDir, `fedora-coreos-${release}-qemu.x86_64.raw`);
}

export async function hostHasFile(host: Target, path: string): Promise<boolean> {
  return (await host.run(["test", "-f", path])).code === 0;
}

/**
 * Decompresses next to the cached download (`-k` keeps the .xz, so the cache stays valid), converts
 * to raw once, and renames into place last: a golden image that exists is a complete one.
 */
export async function buildGoldenImage(
  host: Target,
  compressed: string,
  golden: string,
  signal?: AbortSignal,
): Promise<void> {
  // artifactOf always names an .xz: anything else is a bug of the caller, not a user's mistake.
  if (!compressed.endsWith(".xz")) throw new Error(`${compressed} is not an .xz file`);
  const qcow2 = compressed.slice(0, -3);
  const part = `${golden}.part`;
  await runOk(host, ["mkdir", "-p", dirname(golden)], { signal });
  try {
    await runOk(host, ["xz", "--decompress", "--keep", "--force", compressed], { signal, kind: "long" });
    await inspectQcow2(host, qcow2, signal);
    await runOk(host, ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, part], {
      signal,
      kind: "long",
    });
    await runOk(host, ["mv", "-f", part, golden], { signal });
  } finally {
    await host.run(["rm", "-f", qcow2, part]);
  }
}

/** The programs the pipeline runs on the host, with the package that provides each on FreeBSD. */
export const HOST_TOOLS = [
  { argv: ["qemu-img", "--version"], name: "qemu-img", hint: "pkg install qemu-tools" },
  {
    argv: ["xz", "--version"],
    name: "xz",
    hint: "xz is part of the FreeBSD base system: reinstall it or put it on PATH",
  },
] as const;

/**
 * The dataset of a vm-bhyve ZFS datastore: the one mounted exactly at the datastore directory.
 * zfs-list(8) takes a path as well as a name; `-H` prints tab-separated fields without a header.
 */
export async function zfsDatasetAt(host: Target, dir: string): Promise<string | undefined> {
  const result = await host.run(["zfs", "list", "-H", "-o", "name,mountpoint", dir]).catch(() => undefined);
  if (result?.code !== 0) return undefined;
  const [name, mountpoint] = (result.stdout.split("\n")[0] ?? "").split("\t");
  return name && mountpoint === dir ? name : undefined;
}

export function goldenZvolOf(dataset: string, release: string): string {
  return `${dataset}/kubehyve-fcos-${release}`;
}

/** `virtual-size` of `qemu-img info --output=json` (qemu's block/qapi ImageInfo), in bytes. */
export function parseQemuImgVirtualSize(json: string): number {
  let info: unknown;
  try {
    info = JSON.parse(json);
  } catch {
    throw new KubehyveError("qemu-img info did not print JSON");
  }
  const size = (info as { "virtual-size"?: unknown } | null)?.["virtual-size"];
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0)
    throw new KubehyveError("qemu-img info gave no virtual-size");
  return size;
}

/**
 * What a qcow2 names outside itself, from `qemu-img info --output=json` (qemu's qapi ImageInfo:
 * `backing-filename`, and `format-specific.data.data-file` of ImageInfoSpecificQCow2). qemu-img
 * convert reads both from the host: an image that names one would copy a host file (a key, another
 * VM's disk) into every node's disk, which is how the image-format attacks on OpenStack worked
 * (OSSA-2024-001). Fedora CoreOS's images name neither.
 */
export function qcow2OutsideReferences(json: string): string[] {
  let info: unknown;
  try {
    info = JSON.parse(json);
  } catch {
    throw new KubehyveError("qemu-img info did not print JSON");
  }
  const i = (info ?? {}) as {
    "backing-filename"?: unknown;
    "full-backing-filename"?: unknown;
    "format-specific"?: { data?: { "data-file"?: unknown } };
  };
  const found: string[] = [];
  const backing = i["full-backing-filename"] ?? i["backing-filename"];
  if (backing !== undefined) found.push(`a backing file ${String(backing)}`);
  const dataFile = i["format-specific"]?.data?.["data-file"];
  if (dataFile !== undefined) found.push(`an external data file ${String(dataFile)}`);
  return found;
}

/**
 * Reads a downloaded qcow2's header as qcow2 (`-f`: never probed as another format) and refuses it
 * when it reads anything but itself; gives its virtual size.
 */
async function inspectQcow2(host: Target, qcow2: string, signal?: AbortSignal): Promise<number> {
  const json = (await runOk(host, ["qemu-img", "info", "--output=json", "-f", "qcow2", qcow2], { signal }))
    .stdout;
  const outside = qcow2OutsideReferences(json);
  if (outside.length > 0)
    throw new KubehyveError(
      `the Fedora CoreOS image ${qcow2} names ${outside.join(" and ")} on the host, which converting it would copy into every node's disk; nothing was built from it`,
      1,
      "Fedora CoreOS's images name no such file: check where the stream metadata and the image came from (the mirror)",
    );
  return parseQemuImgVirtualSize(json);
}

export async function hostHasSnapshot(host: Target, snapshot: string): Promise<boolean> {
  return (
    (await host.run(["zfs", "list", "-H", "-o", "name", "-t", "snapshot", snapshot]).catch(() => undefined))
      ?.code === 0
  );
}

/**
 * The ZFS flavour of the golden image: a zvol of the image's virtual size holding the raw image,
 * and a snapshot the hypervisor clones per node (instant, no extra space). The snapshot is taken
 * last, so a zvol without it is the rest of an interrupted build and is made again.
 */
export async function buildGoldenZvol(
  host: Target,
  compressed: string,
  zvol: string,
  signal?: AbortSignal,
): Promise<string> {
  // artifactOf always names an .xz: anything else is a bug of the caller, not a user's mistake.
  if (!compressed.endsWith(".xz")) throw new Error(`${compressed} is not an .xz file`);
  const snapshot = `${zvol}@golden`;
  if (await hostHasSnapshot(host, snapshot)) return snapshot;
  const qcow2 = compressed.slice(0, -3);
  try {
    await runOk(host, ["xz", "--decompress", "--keep", "--force", compressed], { signal, kind: "long" });
    const size = await inspectQcow2(host, qcow2, signal);
    if ((await host.run(["zfs", "list", "-H", "-o", "name", zvol])).code === 0)
      await runOk(host, ["zfs", "destroy", zvol], { signal });
    // volmode=dev: GEOM must not taste the guest's partitions on the host.
    await runOk(host, ["zfs", "create", "-V", String(size), "-o", "volmode=dev", zvol], { signal });
    await runOk(host, ["qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", qcow2, `/dev/zvol/${zvol}`], {
      signal,
      kind: "long",
    });
    await runOk(host, ["zfs", "snapshot", snapshot], { signal });
  } finally {
    await host.run(["rm", "-f", qcow2]);
  }
  return snapshot;
}

/**
 * The sha256 program of a host: FreeBSD's base system has `sha256` (md5(1): `-q` prints only the
 * digest), GNU coreutils has `sha256sum` (`<digest>  <file>`). The first found wins.
 */
export type Sha256Tool = "sha256" | "sha256sum";

export async function sha256ToolOf(host: Target, signal?: AbortSignal): Promise<Sha256Tool | undefined> {
  const script =
    'for t in sha256 sha256sum; do if command -v "$t" >/dev/null 2>&1; then echo "$t"; exit 0; fi; done; exit 1';
  const result = await host.run(["sh", "-c", script], { signal }).catch(() => undefined);
  const tool = result?.code === 0 ? result.stdout.trim() : "";
  return tool === "sha256" || tool === "sha256sum" ? tool : undefined;
}

/**
 * The digest in the output of `sha256 -q FILE` or `sha256sum FILE`. GNU sha256sum starts the line
 * with a backslash when it had to escape the file name.
 */
export function parseSha256Output(stdout: string): string | undefined {
  const first = (stdout.trim().split(/\s+/)[0] ?? "").replace(/^\\/, "").toLowerCase();
  return /^[0-9a-f]{64}$/.test(first) ? first : undefined;
}

/** The sha256 of a file on the host; undefined when there is no such file. */
export async function hostSha256(
  host: Target,
  tool: Sha256Tool,
  path: string,
  signal?: AbortSignal,
): Promise<string | undefined> {
  if (!(await hostHasFile(host, path))) return undefined;
  const argv = tool === "sha256" ? ["sha256", "-q", path] : ["sha256sum", path];
  // Reading a whole disk image takes long, and stopping half-way changes nothing.
  const result = await runOk(host, argv, { signal, kind: "long", cancellable: true });
  const digest = parseSha256Output(result.stdout);
  if (!digest)
    throw new KubehyveError(`${host.name}: \`${argv.join(" ")}\` printed no sha256: ${result.stdout.trim()}`);
  return digest;
}

/**
 * Streams a local file to the host (never whole in memory) into `<path>.part`, checks its sha256
 * there and only then renames it into place: a copy that exists at `path` arrived whole.
 */
export async function copyVerifiedToHost(
  host: Target,
  tool: Sha256Tool,
  local: string,
  path: string,
  sha256: string,
  signal?: AbortSignal,
): Promise<void> {
  const part = `${path}.part`;
  await runOk(host, ["mkdir", "-p", dirname(path)], { signal });
  try {
    // The script is constant; the path is a positional argument.
    // Long, and safe to stop: it writes the temporary name, which the finally below removes.
    await runOk(host, ["sh", "-c", 'cat > "$1"', "sh", part], {
      stdin: { file: local },
      signal,
      kind: "long",
      cancellable: true,
    });
    const got = await hostSha256(host, tool, part, signal);
    if (got !== sha256) {
      throw new KubehyveError(
        `${host.name}: the copy of ${local} at ${part} has sha256 ${got ?? "(no file)"}, not ${sha256}: it was removed; check the disk and the connection, then run again`,
      );
    }
    await runOk(host, ["mv", "-f", part, path], { signal });
  } finally {
    await host.run(["rm", "-f", part]);
  }
}
