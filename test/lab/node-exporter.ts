/**
 * The real Prometheus node_exporter (Debian's prometheus-node-exporter) on loopback, reading one
 * textfile directory and nothing else: what a monitored host does with the file that
 * `doctor --format prometheus --output` writes. A test writes .prom files into `directory`, scrapes
 * /metrics, and sees what node_exporter made of them.
 *
 * How node_exporter 1.5.0 judges a textfile (github.com/prometheus/node_exporter, v1.5.0):
 * - collector/textfile.go:214 reads only names ending in `.prom`; :276 parses each file with
 *   prometheus/common's expfmt.TextParser (Debian builds against common 0.39.0), whose errors
 *   (expfmt/text_parse.go at v0.39.0: :116 a last line without a line feed, :496 a second HELP,
 *   :511 a second TYPE or a TYPE after samples (:233 types a sample's family as untyped), :309 a
 *   label name twice, :583 an escape other than \\ and \n in a HELP text, :656 one other than
 *   \\, \" and \n in a label value, :330 a label value that is not UTF-8, :409 a value that is
 *   not a float) fail the file, and so does any client-side timestamp (textfile.go:281-282). A
 *   failed file sets `node_textfile_scrape_error` to 1 (textfile.go:225-226, :249-251) and gets no
 *   `node_textfile_mtime_seconds{file=…}` (:231 records the mtime of files read successfully only).
 * - Two samples of one name and label set parse fine (text_parse.go:82-85: "checks for duplicates
 *   have to be performed separately") and leave node_textfile_scrape_error at 0; the registry
 *   rejects the second one when it gathers (client_golang v1.14.0 prometheus/registry.go:937-940),
 *   node_exporter serves the rest anyway (node_exporter.go:130, promhttp.ContinueOnError) and
 *   counts the failure in `promhttp_metric_handler_errors_total{cause="gathering"}`
 *   (promhttp/http.go:141). `gatheringErrors` reports that count for each scrape.
 * - The lines of one metric that do not stand together are merged, not refused
 *   (text_parse.go:682: a name seen before continues its family).
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import parsePrometheusTextFormat, { type MetricFamily } from "parse-prometheus-text-format";
import { findTool, have } from "./prereq.ts";
import { dyingWithParent, haveSetpriv, track } from "./servers.ts";

export const NODE_EXPORTER = "prometheus-node-exporter";

export interface TextfileScrape {
  /** What node_exporter served on /metrics. */
  text: string;
  /** `text` as the npm parser reads it. */
  families: MetricFamily[];
  /** `node_textfile_scrape_error`: 1 when some .prom file could not be read or was refused. */
  scrapeError: number;
  /**
   * `node_textfile_mtime_seconds` by file (`join(directory, name)`, textfile.go:213): the files
   * node_exporter read successfully.
   */
  mtimes: Map<string, number>;
  /** Samples the registry dropped while gathering this scrape (a series given twice). */
  gatheringErrors: number;
  /** The error lines node_exporter logged while serving this scrape. */
  errors: string[];
}

