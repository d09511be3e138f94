/**
 * One HTTP GET made from a target, so that the request leaves from that machine (the hypervisor
 * host, on the lab's LAN) rather than from wherever kubehyve runs: curl where it is installed, else
 * FreeBSD's fetch(1), which the base system has. fetch(1) cannot send a Host header of its own
 * (libfetch takes it from the URL), so a request that needs one says that curl is missing.
 */
import { KubehyveError } from "../lib/errors.ts";
import type { Target } from "./target.ts";

/** The answer of one HTTP GET, or why there was none. */
export interface HttpAnswer {
  status?: number;
  body: string;
  /** No HTTP answer: the connection failed, timed out, or the client is missing. */
  error?: string;
  /** No request was made at all: the target has no client that can make this one (the fix). */
  noClient?: string;
}

export interface HttpGetOptions {
  /** The Host header, for a name that does not resolve (yet) to the address in the URL. */
  host?: string;
  timeoutSeconds?: number;
  /** Stops the request (a cancellable command: it is only a read). */
  signal?: AbortSignal;
}

const CURL_STATUS = "\nkubehyve-http-status:";

export async function httpGet(target: Target, url: string, opts: HttpGetOptions = {}): Promise<HttpAnswer> {
  // The URL is curl's and fetch's last argument: one starting with `-` would be read as an option
  // (-K FILE: a config file), and both read file:// URLs and speak other protocols besides.
  if (!/^https?:\/\/[^\s]+$/i.test(url))
    throw new KubehyveError(`httpGet on ${target.name}: ${JSON.stringify(url)} is not an http or https URL`);
  // A line break would end the Host header and start another of the caller's making.
  if (opts.host !== undefined && !/^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/.test(opts.host))
    throw new KubehyveError(`httpGet on ${target.name}: ${JSON.stringify(opts.host)} is not a host name`);
  const timeoutSeconds = opts.timeoutSeconds ?? 5;
  const run = { timeoutMs: (timeoutSeconds + 5) * 1000, signal: opts.signal, cancellable: true };
  const curl = await target.run(
    [
      "curl",
      "--silent",
      "--show-error",
      "--noproxy",
      "*",
      // Redirects are not followed; this holds the protocol to HTTP should that ever change.
      "--proto",
      "=http,https",
      "--max-time",
      String(timeoutSeconds),
      "--write-out",
      `${CURL_STATUS}%{http_code}`,
      ...(opts.host ? ["--header", `Host: ${opts.host}`] : []),
      url,
    ],
    run,
  );
  if (curl.code !== 127) {
    const at = curl.stdout.lastIndexOf(CURL_STATUS);
    const status = at >= 0 ? Number(curl.stdout.slice(at + CURL_STATUS.length).trim()) : undefined;
    const body = at >= 0 ? curl.stdout.slice(0, at) : curl.stdout;
    // curl exits 0 for any HTTP status without --fail; "000" is no answer at all.
    if (curl.code !== 0 || !status) return { body, error: curl.stderr.trim() || `curl exited ${curl.code}` };
    return { status, body };
  }
  if (opts.host)
    return {
      body: "",
      error: `curl is not installed on ${target.name}, and fetch(1) cannot send a Host header`,
      noClient: "pkg install curl",
    };
  // fetch(1): -o - writes the body to stdout; a non-2xx answer is an error naming the status.
  const fetch = await target.run(["fetch", "-q", "-o", "-", "-T", String(timeoutSeconds), url], run);
  if (fetch.code === 0) return { status: 200, body: fetch.stdout };
  return { body: fetch.stdout, error: fetch.stderr.trim() || `fetch exited ${fetch.code}` };
}
