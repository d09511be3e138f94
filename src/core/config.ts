/**
 * Reads a cluster file: YAML (a syntax error names file:line:column), the core schema, then each
 * stage's options with its plugin's schema, then the checks that span fields. Every problem is
 * collected and reported at once with its path; nothing is touched before the file is valid.
 */
import { resolve } from "node:path";
import * as v from "valibot";
import { InputError } from "../lib/errors.ts";
import { deepFreeze, thrownText } from "../lib/values.ts";
import { shellQuote } from "../targets/quote.ts";
import { parseSshUrl } from "../targets/ssh.ts";
import type { AnyPlugin } from "./contract.ts";
import type { Diagnostic } from "./diagnostics.ts";
import { parseDuration } from "./duration.ts";
import { type Cidr, cidrContains, cidrsOverlap, formatIpv4, parseCidr, parseIpv4 } from "./ipv4.ts";
import { mapsGivenAsLists } from "./map-lists.ts";
import { type Cluster, DEFAULT_TIMEOUTS, type HostSpec, type NodeSpec } from "./model.ts";
import { nodeMac, nodeUuid } from "./node-identity.ts";
import { orderStages } from "./order.ts";
import { checkedDiagnostics } from "./plugin-results.ts";
import { type ClusterFile, ClusterFileSchema, DnsLabel } from "./schema.ts";
import { parseSize } from "./units.ts";
import {
  decodeUtf8,
  type LocatedYaml,
  parseBoundedYaml,
  readBoundedFile,
  shorten,
  YAML_LIMITS,
  YamlRefused,
} from "./yaml-input.ts";

export interface Stage {
  slot: string;
  plugin: AnyPlugin;
  options: unknown;
}

/** What config needs to know of the loaded plugins. */
export interface PluginLookup {
  find(id: string): AnyPlugin | undefined;
  /** Directories searched for drop-in plugins, for the "not found" message. */
  searchPath: readonly string[];
  /** What was found, loaded or not: a file that failed to load may be the plugin a stage names. */
  entries?: readonly {
    id?: string;
    origin: string;
    status: "loaded" | "refused" | "failed";
    problem?: string;
  }[];
}

export interface LoadedConfig {
  cluster: Cluster;
  /** Stages in the file's order; the engine orders them. */
  stages: Stage[];
  /** Findings that do not stop a run (a stage's validate() warnings). */
  warnings: Diagnostic[];
  source: string;
}

export interface Problem {
  path: string;
  message: string;
  /** `file:line:column` where the path could be located in the source. */
  where?: string;
  /** The fix, where the rule's owner gives one (a stage's validate()). */
  hint?: string;
}

type PathKey = string | number;

