/** The validated cluster, as every stage sees it. Sizes are bytes; names are DNS labels. */
export type NodeRole = "control-plane" | "worker";

export interface DataDisk {
  /** `data1`, `data2`, … unless named in the cluster file. */
  name: string;
  size: number;
}

export interface NodeSpec {
  name: string;
  role: NodeRole;
  cpus: number;
  memory: number;
  disk: number;
  address: string;
  disks: DataDisk[];
  /** The MAC of the node's NIC, derived from the cluster's and node's names (node-identity.ts). */
  mac: string;
  /** The VM's SMBIOS UUID, derived likewise. */
  uuid: string;
}

export type HostSpec = { kind: "local" } | { kind: "ssh"; user: string; hostname: string; port: number };

export interface NetworkSpec {
  domain: string;
  gateway: string;
  dns: string[];
  /** Node subnet in CIDR notation; every node address lies inside it. */
  subnet: string;
  /** Addresses the router's DHCP server hands out: node addresses must stay clear of it. */
  dhcpRange?: { start: string; end: string };
  podCidr: string;
  serviceCidr: string;
}

export interface StageSpec {
  /** Plugin id `slot/name`, resolved from the short form `name` the file may use. */
  plugin: string;
  options: Record<string, unknown>;
}

/**
 * How long one command on the host, a node or this machine may run before its phase fails, in
 * milliseconds, per kind: a query, a change (inside ctx.wet), or a step its caller knows is long
 * (an image copy, a playbook run). A caller may also pass its own limit.
 */
export interface CommandTimeouts {
  read: number;
  change: number;
  long: number;
}

export const DEFAULT_TIMEOUTS: CommandTimeouts = {
  read: 60_000,
  change: 10 * 60_000,
  long: 3 * 3600_000,
};

export interface Cluster {
  name: string;
  host: HostSpec;
  network: NetworkSpec;
  nodes: NodeSpec[];
  ssh: { authorizedKeys: string[] };
  /** Keyed by slot, in the order the file lists them. */
  stages: Record<string, StageSpec>;
  /** The cluster file's `timeouts`, defaults filled in; DEFAULT_TIMEOUTS when absent. */
  timeouts?: CommandTimeouts;
}
