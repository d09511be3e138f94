/**
 * A real dnsmasq on 127.0.0.1 for DNS checks: it serves exactly the records a test gives (the
 * `host-record=` lines a user would put on the router's dnsmasq) and nothing else: no
 * /etc/hosts, no upstream servers, no system configuration.
 */
import { createSocket } from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findTool } from "./prereq.ts";
import { track } from "./servers.ts";

export interface Dnsmasq {
  host: string;
  port: number;
  /** Everything dnsmasq logged (with --log-queries, one line per query). */
  log(): string;
  /** Waits until the log contains `text` (dnsmasq logs a query after answering it); false on timeout. */
  waitForLog(text: string, timeoutMs?: number): Promise<boolean>;
  stop(): Promise<void>;
}

export interface DnsmasqOptions {
  /** dnsmasq.conf lines, e.g. `host-record=cp1.lab.home.arpa,cp1,192.168.1.21`. */
  lines: string[];
  /**
   * Where it listens: a loopback address (default 127.0.0.1) and port (default a free one). A lab
   * whose cluster file names the server gives its address and port 53, as a router answers.
   */
  address?: string;
  port?: number;
}

const STARTUP_TIMEOUT_MS = 10_000;

async function freeUdpPort(): Promise<number> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => resolve());
  });
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

export async function startDnsmasq(opts: DnsmasqOptions): Promise<Dnsmasq> {
  const binary = findTool("dnsmasq");
  if (!binary) throw new Error("dnsmasq not found: install the Debian package dnsmasq-base");
  for (const line of opts.lines) {
    if (/[\n\r]/.test(line))
      throw new Error(`startDnsmasq: a configuration line cannot contain a newline: ${JSON.stringify(line)}`);
  }
  const dir = await mkdtemp(join(tmpdir(), "kubehyve-dnsmasq-"));
  const conf = join(dir, "dnsmasq.conf");
  await writeFile(conf, `${opts.lines.join("\n")}\n`);

  let lastError = "";
  const address = opts.address ?? "127.0.0.1";
  if (!address.startsWith("127.")) throw new Error(`startDnsmasq: ${address} is not a loopback address`);
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = opts.port ?? (await freeUdpPort());
    // Ended with the test file even when a test forgets stop() (servers.ts).
    const proc = track(
      Bun.spawn(
        [
          binary,
          "--keep-in-foreground",
          "--log-facility=-",
          "--log-queries",
          `--conf-file=${conf}`,
          "--no-resolv",
          "--no-hosts",
          "--no-poll",
          "--bind-interfaces",
          `--listen-address=${address}`,
          `--port=${port}`,
          "--pid-file=",
          // A root dnsmasq drops privileges to this user; a non-root one cannot and ignores it.
          ...(process.getuid?.() === 0 ? ["--user=nobody"] : []),
        ],
        { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
      ),
    );
    let output = "";
    const reader = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stderr) output += decoder.decode(chunk, { stream: true });
    })();
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    while (Date.now() < deadline && proc.exitCode === null && !/started, version/.test(output))
      await Bun.sleep(20);
    if (/started, version/.test(output) && proc.exitCode === null) {
      return {
        host: address,
        port,
        log: () => output,
        async waitForLog(text, timeoutMs = 2000) {
          const until = Date.now() + timeoutMs;
          while (!output.includes(text) && Date.now() < until) await Bun.sleep(10);
          return output.includes(text);
        },
        async stop() {
          proc.kill("SIGTERM");
          await proc.exited;
          await reader.catch(() => undefined);
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    proc.kill("SIGKILL");
    await proc.exited;
    lastError = output.trim();
    // Another process may take the port between probing and binding: only that case is retried.
    if (!/Address already in use/.test(output) || opts.port !== undefined) break;
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`dnsmasq did not start: ${lastError || "no output"}`);
}
