/** Options of the lb/metallb stage in the cluster file, with their defaults. */
import { v } from "kubehyve";

/** The MetalLB release this stage is tested against. */
export const DEFAULT_VERSION = "v0.16.1";

/**
 * sha256 of config/manifests/metallb-native.yaml of the releases kubehyve knows: the bytes of
 * `git show TAG:config/manifests/metallb-native.yaml` in metallb/metallb (the URL MetalLB's
 * installation docs give for the tag).
 */
export const KNOWN_RELEASES: Readonly<Record<string, string>> = {
  "v0.16.1": "bf25feebb7582ca7df845efd52ffbc2960d6cbf4cfc972f47fded9f788b67f0b",
};

/** Their sizes in bytes, by sha256: a download is stopped at its pinned size, not at 16 GiB. */
export const KNOWN_SIZES: Readonly<Record<string, number>> = {
  bf25feebb7582ca7df845efd52ffbc2960d6cbf4cfc972f47fded9f788b67f0b: 88_670,
};

export const DEFAULT_CANARY_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53";

const sha256 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "64 lower-case hex digits"));
const seconds = (fallback: number) => v.optional(v.pipe(v.number(), v.integer(), v.minValue(1)), fallback);
// A DNS-1123 label: a pool's name is an object name, and the L2Advertisement lists it.
const name = v.pipe(
  v.string(),
  v.regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "a DNS label: lower-case letters, digits and -"),
);
const image = v.pipe(
  v.string(),
  v.regex(
    /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$/,
    "an image reference such as registry.k8s.io/e2e-test-images/agnhost:2.53",
  ),
);
// Linux interface names (IFNAMSIZ 16, no / or blanks), as the L2Advertisement's interfaces take them.
const interfaceName = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9_.:-]{1,15}$/, "a network interface name such as enp1s0"),
);

export const poolSchema = v.strictObject({
  name,
  /** Addresses as CIDRs (`192.168.1.240/28`) or ranges (`192.168.1.240-192.168.1.250`), in the node subnet. */
  addresses: v.pipe(v.array(v.string()), v.minLength(1, "give at least one address range")),
  /** Hand out addresses of this pool to any LoadBalancer Service (else only to those that ask for it). */
  autoAssign: v.optional(v.boolean(), true),
  /** Skip addresses ending in .0 and .255, which some old routers and clients mishandle. */
  avoidBuggyIPs: v.optional(v.boolean(), false),
});

export const optionsSchema = v.strictObject({
  /** A MetalLB release tag; its manifest comes from metallb/metallb at that tag. */
  version: v.optional(
    v.pipe(v.string(), v.regex(/^v\d+\.\d+\.\d+$/, 'a MetalLB release tag such as "v0.16.1"')),
    DEFAULT_VERSION,
  ),
  /** sha256 of metallb-native.yaml, for a release kubehyve does not know. */
  sha256: v.optional(sha256),
  /** The address pools: IPAddressPool objects, one per entry. */
  pools: v.pipe(v.array(poolSchema), v.minLength(1, "give at least one address pool")),
  /** The L2Advertisement that announces the pools on the LAN. */
  l2: v.optional(
    v.strictObject({
      /** Pools it announces; default: every pool above. */
      pools: v.optional(v.array(name)),
      /** Announce only on these node interfaces; default: every interface. */
      interfaces: v.optional(v.array(interfaceName)),
    }),
    {},
  ),
  /** How long the controller and the speakers may take to become ready. */
  readyTimeoutSec: seconds(300),
  /** The LoadBalancer check of verify: a Service per pool, asked over HTTP from the hypervisor host. */
  canary: v.optional(
    v.strictObject({
      image: v.optional(image, DEFAULT_CANARY_IMAGE),
      port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)), 80),
      timeoutSec: seconds(120),
    }),
    {},
  ),
});

export type MetallbOptions = v.InferOutput<typeof optionsSchema>;
export type PoolOptions = v.InferOutput<typeof poolSchema>;

export function manifestSha256(options: MetallbOptions): string | undefined {
  return options.sha256 ?? KNOWN_RELEASES[options.version];
}

export function manifestUrl(version: string): string {
  return `https://raw.githubusercontent.com/metallb/metallb/${version}/config/manifests/metallb-native.yaml`;
}

/** The pools the L2Advertisement names. */
export function announcedPools(options: MetallbOptions): string[] {
  return options.l2.pools ?? options.pools.map((p) => p.name);
}
