/**
 * The Traefik release this stage installs, pinned by sha256: the CRDs and the kubernetescrd
 * provider's RBAC as Traefik publishes them for v3.7.9 (traefik/traefik, tag v3.7.9,
 * docs/content/reference/dynamic-configuration/), and the image of the same tag.
 */
import type { ArtifactRequest } from "kubehyve";

import { TRAEFIK_VERSION } from "./version.ts";

export { TRAEFIK_VERSION };
export const TRAEFIK_IMAGE = `docker.io/traefik:${TRAEFIK_VERSION}`;

const BASE = `https://raw.githubusercontent.com/traefik/traefik/${TRAEFIK_VERSION}/docs/content/reference/dynamic-configuration`;

export const TRAEFIK_CRDS: ArtifactRequest = {
  url: `${BASE}/kubernetes-crd-definition-v1.yml`,
  sha256: "1d5e8558803804562238b0d4a57174aadd6d87c36e3c4c55199ebcc356a9406c",
  size: 248_801,
  name: `traefik-${TRAEFIK_VERSION}-kubernetes-crd-definition-v1.yml`,
};

export const TRAEFIK_RBAC: ArtifactRequest = {
  url: `${BASE}/kubernetes-crd-rbac.yml`,
  sha256: "01e592c73d42c225351fe41b40162fc77ec5239773e7d7be81d40bba08f65f27",
  size: 1_563,
  name: `traefik-${TRAEFIK_VERSION}-kubernetes-crd-rbac.yml`,
};