/** A key shown as it is in a path: nothing a path is made of (. [ ] "), no blank, no control character. */
const PLAIN_KEY = /^[^\s.[\]"\\\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+$/u;

/**
 * `text` as a JSON string whose every character is visible: JSON.stringify escapes C0 controls
 * (a line break, ESC) but leaves DEL, C1 controls and format characters (a bidi override) raw,
 * and each of them could make a message line say something the file did not.
 */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (c) =>
    c
      .split("")
      .map((unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, "0")}`)
      .join(""),
  );
}

/** A key of the file as a message shows it: quoted when it is not a plain word. */
export function shownKey(key: string): string {
  return PLAIN_KEY.test(key) ? key : quoted(key);
}

/**
 * `nodes[1].memory` from ["nodes", 1, "memory"]. A key that is not a plain word is quoted
 * (`extraVars["a.b"]`): a key with a line break or an escape sequence in it must not reach the
 * terminal raw, and a key with a dot must not read as two.
 */
export function formatPath(path: readonly PathKey[]): string {
  return path
    .map((k, i) =>
      typeof k === "number" ? `[${k}]` : !PLAIN_KEY.test(k) ? `[${quoted(k)}]` : i === 0 ? k : `.${k}`,
    )
    .join("");
}

class ProblemList {
  private readonly found: { path: readonly PathKey[]; message: string; atKey?: boolean; hint?: string }[] =
    [];
  /** `located` gives the document with its positions; it is read only once a problem is found. */
  constructor(
    private readonly source: string,
    private readonly located?: () => LocatedYaml,
  ) {}

  get count(): number {
    return this.found.length;
  }

  /** `atKey`: the problem is the key itself (an unknown field), so its place is the key's, not its value's. */
  add(path: readonly PathKey[], message: string, atKey = false, hint?: string): void {
    this.found.push({ path, message, atKey, hint });
  }

  /**
   * The first YAML_LIMITS.problems problems, located. Paths and messages carry the file's own
   * text (keys, names), so each is cut short: a megabyte key must not become a megabyte message.
   */
  get items(): Problem[] {
    return this.found.slice(0, YAML_LIMITS.problems).map(({ path, message, atKey, hint }) => ({
      path: shorten(formatPath(path.map((k) => (typeof k === "string" ? shorten(k, 64) : k))), 200),
      message: shorten(message, 400),
      where: this.locate(path, atKey),
      ...(hint === undefined ? {} : { hint: shorten(hint, 400) }),
    }));
  }

  /**
   * The position of the deepest node of `path` present in the document; with `atKey`, of the last
   * key itself. A value's position would point past the end of `bogus:` (its empty value), or at
   * the first field of the next line when the value is a block mapping.
   */
  private locate(path: readonly PathKey[], atKey = false): string | undefined {
    if (!this.located) return undefined;
    const { doc, lines } = this.located();
    const at = (range: [number, number, number]) => {
      const { line, col } = lines.linePos(range[0]);
      return `${this.source}:${line}:${col}`;
    };
    if (atKey && path.length) {
      const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
      type Pair = { key?: { value?: unknown; range?: [number, number, number] } | null };
      const name = String(path.at(-1));
      const pair = ((parent as { items?: Pair[] } | null)?.items ?? []).find(
        (p) => p?.key && (p.key.value === null ? "" : String(p.key.value)) === name,
      );
      if (pair?.key?.range) return at(pair.key.range);
    }
    for (let depth = path.length; depth >= 0; depth--) {
      const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth), true);
      const range = (node as { range?: [number, number, number] } | undefined)?.range;
      if (range) return at(range);
    }
    // A document with nothing in it: its problem is at its start.
    return `${this.source}:1:1`;
  }
}

function issuePath(issue: v.BaseIssue<unknown>): PathKey[] {
  return (issue.path ?? []).map((item) => item.key as PathKey);
}

/**
 * A union's issue, as the shape the value took: when a data disk `{ size, what }` fails, the
 * object choice says why (`what` is unknown), where the union alone says only "a size or
 * { name, size }". The issues of the choices that reached inside the value are taken; when none
 * did (a scalar that fits no choice) the union's own message stays.
 */
function ownIssues(issue: v.BaseIssue<unknown>): v.BaseIssue<unknown>[] {
  if (issue.type !== "union" || !issue.issues?.length) return [issue];
  // The choices' issues have paths from the union's value on: they are made whole here.
  const inside = issue.issues
    .filter((i) => i.path?.length)
    .map((i) => ({ ...i, path: [...(issue.path ?? []), ...i.path!] }) as v.BaseIssue<unknown>);
  return inside.length ? inside.flatMap(ownIssues) : [issue];
}

const isUnknownKey = (issue: v.BaseIssue<unknown>) =>
  issue.kind === "schema" && issue.type === "strict_object" && issue.expected === "never";

/**
 * The issues of `input`, every unknown key among them. valibot's strictObject stops at the first
 * key it does not know (its loop breaks there), so a file with three typos in one node would be
 * fixed one run at a time. Each unknown key reported is removed from a copy and the copy checked
 * again, until no new one appears; each new one is listed after its siblings. It stops once
 * there are more issues than a report shows, so a hostile file costs a few checks, not one a key.
 */
function safeParseEveryKey<S extends v.GenericSchema>(schema: S, input: unknown): v.SafeParseResult<S> {
  const result = safeParseKeys(schema, input);
  const lists = mapsGivenAsLists(schema, input);
  if (!lists.length) return result;
  // What the schema says of a list's insides ("strategy is required") only hides the brackets.
  const within = (issue: v.BaseIssue<unknown>) => {
    const path = formatPath(issuePath(issue));
    return lists.some((list) => {
      const at = formatPath(issuePath(list));
      return path === at || path.startsWith(`${at}.`) || path.startsWith(`${at}[`) || at === "";
    });
  };
  const rest = result.success ? [] : result.issues.filter((issue) => !within(issue));
  return { typed: false, success: false, output: input, issues: [...lists, ...rest] } as v.SafeParseResult<S>;
}

function safeParseKeys<S extends v.GenericSchema>(schema: S, input: unknown): v.SafeParseResult<S> {
  const first = v.safeParse(schema, input);
  if (first.success) return first;
  const issues = first.issues.flatMap(ownIssues);
  const seen = new Set(issues.filter(isUnknownKey).map((i) => formatPath(issuePath(i))));
  let pending = issues.filter(isUnknownKey);
  let copy: unknown;
  while (pending.length && issues.length <= YAML_LIMITS.problems) {
    copy ??= structuredClone(input);
    for (const issue of pending) {
      const path = issuePath(issue);
      let parent: unknown = copy;
      for (const key of path.slice(0, -1)) parent = (parent as Record<PathKey, unknown> | undefined)?.[key];
      if (parent && typeof parent === "object") delete (parent as Record<PathKey, unknown>)[path.at(-1)!];
    }
    const again = v.safeParse(schema, copy);
    if (again.success) break;
    pending = again.issues
      .flatMap(ownIssues)
      .filter((i) => isUnknownKey(i) && !seen.has(formatPath(issuePath(i))));
    for (const issue of pending) {
      const parent = formatPath(issuePath(issue).slice(0, -1));
      seen.add(formatPath(issuePath(issue)));
      let at = issues.length;
      for (let i = issues.length - 1; i >= 0; i--)
        if (isUnknownKey(issues[i]!) && formatPath(issuePath(issues[i]!).slice(0, -1)) === parent) {
          at = i + 1;
          break;
        }
      issues.splice(at, 0, issue);
    }
  }
  return { ...first, issues: issues as typeof first.issues };
}

/**
 * Stage options no field of the plugin's schema takes. valibot's plain `v.object` drops them without
 * a word (only `strictObject` refuses them), so a misspelt option would be taken as its default. A
 * `looseObject`, or any other schema, says what it accepts itself; a plugin without a schema is
 * handed the stage's keys as they are.
 */
function unknownOptions(schema: v.GenericSchema | undefined, raw: unknown): string[] {
  if (!schema || !raw || typeof raw !== "object" || Array.isArray(raw)) return [];
  const keys = Object.keys(raw);
  const entries = (schema as { type?: string; entries?: Record<string, unknown> }).entries;
  if (schema.type !== "object" || !entries) return [];
  return keys.filter((k) => !Object.hasOwn(entries, k));
}

function unknownField(key: string): string {
  if (key === "<<")
    return "unknown field: YAML merge keys (<<) are not supported; write the fields out, or share a value with an anchor and an alias";
  return `unknown field (${shownKey(shorten(key, 64))} is not one of the fields allowed here)`;
}

function describeIssue(issue: v.BaseIssue<unknown>): string {
  // valibot's own messages for type mismatches name the received value; ours name the fix.
  if (isUnknownKey(issue)) {
    // The key itself, from the issue's path: `received` is it between quotes, unescaped.
    return unknownField(String(issue.path?.at(-1)?.key ?? issue.input));
  }
  if (issue.input === undefined && issue.kind === "schema") return "is required";
  return ownWords(issue) ?? issue.message;
}

/**
 * valibot's default message ("Invalid type: Expected boolean but received "yes"") in the words the
 * core uses, for the rules a plugin gave no message of its own. A number where text belongs is the
 * YAML trap (version: 1.20 is the number 1.2): it says to quote it. Undefined for a plugin's own
 * message, and for rules not worded here.
 */
function ownWords(issue: v.BaseIssue<unknown>): string | undefined {
  if (!issue.message.startsWith("Invalid ")) return undefined;
  const got = typeof issue.input === "string" ? quoted(shorten(issue.input, 64)) : issue.received;
  switch (issue.type) {
    case "string":
      return typeof issue.input === "number"
        ? `must be text, not the number ${issue.received}: put the value in quotes`
        : `must be text, not ${got}`;
    case "boolean":
      return `must be true or false, not ${got}`;
    case "number":
      return `must be a number, not ${got}`;
    case "picklist":
    case "variant":
      return `must be one of ${issue.expected
        ?.replace(/^\(|\)$/g, "")
        .split(" | ")
        .join(", ")}, not ${got}`;
    case "integer":
      return "must be a whole number";
    case "min_value":
      return `must be at least ${String(issue.requirement)}`;
    case "max_value":
      return `must be at most ${String(issue.requirement)}`;
    default:
      return undefined;
  }
}

function parseHost(url: string): HostSpec {
  if (url === "local") return { kind: "local" };
  const { user, host, port } = parseSshUrl(url);
  return { kind: "ssh", user, hostname: host, port };
}

function normalize(file: ClusterFile): Cluster {
  const nodes: NodeSpec[] = file.nodes.map((n) => ({
    name: n.name,
    role: n.role,
    cpus: n.cpus,
    memory: parseSize(n.memory)!,
    disk: parseSize(n.disk)!,
    address: n.address,
    mac: nodeMac(file.name, n.name),
    uuid: nodeUuid(file.name, n.name),
    disks: n.disks.map((d, i) =>
      typeof d === "object"
        ? { name: d.name ?? `data${i + 1}`, size: parseSize(d.size)! }
        : { name: `data${i + 1}`, size: parseSize(d)! },
    ),
  }));
  const [start, end] = file.network.dhcpRange?.split("-").map((s) => s.trim()) ?? [];
  return {
    name: file.name,
    host: parseHost(file.host),
    network: {
      domain: file.network.domain,
      gateway: file.network.gateway,
      dns: file.network.dns ?? [file.network.gateway],
      subnet: file.network.subnet,
      dhcpRange: start && end ? { start, end } : undefined,
      podCidr: file.network.podCidr,
      serviceCidr: file.network.serviceCidr,
    },
    nodes,
    ssh: { authorizedKeys: file.ssh.authorizedKeys ?? [] },
    timeouts: {
      read: file.timeouts.read === undefined ? DEFAULT_TIMEOUTS.read : parseDuration(file.timeouts.read)!,
      change:
        file.timeouts.change === undefined ? DEFAULT_TIMEOUTS.change : parseDuration(file.timeouts.change)!,
      long: file.timeouts.long === undefined ? DEFAULT_TIMEOUTS.long : parseDuration(file.timeouts.long)!,
    },
    stages: Object.fromEntries(
      Object.entries(file.stages).map(([slot, { plugin, ...options }]) => [
        slot,
        { plugin: plugin.includes("/") ? plugin : `${slot}/${plugin}`, options },
      ]),
    ),
  };
}

/**
 * The fields the cross-field checks need, taken leniently from the raw file: a field of the wrong
 * form is left out (the schema reports it), so these checks still run and every problem is
 * reported in one go.
 */
interface LenientView {
  subnet?: Cidr;
  subnetText?: string;
  gateway?: number;
  gatewayText?: string;
  dhcp?: { start: number; end: number };
  podCidr?: string;
  serviceCidr?: string;
  nodes: { name?: string; address?: string; role?: unknown; diskNames: (string | undefined)[] }[];
  stages: [string, unknown][];
}

const str = (x: unknown) => (typeof x === "string" ? x : undefined);
const obj = (x: unknown) =>
  x && typeof x === "object" && !Array.isArray(x) ? (x as Record<string, unknown>) : {};

function lenientView(raw: unknown): LenientView {
  const root = obj(raw);
  const net = obj(root.network);
  const subnetText = str(net.subnet);
  const gatewayText = str(net.gateway);
  const [start, end] = (str(net.dhcpRange) ?? "").split("-").map((p) => parseIpv4(p.trim()));
  const cidrOr = (x: unknown, fallback: string) =>
    x === undefined ? fallback : str(x) && parseCidr(str(x)!) ? str(x) : undefined;
  return {
    subnet: subnetText ? parseCidr(subnetText) : undefined,
    subnetText,
    gateway: gatewayText ? parseIpv4(gatewayText) : undefined,
    gatewayText,
    dhcp: start !== undefined && end !== undefined ? { start, end } : undefined,
    podCidr: cidrOr(net.podCidr, "10.233.64.0/18"),
    serviceCidr: cidrOr(net.serviceCidr, "10.233.0.0/18"),
    nodes: (Array.isArray(root.nodes) ? root.nodes : []).map((n) => {
      const node = obj(n);
      const address = str(node.address);
      return {
        name: str(node.name),
        address: address && parseIpv4(address) !== undefined ? address : undefined,
        role: node.role,
        diskNames: (Array.isArray(node.disks) ? node.disks : []).map(
          (d, i) => (d && typeof d === "object" ? str(obj(d).name) : undefined) ?? `data${i + 1}`,
        ),
      };
    }),
    stages: Object.entries(obj(root.stages)),
  };
}

/** Checks that span several fields. */
function checkSemantics(view: LenientView, problems: ProblemList): void {
  const { subnet, subnetText, gateway, dhcp } = view;
  if (subnet && gateway !== undefined && !cidrContains(subnet, gateway)) {
    problems.add(["network", "gateway"], `${view.gatewayText} is outside the node subnet ${subnetText}`);
  }
  for (const field of ["podCidr", "serviceCidr"] as const) {
    const text = view[field];
    if (subnet && text && cidrsOverlap(parseCidr(text)!, subnet)) {
      problems.add(
        ["network", field],
        `${text} overlaps the node subnet ${subnetText}: pick a range the lab's LAN does not use`,
      );
    }
  }
  if (
    view.podCidr &&
    view.serviceCidr &&
    cidrsOverlap(parseCidr(view.podCidr)!, parseCidr(view.serviceCidr)!)
  ) {
    problems.add(["network", "serviceCidr"], `${view.serviceCidr} overlaps podCidr ${view.podCidr}`);
  }

  const names = new Map<string, number>();
  const addresses = new Map<string, number>();
  view.nodes.forEach((node, i) => {
    if (node.name !== undefined) {
      const seen = names.get(node.name);
      if (seen !== undefined)
        problems.add(["nodes", i, "name"], `"${node.name}" is also the name of nodes[${seen}]`);
      else names.set(node.name, i);
    }
    const diskNames = new Set<string>();
    node.diskNames.forEach((name, j) => {
      if (name && diskNames.has(name))
        problems.add(["nodes", i, "disks", j], `two data disks are named "${name}"`);
      if (name) diskNames.add(name);
    });
    if (node.address === undefined) return;
    const seen = addresses.get(node.address);
    if (seen !== undefined)
      problems.add(["nodes", i, "address"], `${node.address} is also the address of nodes[${seen}]`);
    else addresses.set(node.address, i);
    if (!subnet) return;
    const address = parseIpv4(node.address)!;
    const broadcast = subnet.network + 2 ** (32 - subnet.prefix) - 1;
    if (!cidrContains(subnet, address)) {
      problems.add(["nodes", i, "address"], `${node.address} is outside the node subnet ${subnetText}`);
    } else if (address === subnet.network || address === broadcast) {
      problems.add(
        ["nodes", i, "address"],
        `${node.address} is the ${address === broadcast ? "broadcast" : "network"} address of ${subnetText}`,
      );
    } else if (address === gateway) {
      problems.add(["nodes", i, "address"], `${node.address} is the gateway's address`);
    } else if (dhcp && address >= dhcp.start && address <= dhcp.end) {
      problems.add(
        ["nodes", i, "address"],
        `${node.address} lies in the DHCP range ${formatIpv4(dhcp.start)}-${formatIpv4(dhcp.end)}: the router could hand it to another machine`,
      );
    }
  });

  const controlPlanes = view.nodes.filter((n) => n.role === "control-plane").length;
  if (view.nodes.length && controlPlanes === 0) {
    problems.add(["nodes"], 'needs at least one node with role "control-plane"');
  }
  // Whether an even number of control planes (etcd members) may run is the k8s stage's to say.
}

