/**
 * Discovery documents -> the resource of each apiVersion+kind. Pure functions over the upstream
 * formats: aggregated discovery (apidiscovery.k8s.io/v2 APIGroupDiscoveryList, KEP-3352) and the
 * legacy APIResourceList of one group version (k8s.io/apimachinery/pkg/apis/meta/v1 types.go).
 */

export interface ResourceInfo {
  /** "" for the core group. */
  group: string;
  version: string;
  kind: string;
  /** Plural resource name used in paths, e.g. `deployments`. */
  resource: string;
  namespaced: boolean;
  verbs: string[];
}

/** The media type that asks for aggregated discovery; older servers ignore it and send the legacy list. */
export const AGGREGATED_DISCOVERY_ACCEPT =
  "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf("/");
  return slash < 0
    ? { group: "", version: apiVersion }
    : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

export function resourceKey(group: string, version: string, kind: string): string {
  return `${group}/${version}/${kind}`;
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
}

function strings(value: unknown): string[] {
  return asArray(value).filter((v): v is string => typeof v === "string");
}

/**
 * Resources of an APIGroupDiscoveryList (from `/api` or `/apis`). A top-level resource's
 * `responseKind` carries empty group and version, meaning those of its parent group version.
 * Subresources (`status`, `scale`) are not addressable kinds and are left out.
 */
export function parseAggregatedDiscovery(doc: unknown): ResourceInfo[] {
  const list = asRecord(doc);
  if (list.kind !== "APIGroupDiscoveryList") {
    throw new Error(`expected an APIGroupDiscoveryList, got kind ${JSON.stringify(list.kind ?? null)}`);
  }
  const out: ResourceInfo[] = [];
  for (const item of asArray(list.items)) {
    const group = String(asRecord(asRecord(item).metadata).name ?? "");
    for (const v of asArray(asRecord(item).versions)) {
      const version = String(asRecord(v).version ?? "");
      for (const r of asArray(asRecord(v).resources)) {
        const res = asRecord(r);
        const kind = asRecord(res.responseKind).kind;
        if (typeof res.resource !== "string" || typeof kind !== "string" || !kind) continue;
        out.push({
          group,
          version,
          kind,
          resource: res.resource,
          namespaced: res.scope === "Namespaced",
          verbs: strings(res.verbs),
        });
      }
    }
  }
  return out;
}

/** Resources of a legacy APIResourceList (`/api/v1`, `/apis/apps/v1`); `name` with a slash is a subresource. */
export function parseResourceList(doc: unknown): ResourceInfo[] {
  const list = asRecord(doc);
  if (typeof list.groupVersion !== "string") {
    throw new Error(
      `expected an APIResourceList with a groupVersion, got kind ${JSON.stringify(list.kind ?? null)}`,
    );
  }
  const { group, version } = splitApiVersion(list.groupVersion);
  const out: ResourceInfo[] = [];
  for (const r of asArray(list.resources)) {
    const res = asRecord(r);
    if (typeof res.name !== "string" || res.name.includes("/") || typeof res.kind !== "string") continue;
    out.push({
      group,
      version,
      kind: res.kind,
      resource: res.name,
      namespaced: res.namespaced === true,
      verbs: strings(res.verbs),
    });
  }
  return out;
}

/** The REST path of a collection or one object: /api/v1/namespaces/NS/pods/NAME, /apis/G/V/RESOURCE. */
export function resourcePath(info: ResourceInfo, namespace?: string, name?: string): string {
  const base = info.group ? `/apis/${info.group}/${info.version}` : `/api/${info.version}`;
  const ns = info.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  const tail = name === undefined ? "" : `/${encodeURIComponent(name)}`;
  return `${base}${ns}/${info.resource}${tail}`;
}
