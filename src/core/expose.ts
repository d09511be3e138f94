/**
 * The exposure walk: the path from a client on the lab's LAN to a pod, walked from the hypervisor
 * host one hop at a time, outside in, naming the first hop that is broken and how to fix it.
 *
 * The core knows no stage. Each stage adds the hops it knows through the `expose:hops` hook (the
 * ingress stage: its controller's address and its routing of the Host header; the lb stage: the
 * address answering from the host), and the core adds what any Kubernetes cluster and any lab
 * network have (the name in the lab's DNS, the Service's endpoints, the pods). A hop says where on
 * the path it sits (`place`), so that hops of different stages interleave in path order, and may
 * leave facts for later hops (the address the path enters at).
 *
 * A hop may find that it is broken only because a later hop is (Traefik answers 503 while the
 * Service has no ready endpoint): it says so with `blocked`, and the walk names the later hop.
 */
import { CancelledError, KubehyveError } from "../lib/errors.ts";
import type { Diagnostic } from "./diagnostics.ts";
import { diag } from "./diagnostics.ts";

/** Where a hop sits on the path, outside in. */
export const HOP_PLACES = ["entry", "name", "address", "route", "service", "pod"] as const;
export type HopPlace = (typeof HOP_PLACES)[number];

/** What is walked: a name a client on the LAN uses, and the Ingress and Service behind it. */
export interface ExposeTarget {
  /** The name clients use: `whoami.lab.home.arpa`. */
  host: string;
  /** The path the walk asks for. */
  path: string;
  ingress: { namespace: string; name: string };
  /** The Service the Ingress sends `host` to, and the Service port it names (number or name). */
  service: { namespace: string; name: string; port: number | string };
  /**
   * What a right answer is: the whoami canary names its pod (`Hostname: …`); a Service of the
   * user's may answer anything of its own.
   */
  expects: "whoami" | "any";
}

/** What earlier hops found out, for later ones. */
export interface HopFacts {
  /** The external address the path enters the cluster at, and its HTTP port. */
  address?: string;
  port?: number;
}

export type HopStatus = "ok" | "broken" | "blocked" | "skipped";

export interface HopResult {
  /**
   * `blocked`: not working, because a later hop is broken (that one is named); `skipped`: nothing
   * there to walk (no pod to look at when the selector matches none).
   */
  status: HopStatus;
  summary: string;
  detail?: string;
  /** The fix, as a command where possible. */
  hint?: string;
  /** Findings behind the answer (the host's layer-2 checks when an address does not answer). */
  findings?: Diagnostic[];
  facts?: HopFacts;
}

export interface HopContext {
  target: ExposeTarget;
  facts: Readonly<HopFacts>;
  signal: AbortSignal;
  /** How long a hop may wait for what was just applied to take effect (a controller to see an Ingress). */
  settleMs: number;
  /** How long one HTTP request from the host may take, in seconds. */
  httpTimeoutSec: number;
}

export interface Hop {
  /** Stable code, the contributing stage's prefix first: `traefik.route`. */
  id: string;
  place: HopPlace;
  /** What holds when the hop is fine: "whoami.lab.home.arpa resolves through the lab's DNS". */
  title: string;
  /** Facts it cannot walk without; when an earlier hop did not find them, it is skipped. */
  needs?: (keyof HopFacts)[];
  walk(hc: HopContext): Promise<HopResult>;
}

export const EXPOSE_HOPS_HOOK = "expose:hops";

// Declared on the plugin API's module, where the stages that answer see it (HookTypes lives in
// contract.ts and is exported there as the interface plugins augment).
declare module "kubehyve" {
  interface HookTypes {
    /** Asked once per walk: the hops a stage knows on the path to `target` (none: undefined). */
    [EXPOSE_HOPS_HOOK]: { payload: ExposeTarget; answer: Hop[] | undefined };
  }
}

/** What a run asks the walk to do (EngineRequest.expose). */
export interface ExposeRequest {
  app: /** verify --expose: deploy the whoami canary, walk it, remove it. */
    | { kind: "canary" }
    /** kubehyve expose: the Ingress for an existing Service, then its walk. */
    | { kind: "service"; namespace: string; name: string; host: string; port?: number | string }
    /** doctor: walk what kubehyve expose made, changing nothing. */
    | { kind: "exposed" };
  /** Say what would be deployed; deploy and walk nothing. */
  dryRun?: boolean;
  /** The port the servers of network.dns answer on (53). */
  dnsPort?: number;
  /** How long the canary may take to be ready before the walk goes ahead without it (180 s). */
  readyTimeoutMs?: number;
  settleMs?: number;
  httpTimeoutSec?: number;
}

