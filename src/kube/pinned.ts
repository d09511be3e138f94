/**
 * A stage's pinned upstream manifest files (a release's CRDs, an operator, its RBAC): each fetched
 * through the download cache by its sha256, once (the cache verifies the bytes, deletes a file that
 * does not match and names both hashes; a mirror, when set, serves it), parsed, and handed back in
 * the order given, which is the order they are applied in.
 *
 * `cachedOnly` is for `render`, which downloads nothing: a file not in the cache yet is left out and
 * listed, so that render can say where it comes from.
 */
import { readFile } from "node:fs/promises";
import { manifestObjects, parseManifests } from "./apply.ts";
import type { KubeObject } from "./types.ts";

/** One pinned file: an ArtifactRequest (src/artifacts) by shape, which this layer does not import. */
export interface PinnedFile {
  url: string;
  /** Lower-case hex sha256 the bytes must have. */
  sha256: string;
  /** Exact size in bytes, where the release is known: a longer body is stopped there. */
  size?: number;
  /** Most bytes, where the size is not known; MANIFEST_MAX_BYTES unless given. */
  maxBytes?: number;
  /** File name in the cache. */
  name?: string;
  /** How a parse error names the file ("Calico v3.32.1 operator-crds.yaml"); default its URL. */
  title?: string;
}

/**
 * Most bytes of a pinned manifest file whose size is not pinned (a release the user gave the
 * sha256 of): the API server takes objects of at most 1.5 MiB (etcd's --max-request-bytes), and the
 * largest release file here, Calico's operator-crds.yaml, has a few MiB. A mirror that sends
 * without end is stopped here, not at the download cache's 16 GiB.
 */
export const MANIFEST_MAX_BYTES = 64 * 1024 * 1024;

/** What this needs of the download cache: ctx.artifacts. */
export interface PinnedFileCache {
  has(file: PinnedFile): Promise<boolean>;
  fetch(file: PinnedFile, opts?: { signal?: AbortSignal }): Promise<string>;
}

export interface PinnedManifests<F extends PinnedFile> {
  /** The files fetched, in the order given, each with its objects in the file's order. */
  files: { file: F; objects: KubeObject[] }[];
  /** With `cachedOnly`: the files not in the cache yet, in the order given. */
  missing: F[];
}

export async function pinnedManifests<F extends PinnedFile>(
  cache: PinnedFileCache,
  files: readonly F[],
  opts: { cachedOnly?: boolean; signal?: AbortSignal } = {},
): Promise<PinnedManifests<F>> {
  const out: PinnedManifests<F> = { files: [], missing: [] };
  for (const file of files) {
    if (opts.cachedOnly && !(await cache.has(file))) {
      out.missing.push(file);
      continue;
    }
    const bounded =
      file.size === undefined ? { ...file, maxBytes: file.maxBytes ?? MANIFEST_MAX_BYTES } : file;
    const path = await cache.fetch(bounded, { signal: opts.signal });
    out.files.push({ file, objects: parsePinned(await readFile(path, "utf8"), file.title ?? file.url) });
  }
  return out;
}

/** What render writes in place of the pinned files it does not have: each one's URL and sha256. */
export function missingNote(missing: readonly PinnedFile[]): string {
  return [
    "# These pinned upstream files are not in the download cache yet, so their objects are not",
    "# rendered here. `kubehyve plan` or `up` downloads them (from $KUBEHYVE_MIRROR when it is set);",
    "# render then includes them, with this stage's labels.",
    ...missing.map((f) => `${f.url} sha256:${f.sha256}`),
    "",
  ].join("\n");
}

/**
 * A pinned file's objects. Its bytes are fixed by sha256, so Bun's own YAML parser (twenty times the
 * yaml library's speed on Calico's 3 MB of CRDs, which every check of the stage reads) is used where
 * it gives what the yaml library gives: test/kube/pinned.test.ts holds every pinned release file to
 * that. It reads one document at a time (it answers a list either for several documents or for one
 * document that is a list); a text with directives, `...` or content on a `---` line, or one it
 * refuses, goes to the yaml library, which names the line.
 */
export function parsePinned(text: string, source: string): KubeObject[] {
  const documents = nativeDocuments(text);
  return documents ? manifestObjects(documents, source) : parseManifests(text, source);
}

export function nativeDocuments(text: string): unknown[] | undefined {
  if (/^(%|\.\.\.)/m.test(text) || /^---[ \t]*[^\s#]/m.test(text)) return undefined;
  const [head, ...rest] = text.split(/^---[ \t]*(?:#.*)?$/m);
  // Comments before the first `---` belong to no document of their own.
  const bare = rest.length > 0 && head!.split("\n").every((line) => /^\s*(#.*)?$/.test(line));
  const chunks = bare ? rest : [head!, ...rest];
  try {
    return chunks.map((doc) => Bun.YAML.parse(doc));
  } catch {
    return undefined;
  }
}
