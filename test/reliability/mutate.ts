/**
 * A seeded generator of hostile cluster files: valid labs mutated the ways a careless editor, a
 * broken tool or an attacker would (wrong types, removed fields, huge and empty values, unicode,
 * YAML aliases and merge keys, tags, deep nesting, duplicate keys, BOMs, invalid UTF-8, truncation,
 * bytes flipped). The same seed gives the same files, so a failure is replayed with
 * KUBEHYVE_FUZZ_SEED=<seed>.
 */
import { parse, stringify } from "yaml";
import exampleText from "../../src/example/kubehyve.yaml" with { type: "text" };

/** mulberry32: small, fast, and the same on every machine. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MINIMAL = `name: lab
network:
  gateway: 192.168.1.1
  subnet: 192.168.1.0/24
nodes:
  - name: cp1
    role: control-plane
    address: 192.168.1.21
`;

const REMOTE = `${MINIMAL.replace("name: lab\n", "name: lab\nhost: ssh://root@hv1.lab.home.arpa:22\n")}ssh:
  authorizedKeys:
    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop
timeouts: { read: 30s, change: 10m, long: 2h }
stages:
  hypervisor: { plugin: bhyve, nic: em0 }
`;

export const SEEDS: readonly string[] = [exampleText, MINIMAL, REMOTE];

/**
 * A valid lab whose nodes take every size from one anchor, with `refs` references to it (each
 * node has a disk and up to 15 data disks; as many nodes as that takes, at most 64).
 */
export function ordinaryAliases(refs: number): string {
  const lines = ["name: lab", "network: { gateway: 192.168.1.1, subnet: 192.168.1.0/24 }", "nodes:"];
  let left = refs;
  for (let i = 0; left > 0 || i === 0; i++) {
    const disks = Math.min(15, Math.max(0, left - 1));
    lines.push(
      `  - name: n${i + 1}`,
      `    role: ${i === 0 ? "control-plane" : "worker"}`,
      `    address: 192.168.1.${i + 11}`,
      i === 0 ? "    disk: &size 20GiB" : "    disk: *size",
      `    disks: [${Array(i === 0 ? disks + 1 : disks)
        .fill("*size")
        .join(", ")}]`,
    );
    left -= i === 0 ? disks + 1 : disks + 1;
  }
  return `${lines.join("\n")}\n`;
}

const UNICODE = [
  "ñødé",
  "名前",
  "😀",
  "\u202eevil",
  "a\u0300\u0301\u0302",
  "\u200b",
  "\ufeff",
  "\u0000",
  "\u2028",
  "İ",
  "ǅ",
  "\ud83d",
  "ｆｕｌｌ",
];
const SCALARS: unknown[] = [
  "",
  " ",
  0,
  -1,
  1.5,
  2 ** 53 + 1,
  1e308,
  "1e400",
  true,
  false,
  null,
  "null",
  "~",
  "NaN",
  ".inf",
  "0x10",
  "010",
  "-",
  "--",
  "$(reboot)",
  "`id`",
  "a;b",
  "a\nb",
  "../../etc/passwd",
  "/",
  "//",
  "ssh://",
  "ssh://root@",
  "ssh://root@host:0",
  "ssh://root@host:99999",
  "ssh://-oProxyCommand=x@host",
  "ssh://%zz@host",
  "ssh://[::1]:22",
  "256.256.256.256",
  "192.168.1.0/33",
  "4GiB",
  "0GiB",
  "99999999TiB",
  "-4GiB",
  "4 GiB",
];

type Json = unknown;

function pick<T>(r: () => number, list: readonly T[]): T {
  return list[Math.floor(r() * list.length)]!;
}