/** What a plugin that threw while judging its options is told: it, not the file, is at fault. */
function pluginBroke(id: string, error: unknown): string {
  const why = thrownText(error);
  return `plugin ${id} failed while checking its options, a bug in the plugin: ${why}`;
}

function resolveStages(view: LenientView, plugins: PluginLookup, problems: ProblemList): Stage[] {
  const stages: Stage[] = [];
  for (const [slot, raw] of view.stages) {
    // The schema reports a slot that is no name; its plugin would only add a second, stranger
    // problem ("plugin ../x/bhyve fills the slot ..").
    if (!v.is(DnsLabel, slot)) continue;
    const { plugin: name, ...rawOptions } = obj(raw);
    if (typeof name !== "string" || !/^([a-z0-9-]+\/)?[a-z0-9-]+$/.test(name)) continue; // the schema reports it
    const id = name.includes("/") ? name : `${slot}/${name}`;
    const pluginSlot = id.split("/")[0];
    if (pluginSlot !== slot) {
      problems.add(["stages", slot, "plugin"], `plugin ${id} fills the slot "${pluginSlot}", not "${slot}"`);
      continue;
    }
    const plugin = plugins.find(id);
    // Found, and not used: what is wrong with it is the answer, not "no plugin".
    const refused = plugin
      ? undefined
      : (plugins.entries ?? []).find((e) => e.id === id && e.status !== "loaded" && e.problem);
    if (refused) {
      problems.add(
        ["stages", slot, "plugin"],
        `plugin ${id} in ${refused.origin} is not loaded: ${refused.problem}`,
      );
      continue;
    }
    if (!plugin) {
      const where = plugins.searchPath.length ? plugins.searchPath.join(", ") : "(no plugin directory)";
      // Its file may be there and broken: "not found" alone sends the user looking for a file
      // they can see.
      const unloaded = (plugins.entries ?? []).filter(
        (e) => e.status !== "loaded" && e.origin !== "built-in",
      );
      const files = unloaded.map((e) => e.origin);
      const also = files.length
        ? `; ${files.length === 1 ? "1 plugin file there was" : `${files.length} plugin files there were`} not loaded, \`kubehyve plugins\` says why: ${files.slice(0, 3).join(", ")}${files.length > 3 ? ", …" : ""}`
        : "";
      problems.add(
        ["stages", slot, "plugin"],
        `no plugin ${id} is built in or found in the plugin path: ${where}${also}`,
      );
      continue;
    }
    let options: unknown = rawOptions;
    for (const key of unknownOptions(plugin.options, rawOptions))
      problems.add(["stages", slot, key], unknownField(key), true);
    if (plugin.options) {
      let result: ReturnType<typeof safeParseEveryKey>;
      try {
        result = safeParseEveryKey(plugin.options, rawOptions);
      } catch (error) {
        // A check or transform of the plugin's schema that throws: the plugin's bug, as above.
        problems.add(["stages", slot], pluginBroke(plugin.id, error));
        continue;
      }
      if (result.success) options = result.output;
      else
        for (const issue of result.issues)
          problems.add(["stages", slot, ...issuePath(issue)], describeIssue(issue), isUnknownKey(issue));
    }
    stages.push({ slot, plugin, options });
  }
  return stages;
}

