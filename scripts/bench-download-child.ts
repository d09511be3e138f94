/**
 * One download through the artifact cache, in a process of its own so that its peak RSS can be
 * measured: `bun scripts/bench-download-child.ts URL SHA256 CACHE_DIR`. Prints the verified sha256
 * as sha256sum would. Run by bench-download.ts.
 */
import { readFileSync } from "node:fs";
import { DownloadCache } from "../src/artifacts/cache.ts";

const [url, sha256, dir] = process.argv.slice(2) as [string, string, string];
const cache = new DownloadCache({ dir });
const path = await cache.fetch({ url, sha256, name: "image.raw" });
console.log(readFileSync(`${path}.sha256`, "utf8").trim());
