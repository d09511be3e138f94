/**
 * A reader for the plain YAML that cluster files are written in: block mappings and sequences,
 * one-line scalars (plain, or quoted without escapes), one-line flow collections, comments. It
 * exists for start-up time: the yaml library needs some 30 ms to read the example lab in a fresh
 * process (its lexer and parser are generators, slow until the JIT has seen them), this reader well
 * under one.
 *
 * It never decides anything on its own: for any text it returns either exactly the value that the
 * yaml library's `parseDocument(text).toJS()` gives (YAML 1.2, core schema), or undefined, and then
 * the library reads the text and reports what is wrong with it. Anything it is not sure of (tabs,
 * anchors, tags, block scalars, escapes, multi-line scalars, duplicate keys, keys that are not
 * plain names, characters outside printable ASCII, deep nesting) gives undefined. A differential
 * test holds it to the library on mutated cluster files.
 */

type Value = null | boolean | number | string | Value[] | { [key: string]: Value };

interface Line {
  indent: number;
  /** The line after its indentation, trailing blanks and comment removed; never empty. */
  text: string;
}

/** Deepest nesting and most values taken here; more goes to the library, which has the limits. */
const MAX_DEPTH = 32;
const MAX_VALUES = 10_000;

class NotPlain extends Error {}
const notPlain = new NotPlain();

function fail(): never {
  throw notPlain;
}

// YAML 1.2 core schema, in the yaml library's order (yaml/dist/schema/core/*.js, common/null.js).
const NULL = /^(?:~|[Nn]ull|NULL)?$/;
const BOOL = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const INT_OCT = /^0o[0-7]+$/;
const INT = /^[-+]?[0-9]+$/;
const INT_HEX = /^0x[0-9a-fA-F]+$/;
const FLOAT_NAN = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT_EXP = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;

/** A plain scalar's value, resolved as the yaml library's core schema resolves it. */
function resolvePlain(s: string): Value {
  if (NULL.test(s)) return null;
  if (BOOL.test(s)) return s[0] === "t" || s[0] === "T";
  if (INT_OCT.test(s)) return parseInt(s.substring(2), 8);
  if (INT.test(s)) return parseInt(s, 10);
  if (INT_HEX.test(s)) return parseInt(s.substring(2), 16);
  if (FLOAT_NAN.test(s))
    return s.slice(-3).toLowerCase() === "nan"
      ? Number.NaN
      : s[0] === "-"
        ? Number.NEGATIVE_INFINITY
        : Number.POSITIVE_INFINITY;
  if (FLOAT_EXP.test(s) || FLOAT.test(s)) return parseFloat(s);
  return s;
}

/**
 * Keys: a name (letters, digits, `_.-/`, starting with a letter or `_`) that the core schema reads
 * as that same string. `__proto__` is left to the library, which makes it a plain key.
 */
const KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
function plainKey(s: string): string {
  // YAML 1.2 (7.4.2): an implicit key is at most 1024 characters long.
  if (s.length > 1000 || !KEY.test(s) || s === "__proto__" || typeof resolvePlain(s) !== "string") fail();
  return s;
}

/**
 * Characters that may start a plain scalar here: not an indicator (`-?:,[]{}#&*!|>'"%@` and the
 * backquote), except `-` or `.` before a digit (`-1`, `.5`). Anything else goes to the library.
 */
function plainStart(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  if (
    (c >= 48 && c <= 57) ||
    (c >= 65 && c <= 90) ||
    (c >= 97 && c <= 122) ||
    c === 95 ||
    c === 47 ||
    c === 126 ||
    c === 43
  )
    return true;
  if (c === 45 || c === 46) {
    const d = s.charCodeAt(i + 1);
    return (d >= 48 && d <= 57) || (c === 46 && (d === 105 || d === 73 || d === 110 || d === 78)); // .inf, .nan
  }
  return false;
}

/** Drops a comment (` #…`, outside quotes) and trailing blanks; `undefined` if quotes do not close. */
function stripComment(s: string): string {
  let quote = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) {
        // '' inside single quotes is an escaped quote, not the end.
        if (quote === "'" && s[i + 1] === "'") i++;
        else quote = "";
      }
    } else if (c === "#" && (i === 0 || s[i - 1] === " ")) {
      return s.slice(0, i).trimEnd();
    } else if ((c === '"' || c === "'") && (i === 0 || " [{,:".includes(s[i - 1]!))) {
      quote = c;
    }
  }
  if (quote) fail();
  return s.trimEnd();
}

