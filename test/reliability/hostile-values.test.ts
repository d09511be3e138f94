/**
 * Hostile values for every option of the core schema: each is refused by `config validate` (exit
 * 2, with the option's path), before anything touches a host, and the good neighbours of each are
 * accepted. A value that passes here reaches ssh's command line, a node's authorized_keys, a path
 * or a VM's size: it must not fail there for the first time.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { type PluginLookup, parseClusterText } from "../../src/core/config.ts";
import { InputError } from "../../src/lib/errors.ts";
import { have } from "../lab/prereq.ts";

const plugins: PluginLookup = { find: () => undefined, searchPath: [] };

const BASE = {
  name: "lab",
  network: { gateway: "192.168.1.1", subnet: "192.168.1.0/24" },
  nodes: [{ name: "cp1", role: "control-plane", address: "192.168.1.21" }],
};

const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop";

type Path = (string | number)[];

function withValue(path: Path, value: unknown): string {
  const data = structuredClone(BASE) as Record<string, unknown>;
  let node = data as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) {
    node[key] ??= typeof path[path.indexOf(key) + 1] === "number" ? [{}] : {};
    node = node[key] as Record<string | number, unknown>;
  }
  node[path.at(-1)!] = value;
  return stringify(data);
}

function problemsOf(text: string): { path: string; message: string }[] {
  try {
    parseClusterText(text, "kubehyve.yaml", plugins);
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).exitCode).toBe(2);
    return [...(error as InputError).problems];
  }
}

const formatted = (path: Path) =>
  path.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? k : `.${k}`)).join("");

/** [option, value, what the message says, where if not at the option itself]. */
const HOSTILE: [Path, unknown, RegExp, string?][] = [
  [["host"], "ssh://root@hv1:0", /port "0" is not a number between 1 and 65535/],
  [["host"], "ssh://root@hv1:99999", /port "99999" is not a number between 1 and 65535/],
  [["host"], "ssh://root@hv1:65536", /between 1 and 65535/],
  [["host"], "ssh://root@hv1:22x", /between 1 and 65535/],
  [["host"], "ssh://ro;ot@hv1", /"ro;ot" is not a user name/],
  [["host"], "ssh://-oProxyCommand=sh@hv1", /is not a user name/],
  [["host"], "ssh://root@-oProxyCommand=sh", /is not a host name or IP address/],
  [["host"], "ssh://root@hv1;reboot", /is not a host name or IP address/],
  [["host"], "ssh://root@999.1.1.1", /"999.1.1.1" is not a host name or IP address/],
  [["host"], "ssh://root@a..b", /is not a host name/],
  [["host"], `ssh://root@${"a".repeat(64)}.lab`, /is not a host name/],
  [["host"], `ssh://${"u".repeat(33)}@hv1`, /is not a user name/],
  [["host"], "ssh://%zz@hv1", /is not a user name/],
  [["host"], "ssh://root:secret@hv1", /password does not belong/],
  [["host"], "ssh://root@hv1/srv", /only a user, a host and a port/],
  [["host"], "ssh://root@hv1\nProxyCommand sh", /not a host name|only a user/],
  [["host"], "ssh://[::1;x]:22", /is not a host name or IP address/],
  [["host"], "http://hv1", /must be "local" or "ssh:\/\/user@host\[:port\]"/],
  [["host"], 22, /must be "local"/],
  [["name"], "", /DNS label/],
  [["name"], "a".repeat(64), /DNS label/],
  [["name"], "lab;reboot", /DNS label/],
  [["name"], "-lab", /DNS label/],
  [["name"], "lab\n", /DNS label/],
  [["name"], "läb", /DNS label/],
  [["network", "domain"], "", /DNS name/],
  [["network", "domain"], "lab.", /DNS name/],
  [["network", "domain"], "la$b.arpa", /DNS name/],
  [["network", "domain"], `${"a".repeat(64)}.arpa`, /DNS name/],
  [["network", "domain"], `${"abc.".repeat(63)}arpa`, /at most 253/],
  [["network", "domain"], "lab\n.arpa", /DNS name/],
  [["network", "gateway"], "192.168.1.1\n", /IPv4 address/],
  [["network", "gateway"], "192.168.01.1", /IPv4 address/],
  [["network", "dns"], [], /at least one server/],
  [["network", "dns"], ["1.1.1.1", "8.8.8.8", "9.9.9.9", "1.0.0.1"], /at most 3 servers/],
  [["network", "dns", 0], "1.1.1.1; rm", /IPv4 address/],
  [["network", "subnet"], "192.168.1.0/33", /CIDR block/],
  [["network", "dhcpRange"], "192.168.1.100-", /first-last/],
  [["nodes", 0, "name"], "", /DNS label/],
  [["nodes", 0, "name"], "a".repeat(64), /DNS label/],
  [["nodes", 0, "name"], "cp1$(reboot)", /DNS label/],
  [["nodes", 0, "name"], "CP1", /DNS label/],
  [["nodes", 0, "cpus"], 0, /at least 1/],
  [["nodes", 0, "cpus"], 65, /at most 64/],
  [["nodes", 0, "cpus"], 1.5, /whole number/],
  [["nodes", 0, "cpus"], "2", /whole number/],
  [["nodes", 0, "memory"], 0, /at least 256 MiB/],
  [["nodes", 0, "memory"], "1", /at least 256 MiB/],
  [["nodes", 0, "memory"], "128MiB", /at least 256 MiB/],
  [["nodes", 0, "memory"], "2TiB", /at most 1 TiB/],
  [["nodes", 0, "memory"], "99999999999999999999", /at most 1 TiB/],
  [["nodes", 0, "memory"], "-4GiB", /must be a size/],
  [["nodes", 0, "memory"], "4GiB; reboot", /must be a size/],
  [["nodes", 0, "disk"], "512MiB", /at least 1 GiB/],
  [["nodes", 0, "disk"], "65TiB", /at most 64 TiB/],
  [["nodes", 0, "disks"], Array(17).fill("10GiB"), /at most 16 data disks/],
  [["nodes", 0, "disks"], [{ name: "d;1", size: "10GiB" }], /DNS label/, "nodes[0].disks[0].name"],
  [["nodes", 0, "disks", 0], "0", /at least 1 GiB/],
  [
    ["nodes"],
    Array.from({ length: 65 }, (_, i) => ({ name: `n${i}`, role: "worker", address: `192.168.1.${i + 30}` })),
    /at most 64 nodes/,
  ],
  [
    ["ssh", "authorizedKeys", 0],
    `${ED25519}\ncommand="reboot" ${ED25519}`,
    /without control characters or line breaks/,
  ],
  [["ssh", "authorizedKeys", 0], `${ED25519}\0x`, /without control characters/],
  [
    ["ssh", "authorizedKeys", 0],
    `command="reboot" ${ED25519}`,
    /options such as command="…" are not allowed/,
  ],
  [["ssh", "authorizedKeys", 0], "ssh-dss AAAAB3NzaC1kc3MAAACBAP me", /"ssh-dss" is not a key type/],
  [["ssh", "authorizedKeys", 0], "ssh-ed25519 AAAA me", /key data is not a ssh-ed25519 key/],
  [["ssh", "authorizedKeys", 0], ED25519.replace("ssh-ed25519", "ssh-rsa"), /key data is not a ssh-rsa key/],
  [["ssh", "authorizedKeys", 0], "-----BEGIN OPENSSH PRIVATE KEY-----", /public key line/],
  [["ssh", "authorizedKeys", 0], `ssh-ed25519 ${"A".repeat(20_000)}`, /20012 characters long/],
  [["ssh", "authorizedKeys"], Array(101).fill(ED25519), /at most 100 keys/],
  [["timeouts", "read"], 0, /at least 1s/],
  [["timeouts", "read"], "500ms", /at least 1s/],
  [["timeouts", "change"], "25h", /at most 24h/],
  [["timeouts", "long"], "forever", /duration such as/],
  [["timeouts", "long"], -5, /duration such as/],
  [["timeouts", "slow"], "1m", /unknown field/],
  [["stages", "Bad_Slot"], { plugin: "x" }, /DNS label/],
];

