/**
 * Label and field selectors as the API server reads them from `?labelSelector=` and `?fieldSelector=`
 * (k8s.io/apimachinery/pkg/labels/selector.go and pkg/fields/selector.go): comma-separated
 * requirements, all of which must hold.
 */

type Requirement = (labels: Record<string, string>) => boolean;

/** Throws with the upstream-style message on a selector it cannot parse. */
export function parseLabelSelector(text: string): Requirement[] {
  const out: Requirement[] = [];
  // Commas inside `in (a,b)` do not separate requirements.
  const parts = text.match(/[^,(]+(\([^)]*\))?[^,]*/g) ?? [];
  for (const raw of parts) {
    const part = raw.trim();
    if (!part) continue;
    let m = part.match(/^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/);
    if (m) {
      const [, key, op, list] = m as unknown as [string, string, string, string];
      const values = list.split(",").map((v) => v.trim());
      out.push(
        op === "in"
          ? (l) => key in l && values.includes(l[key]!)
          : (l) => !(key in l) || !values.includes(l[key]!),
      );
      continue;
    }
    m = part.match(/^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/);
    if (m) {
      const [, key, op, value] = m as unknown as [string, string, string, string];
      out.push(op === "!=" ? (l) => l[key] !== value : (l) => l[key] === value);
      continue;
    }
    m = part.match(/^(!?)([\w./-]+)$/);
    if (m) {
      const [, not, key] = m as unknown as [string, string, string];
      out.push(not ? (l) => !(key in l) : (l) => key in l);
      continue;
    }
    throw new Error(`unable to parse requirement: ${JSON.stringify(part)}`);
  }
  return out;
}

export function matchesLabels(
  requirements: Requirement[],
  labels: Record<string, string> | undefined,
): boolean {
  return requirements.every((req) => req(labels ?? {}));
}

function valueAt(obj: unknown, path: string): string | undefined {
  let cur: unknown = obj;
  for (const key of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur === undefined || cur === null ? undefined : String(cur);
}

/** Field selectors: `a.b=c`, `a.b==c`, `a.b!=c` on the object's dotted path. */
export function parseFieldSelector(text: string): ((obj: unknown) => boolean)[] {
  return text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((part) => {
      const m = part.match(/^([\w.]+)\s*(==|=|!=)\s*(.*)$/);
      if (!m) throw new Error(`invalid selector: ${JSON.stringify(part)}; can't understand it`);
      const [, path, op, value] = m as unknown as [string, string, string, string];
      return op === "!="
        ? (o: unknown) => (valueAt(o, path) ?? "") !== value
        : (o: unknown) => (valueAt(o, path) ?? "") === value;
    });
}