function splitLines(text: string): Line[] {
  const lines: Line[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // Printable ASCII and line feeds only: no tabs, carriage returns or other line breaks.
    if (c !== 10 && (c < 32 || c > 126)) {
      if (c < 0xa0 || c === 0x2028 || c === 0x2029 || c === 0xfeff) return fail();
      // Other characters only inside comments (checked below).
    }
  }
  for (const raw of text.split("\n")) {
    let indent = 0;
    while (raw[indent] === " ") indent++;
    const rest = raw.slice(indent);
    if (rest === "" || rest[0] === "#") continue;
    const body = stripComment(rest);
    if (/[^\x20-\x7e]/.test(body)) fail();
    lines.push({ indent, text: body });
  }
  return lines;
}

/** A one-line quoted scalar starting at s[i]; returns the value and the index after it. */
function quoted(s: string, i: number): [string, number] {
  const q = s[i]!;
  let out = "";
  for (let j = i + 1; j < s.length; j++) {
    const c = s[j]!;
    if (q === '"' && c === "\\") fail(); // escapes: the library's to decode
    if (c === q) {
      if (q === "'" && s[j + 1] === "'") {
        out += "'";
        j++;
        continue;
      }
      return [out, j + 1];
    }
    out += c;
  }
  return fail();
}

class Reader {
  private pos = 0;
  private values = 0;

  constructor(private readonly lines: Line[]) {}

  read(): Value {
    const first = this.lines[0];
    if (first?.indent !== 0 || isDash(first.text)) fail();
    if (first.text === "---" || first.text.startsWith("--- ") || first.text.startsWith("%")) fail();
    const value = this.mapping(0, 1);
    if (this.pos < this.lines.length) fail();
    return value;
  }

  private count(depth: number): void {
    if (++this.values > MAX_VALUES || depth > MAX_DEPTH) fail();
  }

  private peek(): Line | undefined {
    return this.lines[this.pos];
  }

  /** A block mapping whose keys stand at column `indent`. */
  private mapping(indent: number, depth: number): { [key: string]: Value } {
    this.count(depth);
    const out: { [key: string]: Value } = {};
    for (let line = this.peek(); line && line.indent === indent; line = this.peek()) {
      const colon = line.text.indexOf(":");
      if (colon <= 0 || (colon + 1 < line.text.length && line.text[colon + 1] !== " ")) fail();
      const key = plainKey(line.text.slice(0, colon));
      if (Object.hasOwn(out, key)) fail(); // the library says where both are
      const rest = line.text.slice(colon + 1).trimStart();
      this.pos++;
      out[key] = rest ? this.inline(rest, depth + 1, indent) : this.nested(indent, depth + 1, true);
    }
    const next = this.peek();
    if (next && next.indent > indent) fail();
    return out;
  }

  /** A block sequence whose dashes stand at column `indent`. */
  private sequence(indent: number, depth: number): Value[] {
    this.count(depth);
    const out: Value[] = [];
    for (let line = this.peek(); line && line.indent === indent && isDash(line.text); line = this.peek()) {
      const text = line.text;
      if (text === "-") {
        this.pos++;
        out.push(this.nested(indent, depth + 1, false));
        continue;
      }
      let gap = 1;
      while (text[gap] === " ") gap++;
      const rest = text.slice(gap);
      if (isDash(rest)) fail(); // `- - x`
      const colon = rest.indexOf(":");
      const compact =
        colon > 0 && (colon + 1 === rest.length || rest[colon + 1] === " ") && KEY.test(rest.slice(0, colon));
      if (compact) {
        // `- name: cp1` opens a mapping whose keys stand where `name` does.
        this.lines[this.pos] = { indent: indent + gap, text: rest };
        out.push(this.mapping(indent + gap, depth + 1));
      } else {
        this.pos++;
        out.push(this.inline(rest, depth + 1, indent));
      }
    }
    const next = this.peek();
    if (next && next.indent > indent) fail();
    return out;
  }

