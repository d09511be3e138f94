/**
 * What the lb stage applies: metallb-native.yaml, byte for byte as pinned (its CRDs, the controller
 * and the speakers), then an IPAddressPool per pool of the cluster file and one L2Advertisement.
 * Every object carries the stage's ownership labels.
 */
import {
  type ArtifactRequest,
  KubehyveError,
  type KubeObject,
  type PluginContext,
  pinnedManifests,
  stageOwner,
  withOwner,
} from "kubehyve";
import { announcedPools, KNOWN_SIZES, type MetallbOptions, manifestSha256, manifestUrl } from "./options.ts";

type Ctx = PluginContext<MetallbOptions>;

export const METALLB_NAMESPACE = "metallb-system";
/** The name of this stage's L2Advertisement. */
export const ADVERTISEMENT = "kubehyve";

export function manifestRequest(options: MetallbOptions): ArtifactRequest & { title: string } {
  const sha256 = manifestSha256(options);
  if (!sha256)
    throw new KubehyveError(`no sha256 is known for MetalLB ${options.version}`, 2, "set stages.lb.sha256");
  return {
    url: manifestUrl(options.version),
    sha256,
    ...(KNOWN_SIZES[sha256] !== undefined ? { size: KNOWN_SIZES[sha256] } : {}),
    name: `metallb-${options.version}-metallb-native.yaml`,
    title: `MetalLB ${options.version} metallb-native.yaml`,
  };
}

/** metallb-native.yaml's objects, labelled: fetched into the cache unless `cachedOnly`, then undefined when not there. */
export async function upstreamObjects(
  ctx: Ctx,
  opts: { cachedOnly?: boolean } = {},
): Promise<KubeObject[] | undefined> {
  const pinned = await pinnedManifests(ctx.artifacts, [manifestRequest(ctx.options)], {
    ...opts,
    signal: ctx.signal,
  });
  const owner = stageOwner(ctx);
  return pinned.files[0]?.objects.map((o) => withOwner(o, owner));
}

export function poolObjects(options: MetallbOptions): KubeObject[] {
  return options.pools.map((p) => ({
    apiVersion: "metallb.io/v1beta1",
    kind: "IPAddressPool",
    metadata: { name: p.name, namespace: METALLB_NAMESPACE },
    spec: { addresses: p.addresses, autoAssign: p.autoAssign, avoidBuggyIPs: p.avoidBuggyIPs },
  }));
}

export function advertisementObject(options: MetallbOptions): KubeObject {
  return {
    apiVersion: "metallb.io/v1beta1",
    kind: "L2Advertisement",
    metadata: { name: ADVERTISEMENT, namespace: METALLB_NAMESPACE },
    spec: {
      ipAddressPools: announcedPools(options),
      ...(options.l2.interfaces?.length ? { interfaces: options.l2.interfaces } : {}),
    },
  };
}

/** The pools and the advertisement, with the stage's labels. */
export function configObjects(ctx: Ctx): KubeObject[] {
  const owner = stageOwner(ctx);
  return [...poolObjects(ctx.options), advertisementObject(ctx.options)].map((o) => withOwner(o, owner));
}

export const KNOWN_KINDS = [
  { apiVersion: "metallb.io/v1beta1", kind: "IPAddressPool" },
  { apiVersion: "metallb.io/v1beta1", kind: "L2Advertisement" },
  { apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition" },
  { apiVersion: "v1", kind: "Namespace" },
  { apiVersion: "v1", kind: "ServiceAccount" },
  { apiVersion: "v1", kind: "ConfigMap" },
  { apiVersion: "v1", kind: "Secret" },
  { apiVersion: "v1", kind: "Service" },
  { apiVersion: "v1", kind: "Pod" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding" },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding" },
  { apiVersion: "apps/v1", kind: "Deployment" },
  { apiVersion: "apps/v1", kind: "DaemonSet" },
  { apiVersion: "admissionregistration.k8s.io/v1", kind: "ValidatingWebhookConfiguration" },
];
