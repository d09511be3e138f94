/**
 * Whether a known_hosts file already pins a key for a machine, read as OpenSSH reads it
 * (hostfile.c hostkeys_foreach_file and check_markers, match.c match_hostname), so that the ssh
 * target can tell a first contact (StrictHostKeyChecking=accept-new pins the key) from every later
 * one (StrictHostKeyChecking=yes: the pinned key or nothing).
 *
 * accept-new alone is not enough: it takes any key for a name whose every entry is unusable, so a
 * line cut short (a disk that filled up as it was written) would let the next key in, whoever's.
 * Here a line counts as soon as its names match, whatever follows them.
 */

/** The name ssh looks a machine up by: the host, or `[host]:port` off port 22 (hostfile.c put_host_port). */
export function knownHostsName(host: string, port: number): string {
  // ssh lowercases the name it looks up (ssh.c, "force lowercase for hostkey matching").
  const name = host.toLowerCase();
  return port === 22 ? name : `[${name}]:${port}`;
}

/** Whether any entry of `text` (a known_hosts file) is for `name` (see knownHostsName). */
export function pinsName(text: string, name: string): boolean {
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/[ \t]+/);
    // @cert-authority and @revoked lines name hosts too: either is a decision about this machine
    // that a newly offered plain key must not get around.
    const hosts = fields[0]?.startsWith("@") ? fields[1] : fields[0];
    if (hosts !== undefined && hostsMatch(hosts, name)) return true;
  }
  return false;
}

/** HASH_MAGIC "|1|": base64 salt, `|`, base64 HMAC-SHA1 of the name keyed with the salt (hostfile.c). */
function hashedMatch(field: string, name: string): boolean {
  const [salt, hash] = field.slice(3).split("|");
  if (!salt || !hash) return false;
  // Bun's hasher takes an HMAC key: node:crypto alone costs a cold start milliseconds and megabytes.
  const mac = new Bun.CryptoHasher("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
  return mac === hash;
}

/**
 * match_hostname: a comma-separated list of patterns (`*`, `?`), matched without regard to case;
 * a matching `!pattern` rules the line out whatever else matches.
 */
function hostsMatch(hosts: string, name: string): boolean {
  if (hosts.startsWith("|1|")) return hashedMatch(hosts, name);
  let matched = false;
  for (const pattern of hosts.split(",")) {
    const negated = pattern.startsWith("!");
    if (!globMatch(negated ? pattern.slice(1) : pattern, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

function globMatch(pattern: string, name: string): boolean {
  const source = [...pattern]
    .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
    .join("");
  return new RegExp(`^${source}$`, "i").test(name);
}

/**
 * `text` without the entries ssh wrote for the machine at `host`, on any port: a line whose hosts
 * are `host` or `[host]:PORT` alone, plain, or hashed for one of `ports`. A machine made anew has
 * new keys whatever port it is reached on (Ansible may use another than the ssh target). Lines an
 * operator wrote with patterns, several names or a marker (@cert-authority, @revoked) stay: they
 * are decisions about more than this one machine.
 */
export function withoutPins(text: string, host: string, ports: readonly number[]): string {
  const name = host.toLowerCase();
  const hashedNames = ports.map((p) => knownHostsName(host, p));
  const onAnyPort = (hosts: string) =>
    hosts === name || (hosts.startsWith(`[${name}]:`) && /^\d{1,5}$/.test(hosts.slice(name.length + 3)));
  const lines = text.split("\n").filter((raw) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith("@")) return true;
    const hosts = line.split(/[ \t]+/)[0]!;
    const own = hosts.startsWith("|1|")
      ? hashedNames.some((n) => hashedMatch(hosts, n))
      : onAnyPort(hosts.toLowerCase());
    return !own;
  });
  return lines.join("\n");
}