function int(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** Every path to a value in `value`, as key lists. */
function paths(value: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []) {
  out.push(prefix);
  if (Array.isArray(value))
    value.forEach((v, i) => {
      paths(v, [...prefix, i], out);
    });
  else if (value && typeof value === "object")
    for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  return out;
}

function setAt(root: Json, path: (string | number)[], value: Json | typeof REMOVE): Json {
  if (path.length === 0) return value === REMOVE ? {} : value;
  let node = root as Record<string | number, Json>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, Json>;
  // A key below a scalar: nothing to change there.
  if (!node || typeof node !== "object") return root;
  const last = path.at(-1)!;
  if (value === REMOVE) {
    if (Array.isArray(node)) node.splice(last as number, 1);
    else delete node[last];
  } else node[last] = value;
  return root;
}

const REMOVE = Symbol("remove");

function randomValue(r: () => number, depth = 0): Json {
  const roll = r();
  if (roll < 0.45 || depth > 3) return pick(r, SCALARS);
  if (roll < 0.55) return pick(r, UNICODE).repeat(int(r, 1, 5));
  if (roll < 0.62) return "x".repeat(int(r, 1000, 200_000));
  if (roll < 0.75) return Array.from({ length: int(r, 0, 5) }, () => randomValue(r, depth + 1));
  if (roll < 0.85) return {};
  return Object.fromEntries(
    Array.from({ length: int(r, 1, 4) }, (_, i) => [
      `${pick(r, ["k", "name", "plugin", "<<"])}${i}`,
      randomValue(r, depth + 1),
    ]),
  );
}

function deep(r: () => number, depth: number): Json {
  let v: Json = "leaf";
  for (let i = 0; i < depth; i++) v = r() < 0.5 ? [v] : { k: v };
  return v;
}

/** Mutations of the data, written back as YAML. */
const structural: ((r: () => number, data: Json) => Json)[] = [
  (r, d) => setAt(d, pick(r, paths(d)), randomValue(r)),
  (r, d) =>
    setAt(
      d,
      pick(
        r,
        paths(d).filter((p) => p.length),
      ),
      REMOVE,
    ),
  (r, d) =>
    setAt(
      d,
      [
        ...pick(
          r,
          paths(d).filter((p) => p.length < 3),
        ),
        `extra${int(r, 0, 9)}`,
      ],
      randomValue(r),
    ),
  (r, d) => setAt(d, pick(r, paths(d)), deep(r, int(r, 10, 300))),
  (r, d) =>
    setAt(
      d,
      pick(r, paths(d)),
      Array.from({ length: int(r, 100, 30_000) }, (_, i) => i),
    ),
  (r, d) =>
    setAt(
      d,
      pick(r, paths(d)),
      Object.fromEntries(Array.from({ length: int(r, 100, 15_000) }, (_, i) => [`k${i}`, i])),
    ),
  (r, d) => {
    const nodes = (d as { nodes?: Json[] }).nodes;
    if (Array.isArray(nodes) && nodes.length) {
      const n = int(r, 2, 200);
      for (let i = 0; i < n; i++) nodes.push(structuredClone(nodes[0]));
    }
    return d;
  },
];

/** Mutations of the text itself. */
const textual: ((r: () => number, text: string) => string | Uint8Array)[] = [
  // YAML aliases: to nothing, to themselves, many references, and aliases of aliases.
  (r, t) => t.replace(/^(\s*\w+:) (\S.*)$/m, `$1 *${pick(r, ["x", "nope", "a"])}`),
  (r, t) =>
    `anchor: &a ${pick(r, ["[1, 2]", "{k: v}", "x"])}\n${t}${Array.from({ length: int(r, 1, 1200) }, (_, i) => `ref${i}: *a`).join("\n")}\n`,
  (r, t) =>
    `${Array.from({ length: int(r, 2, 14) }, (_, i) =>
      i === 0
        ? "l0: &l0 [a, a, a, a, a, a, a, a, a, a]"
        : `l${i}: &l${i} [${Array(10)
            .fill(`*l${i - 1}`)
            .join(", ")}]`,
    ).join("\n")}\n${t}`,
  (_r, t) =>
    t.replace(/^nodes:\n/m, "nodes:\n  - &n { name: cpx, role: worker, address: 192.168.1.99, x: [*n] }\n"),
  (r) => ordinaryAliases(int(r, 90, 400)),
  // Merge keys.
  (_r, t) =>
    t
      .replace(/^(\s+)- name: (\w+)/m, "$1- &base\n$1  name: $2")
      .replace(/^(\s+)- name: w1/m, "$1- <<: *base\n$1  name: w1"),
  (_r, t) => `base: &b { cpus: 2 }\n${t.replace(/role: worker/, "role: worker\n    <<: *b")}`,
  // Tags.
  (r, t) =>
    t.replace(
      /: (\S)/,
      `: ${pick(r, ["!!str ", "!!int ", "!!float ", "!!binary ", "!!map ", "!!seq ", "!foo ", "!<tag:x> ", "!!timestamp ", "!!set "])}$1`,
    ),
  // Duplicate keys.
  (r, t) => {
    const lines = t.split("\n");
    const i = int(r, 0, lines.length - 1);
    lines.splice(i, 0, lines[i]!);
    return lines.join("\n");
  },
  (_r, t) => `${t}name: again\n`,
  // BOMs and encodings.
  (_r, t) => `\ufeff${t}`,
  (r, t) => {
    const i = int(r, 0, t.length);
    return `${t.slice(0, i)}\ufeff${t.slice(i)}`;
  },
  (_r, t) => new Uint8Array([0xff, 0xfe, ...Buffer.from(t, "utf16le")]),
  (_r, t) => new Uint8Array([0xfe, 0xff, ...Buffer.from(t, "utf16le").swap16()]),
  (r, t) => {
    const bytes = Buffer.from(t);
    const bad = pick(r, [
      [0xff],
      [0xc0, 0x80],
      [0xed, 0xa0, 0x80],
      [0xe2, 0x82],
      [0xf5, 0x80, 0x80, 0x80],
      [0x80],
    ]);
    const i = int(r, 0, bytes.length);
    return new Uint8Array([...bytes.subarray(0, i), ...bad, ...bytes.subarray(i)]);
  },
  // Truncation, flipped bytes, control characters, CRLF, tabs.
  (r, t) => t.slice(0, int(r, 0, t.length)),
  (r, t) => {
    const bytes = Buffer.from(t);
    for (let n = int(r, 1, 8); n > 0; n--) bytes[int(r, 0, bytes.length - 1)] = int(r, 0, 255);
    return new Uint8Array(bytes);
  },
  (r, t) => {
    const i = int(r, 0, t.length);
    return t.slice(0, i) + pick(r, ["\0", "\x07", "\x1b[31m", "\r", "\t", "\x7f", "\u0085"]) + t.slice(i);
  },
  (_r, t) => t.replaceAll("\n", "\r\n"),
  (_r, t) => t.replace(/^ {2}/gm, "\t"),
  (r, t) => {
    const lines = t.split("\n");
    for (let n = int(r, 1, 4); n > 0; n--) {
      const a = int(r, 0, lines.length - 1);
      const b = int(r, 0, lines.length - 1);
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
    }
    return lines.join("\n");
  },
  (r, t) => t.replace(/^( *)/gm, (m) => (r() < 0.2 ? `${m} ` : m)),
  // Deep and long.
  (r, t) => `${t}deep: ${"[".repeat(int(r, 50, 5000))}\n`,
  (r, t) => `${t}deep: ${"{a: ".repeat(int(r, 50, 3000))}\n`,
  (r, t) => `${t}${"- ".repeat(int(r, 50, 3000))}x\n`,
  (r, t) => `${t}${Array.from({ length: int(r, 70, 400) }, (_, i) => `${" ".repeat(i)}k:`).join("\n")}\n`,
  (r, t) => `${t}long: ${"y".repeat(int(r, 100_000, 1_100_000))}\n`,
  (r, t) => `${t}${"#".repeat(int(r, 1, 5))} ${"z".repeat(int(r, 1000, 500_000))}\n`,
  (r, t) => t + Array.from({ length: int(r, 5000, 12_000) }, (_, i) => `k${i}: ${i}`).join("\n"),
  (r, t) => `${t}m: {${Array.from({ length: int(r, 1000, 15_000) }, (_, i) => `k${i}: ${i}`).join(", ")}}\n`,
  (r, t) => `${t}many: [${Array.from({ length: int(r, 1000, 40_000) }, () => "1").join(",")}]\n`,
  (r, t) => `${t}${"---\n".repeat(int(r, 1, 3))}${t}`,
  (r, t) => `${"%YAML 1.1\n".repeat(int(r, 1, 2))}---\n${t}`,
  (r, t) =>
    t.replace(
      /\n/,
      `\n${pick(r, ["? [a, b]\n: 1\n", "? {a: 1}\n: 2\n", "*x : 1\n", "&a a: 1\n", "!!null : 1\n"])}`,
    ),
  (r, t) => t.replace(/: (\S+)$/m, `: "${pick(r, UNICODE).repeat(int(r, 1, 3000))}"`),
  (r, t) => t.replace(/: (\S+)$/m, `: '${"'".repeat(int(r, 1, 50))}`),
  (r, t) => t.replace(/: (\S+)$/m, `: |\n${"  line\n".repeat(int(r, 1, 3000))}`),
];

export interface FuzzCase {
  index: number;
  /** Which mutations made it, for the failure message. */
  how: string;
  bytes: Uint8Array;
}

/**
 * `count` mutated files from `seed`: at most one structural mutation (of the small seed file: the
 * data is parsed and written back once), then one to three textual ones.
 */
export function* fuzzCases(seed: number, count: number): Generator<FuzzCase> {
  const r = rng(seed);
  for (let index = 0; index < count; index++) {
    const steps: string[] = [];
    let text = pick(r, SEEDS);
    let bytes: Uint8Array | undefined;
    if (r() < 0.4) {
      const i = int(r, 0, structural.length - 1);
      steps.push(`structural#${i}`);
      text = stringify(structural[i]!(r, parse(text) ?? {}), { aliasDuplicateObjects: false, lineWidth: 0 });
    }
    for (let n = steps.length ? int(r, 0, 2) : int(r, 1, 3); n > 0 && bytes === undefined; n--) {
      const i = int(r, 0, textual.length - 1);
      steps.push(`textual#${i}`);
      const out = textual[i]!(r, text);
      if (typeof out === "string") text = out;
      else bytes = out;
    }
    yield { index, how: steps.join(" + "), bytes: bytes ?? new TextEncoder().encode(text) };
  }
}