  /** What follows `key:` or `-` with nothing after it on the line. */
  private nested(indent: number, depth: number, inMapping: boolean): Value {
    const next = this.peek();
    if (next && next.indent > indent)
      return isDash(next.text) ? this.sequence(next.indent, depth) : this.mapping(next.indent, depth);
    // A sequence may stand at its key's own column (`nodes:` then `- name: …`).
    if (inMapping && next && next.indent === indent && isDash(next.text)) return this.sequence(indent, depth);
    this.count(depth);
    return null;
  }

  /** A value on the rest of a line: a scalar or a flow collection, alone up to the line's end. */
  private inline(s: string, depth: number, indent: number): Value {
    const [value, end] = this.flowValue(s, 0, depth, false);
    if (end !== s.length) fail();
    // A value continued on the next lines (a multi-line scalar) is the library's to read.
    const next = this.peek();
    if (next && next.indent > indent) fail();
    return value;
  }

  /** A value at s[i]; in a flow collection (`flow`), plain scalars end at `,]}`. */
  private flowValue(s: string, i: number, depth: number, flow: boolean): [Value, number] {
    this.count(depth);
    const c = s[i];
    if (c === '"' || c === "'") {
      const [value, end] = quoted(s, i);
      return [value, skipBlanks(s, end)];
    }
    if (c === "[") return this.flowSequence(s, i, depth);
    if (c === "{") return this.flowMapping(s, i, depth);
    if (!plainStart(s, i)) fail();
    let end = i;
    if (flow) while (end < s.length && !",]}".includes(s[end]!)) end++;
    else end = s.length;
    const text = s.slice(i, end).trimEnd();
    // `a: b` inside a value, `[…]` after its start: nested structure the library must judge.
    if (text.includes(": ") || text.endsWith(":") || /[[\]{}]/.test(text) || (flow && /[:#]/.test(text)))
      fail();
    return [resolvePlain(text), end];
  }

  private flowSequence(s: string, i: number, depth: number): [Value[], number] {
    const out: Value[] = [];
    let j = skipBlanks(s, i + 1);
    if (s[j] === "]") return [out, skipBlanks(s, j + 1)];
    for (;;) {
      const [value, end] = this.flowValue(s, j, depth + 1, true);
      out.push(value);
      j = skipBlanks(s, end);
      if (s[j] === "]") return [out, skipBlanks(s, j + 1)];
      if (s[j] !== ",") fail();
      j = skipBlanks(s, j + 1);
      if (s[j] === "]" || s[j] === ",") fail(); // a trailing or empty entry
    }
  }

  private flowMapping(s: string, i: number, depth: number): [{ [key: string]: Value }, number] {
    const out: { [key: string]: Value } = {};
    let j = skipBlanks(s, i + 1);
    if (s[j] === "}") return [out, skipBlanks(s, j + 1)];
    for (;;) {
      const colon = s.indexOf(":", j);
      if (colon < 0 || s[colon + 1] !== " ") fail();
      const key = plainKey(s.slice(j, colon));
      if (Object.hasOwn(out, key)) fail();
      const [value, end] = this.flowValue(s, skipBlanks(s, colon + 1), depth + 1, true);
      out[key] = value;
      j = skipBlanks(s, end);
      if (s[j] === "}") return [out, skipBlanks(s, j + 1)];
      if (s[j] !== ",") fail();
      j = skipBlanks(s, j + 1);
      if (s[j] === "}" || s[j] === ",") fail();
    }
  }
}

function isDash(text: string): boolean {
  return text === "-" || text.startsWith("- ");
}

function skipBlanks(s: string, i: number): number {
  while (s[i] === " ") i++;
  return i;
}

/**
 * The value of a cluster file written in plain YAML (a mapping at the top), exactly as the yaml
 * library reads it; undefined when the text is anything else, for the library to read.
 */
export function readPlainYaml(text: string): { [key: string]: unknown } | undefined {
  try {
    return new Reader(splitLines(text)).read() as { [key: string]: unknown };
  } catch (error) {
    if (error === notPlain) return undefined;
    throw error;
  }
}
