/**
 * An upstream manifest reaches the cluster, and a render, exactly as its authors wrote it. The
 * yaml library's default line folding turns some deeply indented multi-line strings into other
 * strings (six of Calico v3.32.1's CRDs), so the client sends JSON and stringifyYaml never folds.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { parse, stringify } from "yaml";
import { parseYaml, stringifyYaml } from "../../src/core/yaml.ts";
import { parseManifests } from "../../src/kube/apply.ts";
import { createKubeClient, type KubeClientImpl } from "../../src/kube/client.ts";
import { type KubeApiServer, startKubeApiServer } from "../lab/kube/server.ts";
import { oracle } from "../lab/oracles.ts";
import { have } from "../lab/prereq.ts";

// Writing and reading back 3 MB of CRDs twice takes seconds on a loaded machine.
setDefaultTimeout(60_000);

const RELEASES = [
  "releases/calico/manifests/operator-crds.yaml",
  "releases/calico/manifests/tigera-operator.yaml",
  "releases/metallb/config/manifests/metallb-native.yaml",
];
const objectsOf = (path: string) => parseManifests(readFileSync(oracle(path), "utf8"), path);

test("stringifyYaml writes every object of the release manifests so that it reads back the same", () => {
  for (const path of RELEASES) {
    for (const obj of objectsOf(path)) expect(parseYaml(stringifyYaml(obj))).toEqual(obj);
  }
});

test("the yaml library's folding alone would not: the reason stringifyYaml does not fold", () => {
  const changed = objectsOf(RELEASES[0]!).filter(
    (o) => JSON.stringify(parse(stringify(o))) !== JSON.stringify(o),
  );
  expect(changed.length).toBeGreaterThan(0);
});

describe.skipIf(!have("openssl", "openssl"))("applying an upstream CRD", () => {
  let server: KubeApiServer;
  let client: KubeClientImpl;
  beforeAll(async () => {
    server = await startKubeApiServer();
    client = await createKubeClient(server.kubeconfigPath, { baseDelayMs: 10 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("stores its schema with every description as written", async () => {
    const crd = objectsOf(RELEASES[0]!).find((o) => o.metadata.name === "apiservers.operator.tigera.io")!;
    const stored = await client.apply(crd);
    expect(stored.spec).toEqual(crd.spec);
  });
});
