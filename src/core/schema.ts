/**
 * The core schema of the cluster file. It validates the shape as the user writes it (sizes as
 * strings, host as a URL); config.ts then normalises it into the Cluster model and runs the
 * checks that need more than one field (duplicates, subnets, overlaps).
 */
import * as v from "valibot";
import { parseCidr, parseIpv4 } from "./ipv4.ts";
import { parseSize } from "./units.ts";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export const DnsLabel = v.pipe(
  v.string(),
  v.regex(
    DNS_LABEL,
    "must be a DNS label: lower-case letters, digits and '-', 1 to 63 long, not starting or ending with '-'",
  ),
);

const DnsName = v.pipe(
  v.string(),
  v.maxLength(253, "must be at most 253 characters"),
  v.check(
    (s) => s.split(".").every((label) => DNS_LABEL.test(label)),
    "must be a DNS name such as lab.home.arpa",
  ),
);

export const Ipv4 = v.pipe(
  v.string("must be an IPv4 address such as 192.168.1.10"),
  v.check((s) => parseIpv4(s) !== undefined, "must be an IPv4 address such as 192.168.1.10"),
);

export const Cidr = v.pipe(
  v.string("must be a CIDR block such as 192.168.1.0/24"),
  v.check(
    (s) => parseCidr(s) !== undefined,
    "must be a CIDR block such as 192.168.1.0/24, with the host bits zero",
  ),
);

export const Size = v.pipe(
  v.union([v.string(), v.number()], 'must be a size such as "4GiB" or "512MiB"'),
  v.check((s) => parseSize(s) !== undefined, 'must be a size such as "4GiB" or "512MiB"'),
);

const HostUrl = v.pipe(
  v.string(),
  v.check(
    (s) => s === "local" || /^ssh:\/\/([a-z_][a-z0-9_.-]*@)?[A-Za-z0-9.-]+(:\d{1,5})?$/.test(s),
    'must be "local" or "ssh://user@host[:port]"',
  ),
);

const DhcpRange = v.pipe(
  v.string(),
  v.check((s) => {
    const [start, end, ...rest] = s.split("-").map((p) => p.trim());
    if (rest.length || !start || !end) return false;
    const a = parseIpv4(start);
    const b = parseIpv4(end);
    return a !== undefined && b !== undefined && a <= b;
  }, 'must be a range "first-last" such as "192.168.1.100-192.168.1.199"'),
);

const SshPublicKey = v.pipe(
  v.string(),
  v.regex(
    /^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( .*)?$/,
    "must be an OpenSSH public key line (ssh-ed25519 AAAA… comment)",
  ),
);

const DataDisk = v.union(
  [Size, v.strictObject({ name: v.optional(DnsLabel), size: Size })],
  'must be a size such as "50GiB" or { name, size }',
);

export const NodeSchema = v.strictObject({
  name: DnsLabel,
  role: v.picklist(["control-plane", "worker"], 'must be "control-plane" or "worker"'),
  cpus: v.optional(
    v.pipe(
      v.number("must be a whole number"),
      v.integer("must be a whole number"),
      v.minValue(1, "must be at least 1"),
      v.maxValue(64, "must be at most 64"),
    ),
    2,
  ),
  memory: v.optional(Size, "4GiB"),
  disk: v.optional(Size, "20GiB"),
  address: Ipv4,
  disks: v.optional(v.array(DataDisk), []),
});

export const StageSchema = v.looseObject({
  plugin: v.pipe(
    v.string("must name a plugin, e.g. bhyve or hypervisor/bhyve"),
    v.regex(/^([a-z0-9-]+\/)?[a-z0-9-]+$/, "must be a plugin name such as bhyve or hypervisor/bhyve"),
  ),
});

export const ClusterFileSchema = v.strictObject({
  name: DnsLabel,
  host: v.optional(HostUrl, "local"),
  network: v.strictObject({
    domain: v.optional(DnsName, "lab.home.arpa"),
    gateway: Ipv4,
    dns: v.optional(v.array(Ipv4)),
    subnet: Cidr,
    dhcpRange: v.optional(DhcpRange),
    podCidr: v.optional(Cidr, "10.233.64.0/18"),
    serviceCidr: v.optional(Cidr, "10.233.0.0/18"),
  }),
  ssh: v.optional(v.strictObject({ authorizedKeys: v.optional(v.array(SshPublicKey), []) }), {}),
  nodes: v.pipe(v.array(NodeSchema), v.minLength(1, "must list at least one node")),
  stages: v.optional(v.record(DnsLabel, StageSchema), {}),
});

export type ClusterFile = v.InferOutput<typeof ClusterFileSchema>;