export interface NodeExporter {
  url: string;
  /** node_exporter's own pid (setpriv execs it). */
  pid: number;
  /** The textfile collector's directory. */
  directory: string;
  scrape(): Promise<TextfileScrape>;
  /** Everything node_exporter logged (logfmt). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 10_000;
const SCRAPE_TIMEOUT_MS = 10_000;

/** True when the programs the helper runs are here (under CI=true, throws when one is not). */
export function haveNodeExporter(): boolean {
  return have(NODE_EXPORTER, NODE_EXPORTER) && haveSetpriv();
}

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

/** The value of the sample of `name` whose labels include `labels`, or undefined. */
function sampleValue(
  families: MetricFamily[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const metric = families
    .find((f) => f.name === name)
    ?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return metric === undefined ? undefined : Number(metric.value);
}

async function get(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${text.trim()}`);
  return text;
}

/**
 * Starts node_exporter with only the textfile collector, reading `directory` (made if missing),
 * on a free 127.0.0.1 port, and returns once it answers HTTP.
 */
export async function startNodeExporter(directory: string): Promise<NodeExporter> {
  const binary = findTool(NODE_EXPORTER);
  if (!binary) throw new Error(`${NODE_EXPORTER} is needed: install ${NODE_EXPORTER}`);
  await mkdir(directory, { recursive: true });
  // The log has a directory of its own: node_exporter must see only the test's files.
  const logDir = await mkdtemp(join(tmpdir(), "kubehyve-node-exporter-"));
  const logFile = join(logDir, "node-exporter.log");
  const readLog = () => readFile(logFile, "utf8").catch(() => "");

  let lastError = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    await rm(logFile, { force: true });
    // Flags as `prometheus-node-exporter --help` of 1.5.0 lists them. The exporter's own metrics
    // stay on: promhttp_metric_handler_errors_total is how a dropped duplicate series shows.
    // Ended with the test file even when a test forgets stop(), and by the kernel when the test
    // process dies (servers.ts).
    const proc = track(
      Bun.spawn(
        dyingWithParent([
          binary,
          "--collector.disable-defaults",
          "--collector.textfile",
          `--collector.textfile.directory=${directory}`,
          `--web.listen-address=127.0.0.1:${port}`,
        ]),
        { stdin: "ignore", stdout: "ignore", stderr: Bun.file(logFile) },
      ),
    );
    const stop = async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    };

    // Up once / answers: what a scrape needs. A port taken in the meantime ends the process with
    // "bind: address already in use" (exporter-toolkit v0.8.2 web/tls_config.go:219).
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let up = false;
    while (!up && proc.exitCode === null && Date.now() < deadline) {
      up = await fetch(`${url}/`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.ok,
        () => false,
      );
      if (!up) await Bun.sleep(20);
    }
    if (up) {
      let logSeen = (await readLog()).length;
      return {
        url,
        pid: proc.pid,
        directory,
        async scrape() {
          const text = await get(`${url}/metrics`);
          // node_exporter logs an error before it answers the request that met it.
          const log = await readLog();
          const errors = log
            .slice(logSeen)
            .split("\n")
            .filter((line) => line.includes("level=error"));
          // promhttp counts a gathering error after it has gathered the counter itself
          // (promhttp/http.go:136-141): this scrape's errors show in the next one.
          const next = await get(`${url}/metrics`);
          logSeen = (await readLog()).length;
          const families = parsePrometheusTextFormat(text);
          const scrapeError = sampleValue(families, "node_textfile_scrape_error");
          if (scrapeError === undefined)
            throw new Error(`node_exporter served no node_textfile_scrape_error:\n${text}`);
          const mtimes = new Map<string, number>();
          for (const m of families.find((f) => f.name === "node_textfile_mtime_seconds")?.metrics ?? [])
            mtimes.set(m.labels?.file ?? "", Number(m.value));
          const gathering = (f: MetricFamily[]) => {
            const value = sampleValue(f, "promhttp_metric_handler_errors_total", { cause: "gathering" });
            if (value === undefined)
              throw new Error("node_exporter served no promhttp_metric_handler_errors_total");
            return value;
          };
          const gatheringErrors = gathering(parsePrometheusTextFormat(next)) - gathering(families);
          return { text, families, scrapeError, mtimes, gatheringErrors, errors };
        },
        log: readLog,
        async stop() {
          await stop();
          await rm(logDir, { recursive: true, force: true });
        },
      };
    }
    if (proc.exitCode === null) await stop();
    lastError = (await readLog()).trim().split("\n").slice(-3).join(" | ");
    // Another process may take the port between probing and binding: only that case is retried.
    if (!lastError.includes("address already in use")) break;
  }
  await rm(logDir, { recursive: true, force: true });
  throw new Error(
    `${NODE_EXPORTER} did not start answering within ${STARTUP_TIMEOUT_MS} ms: ${lastError || "no output"}`,
  );
}