describe("every core option refuses hostile values in config validate", () => {
  test.each(
    HOSTILE.map(
      ([path, value, message, at]) =>
        [at ?? formatted(path), JSON.stringify(value).slice(0, 60), path, value, message] as const,
    ),
  )("%s = %s", (shown, _value, path, value, message) => {
    const problems = problemsOf(withValue(path as Path, value));
    const match = problems.find((p) => p.path === shown);
    expect(match, `problems were: ${JSON.stringify(problems).slice(0, 500)}`).toBeDefined();
    expect(match!.message).toMatch(message as RegExp);
  });
});

describe("their good neighbours are accepted", () => {
  test.each([
    [["host"], "ssh://admin@hv1.lab.home.arpa:2222"],
    [["host"], "ssh://192.168.1.10"],
    [["host"], "ssh://root@[fe80::1]:22"],
    [["host"], "ssh://root@hv1:65535"],
    [["host"], "ssh://u.ser-1_x@hv1:1"],
    [["network", "domain"], "lab"],
    [
      ["network", "dns"],
      ["1.1.1.1", "8.8.8.8", "9.9.9.9"],
    ],
    [["nodes", 0, "memory"], "256MiB"],
    [["nodes", 0, "memory"], "1TiB"],
    [["nodes", 0, "disk"], "64TiB"],
    [["nodes", 0, "cpus"], 64],
    [
      ["ssh", "authorizedKeys"],
      [ED25519, ED25519.replace(" me@laptop", "")],
    ],
    [["timeouts"], { read: 1, change: "90s", long: "24h" }],
  ] as [Path, unknown][])("%p = %p", (path, value) => {
    expect(problemsOf(withValue(path, value))).toEqual([]);
  });

  test("timeouts are kept in milliseconds, with defaults for the ones not given", () => {
    const { cluster } = parseClusterText(withValue(["timeouts"], { read: "30s", long: 7200 }), "f", plugins);
    expect(cluster.timeouts).toEqual({ read: 30_000, change: 600_000, long: 7_200_000 });
  });
});

describe.if(have("ssh-keygen", "openssh-client"))("public keys ssh-keygen makes", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "kubehyve-keys-"));
  });

  test.each([["ed25519"], ["rsa"], ["ecdsa"]])("of type %s are accepted", (type) => {
    const file = join(dir, type);
    const made = Bun.spawnSync(["ssh-keygen", "-q", "-t", type, "-N", "", "-C", `me@${type}`, "-f", file]);
    expect(made.exitCode).toBe(0);
    const key = readFileSync(`${file}.pub`, "utf8").trim();
    expect(problemsOf(withValue(["ssh", "authorizedKeys"], [key]))).toEqual([]);
    const { cluster } = parseClusterText(withValue(["ssh", "authorizedKeys"], [key]), "f", plugins);
    expect(cluster.ssh.authorizedKeys).toEqual([key]);
    // The round trip through YAML leaves the line as it was.
    expect(parse(withValue(["ssh", "authorizedKeys"], [key])).ssh.authorizedKeys).toEqual([key]);
  });
});
