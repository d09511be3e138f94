import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseManifests } from "../../src/kube/apply.ts";
import type { KubeObject } from "../../src/kube/types.ts";
import { resourcesOfCrd } from "../lab/kube/resources.ts";
import { validateAgainstSchema } from "../lab/kube/schema.ts";
import { ORACLES } from "../lab/oracles.ts";

const objectsIn = (path: string) => parseManifests(readFileSync(join(ORACLES, path), "utf8"), path);

/** openAPIV3Schema of every served kind+version in the CRD files, keyed `group/version/Kind`. */
function schemasOf(...paths: string[]): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const crd of paths.flatMap(objectsIn)) {
    for (const r of resourcesOfCrd(crd)) if (r.schema) out.set(`${r.group}/${r.version}/${r.kind}`, r.schema);
  }
  return out;
}

function schemaFor(schemas: Map<string, Record<string, unknown>>, obj: KubeObject): Record<string, unknown> {
  const schema = schemas.get(`${obj.apiVersion}/${obj.kind}`);
  if (!schema) throw new Error(`no schema for ${obj.apiVersion} ${obj.kind}`);
  return schema;
}

const metallb = schemasOf(...readdirSync(join(ORACLES, "metallb/crds")).map((f) => `metallb/crds/${f}`));
const traefik = schemasOf("traefik/kubernetes-crd-definition-v1.yml");
const rook = schemasOf("rook/crds.yaml");

describe("upstream samples conform to their upstream CRD schemas, with objects closed", () => {
  const cases: [string, Map<string, Record<string, unknown>>, string[]][] = [
    [
      "MetalLB",
      metallb,
      readdirSync(join(ORACLES, "metallb/samples"))
        .filter((f) => !f.startsWith("deployment_"))
        .map((f) => `metallb/samples/${f}`),
    ],
    [
      "Traefik",
      traefik,
      [
        ...readdirSync(join(ORACLES, "traefik/fixtures")).map((f) => `traefik/fixtures/${f}`),
        "traefik/kubernetes-crd-resource.yml",
      ],
    ],
    ["Rook", rook, ["rook/cluster-test.yaml", "rook/pool-test.yaml", "rook/cluster.yaml", "rook/pool.yaml"]],
  ];
  for (const [name, schemas, files] of cases) {
    test(`${name}: every sample object validates without problems`, () => {
      const objects = files
        .flatMap(objectsIn)
        .filter((o) => schemas.has(`${o.apiVersion}/${o.kind}`) && o.kind !== "ServersTransportTCP");
      expect(objects.length).toBeGreaterThan(1);
      for (const obj of objects) {
        const problems = validateAgainstSchema(obj, schemaFor(schemas, obj));
        expect({ object: `${obj.kind}/${obj.metadata.name}`, problems }).toEqual({
          object: `${obj.kind}/${obj.metadata.name}`,
          problems: [],
        });
      }
    });
  }
});

test("Traefik's ServersTransportTCP sample has drifted from its CRD, and validation says where", () => {
  // The sample sets TLS fields directly under spec; the CRD of the same commit declares them under spec.tls.
  const obj = objectsIn("traefik/kubernetes-crd-resource.yml").find((o) => o.kind === "ServersTransportTCP")!;
  const fields = validateAgainstSchema(obj, schemaFor(traefik, obj)).map((p) => `${p.kind} ${p.field}`);
  expect(fields).toEqual([
    "unknown spec.serverName",
    "unknown spec.insecureSkipVerify",
    "unknown spec.rootCAsSecrets",
    "unknown spec.certificatesSecrets",
    "unknown spec.peerCertURI",
  ]);
});

describe("schema problems are reported in the API server's words", () => {
  const pool = objectsIn("metallb/samples/ipaddresspool_simple.yaml")[0]!;

  test("an unknown field, even deep inside a list", () => {
    const obj = structuredClone(pool);
    obj.spec.adresses = obj.spec.addresses;
    const l2 = structuredClone(objectsIn("metallb/samples/l2adv_with_node_selector.yaml")[0]!);
    l2.spec.nodeSelectors[0].matchLabel = { x: "y" };
    expect(validateAgainstSchema(obj, schemaFor(metallb, obj))).toEqual([
      { kind: "unknown", field: "spec.adresses", message: "field not declared in schema" },
    ]);
    expect(validateAgainstSchema(l2, schemaFor(metallb, l2))).toEqual([
      { kind: "unknown", field: "spec.nodeSelectors[0].matchLabel", message: "field not declared in schema" },
    ]);
  });

  test("a value of the wrong type", () => {
    const obj = structuredClone(pool);
    obj.spec.autoAssign = "yes";
    expect(validateAgainstSchema(obj, schemaFor(metallb, obj))).toEqual([
      {
        kind: "type",
        field: "spec.autoAssign",
        message: 'Invalid value: "yes": spec.autoAssign in body must be of type boolean: "yes"',
      },
    ]);
  });

  test("a missing required field", () => {
    const obj = structuredClone(pool);
    delete obj.spec.addresses;
    expect(validateAgainstSchema(obj, schemaFor(metallb, obj))).toEqual([
      { kind: "required", field: "spec.addresses", message: "Required value" },
    ]);
  });

  test("a value outside an enum", () => {
    const route = objectsIn("traefik/fixtures/03-ingressroute.yml")[0]!;
    const obj = structuredClone(route);
    obj.spec.routes[0].kind = "Regex";
    expect(validateAgainstSchema(obj, schemaFor(traefik, obj))).toEqual([
      {
        kind: "enum",
        field: "spec.routes[0].kind",
        message: 'Unsupported value: "Regex": supported values: "Rule"',
      },
    ]);
  });

  test("a null in a field that is not nullable is dropped before validation, as the API server prunes it", () => {
    const obj = structuredClone(pool);
    obj.spec.serviceAllocation = null;
    expect(validateAgainstSchema(obj, schemaFor(metallb, obj))).toEqual([]);
  });

  test("fields under x-kubernetes-preserve-unknown-fields stay open, their neighbours do not", () => {
    const cluster = objectsIn("rook/cluster-test.yaml").find((o) => o.kind === "CephCluster")!;
    const obj = structuredClone(cluster);
    obj.spec.network = { ...obj.spec.network, anything: { goes: true } };
    expect(validateAgainstSchema(obj, schemaFor(rook, obj))).toEqual([]);
    obj.spec.dashboard = { ...obj.spec.dashboard, anything: true };
    expect(validateAgainstSchema(obj, schemaFor(rook, obj)).map((p) => p.field)).toEqual([
      "spec.dashboard.anything",
    ]);
  });
});
