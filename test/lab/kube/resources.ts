/**
 * The resources the test server serves. The built-in table mirrors the names, scopes and short
 * names of a real server's discovery (../shared/oracles/kubernetes/api-samples/
 * discovery-legacy-api-v1.APIResourceList.json and discovery-legacy-apis-apps-v1.APIResourceList.json);
 * CustomResourceDefinitions add theirs once Established (apiextensions-apiserver serves a CRD's
 * resource only after it is).
 */

export interface ServedResource {
  group: string;
  version: string;
  kind: string;
  /** Plural, as in REST paths. */
  resource: string;
  singular: string;
  namespaced: boolean;
  shortNames?: string[];
  categories?: string[];
  /** Has a `status` subresource (then apply/update of the main resource ignore status). */
  status: boolean;
  /** Set for resources defined by a CRD: its name. */
  crd?: string;
  /** The CRD version's openAPIV3Schema, which objects of this resource are validated against. */
  schema?: Record<string, unknown>;
  /** The CRD version's additionalPrinterColumns, for Table answers. */
  printerColumns?: unknown[];
  /** Verbs, when not the usual eight (SelfSubjectAccessReview is create-only). */
  verbs?: string[];
}

const VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
export const RESOURCE_VERBS = VERBS;

function r(
  group: string,
  version: string,
  kind: string,
  resource: string,
  namespaced: boolean,
  extra: Partial<ServedResource> = {},
): ServedResource {
  return { group, version, kind, resource, singular: kind.toLowerCase(), namespaced, status: true, ...extra };
}

export function builtinResources(): ServedResource[] {
  return [
    r("", "v1", "Namespace", "namespaces", false, { shortNames: ["ns"] }),
    r("", "v1", "Node", "nodes", false, { shortNames: ["no"] }),
    r("", "v1", "Pod", "pods", true, { shortNames: ["po"], categories: ["all"] }),
    r("", "v1", "Service", "services", true, { shortNames: ["svc"], categories: ["all"] }),
    r("", "v1", "ConfigMap", "configmaps", true, { shortNames: ["cm"], status: false }),
    r("", "v1", "Secret", "secrets", true, { status: false }),
    r("", "v1", "ServiceAccount", "serviceaccounts", true, { shortNames: ["sa"], status: false }),
    r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, { shortNames: ["pvc"] }),
    r("", "v1", "PersistentVolume", "persistentvolumes", false, { shortNames: ["pv"] }),
    r("apps", "v1", "Deployment", "deployments", true, { shortNames: ["deploy"], categories: ["all"] }),
    r("apps", "v1", "DaemonSet", "daemonsets", true, { shortNames: ["ds"], categories: ["all"] }),
    r("apps", "v1", "StatefulSet", "statefulsets", true, { shortNames: ["sts"], categories: ["all"] }),
    r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, {
      shortNames: ["crd", "crds"],
      categories: ["api-extensions"],
    }),
    r("storage.k8s.io", "v1", "StorageClass", "storageclasses", false, { shortNames: ["sc"], status: false }),
    r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, { status: false }),
    r("networking.k8s.io", "v1", "Ingress", "ingresses", true, { shortNames: ["ing"] }),
    r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, { status: false }),
    // What controllers and components write in every namespace: an Endpoints per Service, Events,
    // leader-election Leases (k8s.io/api core/v1, events/v1, coordination/v1).
    r("", "v1", "Endpoints", "endpoints", true, { shortNames: ["ep"], status: false }),
    r("", "v1", "Event", "events", true, { shortNames: ["ev"], status: false }),
    r("events.k8s.io", "v1", "Event", "events", true, { shortNames: ["ev"], status: false }),
    r("coordination.k8s.io", "v1", "Lease", "leases", true, { status: false }),
    r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, { status: false }),
    r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, {
      status: false,
    }),
    r("rbac.authorization.k8s.io", "v1", "Role", "roles", true, { status: false }),
    r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, { status: false }),
    r(
      "admissionregistration.k8s.io",
      "v1",
      "ValidatingWebhookConfiguration",
      "validatingwebhookconfigurations",
      false,
      {
        status: false,
        categories: ["api-extensions"],
      },
    ),
    r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false, {
      status: false,
      verbs: ["create"],
    }),
  ];
}

