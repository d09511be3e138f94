/**
 * `lb:l2-host`: what the hypervisor stage finds on its host that keeps layer 2 announcements from
 * working (the vm-bhyve switch not bridged to the LAN's NIC, the host's address on a bridge member
 * instead of the bridge, pf or ipfw filtering bridged traffic, TSO/LRO on the members). The lb
 * stage asks; the stage that knows the host answers with diagnostics, read-only. No answer: nothing
 * to report (or no stage that can tell).
 */
import { type Diagnostic, DiagnosticSchema, KubehyveError, v } from "kubehyve";

export const L2_HOST_HOOK = "lb:l2-host";

declare module "kubehyve" {
  interface HookTypes {
    [L2_HOST_HOOK]: { payload: L2HostPayload; answer: Diagnostic[] | undefined };
  }
}

export interface L2HostPayload {
  /** The node subnet the addresses are announced on (network.subnet). */
  subnet: string;
  /** Every pool address as the cluster file gives it (CIDRs and ranges). */
  addresses: string[];
}

/** One answer of lb:l2-host, as the core holds it before this stage reads it. */
export const l2HostAnswer = v.optional(v.array(DiagnosticSchema, "a list of diagnostics"));

const SEVERITIES = new Set(["ok", "info", "warn", "error"]);

/** The answers, checked: they come from another stage's code and end up in this stage's report. */
export function collectHostDiagnostics(answers: readonly unknown[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const answer of answers) {
    if (answer === undefined || answer === null) continue;
    if (!Array.isArray(answer))
      throw new KubehyveError(
        `a stage answered ${L2_HOST_HOOK} with a ${typeof answer}, not a list of diagnostics`,
        1,
        "this is a bug of the plugin that gave the answer: update or remove it",
      );
    for (const d of answer as Partial<Diagnostic>[]) {
      if (typeof d?.code !== "string" || !SEVERITIES.has(String(d.severity)) || typeof d.summary !== "string")
        throw new KubehyveError(
          `a stage answered ${L2_HOST_HOOK} with ${JSON.stringify(d)}, not a diagnostic (code, severity, summary)`,
          1,
          "this is a bug of the plugin that gave the answer: update or remove it",
        );
      out.push(d as Diagnostic);
    }
  }
  return out;
}
