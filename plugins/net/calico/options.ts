/** Options of the net/calico stage in the cluster file, with their defaults. */
import { v } from "kubehyve";

/** The Calico release this stage is tested against. */
export const DEFAULT_VERSION = "v3.32.1";

/** The manifests a release is installed from, in the order they are applied. */
export const MANIFESTS = ["operator-crds.yaml", "tigera-operator.yaml"] as const;
export type ManifestName = (typeof MANIFESTS)[number];

/**
 * sha256 of each manifest of the releases kubehyve knows: the bytes of `git show TAG:manifests/FILE`
 * in projectcalico/calico, which raw.githubusercontent.com serves for the tag.
 */
export const KNOWN_RELEASES: Readonly<Record<string, Record<ManifestName, string>>> = {
  "v3.32.1": {
    "operator-crds.yaml": "192f8b2d934ef24b62e86b7e1a6e1762d1c8af26a916f78057bc13fa5ed60f71",
    "tigera-operator.yaml": "f18e073794207d372606bc3ea6f8fd73972f86d6828f4ba666dfe0d4aa8ab07f",
  },
};

/**
 * The size in bytes of each manifest above, by its sha256: a download is stopped at its pinned
 * size, so a mirror that sends without end costs that much, not the cache's 16 GiB.
 */
export const KNOWN_SIZES: Readonly<Record<string, number>> = {
  "192f8b2d934ef24b62e86b7e1a6e1762d1c8af26a916f78057bc13fa5ed60f71": 3_046_956,
  f18e073794207d372606bc3ea6f8fd73972f86d6828f4ba666dfe0d4aa8ab07f: 19_660,
};

/** The e2e image of Kubernetes: `netexec` serves HTTP, `connect` tests a TCP connection (test/images/agnhost). */
export const DEFAULT_CANARY_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53";

const sha256 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "64 lower-case hex digits"));
const seconds = (fallback: number) => v.optional(v.pipe(v.number(), v.integer(), v.minValue(1)), fallback);
// An image reference as a pod spec takes it: registry/path:tag or @sha256:digest, nothing a shell reads.
const image = v.pipe(
  v.string(),
  v.regex(
    /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$/,
    "an image reference such as registry.k8s.io/e2e-test-images/agnhost:2.53",
  ),
);

export const optionsSchema = v.strictObject({
  /** A Calico release tag; its manifests come from projectcalico/calico at that tag. */
  version: v.optional(
    v.pipe(v.string(), v.regex(/^v\d+\.\d+\.\d+$/, 'a Calico release tag such as "v3.32.1"')),
    DEFAULT_VERSION,
  ),
  /** The manifests' sha256, for a release kubehyve does not know (the default's are built in). */
  sha256: v.optional(
    v.strictObject({ "operator-crds.yaml": v.optional(sha256), "tigera-operator.yaml": v.optional(sha256) }),
    {},
  ),
  /**
   * How pod traffic crosses nodes. VXLANCrossSubnet encapsulates only between subnets, so the
   * lab's one LAN carries pod traffic unencapsulated (Calico's own sample default).
   */
  encapsulation: v.optional(
    v.picklist(["VXLANCrossSubnet", "VXLAN", "IPIPCrossSubnet", "IPIP", "None"]),
    "VXLANCrossSubnet",
  ),
  /** Prefix length of the address blocks Calico hands each node (IPv4: 20 to 32). */
  blockSize: v.optional(v.pipe(v.number(), v.integer(), v.minValue(20), v.maxValue(32)), 26),
  /** Install Calico's API server (APIServer default): `kubectl get ippools` and the projectcalico.org API. */
  apiServer: v.optional(v.boolean(), true),
  /** How long the operator may take to report Calico available. */
  readyTimeoutSec: seconds(600),
  /** The pod-to-pod check of verify. */
  canary: v.optional(
    v.strictObject({
      image: v.optional(image, DEFAULT_CANARY_IMAGE),
      timeoutSec: seconds(180),
    }),
    {},
  ),
});

export type CalicoOptions = v.InferOutput<typeof optionsSchema>;

/** The sha256 of a manifest: the option, else the one known for the version. */
export function manifestSha256(options: CalicoOptions, name: ManifestName): string | undefined {
  return options.sha256[name] ?? KNOWN_RELEASES[options.version]?.[name];
}

export function manifestUrl(version: string, name: ManifestName): string {
  return `https://raw.githubusercontent.com/projectcalico/calico/${version}/manifests/${name}`;
}
