/**
 * `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` answers: a meta.k8s.io/v1 Table whose
 * columns are those kube-apiserver's printers define for the kind (kubernetes/kubernetes
 * pkg/printers/internalversion/printers.go AddHandlers: Pod, Service, Node, Namespace, ConfigMap,
 * Secret, ServiceAccount, PersistentVolume(Claim), Deployment, DaemonSet, StatefulSet, StorageClass,
 * (Cluster)RoleBinding), the default "Name, Created At" of kinds without a printer
 * (k8s.io/apiserver pkg/registry/rest/table.go defaultTableConvertor: ClusterRole, Role, CRDs, ...),
 * and for custom resources Name plus the version's additionalPrinterColumns, or Age when it has
 * none (apiextensions-apiserver pkg/registry/customresource/tableconvertor). Rows carry the object's
 * metadata as a PartialObjectMetadata (includeObject=Metadata, the default).
 */
import type { ServedResource } from "./resources.ts";
import { isObj, type Obj } from "./ssa.ts";

interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

const NAME_DOC =
  "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC =
  "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const col = (name: string, type = "string", description = "", priority = 0, format = ""): Column => ({
  name,
  type,
  format,
  description,
  priority,
});
const NAME = col("Name", "string", NAME_DOC, 0, "name");
const AGE = col("Age", "string", CREATED_DOC);

// biome-ignore lint/suspicious/noExplicitAny: printing reads free-form objects
type Any = any;

