/**
 * Reads a cluster file so that no input can cost much: a size cap checked before reading, a refusal
 * of anything but a regular file, and limits on what the YAML may ask of the parser (nesting,
 * aliases, the size of the data with its aliases expanded). The yaml library's parser is neither
 * linear on deep nesting (1 MiB of `[` takes 20 s and 4 GB in it) nor cheap per value (a 1 MiB
 * file of 100 000 small keys takes 1.5 s and 300 MB), so what is obviously no lab's cluster file is
 * refused by a scan of the text before the parser sees it.
 *
 * Every refusal is a problem with file:line:column, as a syntax error is: exit 2, never a crash.
 */
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import type * as Yaml from "yaml";
import type { CST, Document, LineCounter, Node, Parser } from "yaml";
import { kindOf } from "../lib/fsutil.ts";

/** The yaml library, evaluated when a text is first read: a command that reads none does not pay for it. */
const yaml = (): typeof Yaml => require("yaml");

/** What a cluster file may be and ask for. A lab's file is a few KiB with a few hundred values. */
export const YAML_LIMITS = {
  /** Bytes of the file. */
  bytes: 1024 * 1024,
  /** Lines of the file. */
  lines: 10_000,
  /**
   * Characters YAML gives a meaning to (`[]{},:-?&*!|>'"%@`), outside comments: the number of
   * tokens the parser makes, and so its time and memory, grows with it.
   */
  structural: 30_000,
  /** Nesting of collections, aliases expanded. */
  depth: 64,
  /**
   * References to anchors (`*name`): 100 nodes sharing one `&defaults` pass. A "billion laughs"
   * (aliases of aliases) is stopped by `values` below; the yaml library's own `maxAliasCount`,
   * which counts an alias as many times as the aliases inside what it refers to, is set to
   * `values` too, as a second guard in the same unit.
   */
  aliases: 1000,
  /** Values (scalars and collections) with every alias expanded: what validation walks. */
  values: 20_000,
  /** Problems reported; the rest are counted. */
  problems: 50,
} as const;

export interface Located {
  message: string;
  /** 1-based line and column. */
  line?: number;
  col?: number;
}

/** The input cannot be used at all: the problems say where and why. */
export class YamlRefused extends Error {
  constructor(readonly problems: Located[]) {
    super(problems[0]?.message ?? "refused");
    this.name = "YamlRefused";
  }
}

export type ReadFailure =
  | { kind: "missing" }
  | { kind: "not-regular"; what: string }
  | { kind: "too-large"; size: number }
  | { kind: "unreadable"; message: string };

/**
 * The bytes of a regular file of at most `cap` bytes. The file is opened without blocking (a FIFO
 * would otherwise wait for a writer forever) and checked with fstat before a byte is read; the read
 * stops at cap + 1 bytes, so a file that grows meanwhile (or lies about its size) is refused too.
 */
export async function readBoundedFile(
  path: string,
  cap: number = YAML_LIMITS.bytes,
): Promise<{ bytes: Uint8Array } | { failure: ReadFailure }> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === "ENOENT") return { failure: { kind: "missing" } };
    return { failure: { kind: "unreadable", message: e.message } };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return { failure: { kind: "not-regular", what: kindOf(info) } };
    if (info.size > cap) return { failure: { kind: "too-large", size: info.size } };
    const buffer = new Uint8Array(cap + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > cap) return { failure: { kind: "too-large", size: length } };
    }
    return { bytes: buffer.subarray(0, length) };
  } catch (error) {
    return { failure: { kind: "unreadable", message: (error as Error).message } };
  } finally {
    await handle.close().catch(() => {});
  }
}

