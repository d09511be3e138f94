/**
 * The os/coreos options block of the cluster file, with its defaults. Every free-form value is held
 * to an allowlist here, so a bad one fails `config validate` (exit 2) before any host is touched.
 */
import { type Cluster, type Diagnostic, diag, parseSize, v } from "kubehyve";
import {
  hostDirProblem,
  isZincatiTimeZone,
  kernelArgProblem,
  MAX_KERNEL_ARGS_LENGTH,
  streamUrlProblem,
} from "./allowlists.ts";

export const STREAMS = ["stable", "testing", "next"] as const;
export type Stream = (typeof STREAMS)[number];

/** The canonical stream metadata URL (fedora-coreos-docs, stream-metadata.adoc). */
export function officialStreamUrl(stream: Stream): string {
  return `https://builds.coreos.fedoraproject.org/streams/${stream}.json`;
}

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] as const;

// Zincati's periodic strategy (docs: fedora-coreos-docs auto-updates.adoc): days, a UTC start time
// and a length; a window crossing midnight is fine.
const PeriodicSchema = v.strictObject({
  strategy: v.literal("periodic"),
  days: v.optional(v.pipe(v.array(v.picklist(DAYS)), v.minLength(1, "name at least one day")), [
    "Sat",
    "Sun",
  ]),
  startTime: v.optional(
    v.pipe(v.string(), v.regex(/^([01]\d|2[0-3]):[0-5]\d$/, "use HH:MM, 24-hour")),
    "02:00",
  ),
  lengthMinutes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10080)), 240),
  timeZone: v.optional(
    v.pipe(
      v.string(),
      v.check(
        isZincatiTimeZone,
        'must be "localtime" or a time zone name of the IANA database, spelled as it is there, such as Europe/Berlin',
      ),
    ),
  ),
});

export const ZincatiSchema = v.variant("strategy", [
  PeriodicSchema,
  v.strictObject({ strategy: v.literal("immediate") }),
  v.strictObject({ strategy: v.literal("off") }),
]);

const SizeSchema = v.pipe(
  v.union([v.number(), v.string()]),
  v.transform((input) => parseSize(input) ?? Number.NaN),
  v.check((n) => Number.isFinite(n) && n > 0, "a size such as 3GiB"),
);

const KernelArgSchema = v.pipe(
  v.string(),
  v.check(
    (arg) => kernelArgProblem(arg) === undefined,
    (issue) => kernelArgProblem(issue.input as string) ?? "not a kernel argument",
  ),
);

const KernelArgsSchema = v.pipe(
  v.array(KernelArgSchema),
  v.check(
    (args) => args.join(" ").length <= MAX_KERNEL_ARGS_LENGTH,
    `together at most ${MAX_KERNEL_ARGS_LENGTH} characters: the whole kernel command line is limited to 2048 on x86, and Fedora CoreOS's boot entry already uses about 500 of them`,
  ),
);

export const CoreosOptionsSchema = v.strictObject({
  stream: v.optional(v.picklist(STREAMS), "stable"),
  /**
   * Stream metadata URL; default the official one of `stream`. https, or http when a mirror
   * (KUBEHYVE_MIRROR) serves it (see `validateCoreos`).
   */
  streamUrl: v.optional(
    v.pipe(
      v.string(),
      v.check(
        (url) => streamUrlProblem(url) === undefined,
        (issue) => streamUrlProblem(issue.input as string) ?? "not a stream URL",
      ),
    ),
  ),
  zincati: v.optional(ZincatiSchema, {
    strategy: "periodic",
    days: ["Sat", "Sun"],
    startTime: "02:00",
    lengthMinutes: 240,
  }),
  kernelArgs: v.optional(KernelArgsSchema, []),
  /** Memory the OS must report; default 90% of the node's memory (the kernel keeps the rest). */
  minMemory: v.optional(SizeSchema),
  /**
   * With an `ssh://` host: the stage's directory on the host (golden images, Ignition configs, the
   * verified copy of the download); default `/var/db/kubehyve/<cluster>/os`. A local host keeps them
   * in the state dir.
   */
  hostDir: v.optional(
    v.pipe(
      v.string(),
      v.check(
        (path) => hostDirProblem(path) === undefined,
        (issue) => hostDirProblem(issue.input as string) ?? "not a plain absolute path",
      ),
    ),
  ),
  /** Port of the cluster's DNS servers, for labs whose resolver listens elsewhere. */
  dnsPort: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)), 53),
});

export type CoreosOptions = v.InferOutput<typeof CoreosOptionsSchema>;
export type ZincatiOptions = v.InferOutput<typeof ZincatiSchema>;

export function streamUrlOf(options: CoreosOptions): string {
  return options.streamUrl ?? officialStreamUrl(options.stream);
}

/**
 * The rules the schema cannot know: a plain-http stream URL is only fetched through a mirror (the
 * download cache's KUBEHYVE_MIRROR replaces its scheme and host), so without one it is refused here,
 * before anything is fetched.
 */
export function validateCoreos(
  input: { cluster: Cluster; options: CoreosOptions },
  env: Record<string, string | undefined> = process.env,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const url = input.options.streamUrl;
  if (url && new URL(url).protocol === "http:" && !env.KUBEHYVE_MIRROR) {
    out.push(
      diag.error(
        "coreos.stream-url-http",
        `must be an https URL: ${url} is plain http, which only a mirror may serve (set KUBEHYVE_MIRROR to it)`,
        { path: "stages.os.streamUrl" },
      ),
    );
  }
  return out;
}