/** duration.HumanDuration, which translateTimestampSince prints. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 0) return "0s";
  if (s < 60 * 2) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 60 * 3) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (h < 24 * 8) return h % 24 === 0 ? `${Math.floor(h / 24)}d` : `${Math.floor(h / 24)}d${h % 24}h`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24)}d`;
  if (h < 24 * 365 * 8) {
    const d = Math.floor(h / 24);
    return d % 365 === 0 ? `${Math.floor(d / 365)}y` : `${Math.floor(d / 365)}y${d % 365}d`;
  }
  return `${Math.floor(h / 24 / 365)}y`;
}

function age(o: Any, now: number): string {
  const t = Date.parse(o?.metadata?.creationTimestamp ?? "");
  return Number.isNaN(t) ? "<unknown>" : humanDuration(now - t);
}

const joinOr = (list: string[], none = "<none>") => (list.length ? list.join(",") : none);
const containers = (o: Any) => (o.spec?.template?.spec?.containers ?? []) as Any[];
const selectorText = (sel: Any) => {
  const parts = Object.entries(sel?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel?.matchExpressions ?? [])
    parts.push(`${e.key} ${String(e.operator).toLowerCase()} (${(e.values ?? []).join(",")})`);
  return joinOr(parts);
};

interface Printer {
  columns: Column[];
  cells(o: Any, now: number): unknown[];
}

const PRINTERS: Record<string, Printer> = {
  "/Pod": {
    columns: [
      NAME,
      col("Ready"),
      col("Status"),
      col("Restarts"),
      AGE,
      col("IP", "string", "", 1),
      col("Node", "string", "", 1),
      col("Nominated Node", "string", "", 1),
      col("Readiness Gates", "string", "", 1),
    ],
    cells(o, now) {
      const statuses = (o.status?.containerStatuses ?? []) as Any[];
      const total = (o.spec?.containers ?? []).length;
      const ready = statuses.filter((c) => c.ready).length;
      const restarts = statuses.reduce((n, c) => n + (c.restartCount ?? 0), 0);
      return [
        o.metadata.name,
        `${ready}/${total}`,
        o.status?.phase ?? "Pending",
        restarts,
        age(o, now),
        o.status?.podIP ?? "<none>",
        o.spec?.nodeName ?? "<none>",
        "<none>",
        "<none>",
      ];
    },
  },
  "/Service": {
    columns: [
      NAME,
      col("Type"),
      col("Cluster-IP"),
      col("External-IP"),
      col("Port(s)"),
      AGE,
      col("Selector", "string", "", 1),
    ],
    cells(o, now) {
      const type = o.spec?.type ?? "ClusterIP";
      const ingress = ((o.status?.loadBalancer?.ingress ?? []) as Any[]).map((i) => i.ip ?? i.hostname);
      const external = [...(o.spec?.externalIPs ?? []), ...ingress];
      const ext = external.length ? external.join(",") : type === "LoadBalancer" ? "<pending>" : "<none>";
      const ports = ((o.spec?.ports ?? []) as Any[]).map((p) =>
        p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol ?? "TCP"}` : `${p.port}/${p.protocol ?? "TCP"}`,
      );
      const sel = Object.entries(o.spec?.selector ?? {}).map(([k, v]) => `${k}=${v}`);
      return [
        o.metadata.name,
        type,
        o.spec?.clusterIP ?? "<none>",
        ext,
        joinOr(ports),
        age(o, now),
        joinOr(sel),
      ];
    },
  },
  "/Node": {
    columns: [
      NAME,
      col("Status"),
      col("Roles"),
      AGE,
      col("Version"),
      col("Internal-IP", "string", "", 1),
      col("External-IP", "string", "", 1),
      col("OS-Image", "string", "", 1),
      col("Kernel-Version", "string", "", 1),
      col("Container-Runtime", "string", "", 1),
    ],
    cells(o, now) {
      const ready = ((o.status?.conditions ?? []) as Any[]).find((c) => c.type === "Ready");
      const status = ready ? (ready.status === "True" ? "Ready" : "NotReady") : "Unknown";
      const roles = Object.keys(o.metadata.labels ?? {})
        .filter((l) => l.startsWith("node-role.kubernetes.io/"))
        .map((l) => l.slice("node-role.kubernetes.io/".length))
        .sort();
      const addr = (t: string) =>
        ((o.status?.addresses ?? []) as Any[]).find((a) => a.type === t)?.address ?? "<none>";
      const info = o.status?.nodeInfo ?? {};
      return [
        o.metadata.name,
        o.spec?.unschedulable ? `${status},SchedulingDisabled` : status,
        joinOr(roles),
        age(o, now),
        info.kubeletVersion ?? "",
        addr("InternalIP"),
        addr("ExternalIP"),
        info.osImage ?? "<unknown>",
        info.kernelVersion ?? "<unknown>",
        info.containerRuntimeVersion ?? "<unknown>",
      ];
    },
  },
  "/Namespace": {
    columns: [NAME, col("Status", "string", "The status of the namespace"), AGE],
    cells: (o, now) => [o.metadata.name, o.status?.phase ?? "Active", age(o, now)],
  },
  "/ConfigMap": {
    columns: [NAME, col("Data"), AGE],
    cells: (o, now) => [
      o.metadata.name,
      Object.keys(o.data ?? {}).length + Object.keys(o.binaryData ?? {}).length,
      age(o, now),
    ],
  },
  "/Secret": {
    columns: [NAME, col("Type"), col("Data"), AGE],
    cells: (o, now) => [o.metadata.name, o.type ?? "Opaque", Object.keys(o.data ?? {}).length, age(o, now)],
  },
  "/ServiceAccount": {
    columns: [NAME, col("Secrets"), AGE],
    cells: (o, now) => [o.metadata.name, (o.secrets ?? []).length, age(o, now)],
  },
  "/PersistentVolumeClaim": {
    columns: [
      NAME,
      col("Status"),
      col("Volume"),
      col("Capacity"),
      col("Access Modes"),
      col("StorageClass", "string", "StorageClass of the pvc"),
      col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
      AGE,
      col("VolumeMode", "string", "", 1),
    ],
    cells: (o, now) => [
      o.metadata.name,
      o.status?.phase ?? "Pending",
      o.spec?.volumeName ?? "",
      o.status?.capacity?.storage ?? "",
      accessModes(o.status?.accessModes),
      o.spec?.storageClassName ?? "<unset>",
      o.spec?.volumeAttributesClassName ?? "<unset>",
      age(o, now),
      o.spec?.volumeMode ?? "<unset>",
    ],
  },
  "/PersistentVolume": {
    columns: [
      NAME,
      col("Capacity"),
      col("Access Modes"),
      col("Reclaim Policy"),
      col("Status"),
      col("Claim"),
      col("StorageClass", "string", "StorageClass of the pv"),
      col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
      col("Reason"),
      AGE,
      col("VolumeMode", "string", "", 1),
    ],
    cells: (o, now) => [
      o.metadata.name,
      o.spec?.capacity?.storage ?? "",
      accessModes(o.spec?.accessModes),
      o.spec?.persistentVolumeReclaimPolicy ?? "",
      o.status?.phase ?? "",
      o.spec?.claimRef ? `${o.spec.claimRef.namespace}/${o.spec.claimRef.name}` : "",
      o.spec?.storageClassName ?? "",
      o.spec?.volumeAttributesClassName ?? "<unset>",
      o.status?.reason ?? "",
      age(o, now),
      o.spec?.volumeMode ?? "<unset>",
    ],
  },
  "apps/Deployment": {
    columns: [
      NAME,
      col("Ready", "string", "Number of the pod with ready state"),
      col("Up-to-date"),
      col("Available"),
      AGE,
      col("Containers", "string", "Names of each container in the template.", 1),
      col("Images", "string", "Images referenced by each container in the template.", 1),
      col("Selector", "string", "", 1),
    ],
    cells: (o, now) => [
      o.metadata.name,
      `${o.status?.readyReplicas ?? 0}/${o.spec?.replicas ?? 1}`,
      o.status?.updatedReplicas ?? 0,
      o.status?.availableReplicas ?? 0,
      age(o, now),
      containers(o)
        .map((c) => c.name)
        .join(","),
      containers(o)
        .map((c) => c.image)
        .join(","),
      selectorText(o.spec?.selector),
    ],
  },
  "apps/DaemonSet": {
    columns: [
      NAME,
      col("Desired", "integer"),
      col("Current", "integer"),
      col("Ready", "integer"),
      col("Up-to-date", "integer"),
      col("Available", "integer"),
      col("Node Selector"),
      AGE,
      col("Containers", "string", "Names of each container in the template.", 1),
      col("Images", "string", "Images referenced by each container in the template.", 1),
      col("Selector", "string", "", 1),
    ],
    cells(o, now) {
      const s = o.status ?? {};
      const ns = Object.entries(o.spec?.template?.spec?.nodeSelector ?? {}).map(([k, v]) => `${k}=${v}`);
      return [
        o.metadata.name,
        s.desiredNumberScheduled ?? 0,
        s.currentNumberScheduled ?? 0,
        s.numberReady ?? 0,
        s.updatedNumberScheduled ?? 0,
        s.numberAvailable ?? 0,
        joinOr(ns),
        age(o, now),
        containers(o)
          .map((c) => c.name)
          .join(","),
        containers(o)
          .map((c) => c.image)
          .join(","),
        selectorText(o.spec?.selector),
      ];
    },
  },
  "apps/StatefulSet": {
    columns: [
      NAME,
      col("Ready", "string", "Number of the pod with ready state"),
      AGE,
      col("Containers", "string", "Names of each container in the template.", 1),
      col("Images", "string", "Images referenced by each container in the template.", 1),
    ],
    cells: (o, now) => [
      o.metadata.name,
      `${o.status?.readyReplicas ?? 0}/${o.spec?.replicas ?? 1}`,
      age(o, now),
      containers(o)
        .map((c) => c.name)
        .join(","),
      containers(o)
        .map((c) => c.image)
        .join(","),
    ],
  },
  "storage.k8s.io/StorageClass": {
    columns: [
      NAME,
      col("Provisioner"),
      col("ReclaimPolicy"),
      col("VolumeBindingMode"),
      col("AllowVolumeExpansion"),
      AGE,
    ],
    cells(o, now) {
      const isDefault = o.metadata.annotations?.["storageclass.kubernetes.io/is-default-class"] === "true";
      return [
        isDefault ? `${o.metadata.name} (default)` : o.metadata.name,
        o.provisioner,
        o.reclaimPolicy ?? "Delete",
        o.volumeBindingMode ?? "Immediate",
        String(o.allowVolumeExpansion ?? false),
        age(o, now),
      ];
    },
  },
  "rbac.authorization.k8s.io/RoleBinding": bindingPrinter("roleBinding"),
  "rbac.authorization.k8s.io/ClusterRoleBinding": bindingPrinter("clusterRoleBinding"),
};

function bindingPrinter(what: string): Printer {
  return {
    columns: [
      NAME,
      col("Role"),
      AGE,
      col("Users", "string", `Users in the ${what}`, 1),
      col("Groups", "string", `Groups in the ${what}`, 1),
      col("ServiceAccounts", "string", `ServiceAccounts in the ${what}`, 1),
    ],
    cells(o, now) {
      const subjects = (o.subjects ?? []) as Any[];
      const of = (kind: string) => subjects.filter((s) => s.kind === kind);
      return [
        o.metadata.name,
        `${o.roleRef?.kind}/${o.roleRef?.name}`,
        age(o, now),
        of("User")
          .map((s) => s.name)
          .join(", "),
        of("Group")
          .map((s) => s.name)
          .join(", "),
        of("ServiceAccount")
          .map((s) => `${s.namespace ?? ""}:${s.name}`)
          .join(", "),
      ];
    },
  };
}

function accessModes(modes: string[] | undefined): string {
  const short: Record<string, string> = {
    ReadWriteOnce: "RWO",
    ReadOnlyMany: "ROX",
    ReadWriteMany: "RWX",
    ReadWriteOncePod: "RWOP",
  };
  return (modes ?? []).map((m) => short[m] ?? m).join(",");
}

const DEFAULT: Printer = {
  columns: [NAME, col("Created At", "date", CREATED_DOC)],
  cells: (o) => [o.metadata.name, o.metadata.creationTimestamp],
};

/** A JSONPath of additionalPrinterColumns (the simple `.a.b[0].c` form CRDs use). */
function jsonPathValue(obj: unknown, path: string): unknown {
  const parts =
    path
      .replace(/^\{?\.?/, "")
      .replace(/\}$/, "")
      .match(/[^.[\]]+/g) ?? [];
  let cur: unknown = obj;
  for (const p of parts) {
    if (Array.isArray(cur) && /^\d+$/.test(p)) cur = cur[Number(p)];
    else if (isObj(cur)) cur = cur[p];
    else return undefined;
  }
  return cur;
}

function crdPrinter(res: ServedResource): Printer {
  const declared = (res.printerColumns ?? []) as Any[];
  const columns = declared.length
    ? declared
    : [{ name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" }];
  return {
    columns: [
      NAME,
      ...columns.map((c) => col(c.name, c.type, c.description ?? "", c.priority ?? 0, c.format ?? "")),
    ],
    cells: (o) => [o.metadata.name, ...columns.map((c) => jsonPathValue(o, c.jsonPath) ?? null)],
  };
}

export function wantsTable(accept: string | null): boolean {
  return (accept ?? "").split(",").some((part) => {
    const params = part.split(";").map((p) => p.trim());
    return params.includes("as=Table") && params.includes("g=meta.k8s.io") && params.includes("v=v1");
  });
}

/** The Table of one object or of a list's items. */
export function toTable(res: ServedResource, objects: Obj[], resourceVersion: string, now = Date.now()): Obj {
  const printer = res.crd ? crdPrinter(res) : (PRINTERS[`${res.group}/${res.kind}`] ?? DEFAULT);
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion },
    columnDefinitions: printer.columns,
    rows: objects.map((o) => ({
      cells: printer.cells(o, now),
      object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata },
    })),
  };
}