/** Parses and validates a cluster file's text. Throws InputError listing every problem. */
export function parseClusterText(text: string, source: string, plugins: PluginLookup): LoadedConfig {
  let parsedYaml: ReturnType<typeof parseBoundedYaml>;
  try {
    parsedYaml = parseBoundedYaml(text);
  } catch (error) {
    if (error instanceof YamlRefused) throw notYaml(source, error);
    throw error;
  }
  const { value: raw, top } = parsedYaml;
  const problems = new ProblemList(source, parsedYaml.located);
  if (top !== "mapping") {
    // Nothing but comments and blanks: "must be a mapping" would leave the user looking for one.
    const empty = parsedYaml.located().doc.contents === null;
    problems.add(
      [],
      top === "sequence"
        ? "must be a mapping (name:, network:, nodes:, stages:), not a list"
        : empty
          ? "is empty: it must be a mapping with name:, network:, nodes: and stages: (kubehyve init writes an example)"
          : "must be a mapping with name:, network:, nodes: and stages:",
    );
    throw invalid(source, problems);
  }
  const parsed = safeParseEveryKey(ClusterFileSchema, raw);
  if (!parsed.success)
    for (const issue of parsed.issues)
      problems.add(issuePath(issue), describeIssue(issue), isUnknownKey(issue));
  const view = lenientView(raw);
  const warnings: Diagnostic[] = [];
  checkSemantics(view, problems);
  const stages = resolveStages(view, plugins, problems);
  // Found by `config validate`, not first by the run that cannot order them.
  try {
    orderStages(stages);
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    problems.add(["stages"], error.message);
  }
  if (problems.count || !parsed.success) throw invalid(source, problems);
  // Read-only from here on, for the stages and the core alike: one stage's validate or phase that
  // changed a node's address would change it for the core (which machines it reaches) and every
  // stage after it, past the checks that passed it.
  const cluster = deepFreeze(normalize(parsed.output));
  for (const stage of stages) deepFreeze(stage.options);
  // The stages' own rules need a cluster that passed the core checks; they see it as every stage will.
  for (const stage of stages) {
    let found: Diagnostic[];
    try {
      found = stage.plugin.validate ? stage.plugin.validate({ cluster, options: stage.options }) : [];
    } catch (error) {
      // A plugin that breaks while judging the file has not said the file is wrong: name it, not
      // kubehyve, with what it threw.
      problems.add(["stages", stage.slot], pluginBroke(stage.plugin.id, error));
      continue;
    }
    try {
      checkedDiagnostics(stage.plugin.id, "validate", found);
    } catch (error) {
      // Findings that break the contract say nothing reliable about the file: the plugin is named.
      problems.add(["stages", stage.slot], (error as Error).message);
      continue;
    }
    for (const d of found) {
      if (d.severity === "error")
        problems.add(parsePath(d.path ?? `stages.${stage.slot}`), d.summary, false, d.hint);
      else warnings.push(d);
    }
  }
  // The warnings of the stages whose rules ran are as true as the errors: both are said at once.
  if (problems.count) throw invalid(source, problems, warnings);
  return { cluster, stages, warnings, source };
}

