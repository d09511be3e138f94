/**
 * Kubespray's release: GitHub's archive of the tag, pinned by the tree-sha256-v1 digest of its
 * content (GitHub builds the tarball on the fly, so its own sha256 is not stable) and fetched through
 * the artifact cache, which unpacks, verifies and keeps the tree.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { type ArtifactCache, KubehyveError, TREE_DIGEST_V1, type TreeRequest } from "kubehyve";
import type { ResolvedRelease } from "./options.ts";

export function treeRequestOf(
  release: ResolvedRelease & { treeSha256V1: string },
  version: string,
): TreeRequest {
  return {
    url: release.url,
    treeSha256V1: release.treeSha256V1,
    sha256: release.sha256,
    // GitHub's archive of a Kubespray tag has a few MiB; a mirror sending without end stops here.
    maxBytes: 256 * 1024 * 1024,
    name: `kubespray-${version}`,
  };
}

/** The verified tree of the release; downloaded and unpacked once per content. */
export async function ensureKubespray(
  artifacts: ArtifactCache,
  req: TreeRequest,
  signal?: AbortSignal,
): Promise<string> {
  const dir = await artifacts.fetchTree(req, { signal });
  const playbook = await access(join(dir, "cluster.yml")).then(
    () => true,
    () => false,
  );
  if (!playbook) {
    // The content matched its pin, so the pin itself names something that is not Kubespray.
    throw new KubehyveError(
      `${req.url} is not a Kubespray release: it has no cluster.yml at its top`,
      1,
      `check stages.k8s.release.url and stages.k8s.release.${TREE_DIGEST_V1}`,
    );
  }
  return dir;
}
