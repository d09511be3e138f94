/**
 * The Rook release this stage installs, pinned by sha256: the four files of the documented order
 * (rook/rook, tag v1.20.6, deploy/examples/: crds.yaml, common.yaml, csi-operator.yaml,
 * operator.yaml; Documentation/Getting-Started/quickstart.md). Since v1.20 the CSI driver is run by
 * the ceph-csi operator of csi-operator.yaml: without it, claims stay Pending.
 */
import type { ArtifactRequest } from "kubehyve";

import { ROOK_VERSION } from "./version.ts";

export { ROOK_VERSION };
/** cluster.yaml of the same tag: Ceph Tentacle. */
export const CEPH_IMAGE = "quay.io/ceph/ceph:v20.2.4";
export const NAMESPACE = "rook-ceph";

const BASE = `https://raw.githubusercontent.com/rook/rook/${ROOK_VERSION}/deploy/examples`;

/** A file of the tag by its sha256 and size: a download is stopped at the size, not at 16 GiB. */
function pin(file: string, sha256: string, size: number): ArtifactRequest {
  return { url: `${BASE}/${file}`, sha256, size, name: `rook-${ROOK_VERSION}-${file}` };
}

/** In the order they are applied; `group` names the plan line and the file render writes. */
export const ROOK_FILES: readonly (ArtifactRequest & { group: string })[] = [
  {
    group: "crds",
    ...pin("crds.yaml", "7fa7462d44b35d636703a03a88120030692a06a05ac91ec253200cb4ae8c37cf", 965_431),
  },
  {
    group: "common",
    ...pin("common.yaml", "2d59b3093446dcf7dd69c73ebaef2d41e8cdfd14af564c2e885d49ab8d190457", 28_709),
  },
  {
    group: "csi-operator",
    ...pin("csi-operator.yaml", "de0bf9160c8370220353d7140a4b60ee6d4b8eda5e260f395fd00cbdc1059ffb", 394_233),
  },
  {
    group: "operator",
    ...pin("operator.yaml", "c69bb7309b6dfc34a1eeab658a1f9c825c7d156fb26dc1a6a824f6a9735761a4", 12_450),
  },
];