/** One hop as walked, for the report and `--json`. */
export interface HopReport {
  /** 1-based position on the path. */
  index: number;
  id: string;
  place: HopPlace;
  /** The stage that contributed it, or `kubehyve` for the core's own. */
  from: string;
  title: string;
  status: HopStatus;
  summary: string;
  detail?: string;
  hint?: string;
  findings?: Diagnostic[];
}

export interface ExposeReport {
  target: ExposeTarget;
  hops: HopReport[];
  /** The hop to fix first, or undefined when every hop is fine. */
  broken?: HopReport;
}

/** A hop and who gave it. */
export interface SourcedHop {
  hop: Hop;
  from: string;
}

const ID = /^[a-z0-9][a-z0-9.-]*$/;

/** Answers come from other stages' code: a hop that is not one is that stage's bug, said clearly. */
export function checkHops(from: string, answer: unknown): SourcedHop[] {
  if (answer === undefined || answer === null) return [];
  const bug = (what: string) =>
    new KubehyveError(
      `stage ${from} answered ${EXPOSE_HOPS_HOOK} with ${what}`,
      1,
      "this is a bug of the plugin that gave the answer: update or remove it",
    );
  if (!Array.isArray(answer)) throw bug(`a ${typeof answer}, not a list of hops`);
  return answer.map((hop: Partial<Hop>) => {
    if (typeof hop?.id !== "string" || !ID.test(hop.id)) throw bug(`a hop without a valid id (${hop?.id})`);
    if (!HOP_PLACES.includes(hop.place as HopPlace))
      throw bug(`hop ${hop.id} at no known place (${hop.place})`);
    if (typeof hop.title !== "string" || typeof hop.walk !== "function")
      throw bug(`hop ${hop.id} without a title or a walk function`);
    return { hop: hop as Hop, from };
  });
}

export interface WalkOptions {
  signal?: AbortSignal;
  settleMs?: number;
  httpTimeoutSec?: number;
  /** Called with each hop as soon as it is walked, for output that keeps pace with the walk. */
  onHop?: (report: HopReport) => void;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Walks the hops in path order (stage order within a place), each once: a hop whose facts are
 * missing is skipped, a hop that throws is broken with the error as its reason (Ctrl-C still ends
 * the walk). The first broken hop is the one to fix; when only blocked ones are left, the first of
 * them.
 */
export async function walkHops(
  target: ExposeTarget,
  hops: readonly SourcedHop[],
  opts: WalkOptions = {},
): Promise<ExposeReport> {
  const signal = opts.signal ?? new AbortController().signal;
  const ordered = hops
    .map((h, i) => ({ ...h, i }))
    .sort((a, b) => HOP_PLACES.indexOf(a.hop.place) - HOP_PLACES.indexOf(b.hop.place) || a.i - b.i);
  const facts: HopFacts = {};
  const reports: HopReport[] = [];
  for (const [n, { hop, from }] of ordered.entries()) {
    const base = { index: n + 1, id: hop.id, place: hop.place, from, title: hop.title };
    const missing = (hop.needs ?? []).filter((k) => facts[k] === undefined);
    let report: HopReport;
    if (missing.length) {
      report = {
        ...base,
        status: "skipped",
        summary: `not walked: no hop before it found the ${missing.join(" and ")}`,
      };
    } else {
      try {
        const result = await hop.walk({
          target,
          facts: { ...facts },
          signal,
          settleMs: opts.settleMs ?? 20_000,
          httpTimeoutSec: opts.httpTimeoutSec ?? 5,
        });
        Object.assign(facts, result.facts ?? {});
        report = {
          ...base,
          status: result.status,
          summary: result.summary,
          ...(result.detail ? { detail: result.detail } : {}),
          ...(result.hint ? { hint: result.hint } : {}),
          ...(result.findings?.length ? { findings: result.findings } : {}),
        };
      } catch (error) {
        if (error instanceof CancelledError || signal.aborted) throw error;
        report = { ...base, status: "broken", summary: `the hop could not be walked: ${errorText(error)}` };
      }
    }
    reports.push(report);
    opts.onHop?.(report);
  }
  const broken = reports.find((r) => r.status === "broken") ?? reports.find((r) => r.status === "blocked");
  return { target, hops: reports, ...(broken ? { broken } : {}) };
}

/** The walk's one finding: every hop fine, or the first broken one with its fix. */
export function verdictOf(report: ExposeReport): Diagnostic {
  const { broken, target } = report;
  if (!broken) {
    const walked = report.hops.filter((h) => h.status === "ok").length;
    return diag.ok(
      "expose.ok",
      `${target.host} answers from the host through all ${walked} hops, down to Service ${target.service.namespace}/${target.service.name}`,
    );
  }
  return diag.error(
    "expose.broken",
    `${target.host}: the first broken hop is ${broken.index}, ${broken.title}: ${broken.summary}`,
    {
      ...(broken.hint ? { hint: broken.hint } : {}),
      ...(broken.detail ? { detail: broken.detail } : {}),
    },
  );
}
