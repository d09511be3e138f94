/**
 * The one fetcher of the add-on stages' pinned release files: each file through the real download
 * cache, by its sha256, from a loopback mirror serving the upstream bytes at their upstream paths,
 * parsed in the order given; `cachedOnly` (render) downloads nothing and says what is missing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as yamlLibrary from "yaml";
import { DownloadCache } from "../../src/artifacts/cache.ts";
import { parseManifests } from "../../src/kube/apply.ts";
import {
  MANIFEST_MAX_BYTES,
  missingNote,
  nativeDocuments,
  parsePinned,
  pinnedManifests,
} from "../../src/kube/pinned.ts";
import { type FileServer, serveFiles } from "../lab/http.ts";
import { oracle } from "../lab/oracles.ts";

const RBAC_PATH =
  "/traefik/traefik/v3.7.9/docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml";
const METALLB_PATH = "/metallb/metallb/v0.16.1/config/manifests/metallb-native.yaml";
const RBAC_FILE = "releases/traefik/docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml";
const METALLB_FILE = "releases/metallb/config/manifests/metallb-native.yaml";

const rbac = {
  url: `https://raw.githubusercontent.com${RBAC_PATH}`,
  sha256: "01e592c73d42c225351fe41b40162fc77ec5239773e7d7be81d40bba08f65f27",
  name: "traefik-v3.7.9-kubernetes-crd-rbac.yml",
};
const metallb = {
  url: `https://raw.githubusercontent.com${METALLB_PATH}`,
  sha256: "bf25feebb7582ca7df845efd52ffbc2960d6cbf4cfc972f47fded9f788b67f0b",
  name: "metallb-v0.16.1-metallb-native.yaml",
  title: "MetalLB v0.16.1 metallb-native.yaml",
};

let mirror: FileServer;
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kubehyve-pinned-"));
  mirror = serveFiles({
    [RBAC_PATH]: Bun.file(oracle(RBAC_FILE)),
    [METALLB_PATH]: Bun.file(oracle(METALLB_FILE)),
    "/broken/not-yaml.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n",
  });
});
afterAll(async () => {
  await mirror.stop();
  await rm(tmp, { recursive: true, force: true });
});

async function freshCache(): Promise<DownloadCache> {
  return new DownloadCache({ dir: await mkdtemp(join(tmp, "cache-")), mirror: mirror.url });
}

const names = (objects: { kind: string; metadata: { name: string } }[]) =>
  objects.map((o) => `${o.kind}/${o.metadata.name}`);

describe("pinnedManifests", () => {
  test("fetches each file once through the mirror and gives its objects, the files in the order given", async () => {
    const cache = await freshCache();
    const before = mirror.hits(METALLB_PATH);
    const got = await pinnedManifests(cache, [metallb, rbac]);
    expect(got.files.map((f) => f.file)).toEqual([metallb, rbac]);
    expect(got.missing).toEqual([]);
    // The same objects as the upstream files, in their order.
    expect(names(got.files[0]!.objects)).toEqual(
      names(parseManifests(readFileSync(oracle(METALLB_FILE), "utf8"), "upstream")),
    );
    expect(names(got.files[1]!.objects)).toEqual([
      "ClusterRole/traefik-ingress-controller",
      "ClusterRoleBinding/traefik-ingress-controller",
    ]);
    const again = await pinnedManifests(cache, [rbac, metallb]);
    expect(again.files.map((f) => f.file.name)).toEqual([rbac.name, metallb.name]);
    expect(mirror.hits(METALLB_PATH) - before).toBe(1);
  });

  test("a file without a pinned size is fetched with a bound a manifest never needs; a pinned size is kept", async () => {
    const asked: { size?: number; maxBytes?: number }[] = [];
    const real = await freshCache();
    const cache = {
      has: (file: typeof rbac) => real.has(file),
      fetch: (file: typeof rbac & { size?: number; maxBytes?: number }) => {
        asked.push({ size: file.size, maxBytes: file.maxBytes });
        return real.fetch(file);
      },
    };
    await pinnedManifests(cache, [rbac, { ...metallb, size: 88_670 }]);
    expect(asked).toEqual([
      { size: undefined, maxBytes: MANIFEST_MAX_BYTES },
      { size: 88_670, maxBytes: undefined },
    ]);
    expect(MANIFEST_MAX_BYTES).toBe(64 * 1024 * 1024);
  });

  test("a wrong sha256 fails naming both hashes and the file, and leaves nothing in the cache", async () => {
    const cache = await freshCache();
    const wrong = { ...rbac, sha256: "0".repeat(64) };
    const failure = pinnedManifests(cache, [metallb, wrong]);
    await expect(failure).rejects.toThrow(
      `checksum mismatch for ${mirror.url}${RBAC_PATH} (mirror of ${rbac.url}): expected sha256 ${"0".repeat(64)}, got ${rbac.sha256}; the file was deleted`,
    );
    expect(existsSync(cache.pathOf(wrong))).toBe(false);
    expect(await cache.has(wrong)).toBe(false);
  });

  test("a mirror serving a file of the right size whose objects were changed (a binding to cluster-admin) is refused before anything is parsed", async () => {
    const upstream = readFileSync(oracle(RBAC_FILE), "utf8");
    // The binding's roleRef now names cluster-admin; padded to keep the file's size.
    const tampered = upstream.replace(
      /(roleRef:\s*\n(?:\s+\w+:.*\n)*?\s+name: )traefik-ingress-controller/,
      (_, head) => `${head}${"cluster-admin".padEnd("traefik-ingress-controller".length)}`,
    );
    expect(tampered).not.toBe(upstream);
    expect(Buffer.byteLength(tampered)).toBe(Buffer.byteLength(upstream));
    const evil = serveFiles({ [RBAC_PATH]: tampered });
    try {
      const cache = new DownloadCache({ dir: await mkdtemp(join(tmp, "cache-")), mirror: evil.url });
      const file = { ...rbac, size: Buffer.byteLength(upstream) };
      await expect(pinnedManifests(cache, [file])).rejects.toThrow(
        `checksum mismatch for ${evil.url}${RBAC_PATH} (mirror of ${rbac.url}): expected sha256 ${rbac.sha256}`,
      );
      expect(await cache.has(file)).toBe(false);
    } finally {
      await evil.stop();
    }
  });

  test("cachedOnly downloads nothing and lists, in order, the files not in the cache yet", async () => {
    const cache = await freshCache();
    await cache.fetch(rbac);
    const requests = mirror.requests.length;
    const got = await pinnedManifests(cache, [metallb, rbac], { cachedOnly: true });
    expect(mirror.requests.length).toBe(requests);
    expect(got.files.map((f) => f.file)).toEqual([rbac]);
    expect(got.missing).toEqual([metallb]);
    const note = missingNote(got.missing);
    expect(note.split("\n").filter((l) => !l.startsWith("#"))).toEqual([
      `${metallb.url} sha256:${metallb.sha256}`,
      "",
    ]);
  });

  test("a file that is not YAML is refused with its title and where", async () => {
    const cache = await freshCache();
    const body = "apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n";
    const file = {
      url: "https://example.org/broken/not-yaml.yaml",
      sha256: new Bun.CryptoHasher("sha256").update(body).digest("hex"),
      title: "Example v1 not-yaml.yaml",
    };
    await expect(pinnedManifests(cache, [file])).rejects.toThrow(
      /^manifest Example v1 not-yaml\.yaml: line \d+, column \d+: /,
    );
    // Without a title, the file is named by its URL.
    const { title: _, ...untitled } = file;
    await expect(pinnedManifests(cache, [untitled])).rejects.toThrow(`manifest ${file.url}: line`);
  });
});

describe("parsePinned", () => {
  /** Every upstream release file a stage pins and applies, as the oracle data holds their bytes. */
  const pinnedReleaseFiles = ["calico", "metallb", "traefik", "rook"].flatMap((project) =>
    [...new Bun.Glob("**/*.{yaml,yml}").scanSync(oracle("releases", project))].map((f) =>
      join("releases", project, f),
    ),
  );

  test("reads every pinned release file with Bun's parser, to exactly what the yaml library reads", () => {
    expect(pinnedReleaseFiles.length).toBeGreaterThanOrEqual(13);
    for (const file of pinnedReleaseFiles) {
      const text = readFileSync(oracle(file), "utf8");
      const native = nativeDocuments(text);
      expect(native, file).toBeDefined();
      const library = yamlLibrary.parseAllDocuments(text).map((d) => d.toJS());
      expect(Bun.deepEquals(native, library, true), file).toBe(true);
      expect(parsePinned(text, file)).toEqual(parseManifests(text, file));
    }
  });

  test("gives what parseManifests gives, or its error, for texts the split by document does not handle", () => {
    const texts = [
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
      "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n",
      "--- # a comment\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
      "--- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n",
      "%YAML 1.2\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n...\n",
      "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n",
      "apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n",
      "apiVersion: v1\nkind: ConfigMap\n",
      "# a heading\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\n",
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n- not an object\n",
    ];
    const outcome = (parse: () => unknown) => {
      try {
        return parse();
      } catch (error) {
        return (error as Error).message;
      }
    };
    for (const text of texts)
      expect(outcome(() => parsePinned(text, "f.yaml"))).toEqual(
        outcome(() => parseManifests(text, "f.yaml")),
      );
    expect(nativeDocuments(texts[3]!)).toBeUndefined();
    expect(nativeDocuments(texts[4]!)).toBeUndefined();
  });
});