/** ["nodes", 1, "memory"] from `nodes[1].memory`: the inverse of formatPath. */
export function parsePath(path: string): PathKey[] {
  return [...path.matchAll(/\[("(?:[^"\\]|\\.)*")\]|\[(\d+)\]|([^.[\]]+)/g)].map((m) =>
    m[1] !== undefined ? (JSON.parse(m[1]) as string) : m[2] !== undefined ? Number(m[2]) : m[3]!,
  );
}

function invalid(source: string, problems: ProblemList, warnings: Diagnostic[] = []): InputError {
  const n = problems.count;
  const shown = n > YAML_LIMITS.problems ? ` (the first ${YAML_LIMITS.problems} follow)` : "";
  return new InputError(
    `${source} has ${n} problem${n === 1 ? "" : "s"}${shown}`,
    undefined,
    problems.items,
    warnings,
  );
}

function notYaml(source: string, refused: YamlRefused): InputError {
  return new InputError(
    `${source} is not a usable YAML cluster file`,
    undefined,
    refused.problems.map((p) => ({
      path: "",
      message: shorten(p.message, 400),
      where: p.line === undefined ? source : `${source}:${p.line}:${p.col}`,
    })),
  );
}

export async function loadClusterFile(path: string, plugins: PluginLookup): Promise<LoadedConfig> {
  const read = await readBoundedFile(path);
  if ("failure" in read) {
    const { failure } = read;
    switch (failure.kind) {
      case "missing":
        throw new InputError(
          `cluster file ${path} does not exist`,
          // `kubehyve init` alone writes ./kubehyve.yaml: for another file it must be named.
          `write one with \`kubehyve init${path === resolve("kubehyve.yaml") ? "" : ` -c ${shellQuote(path)}`}\`, or name another with -c FILE`,
        );
      case "not-regular":
        throw new InputError(
          `cluster file ${path} is ${failure.what}, not a regular file`,
          "name the cluster file itself with -c FILE",
        );
      case "too-large":
        throw new InputError(
          `cluster file ${path} is larger than ${YAML_LIMITS.bytes / 1024 / 1024} MiB (${failure.size} bytes): no lab needs that much`,
        );
      case "unreadable":
        throw new InputError(`cannot read cluster file ${path}: ${failure.message}`);
    }
  }
  let text: string;
  try {
    text = decodeUtf8(read.bytes);
  } catch (error) {
    if (error instanceof YamlRefused) throw notYaml(path, error);
    throw error;
  }
  return parseClusterText(text, path, plugins);
}
