/**
 * The Traefik release this stage installs, pinned by sha256: the CRDs and the kubernetescrd
 * provider's RBAC as Traefik publishes them for v3.7.9 (traefik/traefik, tag v3.7.9,
 * docs/content/reference/dynamic-configuration/), and the image of the same tag.
 */

import { readFile } from "node:fs/promises";
import { type ArtifactRequest, type KubeObject, type PluginContext, parseManifests } from "kubehyve";

import { TRAEFIK_VERSION } from "./version.ts";

export { TRAEFIK_VERSION };
export const TRAEFIK_IMAGE = `docker.io/traefik:${TRAEFIK_VERSION}`;

const BASE = `https://raw.githubusercontent.com/traefik/traefik/${TRAEFIK_VERSION}/docs/content/reference/dynamic-configuration`;

export const TRAEFIK_CRDS: ArtifactRequest = {
  url: `${BASE}/kubernetes-crd-definition-v1.yml`,
  sha256: "1d5e8558803804562238b0d4a57174aadd6d87c36e3c4c55199ebcc356a9406c",
  name: `traefik-${TRAEFIK_VERSION}-kubernetes-crd-definition-v1.yml`,
};

export const TRAEFIK_RBAC: ArtifactRequest = {
  url: `${BASE}/kubernetes-crd-rbac.yml`,
  sha256: "01e592c73d42c225351fe41b40162fc77ec5239773e7d7be81d40bba08f65f27",
  name: `traefik-${TRAEFIK_VERSION}-kubernetes-crd-rbac.yml`,
};

export interface UpstreamObjects {
  crds: KubeObject[];
  rbac: KubeObject[];
  /** With `cachedOnly`: the files not in the cache yet, whose objects are left out. */
  missing: ArtifactRequest[];
}

/**
 * Fetches (once; the cache verifies the sha256) and parses the pinned upstream files. `cachedOnly`
 * downloads nothing (render touches no network): a file not in the cache yet is left out and listed.
 */
export async function upstreamObjects(
  ctx: PluginContext<unknown>,
  opts: { cachedOnly?: boolean } = {},
): Promise<UpstreamObjects> {
  const missing: ArtifactRequest[] = [];
  const read = async (req: ArtifactRequest) => {
    if (opts.cachedOnly && !(await ctx.artifacts.has(req))) {
      missing.push(req);
      return [];
    }
    const path = await ctx.artifacts.fetch(req, { signal: ctx.signal });
    return parseManifests(await readFile(path, "utf8"), req.url);
  };
  return { crds: await read(TRAEFIK_CRDS), rbac: await read(TRAEFIK_RBAC), missing };
}

/** What render writes in place of upstream files it does not have. */
export function missingNote(missing: readonly ArtifactRequest[]): string {
  return [
    "# These pinned upstream files are not in the download cache yet, so their objects are not",
    "# rendered here. `kubehyve up` downloads them (KUBEHYVE_MIRROR: from a mirror); render then includes them.",
    ...missing.map((r) => `${r.url} sha256:${r.sha256}`),
    "",
  ].join("\n");
}
