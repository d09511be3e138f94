/**
 * The OpenAPI documents kube-apiserver publishes (k8s.io/apiserver pkg/server/routes/openapi.go;
 * k8s.io/kube-openapi pkg/handler3): `/openapi/v3` lists one document per group version as
 * `{"paths": {"apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=..."}}}`, the
 * hash being the document's SHA-512 (its ETag); `/openapi/v3/apis/G/V` is an OpenAPI 3.0 document
 * whose components.schemas carry the kinds with `x-kubernetes-group-version-kind`. Custom
 * resources get theirs from the CRD version's schema under the name apiextensions-apiserver gives
 * them (the group reversed: metallb.io v1beta1 IPAddressPool -> io.metallb.v1beta1.IPAddressPool,
 * apiextensions-apiserver pkg/controller/openapi/builder). `/openapi/v2` is a Swagger 2.0
 * document of the same definitions (minimal: no operations).
 */
import { createHash } from "node:crypto";
import { BUILTIN_SCHEMAS, builtinSchemaName, type Schema } from "./builtin-schemas.ts";
import type { ServedResource } from "./resources.ts";
import { crdRootSchema } from "./types.ts";

export function gvPath(group: string, version: string): string {
  return group ? `apis/${group}/${version}` : `api/${version}`;
}

/** The components.schemas name of a custom resource's kind. */
export function crdSchemaName(res: ServedResource): string {
  return `${res.group.split(".").reverse().join(".")}.${res.version}.${res.kind}`;
}

/** Every schema reachable from `roots` through `$ref`. */
function closure(roots: string[], all: Record<string, Schema>): Record<string, Schema> {
  const out: Record<string, Schema> = {};
  const visit = (name: string) => {
    if (out[name] || !all[name]) return;
    out[name] = all[name]!;
    JSON.stringify(all[name], (k, v) => {
      if (k === "$ref" && typeof v === "string") visit(v.replace(/^#\/components\/schemas\//, ""));
      return v;
    });
  };
  for (const r of roots) visit(r);
  return out;
}

function schemasOf(resources: ServedResource[]): Record<string, Schema> {
  const all: Record<string, Schema> = { ...BUILTIN_SCHEMAS };
  const roots: string[] = [];
  for (const res of resources) {
    if (res.crd) {
      const name = crdSchemaName(res);
      all[name] = {
        ...crdRootSchema(res.schema),
        "x-kubernetes-group-version-kind": [{ group: res.group, kind: res.kind, version: res.version }],
      };
      roots.push(name);
    } else {
      const name = builtinSchemaName(res.group, res.version, res.kind);
      if (name) roots.push(name);
    }
  }
  return closure(roots, all);
}

function hash(doc: unknown): string {
  return createHash("sha512").update(JSON.stringify(doc)).digest("hex").toUpperCase();
}

export function groupVersionDocument(resources: ServedResource[], gitVersion: string): Schema {
  const paths: Record<string, Schema> = {};
  for (const res of resources) {
    const base = `/${gvPath(res.group, res.version)}${res.namespaced ? "/namespaces/{namespace}" : ""}/${res.resource}`;
    const gvk = { group: res.group, kind: res.kind, version: res.version };
    paths[base] = { get: { "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk } };
    paths[`${base}/{name}`] = {
      get: { "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk },
      // kubectl decides whether the server validates fields and runs dry runs by finding these
      // parameters on the PATCH operation of the kind (cli-runtime query_param_verifier_v3.go).
      patch: {
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": gvk,
        parameters: ["dryRun", "fieldManager", "fieldValidation", "force"].map((name) => ({
          name,
          in: "query",
          schema: { type: name === "force" ? "boolean" : "string", uniqueItems: true },
        })),
      },
    };
  }
  return {
    openapi: "3.0.0",
    info: { title: "Kubernetes", version: gitVersion },
    paths,
    components: { schemas: schemasOf(resources) },
  };
}

export function discoveryDocument(resources: ServedResource[], gitVersion: string): Schema {
  const byGv = new Map<string, ServedResource[]>();
  for (const res of resources) {
    const gv = gvPath(res.group, res.version);
    byGv.set(gv, [...(byGv.get(gv) ?? []), res]);
  }
  const paths: Record<string, Schema> = {};
  for (const [gv, list] of [...byGv].sort(([a], [b]) => (a < b ? -1 : 1))) {
    paths[gv] = {
      serverRelativeURL: `/openapi/v3/${gv}?hash=${hash(groupVersionDocument(list, gitVersion))}`,
    };
  }
  return { paths };
}

/** Swagger 2.0 with the same definitions ($refs rewritten to #/definitions/). */
export function swaggerDocument(resources: ServedResource[], gitVersion: string): Schema {
  const defs = JSON.parse(
    JSON.stringify(schemasOf(resources)).replaceAll('"#/components/schemas/', '"#/definitions/'),
  ) as Schema;
  return { swagger: "2.0", info: { title: "Kubernetes", version: gitVersion }, paths: {}, definitions: defs };
}
