/**
 * The plain-YAML reader against the yaml library: whatever it reads, it must read exactly as the
 * library does (value, types, key order), and the library must find nothing wrong with the text;
 * everything else it must leave to the library. Held to that on hand-picked cases, on random data
 * written out by the library in several styles, and on the mutated cluster files of the fuzz test.
 */
import { describe, expect, test } from "bun:test";
import { parseAllDocuments, stringify } from "yaml";
import { parseBoundedYaml } from "../../src/core/yaml-input.ts";
import { readPlainYaml } from "../../src/core/yaml-plain.ts";
import exampleText from "../../src/example/kubehyve.yaml" with { type: "text" };
import { fuzzCases, rng, SEEDS } from "../reliability/mutate.ts";

/** Equal as data: same types, Object.is for numbers (NaN, -0), same keys in the same order. */
function same(a: unknown, b: unknown): boolean {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return Object.is(a, b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false;
  return ka.every((k) => same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** What the library makes of `text` when it finds nothing wrong: its one document's value. */
function library(text: string): { ok: true; value: unknown } | { ok: false } {
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  if (!Array.isArray(docs) || docs.length !== 1) return { ok: false };
  const [doc] = docs;
  if (doc!.errors.length || doc!.warnings.length) return { ok: false };
  return { ok: true, value: doc!.toJS() };
}

/** Returns whether the reader took the text; fails the test if it read it otherwise than the library. */
function agrees(text: string): boolean {
  const plain = readPlainYaml(text);
  if (plain === undefined) return false;
  const lib = library(text);
  if (!lib.ok) throw new Error(`read text the library refuses:\n${text}`);
  if (!same(plain, lib.value))
    throw new Error(
      `read differently from the library:\n${text}\nplain:   ${JSON.stringify(plain)}\nlibrary: ${JSON.stringify(lib.value)}`,
    );
  return true;
}

const READ = [
  "a: 1",
  "a: b\nc: d\n",
  "# comment\na: b # trailing\n\n  # indented comment\nc: 'x # not a comment'\n",
  "a: ~\nb: null\nc: Null\nd: NULL\ne:\nf: nULL",
  "a: true\nb: True\nc: TRUE\nd: false\ne: False\nf: FALSE\ng: tRue\nh: yes\ni: no\nj: on",
  "a: 0o17\nb: 017\nc: 0x1F\nd: +12\ne: -0\nf: 007\ng: 9007199254740993\nh: 1_000",
  "a: 1.5\nb: .5\nc: 1.\nd: 1e3\ne: 1.5E-3\nf: .inf\ng: .Inf\nh: .INF\ni: .nan\nj: .NaN\nk: .NAN\nl: 2.50",
  "a: 2001-12-14\nb: 12:30\nc: 4GiB\nd: 192.168.1.0/24\ne: ssh://root@hv1:22\nf: a#b\ng: it's\nh: b,c",
  "a: \"double\"\nb: 'single'\nc: 'it''s'\nd: \"a: b # c\"\ne: ''\nf: \"\"",
  'a: [1, b, \'c\', "d"]\nb: []\nc: {}\nd: { x: 1, y: [a, b], z: "02:00" }\ne: [[1, 2], [3]]\nf: [ a ,b ]',
  "nodes:\n- name: a\n  role: x\n- name: b\nstages: 1",
  "nodes:\n  - name: a\n    disks: [50GiB]\n  -   name: b\n      cpus: 2\n  -\n  - plain\n",
  "a:\n  b:\n    c:\n      d: 1\n  e: 2\nf:\n",
  "list:\n  -\n    x: 1\n  - y\n",
  "k:\n- 1\n- 2\nj: 3",
  "a_b: 1\nc-d: 2\ne.f: 3\ng/h: 4\n_: 5\ny: 6\nn: 7\nyes: 8",
  "a: /var/db/kubehyve\nb: ~user\nc: +\nd: -1\ne: -1.5",
  "a: 1  \nb: 2 ",
  "a: { }\nb: [ ]",
  exampleText,
  ...SEEDS,
];

const LEFT = [
  "",
  "# only a comment\n",
  "- a\n- b",
  "scalar",
  "---\na: 1",
  "a: 1\n...\n",
  "%YAML 1.2\n---\na: 1",
  "a: 1\na: 2",
  "a: &x 1\nb: *x",
  "x: &a {k: 1}\n<<: *a",
  "a: !!str 1",
  "a: |\n  text\n",
  "a: >\n  text\n",
  'a: "esc\\n"',
  "a: b\n  c",
  "a:\n  b\n",
  "a: b: c",
  "a:b",
  "a : b",
  '"a": b',
  "null: a",
  "true: a",
  "__proto__: a",
  "a:\tb",
  "a: b\r\nc: d",
  "a: é",
  "a: [1, 2,]",
  "a: [1,, 2]",
  "a: {x: 1, x: 2}",
  "a: [a: b]",
  "a: {x}",
  "a: [1, 2",
  "a: 'open",
  "a: -x",
  "a: @x",
  "a: `x`",
  "a: ? x",
  "? a\n: b",
  " a: 1",
  "a: 1\n b: 2",
  "a:\n  - 1\n - 2",
  "a: x\n- y",
  "a: [b] c",
  'a: "b" c',
  "a: {b: [c: d]}",
  "- - 1",
  "a:\n  - - 1",
];

describe("the plain YAML reader", () => {
  test("reads the example lab and the fuzz test's seed files itself", () => {
    for (const text of [exampleText, ...SEEDS]) expect(agrees(text)).toBe(true);
    const parsed = parseBoundedYaml(exampleText);
    expect(parsed.top).toBe("mapping");
    // Positions, for messages, still come from the library.
    expect(parsed.located().doc.getIn(["nodes", 1, "memory"], true)).toBeDefined();
  });

  test("reads what it takes exactly as the yaml library does", () => {
    for (const text of READ) expect(agrees(text), text).toBe(true);
  });

  test("leaves to the library what it does not read for sure", () => {
    for (const text of LEFT) expect(readPlainYaml(text), JSON.stringify(text)).toBeUndefined();
  });

  test("agrees with the library on random data the library writes out in several styles", () => {
    const r = rng(7);
    const words = [
      "a",
      "b-c",
      "x_y",
      "lab",
      "true",
      "null",
      "~",
      "1",
      "-2",
      "0o7",
      "0x1f",
      "1.5",
      ".inf",
      "a b",
      "a: b",
      "#c",
      "it's",
      'q"',
      "",
      "é",
      "[x]",
      "- y",
      "yes",
    ];
    const scalar = (): unknown => {
      const n = r();
      if (n < 0.5) return words[Math.floor(r() * words.length)];
      if (n < 0.7) return Math.floor(r() * 2000) - 1000;
      if (n < 0.8) return r() * 100;
      if (n < 0.9) return r() < 0.5;
      return null;
    };
    const value = (depth: number): unknown => {
      const n = r();
      if (depth > 3 || n < 0.4) return scalar();
      if (n < 0.7) return Array.from({ length: Math.floor(r() * 4) }, () => value(depth + 1));
      const out: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 4); i > 0; i--)
        out[["name", "role", "disks", "x", "k8s", "a.b"][Math.floor(r() * 6)]!] = value(depth + 1);
      return out;
    };
    let read = 0;
    for (let i = 0; i < 1000; i++) {
      const data: Record<string, unknown> = { name: "lab" };
      for (let k = Math.floor(r() * 5); k > 0; k--) data[`k${k}`] = value(0);
      const styles = [
        {},
        { defaultStringType: "QUOTE_SINGLE" as const },
        { defaultStringType: "QUOTE_DOUBLE" as const },
        { collectionStyle: "flow" as const },
        { indentSeq: false },
        { indent: 4 },
      ];
      for (const style of styles) if (agrees(stringify(data, { ...style, lineWidth: 0 }))) read++;
    }
    // Most of these are plain YAML: the comparison above was not vacuous.
    expect(read).toBeGreaterThan(1500);
  }, 60_000);

  test("agrees with the library on the fuzz test's mutated cluster files", () => {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    let read = 0;
    for (const { bytes } of fuzzCases(20_250_501, 400)) {
      let text: string;
      try {
        text = decoder.decode(bytes);
      } catch {
        continue;
      }
      if (agrees(text)) read++;
    }
    expect(read).toBeGreaterThan(25);
  }, 60_000);
});
