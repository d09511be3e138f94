/**
 * What the net stage applies: the release's manifests, byte for byte as pinned (CRDs first, then
 * the operator), then the two custom resources the operator installs Calico from. Every object
 * carries the stage's ownership labels, so that pruning and `down` find exactly these.
 */
import {
  type ArtifactRequest,
  type Cluster,
  KubehyveError,
  type KubeObject,
  type PluginContext,
  pinnedManifests,
  stageOwner,
  withOwner,
} from "kubehyve";
import {
  type CalicoOptions,
  KNOWN_SIZES,
  MANIFESTS,
  type ManifestName,
  manifestSha256,
  manifestUrl,
} from "./options.ts";

type Ctx = PluginContext<CalicoOptions>;

/** A pinned file of the release, with the manifest it is and how errors name it. */
export interface ReleaseFile extends ArtifactRequest {
  manifest: ManifestName;
  title: string;
}

export function manifestRequest(options: CalicoOptions, name: ManifestName): ReleaseFile {
  const sha256 = manifestSha256(options, name);
  if (!sha256) {
    // validate() refuses such a file first; reaching this is a bug.
    throw new KubehyveError(
      `no sha256 is known for Calico ${options.version} ${name}`,
      2,
      `set stages.net.sha256.${name}`,
    );
  }
  return {
    url: manifestUrl(options.version, name),
    sha256,
    ...(KNOWN_SIZES[sha256] !== undefined ? { size: KNOWN_SIZES[sha256] } : {}),
    name: `calico-${options.version}-${name}`,
    manifest: name,
    title: `Calico ${options.version} ${name}`,
  };
}

/**
 * The release's manifests, in MANIFESTS' order, with the stage's labels: fetched into the cache
 * (pinnedManifests) unless `cachedOnly`, where a manifest not in the cache yet is listed as missing.
 */
export async function upstreamManifests(ctx: Ctx, opts: { cachedOnly?: boolean } = {}) {
  const files = MANIFESTS.map((name) => manifestRequest(ctx.options, name));
  const pinned = await pinnedManifests(ctx.artifacts, files, { ...opts, signal: ctx.signal });
  const owner = stageOwner(ctx);
  return {
    manifests: pinned.files.map(({ file, objects }) => ({
      name: file.manifest,
      objects: objects.map((o) => withOwner(o, owner)),
    })),
    missing: pinned.missing,
  };
}

/**
 * Installation `default`. Every field of the IP pool is given, with the values the operator's IP
 * pool controller would otherwise write into it (tigera/operator pkg/controller/ippool/defaults.go
 * fillDefaults): `ipPools` is an atomic list, so a default the operator added would take the whole
 * list over from kubehyve, and every `up` would then set it back.
 */
export function installation(cluster: Cluster, options: CalicoOptions): KubeObject {
  return {
    apiVersion: "operator.tigera.io/v1",
    kind: "Installation",
    metadata: { name: "default" },
    spec: {
      calicoNetwork: {
        ipPools: [
          {
            name: "default-ipv4-ippool",
            cidr: cluster.network.podCidr,
            blockSize: options.blockSize,
            encapsulation: options.encapsulation,
            natOutgoing: "Enabled",
            nodeSelector: "all()",
            allowedUses: ["Workload", "Tunnel"],
            disableNewAllocations: false,
            assignmentMode: "Automatic",
          },
        ],
        // The node's address on the lab's LAN, never podman0's or nodelocaldns's (firstFound,
        // the default, takes whichever interface comes first).
        nodeAddressAutodetectionV4: { cidrs: [cluster.network.subnet] },
      },
      // The default lies under /usr/libexec, read-only on Fedora CoreOS: calico-node would stay in
      // Init for good, its flexvol-driver volume never made (pkg/render/node.go).
      flexVolumePath: "None",
    },
  };
}

export function apiServer(): KubeObject {
  return { apiVersion: "operator.tigera.io/v1", kind: "APIServer", metadata: { name: "default" }, spec: {} };
}

/** The custom resources of this stage, with its labels. */
export function customResources(ctx: Ctx): KubeObject[] {
  const owner = stageOwner(ctx);
  return [installation(ctx.cluster, ctx.options), ...(ctx.options.apiServer ? [apiServer()] : [])].map((o) =>
    withOwner(o, owner),
  );
}

/** Kinds this stage may have applied, for a `down` that has no record of what it applied. */
export const KNOWN_KINDS = [
  { apiVersion: "operator.tigera.io/v1", kind: "Installation" },
  { apiVersion: "operator.tigera.io/v1", kind: "APIServer" },
  { apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition" },
  { apiVersion: "v1", kind: "Namespace" },
  { apiVersion: "v1", kind: "ServiceAccount" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding" },
  { apiVersion: "apps/v1", kind: "Deployment" },
];

/** Of what Calico's own components make for themselves, the kinds whose every object is theirs. */
const CALICO_STATE_KINDS = new Set([
  // The operator's status of each component (tigera/operator pkg/controller/status/status.go).
  "operator.tigera.io/TigeraStatus",
  // The IPAM's blocks, affinities, handles and settings (libcalico-go/lib/ipam).
  "crd.projectcalico.org/IPAMBlock",
  "crd.projectcalico.org/BlockAffinity",
  "crd.projectcalico.org/IPAMHandle",
  "crd.projectcalico.org/IPAMConfig",
]);

/** Of the same, the objects of one name: `kind/name`. */
const CALICO_STATE_OBJECTS = new Set([
  // libcalico-go/lib/clientv3/client.go EnsureInitialized: the cluster's information, the default tiers.
  "crd.projectcalico.org/ClusterInformation/default",
  "crd.projectcalico.org/Tier/default",
  "crd.projectcalico.org/Tier/kube-admin",
  "crd.projectcalico.org/Tier/kube-baseline",
  // tigera/operator pkg/render/common/networkpolicy CalicoTierName, the operator's own tier.
  "crd.projectcalico.org/Tier/calico-system",
  // node/pkg/lifecycle/startup/startup.go: calico-node's global settings (globalFelixConfigName).
  "crd.projectcalico.org/FelixConfiguration/default",
  // kube-controllers/pkg/config/runconfig.go getOrCreateSnapshot (defaultKubeControllersConfigName).
  "crd.projectcalico.org/KubeControllersConfiguration/default",
]);

/**
 * Whether an object of Calico's CRDs is one Calico's own software made for this install, which
 * goes with the stage at `down` and does not keep its CRD (destroyStageObjects' madeByStage): the
 * state above; each node's Felix settings, `node.<node>` (startup.go felixNodeConfigNamePrefix);
 * the IP pools the operator makes from the Installation, labelled
 * `app.kubernetes.io/managed-by: tigera-operator` (tigera/operator pkg/controller/ippool
 * pool_controller.go managedByLabel). Anything else, a GlobalNetworkPolicy or an IPPool of the
 * user's, is theirs: its CRD stays.
 */
export function madeByCalico(obj: KubeObject): boolean {
  const group = obj.apiVersion.split("/")[0];
  const kind = `${group}/${obj.kind}`;
  if (CALICO_STATE_KINDS.has(kind) || CALICO_STATE_OBJECTS.has(`${kind}/${obj.metadata.name}`)) return true;
  if (kind === "crd.projectcalico.org/FelixConfiguration" && obj.metadata.name.startsWith("node."))
    return true;
  return (
    kind === "crd.projectcalico.org/IPPool" &&
    obj.metadata.labels?.["app.kubernetes.io/managed-by"] === "tigera-operator"
  );
}
