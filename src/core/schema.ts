/**
 * The core schema of the cluster file. It validates the shape as the user writes it (sizes as
 * strings, host as a URL); config.ts then normalises it into the Cluster model and runs the
 * checks that need more than one field (duplicates, subnets, overlaps).
 */
import * as v from "valibot";
import { parseSshUrl } from "../targets/ssh.ts";
import { parseDuration } from "./duration.ts";
import { parseCidr, parseIpv4 } from "./ipv4.ts";
import { formatSize, GiB, MiB, parseSize } from "./units.ts";

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

/** A size between `min` and `max`: a VM of 0 bytes or 10 EiB fails later, on the host. */
function SizeBetween(min: number, max: number) {
  return v.pipe(
    v.union([v.string(), v.number()], 'must be a size such as "4GiB" or "512MiB"'),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const bytes = parseSize(dataset.value);
      if (bytes === undefined) addIssue({ message: 'must be a size such as "4GiB" or "512MiB"' });
      else if (bytes < min) addIssue({ message: `must be at least ${formatSize(min)}` });
      else if (bytes > max) addIssue({ message: `must be at most ${formatSize(max)}` });
    }),
  );
}

const TiB = 1024 * GiB;

const HostUrl = v.pipe(
  v.string('must be "local" or "ssh://user@host[:port]"'),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed || dataset.value === "local") return;
    if (!dataset.value.startsWith("ssh://")) {
      addIssue({ message: 'must be "local" or "ssh://user@host[:port]"' });
      return;
    }
    // The same parser as the ssh target's: what passes here is what the target is given.
    try {
      parseSshUrl(dataset.value);
    } catch (error) {
      addIssue({ message: (error as Error).message.replace(/^"[^"]*" is not/, "is not") });
    }
  }),
);

/**
 * How long a command may run: seconds, or a number with ms, s, m or h. At least a second (less
 * fails every command) and at most a day.
 */
const Duration = v.pipe(
  v.union([v.string(), v.number()], 'must be a duration such as "90s", "10m" or "2h"'),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const ms = parseDuration(dataset.value);
    if (ms === undefined) addIssue({ message: 'must be a duration such as "90s", "10m" or "2h"' });
    else if (ms < 1000) addIssue({ message: "must be at least 1s" });
    else if (ms > 24 * 3600_000) addIssue({ message: "must be at most 24h" });
  }),
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

/** Key types OpenSSH accepts in authorized_keys today (ssh-dss is gone since OpenSSH 9.8). */
const KEY_TYPES = [
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
];

/**
 * Why `line` is not one public key line, or undefined. The key travels into the nodes'
 * authorized_keys: a newline would add a line of the writer's choosing (options such as
 * `command=`), so the comment is printable text and the blob must decode to a key of the named
 * type (its first field is the type's name, RFC 4253 section 6.6), as ssh-keygen -l checks.
 */
export function publicKeyProblem(line: string): string | undefined {
  const shape = "must be one OpenSSH public key line (ssh-ed25519 AAAA… comment)";
  if (line.length > 16_384) return `${shape}; this one is ${line.length} characters long`;
  if (hasControlCharacter(line)) return `${shape}, without control characters or line breaks`;
  const first = line.split(" ", 1)[0]!;
  if (!KEY_TYPES.includes(first) && KEY_TYPES.some((t) => line.includes(` ${t} `)))
    return `${shape}, starting with the key type: options such as command="…" are not allowed`;
  const m = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: (.*))?$/.exec(line);
  if (!m) return shape;
  const [, type, blob] = m;
  if (!KEY_TYPES.includes(type!))
    return `${shape}; ${JSON.stringify(type!.slice(0, 40))} is not a key type (${KEY_TYPES.join(", ")})`;
  const bytes = blob!.length % 4 === 0 ? Buffer.from(blob!, "base64") : undefined;
  const length = bytes && bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
  if (
    !bytes ||
    length < 1 ||
    length + 4 > bytes.length ||
    bytes.subarray(4, 4 + length).toString("latin1") !== type
  )
    return `${shape}; its key data is not a ${type} key`;
  return undefined;
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

const SshPublicKey = v.pipe(
  v.string("must be an OpenSSH public key line (ssh-ed25519 AAAA… comment)"),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const problem = publicKeyProblem(dataset.value);
    if (problem) addIssue({ message: problem });
  }),
);

const DiskSize = SizeBetween(GiB, 64 * TiB);

const DataDisk = v.union(
  [DiskSize, v.strictObject({ name: v.optional(DnsLabel), size: DiskSize })],
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
  memory: v.optional(SizeBetween(256 * MiB, TiB), "4GiB"),
  disk: v.optional(DiskSize, "20GiB"),
  address: Ipv4,
  disks: v.optional(v.pipe(v.array(DataDisk), v.maxLength(16, "must list at most 16 data disks")), []),
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
    dns: v.optional(
      v.pipe(
        v.array(Ipv4),
        v.minLength(1, "must list at least one server (or leave it out: the gateway)"),
        v.maxLength(3, "must list at most 3 servers (resolv.conf uses no more)"),
      ),
    ),
    subnet: Cidr,
    dhcpRange: v.optional(DhcpRange),
    podCidr: v.optional(Cidr, "10.233.64.0/18"),
    serviceCidr: v.optional(Cidr, "10.233.0.0/18"),
  }),
  ssh: v.optional(
    v.strictObject({
      authorizedKeys: v.optional(
        v.pipe(v.array(SshPublicKey), v.maxLength(100, "must list at most 100 keys")),
        [],
      ),
    }),
    {},
  ),
  nodes: v.pipe(
    v.array(NodeSchema),
    v.minLength(1, "must list at least one node"),
    v.maxLength(64, "must list at most 64 nodes (one host runs them all)"),
  ),
  /** How long one command may take, per kind; see CommandTimeouts in model.ts. */
  timeouts: v.optional(
    v.strictObject({
      read: v.optional(Duration),
      change: v.optional(Duration),
      long: v.optional(Duration),
    }),
    {},
  ),
  stages: v.optional(v.record(DnsLabel, StageSchema), {}),
});

export type ClusterFile = v.InferOutput<typeof ClusterFileSchema>;