/** The resources one CRD defines: one per served version (apiextensions.k8s.io/v1 CustomResourceDefinitionSpec). */
export function resourcesOfCrd(crd: Record<string, unknown>): ServedResource[] {
  // biome-ignore lint/suspicious/noExplicitAny: a CRD body as sent by the client
  const spec = (crd.spec ?? {}) as any;
  const names = spec.names ?? {};
  const name = (crd.metadata as { name?: string } | undefined)?.name ?? "";
  if (!spec.group || !names.kind || !names.plural) return [];
  const versions: {
    name: string;
    served?: boolean;
    subresources?: { status?: unknown };
    schema?: { openAPIV3Schema?: Record<string, unknown> };
    additionalPrinterColumns?: unknown[];
  }[] = Array.isArray(spec.versions) ? spec.versions : [];
  return versions
    .filter((v) => v.served !== false)
    .map((v) => ({
      group: spec.group,
      version: v.name,
      kind: names.kind,
      resource: names.plural,
      singular: names.singular ?? names.kind.toLowerCase(),
      namespaced: spec.scope === "Namespaced",
      shortNames: names.shortNames,
      categories: names.categories,
      status: v.subresources?.status !== undefined,
      crd: name,
      schema: v.schema?.openAPIV3Schema,
      printerColumns: v.additionalPrinterColumns,
    }));
}

/** Legacy APIResourceList of one group version (shape of discovery-legacy-apis-apps-v1.APIResourceList.json). */
export function legacyResourceList(
  groupVersion: string,
  resources: ServedResource[],
): Record<string, unknown> {
  const list: Record<string, unknown>[] = [];
  for (const res of resources) {
    list.push({
      name: res.resource,
      singularName: res.singular,
      namespaced: res.namespaced,
      kind: res.kind,
      verbs: res.verbs ?? VERBS,
      ...(res.shortNames ? { shortNames: res.shortNames } : {}),
      ...(res.categories ? { categories: res.categories } : {}),
    });
    if (res.status) {
      list.push({
        name: `${res.resource}/status`,
        singularName: "",
        namespaced: res.namespaced,
        kind: res.kind,
        verbs: ["get", "patch", "update"],
      });
    }
  }
  return { kind: "APIResourceList", apiVersion: "v1", groupVersion, resources: list };
}

/**
 * One APIGroupDiscovery per group (shape of discovery-aggregated-v2-apis.APIGroupDiscoveryList.json):
 * responseKind has empty group and version (meaning the parent's) for resources and `status` alike.
 */
export function aggregatedDiscovery(resources: ServedResource[], core: boolean): Record<string, unknown> {
  const groups = new Map<string, Map<string, ServedResource[]>>();
  for (const res of resources) {
    if ((res.group === "") !== core) continue;
    const versions = groups.get(res.group) ?? new Map<string, ServedResource[]>();
    versions.set(res.version, [...(versions.get(res.version) ?? []), res]);
    groups.set(res.group, versions);
  }
  const items = [...groups].map(([group, versions]) => ({
    metadata: core ? {} : { name: group },
    versions: [...versions].map(([version, list]) => ({
      version,
      freshness: "Current",
      resources: list.map((res) => ({
        resource: res.resource,
        responseKind: { group: "", version: "", kind: res.kind },
        scope: res.namespaced ? "Namespaced" : "Cluster",
        singularResource: res.singular,
        verbs: res.verbs ?? VERBS,
        ...(res.shortNames ? { shortNames: res.shortNames } : {}),
        ...(res.categories ? { categories: res.categories } : {}),
        ...(res.status
          ? {
              subresources: [
                {
                  subresource: "status",
                  responseKind: { group: "", version: "", kind: res.kind },
                  verbs: ["get", "patch", "update"],
                },
              ],
            }
          : {}),
      })),
    })),
  }));
  return { kind: "APIGroupDiscoveryList", apiVersion: "apidiscovery.k8s.io/v2", metadata: {}, items };
}

/** Legacy APIGroupList for `/apis` (shape of discovery-legacy-apis.APIGroupList.json). */
export function legacyGroupList(resources: ServedResource[]): Record<string, unknown> {
  const groups = new Map<string, string[]>();
  for (const res of resources) {
    if (!res.group) continue;
    const versions = groups.get(res.group) ?? [];
    if (!versions.includes(res.version)) versions.push(res.version);
    groups.set(res.group, versions);
  }
  return {
    kind: "APIGroupList",
    apiVersion: "v1",
    groups: [...groups].map(([name, versions]) => ({
      name,
      versions: versions.map((version) => ({ groupVersion: `${name}/${version}`, version })),
      preferredVersion: { groupVersion: `${name}/${versions[0]}`, version: versions[0] },
    })),
  };
}
