/**
 * The ingress/traefik options block, and the cluster-file rules only this stage knows: a fixed
 * address must be an IPv4 address of the node subnet, no node's, and inside the MetalLB pool when
 * the lb stage declares one. Everything here runs in `config validate` (exit 2), before any host.
 */
import { type Cluster, type Diagnostic, diag, v } from "kubehyve";
import { inCidr, inRange, parseIpv4, parsePool } from "./ipv4.ts";

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const TraefikOptionsSchema = v.strictObject({
  /** The namespace Traefik runs in. */
  namespace: v.optional(v.pipe(v.string(), v.regex(NAME, "must be a DNS label"), v.maxLength(63)), "traefik"),
  /** A fixed address for Traefik's LoadBalancer Service, taken from the MetalLB pool. */
  address: v.optional(v.string()),
  replicas: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10)), 1),
});

export type TraefikOptions = v.InferOutput<typeof TraefikOptionsSchema>;

/**
 * The lb stage's address pools, read as plain data from the cluster model: a list of strings
 * (`a.b.c.d/n` or `a.b.c.d-e.f.g.h`) under `addresses` or `pools[].addresses`. Anything else is not
 * understood and yields undefined, so a differently shaped lb plugin never fails this stage.
 */
export function metallbPools(cluster: Cluster): string[] | undefined {
  const options = cluster.stages.lb?.options as Record<string, unknown> | undefined;
  if (!options || typeof options !== "object") return undefined;
  const strings = (value: unknown): string[] =>
    Array.isArray(value) ? value.filter((x): x is string => typeof x === "string") : [];
  const found = [...strings(options.addresses)];
  if (Array.isArray(options.pools)) {
    for (const pool of options.pools) {
      if (pool && typeof pool === "object")
        found.push(...strings((pool as { addresses?: unknown }).addresses));
    }
  }
  return found.length ? found : undefined;
}

export function validateTraefik({
  cluster,
  options,
}: {
  cluster: Cluster;
  options: TraefikOptions;
}): Diagnostic[] {
  const out: Diagnostic[] = [];
  const path = "stages.ingress.address";
  const address = options.address;
  if (address === undefined) return out;
  // parseIpv4 reads past blanks, and the checks below compare the text: "192.168.1.22 " would pass
  // for no node's address, and MetalLB, which trims the annotation, would take the node's.
  if (address.trim() !== address || parseIpv4(address) === undefined) {
    out.push(
      diag.error("traefik.address-invalid", `${JSON.stringify(address)} is not an IPv4 address`, { path }),
    );
    return out;
  }
  const subnet = cluster.network.subnet;
  if (!inCidr(address, subnet)) {
    out.push(
      diag.error("traefik.address-outside-subnet", `${address} is not inside the node subnet ${subnet}`, {
        path,
        hint: `pick a free address of ${subnet} from the MetalLB pool (stages.lb)`,
      }),
    );
    return out;
  }
  const node = cluster.nodes.find((n) => n.address === address);
  if (node) {
    out.push(diag.error("traefik.address-taken", `${address} is the address of node ${node.name}`, { path }));
  }
  if (address === cluster.network.gateway) {
    out.push(diag.error("traefik.address-taken", `${address} is the gateway's address`, { path }));
  }
  const pools = metallbPools(cluster);
  if (pools) {
    const ranges = pools.map(parsePool).filter((r) => r !== undefined);
    if (ranges.length && !ranges.some((r) => inRange(address, r))) {
      out.push(
        diag.error(
          "traefik.address-outside-pool",
          `${address} is in none of the MetalLB pools (${pools.join(", ")})`,
          {
            path,
            hint: "MetalLB assigns only addresses of its pools: pick one of them, or widen stages.lb",
          },
        ),
      );
    }
  }
  return out;
}
