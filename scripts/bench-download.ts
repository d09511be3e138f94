/**
 * Download and verify a large file from a loopback HTTP server (test/lab/http.ts) through the
 * artifact cache (src/artifacts/cache.ts), against `curl -s URL | sha256sum`, side by side: the two
 * alternate, each in a process of its own, so that each one's peak RSS is its own. Targets: the
 * cache's throughput at least 0.8× curl's, its process's peak RSS at most 100 MB.
 *
 * The cache does more than the pipe: it writes the file to disk (and renames it into place, with
 * its sha256 sidecar), so `curl -s URL | tee FILE | sha256sum`, the same work done by shell tools,
 * is shown too.
 *
 *   bun scripts/bench-download.ts [--mib 1024] [--runs 3]
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { serveFiles } from "../test/lab/http.ts";
import { header, load, median, verdict } from "./bench-common.ts";

const { values } = parseArgs({
  options: { mib: { type: "string", default: "1024" }, runs: { type: "string", default: "3" } },
});
const mib = Number(values.mib);
const runs = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), "kubehyve-bench-download-"));

// The file: pseudo-random bytes (a repeating pattern would not matter to sha256, but keeps no
// filesystem from being clever about it), hashed once as it is written.
const file = join(dir, "image.raw");
const hasher = new Bun.CryptoHasher("sha256");
{
  const block = new Uint8Array(1024 * 1024);
  let x = 0x9e3779b9;
  const fd = openSync(file, "w");
  for (let i = 0; i < mib; i++) {
    for (let j = 0; j < block.length; j += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      block[j] = x & 0xff;
      block[j + 1] = (x >>> 8) & 0xff;
      block[j + 2] = (x >>> 16) & 0xff;
      block[j + 3] = (x >>> 24) & 0xff;
    }
    hasher.update(block);
    writeSync(fd, block);
  }
  closeSync(fd);
}
const sha256 = hasher.digest("hex");
const server = serveFiles({ "/image.raw": Bun.file(file) });
const url = `${server.url}/image.raw`;

header(`download and verify ${mib} MiB from ${server.url} (median of ${runs} runs, alternating)`);

const child = join(import.meta.dir, "bench-download-child.ts");
const commands: { name: string; argv: (run: number) => string[] }[] = [
  { name: "curl -s URL | sha256sum", argv: () => ["sh", "-c", 'curl -sf "$0" | sha256sum', url] },
  {
    name: "curl -s URL | tee FILE | sha256sum",
    argv: (run) => ["sh", "-c", 'curl -sf "$0" | tee "$1" | sha256sum', url, join(dir, `tee-${run}`)],
  },
  {
    name: "kubehyve's artifact cache",
    argv: (run) => [process.execPath, child, url, sha256, join(dir, `cache-${run}`)],
  },
];

const seconds = commands.map(() => [] as number[]);
const peaks = commands.map(() => 0);
const rssFile = join(dir, "maxrss");
for (let run = 0; run < runs; run++) {
  for (const [i, c] of commands.entries()) {
    const t0 = performance.now();
    // Not spawnSync: the server answers from this process's event loop.
    const p = Bun.spawn(["/usr/bin/time", "-f", "%M", "-o", rssFile, ...c.argv(run)], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    const s = (performance.now() - t0) / 1000;
    if (code !== 0) throw new Error(`${c.name} failed: ${err}`);
    if (!out.includes(sha256)) throw new Error(`${c.name} did not verify ${sha256}: ${out}`);
    seconds[i]!.push(s);
    peaks[i] = Math.max(peaks[i]!, Number(readFileSync(rssFile, "utf8").trim()) * 1024);
    rmSync(join(dir, `tee-${run}`), { force: true });
    rmSync(join(dir, `cache-${run}`), { recursive: true, force: true });
  }
}
await server.stop();
rmSync(dir, { recursive: true, force: true });

const throughput = seconds.map((s) => mib / median(s));
commands.forEach((c, i) => {
  console.log(
    `${c.name.padEnd(36)} ${median(seconds[i]!).toFixed(2)} s  ${throughput[i]!.toFixed(0).padStart(5)} MiB/s  peak RSS ${(peaks[i]! / 1e6).toFixed(0)} MB`,
  );
});
const ratio = throughput[2]! / throughput[0]!;
const met = [
  verdict(`cache throughput ${ratio.toFixed(2)}× curl | sha256sum (target ≥ 0.8×)`, ratio >= 0.8),
  verdict(`cache's peak RSS ${(peaks[2]! / 1e6).toFixed(0)} MB (target ≤ 100 MB)`, peaks[2]! <= 100e6),
];
console.log(
  `(the cache against curl | tee FILE | sha256sum, the same work: ${(throughput[2]! / throughput[1]!).toFixed(2)}×)`,
);
console.log(`load average at the end: ${load()}`);
process.exit(met.every(Boolean) ? 0 : 1);