/** UTF-8 text of the bytes (a leading BOM dropped); refuses bytes that are not UTF-8, with their place. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const offset = firstInvalidUtf8(bytes);
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < offset; i++) {
      if (bytes[i] === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    throw new YamlRefused([
      {
        message: `is not UTF-8 text (byte 0x${bytes[offset]!.toString(16).padStart(2, "0")} at offset ${offset})`,
        line,
        col: offset - lineStart + 1,
      },
    ]);
  }
}

/** Offset of the first byte that does not belong to a well-formed UTF-8 sequence (RFC 3629). */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    let need = 0;
    let min = 0;
    if (b < 0x80) {
      i++;
      continue;
    }
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if ((need > 1 && cp < min) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return bytes.length;
}

const STRUCTURAL = new Set("[]{},:-?&*!|>'\"%@");

/**
 * The scan before the parser, linear in the text: lines, structural characters (outside comments;
 * a `#` after white space starts one, and where it does not, what follows is text inside a scalar,
 * which makes no tokens either), then the lexer's tokens for the nesting of flow collections and of
 * block indicators on one line (`- - - - x`), which the parser pays for dearly.
 */
export function prescan(text: string): void {
  prescanText(text);
  prescanTokens(text);
}

/** Lexer tokens as the parser takes them (Parser.next), read once for the scan and the parser. */
type Lexemes = string[];

/** The first half of the scan: lines and structural characters, in one pass over the text. */
function prescanText(text: string): void {
  let lines = 1;
  let structural = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\n") {
      // The newline ends its line: only text after it starts one more (a last line ends with one).
      if (++lines > YAML_LIMITS.lines && i + 1 < text.length)
        throw new YamlRefused([
          {
            message: `has more than ${YAML_LIMITS.lines} lines, more than any lab needs`,
            line: lines,
            col: 1,
          },
        ]);
    } else if (
      c === "#" &&
      (i === 0 || text[i - 1] === " " || text[i - 1] === "\t" || text[i - 1] === "\n")
    ) {
      const end = text.indexOf("\n", i);
      i = (end < 0 ? text.length : end) - 1;
    } else if (STRUCTURAL.has(c) && ++structural > YAML_LIMITS.structural) {
      throw new YamlRefused([
        {
          message: `holds more than ${YAML_LIMITS.structural} YAML indicators ([]{},:-?&*!|>'"%@), more than any lab needs`,
          ...position(text, i),
        },
      ]);
    }
  }
}

/**
 * The second half: the lexer's tokens, for nesting the parser pays for dearly. They are returned for
 * the parser, so that the text is lexed once: cold, the library's lexer costs a third of a read.
 */
function prescanTokens(text: string): Lexemes {
  const lexemes: Lexemes = [];
  let flow = 0;
  let onLine = 0;
  let offset = 0;
  const { CST, Lexer } = yaml();
  for (const token of new Lexer().lex(text)) {
    lexemes.push(token);
    switch (CST.tokenType(token)) {
      case "flow-map-start":
      case "flow-seq-start":
        if (++flow > YAML_LIMITS.depth)
          throw new YamlRefused([
            {
              message: `nests collections deeper than ${YAML_LIMITS.depth} levels`,
              ...position(text, offset),
            },
          ]);
        break;
      case "flow-map-end":
      case "flow-seq-end":
        flow = Math.max(0, flow - 1);
        break;
      case "seq-item-ind":
      case "explicit-key-ind":
      case "map-value-ind":
        // Inside a flow collection `:` and `?` separate, they do not nest.
        if (flow === 0 && ++onLine > YAML_LIMITS.depth)
          throw new YamlRefused([
            {
              message: `nests more than ${YAML_LIMITS.depth} collections on one line`,
              ...position(text, offset),
            },
          ]);
        break;
      case "newline":
        onLine = 0;
        break;
    }
    // The lexer's control tokens (document start, flow end, scalar) stand for no source text.
    if (token !== "\x02" && token !== "\x18" && token !== "\x1f") offset += token.length;
  }
  return lexemes;
}

function position(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, col: offset - lineStart + 1 };
}

export interface LocatedYaml {
  doc: Document.Parsed;
  lines: LineCounter;
}

