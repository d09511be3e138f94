/**
 * A strict reader of the Prometheus text exposition format 0.0.4, written from its specification
 * (prometheus/docs content/docs/instrumenting/exposition_formats.md, "Text format details"): lines
 * end in a line feed, the last one too; `# HELP name text` and `# TYPE name type` at most once per
 * metric, TYPE before the metric's first sample; a sample is `name{label="value",…} value
 * [timestamp]` with label values escaping only `\\`, `\"` and `\n`; a metric's lines stand together,
 * and no two samples share a name and label set. It throws on the first line that breaks a rule.
 */

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: Sample[];
}

/** Go's strconv.ParseFloat as the format uses it: decimal or exponent notation, NaN, ±Inf. */
function parseValue(text: string, where: string): number {
  if (text === "NaN") return Number.NaN;
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`${where}: bad value ${text}`);
  return Number(text);
}

/** `{a="x",b="y\"z"}` from position `i` of `line`; returns the labels and where they end. */
function parseLabels(
  line: string,
  i: number,
  where: string,
): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  i++; // past "{"
  for (;;) {
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] === "}") return { labels, end: i + 1 };
    const eq = line.indexOf("=", i);
    if (eq < 0) throw new Error(`${where}: label without "="`);
    const name = line.slice(i, eq).trim();
    if (!LABEL_NAME.test(name)) throw new Error(`${where}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    i = eq + 1;
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] !== '"') throw new Error(`${where}: label value of ${name} is not quoted`);
    i++;
    let value = "";
    for (;;) {
      const c = line[i];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === "\\") {
        const next = line[i + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else throw new Error(`${where}: bad escape \\${next}`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    labels[name] = value;
    i++;
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] === ",") i++;
    else if (line[i] !== "}") throw new Error(`${where}: expected "," or "}" after label ${name}`);
  }
}

export function parseExposition(text: string): Exposition {
  if (text.length && !text.endsWith("\n")) throw new Error("the last line does not end with a line feed");
  const out: Exposition = { help: new Map(), type: new Map(), samples: [] };
  const seen = new Set<string>();
  const finished = new Set<string>();
  let current: string | undefined;
  const enter = (name: string, where: string) => {
    if (name === current) return;
    if (finished.has(name)) throw new Error(`${where}: the lines of ${name} do not stand together`);
    if (current) finished.add(current);
    current = name;
  };
  text
    .split("\n")
    .slice(0, -1)
    .forEach((raw, n) => {
      const where = `line ${n + 1}`;
      const line = raw.trim();
      if (!line) return;
      if (line.startsWith("#")) {
        const tokens = line
          .slice(1)
          .trim()
          .split(/[ \t]+/);
        if (tokens[0] === "HELP") {
          const name = tokens[1] ?? "";
          if (!METRIC_NAME.test(name))
            throw new Error(`${where}: HELP of a bad name ${JSON.stringify(name)}`);
          if (out.help.has(name)) throw new Error(`${where}: a second HELP for ${name}`);
          const doc = line.replace(/^#\s*HELP\s+\S+\s*/, "");
          if (/\\[^\\n]/.test(doc)) throw new Error(`${where}: HELP escapes only \\\\ and \\n`);
          enter(name, where);
          out.help.set(name, doc);
        } else if (tokens[0] === "TYPE") {
          if (tokens.length !== 3) throw new Error(`${where}: TYPE takes exactly a name and a type`);
          const [, name, type] = tokens as [string, string, string];
          if (!METRIC_NAME.test(name))
            throw new Error(`${where}: TYPE of a bad name ${JSON.stringify(name)}`);
          if (!TYPES.has(type)) throw new Error(`${where}: unknown type ${type}`);
          if (out.type.has(name)) throw new Error(`${where}: a second TYPE for ${name}`);
          if (out.samples.some((s) => s.name === name))
            throw new Error(`${where}: TYPE of ${name} after its first sample`);
          enter(name, where);
          out.type.set(name, type);
        }
        return;
      }
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
      if (!m) throw new Error(`${where}: a sample must start with a metric name`);
      const name = m[1]!;
      let i = name.length;
      let labels: Record<string, string> = {};
      if (line[i] === "{") ({ labels, end: i } = parseLabels(line, i, where));
      const rest = line
        .slice(i)
        .trim()
        .split(/[ \t]+/);
      if (rest.length < 1 || rest.length > 2 || !rest[0]) throw new Error(`${where}: expected a value`);
      const value = parseValue(rest[0], where);
      if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) throw new Error(`${where}: bad timestamp`);
      const key = JSON.stringify([name, Object.entries(labels).sort()]);
      if (seen.has(key)) throw new Error(`${where}: a second sample of ${name} with the same labels`);
      seen.add(key);
      enter(name, where);
      out.samples.push({ name, labels, value });
    });
  return out;
}
