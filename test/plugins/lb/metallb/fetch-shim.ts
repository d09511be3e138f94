/**
 * FreeBSD's fetch(1) as the lb stage's canary runs it on the hypervisor host: `fetch -q -o - -T
 * SECONDS URL`. Behaviour from usr.bin/fetch/fetch.1 (FreeBSD 14): -q quiet, -o - writes to the
 * standard output, -T sets the timeout in seconds, exit status 0 on success and 1 on failure, with
 * "fetch: URL: reason" on the standard error (the man page's example: "fetch:
 * https://www.freebsd.org/bad.html: Not Found"). Only what the stage uses is understood; anything
 * else is an error, as is an address outside 127.0.0.0/8: tests never send traffic elsewhere.
 *
 * Each run is appended to $FETCH_SHIM_LOG as one JSON line of its arguments.
 */
import { appendFileSync } from "node:fs";

const args = process.argv.slice(2);
if (process.env.FETCH_SHIM_LOG) appendFileSync(process.env.FETCH_SHIM_LOG, `${JSON.stringify(args)}\n`);

let output: string | undefined;
let timeout = 120;
let url: string | undefined;
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === "-q") continue;
  if (a === "-o") output = args[++i];
  else if (a === "-T") timeout = Number(args[++i]);
  else if (!a.startsWith("-") && url === undefined) url = a;
  else {
    process.stderr.write(`fetch: illegal option -- ${a.replace(/^-/, "")}\n`);
    process.exit(1);
  }
}
if (!url || output !== "-") {
  process.stderr.write("usage: fetch [-q] -o - [-T seconds] URL (this stand-in writes to stdout only)\n");
  process.exit(1);
}
const host = new URL(url).hostname;
if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) {
  process.stderr.write(`fetch: ${url}: the test host sends no traffic outside 127.0.0.0/8\n`);
  process.exit(1);
}

try {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeout * 1000) });
  if (!res.ok) {
    process.stderr.write(`fetch: ${url}: ${res.statusText || `HTTP ${res.status}`}\n`);
    process.exit(1);
  }
  process.stdout.write(await res.text());
  process.exit(0);
} catch (error) {
  const e = error as { name?: string; code?: string };
  const reason =
    e.name === "TimeoutError"
      ? "Operation timed out"
      : e.code === "ConnectionRefused" || e.code === "ECONNREFUSED"
        ? "Connection refused"
        : String((error as Error).message);
  process.stderr.write(`fetch: ${url}: ${reason}\n`);
  process.exit(1);
}