export interface ParsedYaml {
  /** The document as plain data; objects have no prototype tricks (`__proto__` is a plain key). */
  value: unknown;
  /** What the document holds at its top. */
  top: "mapping" | "sequence" | "other";
  /** The document with its positions, to say where a problem is: read when first asked for. */
  located(): LocatedYaml;
}

/**
 * Parses one YAML document within YAML_LIMITS. Syntax errors, unresolved tags, duplicate keys,
 * aliases to nothing, and documents too deep or too large once aliases are expanded are problems
 * with their place; the value is built only from a document that has none.
 */
export function parseBoundedYaml(text: string): ParsedYaml {
  prescanText(text);
  const { doc, lines, value } = parseWithLibrary(text);
  const { isMap, isSeq } = yaml();
  const top = isMap(doc.contents) ? "mapping" : isSeq(doc.contents) ? "sequence" : "other";
  return { value, top, located: () => ({ doc, lines }) };
}

function parseWithLibrary(text: string): LocatedYaml & { value: unknown } {
  const lexemes = prescanTokens(text);
  const { Composer, LineCounter, Parser } = yaml();
  const lines = new LineCounter();
  const at = (offset: number | undefined) => {
    if (offset === undefined) return {};
    const { line, col } = lines.linePos(offset);
    return { line, col };
  };
  const problems: Located[] = [];
  const enough = () => problems.length >= YAML_LIMITS.problems;
  const say = (offset: number | undefined, message: string) => {
    problems.push({ message, ...at(offset) });
    if (enough()) throw STOP;
  };
  // The library's parseDocument, with its errors bounded: broken input can make the parser emit an
  // error per character (67 000 for a 67 KiB file), each of which prettyErrors then decorates.
  // uniqueKeys is checked below in linear time: the library compares each key with every earlier
  // one (40 000 keys take 11 s).
  const parser = new Parser(lines.addNewLine);
  const composer = new Composer({ uniqueKeys: false });
  // Private in the library's types, and the one place its errors pass through before they pile up.
  (composer as unknown as { onError: ComposeErrorHandler }).onError = (source, _code, message) => {
    const offset = Array.isArray(source) ? source[0] : typeof source === "number" ? source : source?.offset;
    say(offset, message);
  };
  let doc: Document.Parsed | undefined;
  try {
    for (const parsed of composer.compose(cstTokens(parser, lines, lexemes, say), true, text.length)) {
      if (doc) {
        say(parsed.range[0], "holds more than one YAML document (---): a cluster file is one document");
        break;
      }
      doc = parsed;
    }
    for (const e of [...(doc?.errors ?? []), ...(doc?.warnings ?? [])]) say(e.pos[0], e.message);
  } catch (error) {
    if (error !== STOP) throw error;
  }
  if (problems.length || !doc) throw new YamlRefused(problems);
  const lineOf = (node: Node) => (node.range ? lines.linePos(node.range[0]).line : undefined);
  checkStructure(doc, lineOf, (message, node) => {
    problems.push({ message, ...at(node?.range?.[0]) });
    return enough();
  });
  if (problems.length) throw new YamlRefused(problems);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: YAML_LIMITS.values });
  } catch (error) {
    // checkStructure found no alias problem, so the library's own limit should not trip; if it
    // does, it is still the file's fault, not a crash.
    throw new YamlRefused([{ message: (error as Error).message }]);
  }
  return { doc, lines, value };
}

const STOP = Symbol("enough problems");

type ComposeErrorHandler = (
  source: number | [number, number] | { offset?: number } | undefined,
  code: string,
  message: string,
) => void;

/** The parser's tokens; its error tokens become problems, and the parse ends after enough of them. */
function* cstTokens(
  parser: Parser,
  lines: LineCounter,
  lexemes: Lexemes,
  say: (offset: number, message: string) => void,
): Generator<CST.Token> {
  // Parser.parse(text) without its own lexer: the first line, each token, the end.
  lines.addNewLine(0);
  const tokens = function* () {
    for (const lexeme of lexemes) yield* parser.next(lexeme);
    yield* parser.end();
  };
  for (const token of tokens()) {
    if (token.type === "error") say(token.offset, token.message);
    else yield token;
  }
}

