/** The os/coreos options block of the cluster file, with its defaults. */
import { parseSize, v } from "kubehyve";

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
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9_+\-/]+$/, "an IANA time zone such as Europe/Berlin")),
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

// A kernel argument is one word: Ignition's kernelArguments take them one by one.
const KernelArgSchema = v.pipe(
  v.string(),
  v.regex(/^[^\s"'\\]+$/, "one kernel argument, without spaces or quotes"),
);

export const CoreosOptionsSchema = v.strictObject({
  stream: v.optional(v.picklist(STREAMS), "stable"),
  /** Stream metadata URL; default the official one of `stream`. */
  streamUrl: v.optional(v.pipe(v.string(), v.url())),
  zincati: v.optional(ZincatiSchema, {
    strategy: "periodic",
    days: ["Sat", "Sun"],
    startTime: "02:00",
    lengthMinutes: 240,
  }),
  kernelArgs: v.optional(v.array(KernelArgSchema), []),
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
      // The Ignition path under it goes into vm-bhyve's bhyve_options, which splits and globs.
      v.regex(
        /^\/[^\s*?[\]]*[^\s*?[\]/]$/,
        "an absolute path without blanks, glob characters or a trailing slash",
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
