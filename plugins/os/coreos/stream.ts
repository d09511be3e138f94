/**
 * Fedora CoreOS stream metadata (fedora-coreos-docs stream-metadata.adoc; the Go types of
 * coreos/stream-metadata-go `stream/stream.go`): `architectures.<arch>.artifacts.<platform>` has a
 * `release` and `formats.<format>.disk` with `location`, `sha256`, `uncompressed-sha256`, `signature`.
 * There is no JSON schema, so every field used is checked here and a missing one is named by path.
 */
import { KubehyveError } from "kubehyve";

export interface StreamImage {
  stream: string;
  /** `44.20260707.3.1` */
  release: string;
  /** `last-modified` of the stream document. */
  lastModified?: string;
  location: string;
  sha256: string;
  uncompressedSha256?: string;
  signature?: string;
}

export class StreamMetadataError extends KubehyveError {
  constructor(source: string, problem: string) {
    super(`stream metadata from ${source}: ${problem}`);
    this.name = "StreamMetadataError";
  }
}

const SHA256 = /^[0-9a-f]{64}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Picks the image of one platform and format, by default the x86_64 qemu qcow2.xz. */
export function parseStreamMetadata(
  text: string,
  source: string,
  pick: { arch?: string; platform?: string; format?: string } = {},
): StreamImage {
  const arch = pick.arch ?? "x86_64";
  const platform = pick.platform ?? "qemu";
  const format = pick.format ?? "qcow2.xz";
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new StreamMetadataError(source, `not JSON (${(error as Error).message})`);
  }
  const path: string[] = [];
  const dig = (value: unknown, key: string): unknown => {
    path.push(key);
    if (!isObject(value) || !(key in value)) throw new StreamMetadataError(source, `no ${path.join(".")}`);
    return value[key];
  };
  const str = (value: unknown, key: string): string => {
    const found = dig(value, key);
    if (typeof found !== "string" || found === "")
      throw new StreamMetadataError(source, `${path.join(".")} is not a string`);
    path.pop();
    return found;
  };
  const optionalStr = (value: unknown, key: string): string | undefined =>
    isObject(value) && typeof value[key] === "string" ? (value[key] as string) : undefined;

  if (!isObject(doc)) throw new StreamMetadataError(source, "not a JSON object");
  const stream = str(doc, "stream");
  const lastModified = isObject(doc.metadata) ? optionalStr(doc.metadata, "last-modified") : undefined;
  const artifacts = dig(dig(dig(doc, "architectures"), arch), "artifacts");
  const entry = dig(artifacts, platform);
  const release = str(entry, "release");
  const disk = dig(dig(dig(entry, "formats"), format), "disk");
  const location = str(disk, "location");
  const sha256 = str(disk, "sha256");
  if (!SHA256.test(sha256)) throw new StreamMetadataError(source, `${path.join(".")}.sha256 is not a sha256`);
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw new StreamMetadataError(source, `${path.join(".")}.location is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new StreamMetadataError(source, `${path.join(".")}.location is not an http(s) URL`);
  }
  const uncompressedSha256 = optionalStr(disk, "uncompressed-sha256");
  return {
    stream,
    release,
    lastModified,
    location,
    sha256,
    uncompressedSha256:
      uncompressedSha256 && SHA256.test(uncompressedSha256) ? uncompressedSha256 : undefined,
    signature: optionalStr(disk, "signature"),
  };
}