/**
 * One walk in document order: duplicate keys (a Set per mapping), keys that are not plain values,
 * aliases (each resolves to the latest anchor before it, as YAML says; one to a node that contains
 * it, or to nothing, is refused), and the depth and number of values with aliases expanded (an
 * anchored node's figures are computed once). `report` returns true when enough was said.
 */
function checkStructure(
  doc: Document.Parsed,
  lineOf: (node: Node) => number | undefined,
  report: (message: string, node?: Node) => boolean,
): void {
  const { isAlias, isCollection, isMap, isPair, isScalar } = yaml();
  const anchors = new Map<string, Node>();
  const figures = new Map<Node, { depth: number; values: number }>();
  const open = new Set<Node>();
  let aliases = 0;
  let stop = false;
  const say = (message: string, node?: Node) => {
    stop ||= report(message, node);
  };

  const walk = (node: Node | null | undefined, depth: number): { depth: number; values: number } => {
    if (stop || !node) return { depth: 0, values: 0 };
    if (depth > YAML_LIMITS.depth) {
      say(`nests collections deeper than ${YAML_LIMITS.depth} levels`, node);
      stop = true;
      return { depth: 0, values: 0 };
    }
    if (isAlias(node)) {
      if (++aliases > YAML_LIMITS.aliases) {
        say(`refers to anchors more than ${YAML_LIMITS.aliases} times`, node);
        stop = true;
        return { depth: 0, values: 0 };
      }
      const target = anchors.get(node.source);
      if (!target) {
        say(`the alias *${node.source} refers to no anchor &${node.source} before it`, node);
        return { depth: 0, values: 0 };
      }
      if (open.has(target)) {
        say(`the alias *${node.source} refers to a node that contains it`, node);
        return { depth: 0, values: 0 };
      }
      return figures.get(target) ?? { depth: 0, values: 0 };
    }
    if (node.anchor) anchors.set(node.anchor, node);
    let inner = 0;
    let values = 1;
    if (isCollection(node)) {
      open.add(node);
      const keys = isMap(node) ? new Map<string, Node>() : undefined;
      for (const item of node.items) {
        if (stop) break;
        if (isPair(item)) {
          const key = item.key as Node | null;
          if (keys && key) {
            if (isScalar(key)) {
              const name = key.value === null ? "" : String(key.value);
              const earlier = keys.get(name);
              if (earlier) {
                const line = lineOf(earlier);
                say(
                  `map keys must be unique: ${JSON.stringify(shorten(name))} is already a key${line ? ` on line ${line}` : ""}`,
                  key,
                );
              } else keys.set(name, key);
            } else if (!isAlias(key)) {
              say("a key must be a plain value, not a collection", key);
            }
          }
          for (const part of [key, item.value as Node | null]) {
            const f = walk(part, depth + 1);
            inner = Math.max(inner, f.depth);
            values += f.values;
          }
        } else {
          const f = walk(item as Node, depth + 1);
          inner = Math.max(inner, f.depth);
          values += f.values;
        }
      }
      open.delete(node);
    }
    const result = { depth: inner + 1, values };
    if (node.anchor) figures.set(node, result);
    return result;
  };

  const top = walk(doc.contents as Node | null, 0);
  if (!stop && top.depth > YAML_LIMITS.depth)
    say(`nests collections deeper than ${YAML_LIMITS.depth} levels (aliases expanded)`);
  if (!stop && top.values > YAML_LIMITS.values)
    say(
      `holds more than ${YAML_LIMITS.values} values once its aliases are expanded, more than any lab needs`,
    );
}

/** A value as shown in a message: at most 80 characters. */
export function shorten(text: string, max = 80): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
