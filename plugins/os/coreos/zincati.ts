/**
 * Did Zincati reboot a node outside its update window? Zincati logs one line as it finalizes a
 * staged update, which reboots the node at once (zincati src/update_agent/actor.rs
 * `finalize_deployment`: "staged deployment '<version>' available, proceeding to finalize it");
 * the probe reads those lines of the last 30 days from the node's journal with their times. The
 * periodic strategy may finalize only inside a window: weekly, `days` at `start_time` for
 * `length_minutes`, in `time_zone` (UTC unless set; `localtime` is the node's own zone), a window
 * running past midnight or past Sunday included (zincati docs/usage/updates-strategy.md). A
 * finalization outside it means the window the cluster file asks for is not the one Zincati
 * follows (another drop-in, a different time zone), or Zincati was rebooting with updates off.
 */
import { type Diagnostic, diag, type NodeSpec } from "kubehyve";
import { ZINCATI_PATH } from "./ignition.ts";
import type { ZincatiOptions } from "./options.ts";

export const FINALIZE_LINE = "proceeding to finalize it";

export interface Finalization {
  /** When Zincati logged it, in ms since the epoch. */
  at: number;
  version: string;
}

/**
 * `journalctl -o short-unix` lines (journalctl(1): the realtime timestamp in seconds since the
 * epoch, with microseconds, then the host and the identifier), Zincati's finalizing ones among them.
 */
export function parseFinalizations(text: string): Finalization[] {
  const out: Finalization[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\d+(?:\.\d+)?) .*staged deployment '([^']*)' available, proceeding to finalize it/.exec(
      line,
    );
    if (m) out.push({ at: Math.round(Number(m[1]) * 1000), version: m[2]! });
  }
  return out;
}

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const WEEK_MINUTES = 7 * 24 * 60;

/** Minutes since Monday 00:00 of `at` on the wall clock of `timeZone`. */
function minuteOfWeek(at: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    weekday: "short",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(new Date(at));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return DAYS.indexOf(get("weekday")) * 1440 + Number(get("hour")) * 60 + Number(get("minute"));
}

type Periodic = Extract<ZincatiOptions, { strategy: "periodic" }>;

/** Whether `at` falls inside one of the weekly windows (wall-clock minutes, as Zincati counts them). */
export function insideWindow(at: number, window: Periodic, timeZone: string): boolean {
  const now = minuteOfWeek(at, timeZone);
  const [h, m] = window.startTime.split(":").map(Number) as [number, number];
  return window.days.some((day) => {
    const start = DAYS.indexOf(day) * 1440 + h * 60 + m;
    return (((now - start) % WEEK_MINUTES) + WEEK_MINUTES) % WEEK_MINUTES < window.lengthMinutes;
  });
}

function describeWindow(w: Periodic, timeZone: string): string {
  return `${w.days.join(", ")} from ${w.startTime} for ${w.lengthMinutes} minutes (${timeZone})`;
}

/** The finding of one node, or undefined when every finalization it logged was allowed. */
export function zincatiReboots(
  node: NodeSpec,
  zincati: ZincatiOptions,
  journal: string,
  /** The node's own time zone (timedatectl's Timezone), for `timeZone: localtime`. */
  nodeTimeZone: string | undefined,
): Diagnostic | undefined {
  if (zincati.strategy === "immediate") return undefined;
  const found = parseFinalizations(journal);
  if (!found.length) return undefined;
  const when = (f: Finalization) => `${new Date(f.at).toISOString()} (to ${f.version})`;
  const hint = `ssh core@${node.address} ls /etc/zincati/config.d /usr/lib/zincati/config.d   # kubehyve writes ${ZINCATI_PATH}; a later drop-in or another time zone wins over it`;
  if (zincati.strategy === "off") {
    return diag.warn(
      "coreos.zincati-reboot-outside-window",
      `Zincati rebooted ${node.name} to finalize an update although updates are off: ${found.map(when).join(", ")}`,
      { target: node.name, hint },
    );
  }
  const zone = zincati.timeZone === "localtime" ? (nodeTimeZone ?? "UTC") : (zincati.timeZone ?? "UTC");
  const outside = found.filter((f) => !insideWindow(f.at, zincati, zone));
  if (!outside.length) return undefined;
  return diag.warn(
    "coreos.zincati-reboot-outside-window",
    `Zincati rebooted ${node.name} outside its update window ${describeWindow(zincati, zone)}: ${outside.map(when).join(", ")}`,
    { target: node.name, detail: `the journal's lines:\n${journal.trim()}`, hint },
  );
}
