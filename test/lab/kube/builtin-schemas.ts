/**
 * OpenAPI v3 schemas of the built-in kinds the stages create, as the API server publishes them under
 * /openapi/v3/api/v1 and /openapi/v3/apis/GROUP/VERSION (components.schemas named by Go package, fields
 * referenced through `allOf: [{$ref}]`). They are written from the upstream Go types, not copied from
 * the generated spec (kubernetes/kubernetes api/openapi-spec is not in ../shared/oracles):
 *   - k8s.io/api core/v1 types.go (Pod, Container, Service, ConfigMap, Secret, ...), apps/v1 types.go,
 *     rbac/v1 types.go, storage/v1 types.go, admissionregistration/v1 types.go;
 *   - k8s.io/apimachinery pkg/apis/meta/v1 types.go (ObjectMeta, LabelSelector, ManagedFieldsEntry);
 *   - k8s.io/apiextensions-apiserver pkg/apis/apiextensions/v1 types.go (CustomResourceDefinition).
 * The list markers follow those files: `+listType=map` with `+listMapKey` (containers by name, ports
 * by containerPort and protocol, env by name, volumeMounts by mountPath, Service ports by port and
 * protocol), `+listType=set` (finalizers), atomic lists (args, command, tolerations, RBAC rules), and
 * `+structType=atomic` (LabelSelector, ObjectReference-like selectors). Every field of a type that
 * is declared is listed, so Strict field validation names an unknown field exactly where the API
 * server would. Types the stages never write in detail (Affinity, most volume sources, Lifecycle)
 * are declared `x-kubernetes-preserve-unknown-fields`: their inside is accepted as it comes and
 * merged like an untyped object. A stage whose tests trip over a missing field extends this file,
 * citing the Go type.
 */

export type Schema = Record<string, unknown>;

const REF = "#/components/schemas/";
const Q = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const ref = (name: string, extra: Schema = {}): Schema => ({ allOf: [{ $ref: `${REF}${name}` }], ...extra });
const str: Schema = { type: "string" };
const int: Schema = { type: "integer", format: "int32" };
const int64: Schema = { type: "integer", format: "int64" };
const bool: Schema = { type: "boolean" };
const time: Schema = { type: "string", format: "date-time" };
const strMap: Schema = { type: "object", additionalProperties: { type: "string", default: "" } };
const atomicStrings: Schema = {
  type: "array",
  items: { type: "string", default: "" },
  "x-kubernetes-list-type": "atomic",
};
const intOrString: Schema = { "x-kubernetes-int-or-string": true, format: "int-or-string" };
/** resource.Quantity: a string or a number on the wire. */
const quantity: Schema = { oneOf: [{ type: "string" }, { type: "number" }] };
const quantities: Schema = { type: "object", additionalProperties: { allOf: [{ $ref: `${REF}${Q}` }] } };
const open: Schema = { type: "object", "x-kubernetes-preserve-unknown-fields": true };

function obj(properties: Record<string, Schema>, extra: Schema = {}): Schema {
  return { type: "object", properties, ...extra };
}
function atomicList(items: Schema): Schema {
  return { type: "array", items, "x-kubernetes-list-type": "atomic" };
}
function mapList(items: Schema, keys: string[]): Schema {
  return {
    type: "array",
    items,
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": keys,
    "x-kubernetes-patch-merge-key": keys[0],
    "x-kubernetes-patch-strategy": "merge",
  };
}
function gvk(group: string, version: string, kind: string): Schema {
  return { "x-kubernetes-group-version-kind": [{ group, kind, version }] };
}

const META = "io.k8s.apimachinery.pkg.apis.meta.v1";
const CORE = "io.k8s.api.core.v1";
const APPS = "io.k8s.api.apps.v1";
const RBAC = "io.k8s.api.rbac.v1";

/** apiVersion, kind and metadata, as every top-level kind has them. */
function topLevel(group: string, version: string, kind: string, fields: Record<string, Schema>): Schema {
  return obj(
    { apiVersion: str, kind: str, metadata: ref(`${META}.ObjectMeta`, { default: {} }), ...fields },
    gvk(group, version, kind),
  );
}

const meta: Record<string, Schema> = {
  [`${META}.ObjectMeta`]: obj({
    annotations: strMap,
    creationTimestamp: ref(`${META}.Time`),
    deletionGracePeriodSeconds: int64,
    deletionTimestamp: ref(`${META}.Time`),
    finalizers: { type: "array", items: { type: "string", default: "" }, "x-kubernetes-list-type": "set" },
    generateName: str,
    generation: int64,
    labels: strMap,
    managedFields: atomicList(ref(`${META}.ManagedFieldsEntry`)),
    name: str,
    namespace: str,
    ownerReferences: mapList(ref(`${META}.OwnerReference`), ["uid"]),
    resourceVersion: str,
    selfLink: str,
    uid: str,
  }),
  [`${META}.Time`]: time,
  [Q]: quantity,
  [`${META}.ManagedFieldsEntry`]: obj({
    apiVersion: str,
    fieldsType: str,
    fieldsV1: open,
    manager: str,
    operation: str,
    subresource: str,
    time: ref(`${META}.Time`),
  }),
  [`${META}.OwnerReference`]: obj(
    { apiVersion: str, blockOwnerDeletion: bool, controller: bool, kind: str, name: str, uid: str },
    { required: ["apiVersion", "kind", "name", "uid"], "x-kubernetes-map-type": "atomic" },
  ),
  [`${META}.LabelSelector`]: obj(
    {
      matchExpressions: atomicList(ref(`${META}.LabelSelectorRequirement`)),
      matchLabels: strMap,
    },
    { "x-kubernetes-map-type": "atomic" },
  ),
  [`${META}.LabelSelectorRequirement`]: obj(
    { key: str, operator: str, values: atomicStrings },
    { required: ["key", "operator"] },
  ),
  [`${META}.Condition`]: obj({
    lastTransitionTime: ref(`${META}.Time`),
    message: str,
    observedGeneration: int64,
    reason: str,
    status: str,
    type: str,
  }),
};

const core: Record<string, Schema> = {
  [`${CORE}.Namespace`]: topLevel("", "v1", "Namespace", {
    spec: ref(`${CORE}.NamespaceSpec`),
    status: ref(`${CORE}.NamespaceStatus`),
  }),
  [`${CORE}.NamespaceSpec`]: obj({ finalizers: atomicStrings }),
  [`${CORE}.NamespaceStatus`]: obj({
    conditions: mapList(open, ["type"]),
    phase: str,
  }),
  [`${CORE}.ConfigMap`]: topLevel("", "v1", "ConfigMap", {
    binaryData: { type: "object", additionalProperties: { type: "string", format: "byte" } },
    data: strMap,
    immutable: bool,
  }),
  [`${CORE}.Secret`]: topLevel("", "v1", "Secret", {
    data: { type: "object", additionalProperties: { type: "string", format: "byte" } },
    immutable: bool,
    stringData: strMap,
    type: str,
  }),
  [`${CORE}.ServiceAccount`]: topLevel("", "v1", "ServiceAccount", {
    automountServiceAccountToken: bool,
    imagePullSecrets: atomicList(ref(`${CORE}.LocalObjectReference`)),
    secrets: mapList(open, ["name"]),
  }),
  [`${CORE}.LocalObjectReference`]: obj({ name: str }, { "x-kubernetes-map-type": "atomic" }),
  [`${CORE}.Service`]: topLevel("", "v1", "Service", {
    spec: ref(`${CORE}.ServiceSpec`, { default: {} }),
    status: ref(`${CORE}.ServiceStatus`, { default: {} }),
  }),
  [`${CORE}.ServiceSpec`]: obj({
    allocateLoadBalancerNodePorts: bool,
    clusterIP: str,
    clusterIPs: atomicStrings,
    externalIPs: atomicStrings,
    externalName: str,
    externalTrafficPolicy: str,
    healthCheckNodePort: int,
    internalTrafficPolicy: str,
    ipFamilies: atomicStrings,
    ipFamilyPolicy: str,
    loadBalancerClass: str,
    loadBalancerIP: str,
    loadBalancerSourceRanges: atomicStrings,
    ports: mapList(ref(`${CORE}.ServicePort`), ["port", "protocol"]),
    publishNotReadyAddresses: bool,
    selector: { ...strMap, "x-kubernetes-map-type": "atomic" },
    sessionAffinity: str,
    sessionAffinityConfig: open,
    trafficDistribution: str,
    type: str,
  }),
  [`${CORE}.ServicePort`]: obj(
    {
      appProtocol: str,
      name: str,
      nodePort: int,
      port: int,
      protocol: { ...str, default: "TCP" },
      targetPort: intOrString,
    },
    { required: ["port"] },
  ),
  [`${CORE}.ServiceStatus`]: obj({
    conditions: mapList(ref(`${META}.Condition`), ["type"]),
    loadBalancer: obj({
      ingress: atomicList(obj({ hostname: str, ip: str, ipMode: str, ports: atomicList(open) })),
    }),
  }),
  [`${CORE}.Node`]: topLevel("", "v1", "Node", { spec: open, status: open }),
  [`${CORE}.Pod`]: topLevel("", "v1", "Pod", {
    spec: ref(`${CORE}.PodSpec`),
    status: open,
  }),
  [`${CORE}.PersistentVolumeClaim`]: topLevel("", "v1", "PersistentVolumeClaim", {
    spec: ref(`${CORE}.PersistentVolumeClaimSpec`),
    status: open,
  }),
  [`${CORE}.PersistentVolumeClaimSpec`]: obj({
    accessModes: atomicStrings,
    dataSource: open,
    dataSourceRef: open,
    resources: ref(`${CORE}.VolumeResourceRequirements`),
    selector: ref(`${META}.LabelSelector`),
    storageClassName: str,
    volumeAttributesClassName: str,
    volumeMode: str,
    volumeName: str,
  }),
  [`${CORE}.VolumeResourceRequirements`]: obj({ limits: quantities, requests: quantities }),
  [`${CORE}.PersistentVolume`]: topLevel("", "v1", "PersistentVolume", { spec: open, status: open }),
  [`${CORE}.PodTemplateSpec`]: obj({
    metadata: ref(`${META}.ObjectMeta`, { default: {} }),
    spec: ref(`${CORE}.PodSpec`, { default: {} }),
  }),
  [`${CORE}.PodSpec`]: obj(
    {
      activeDeadlineSeconds: int64,
      affinity: open,
      automountServiceAccountToken: bool,
      containers: mapList(ref(`${CORE}.Container`), ["name"]),
      dnsConfig: open,
      dnsPolicy: str,
      enableServiceLinks: bool,
      ephemeralContainers: mapList(open, ["name"]),
      hostAliases: mapList(open, ["ip"]),
      hostIPC: bool,
      hostNetwork: bool,
      hostPID: bool,
      hostUsers: bool,
      hostname: str,
      hostnameOverride: str,
      imagePullSecrets: mapList(ref(`${CORE}.LocalObjectReference`), ["name"]),
      initContainers: mapList(ref(`${CORE}.Container`), ["name"]),
      nodeName: str,
      nodeSelector: { ...strMap, "x-kubernetes-map-type": "atomic" },
      os: open,
      overhead: quantities,
      preemptionPolicy: str,
      priority: int,
      priorityClassName: str,
      readinessGates: atomicList(open),
      resourceClaims: mapList(open, ["name"]),
      resources: ref(`${CORE}.ResourceRequirements`),
      restartPolicy: str,
      runtimeClassName: str,
      schedulerName: str,
      schedulingGates: mapList(open, ["name"]),
      securityContext: ref(`${CORE}.PodSecurityContext`),
      serviceAccount: str,
      serviceAccountName: str,
      setHostnameAsFQDN: bool,
      shareProcessNamespace: bool,
      subdomain: str,
      terminationGracePeriodSeconds: int64,
      tolerations: atomicList(ref(`${CORE}.Toleration`)),
      topologySpreadConstraints: mapList(open, ["topologyKey", "whenUnsatisfiable"]),
      volumes: mapList(ref(`${CORE}.Volume`), ["name"]),
    },
    { required: ["containers"] },
  ),
  [`${CORE}.Container`]: obj(
    {
      args: atomicStrings,
      command: atomicStrings,
      env: mapList(ref(`${CORE}.EnvVar`), ["name"]),
      envFrom: atomicList(ref(`${CORE}.EnvFromSource`)),
      image: str,
      imagePullPolicy: str,
      lifecycle: open,
      livenessProbe: ref(`${CORE}.Probe`),
      name: str,
      ports: mapList(ref(`${CORE}.ContainerPort`), ["containerPort", "protocol"]),
      readinessProbe: ref(`${CORE}.Probe`),
      resizePolicy: atomicList(open),
      resources: ref(`${CORE}.ResourceRequirements`),
      restartPolicy: str,
      restartPolicyRules: atomicList(open),
      securityContext: ref(`${CORE}.SecurityContext`),
      startupProbe: ref(`${CORE}.Probe`),
      stdin: bool,
      stdinOnce: bool,
      terminationMessagePath: str,
      terminationMessagePolicy: str,
      tty: bool,
      volumeDevices: mapList(open, ["devicePath"]),
      volumeMounts: mapList(ref(`${CORE}.VolumeMount`), ["mountPath"]),
      workingDir: str,
    },
    { required: ["name"] },
  ),
  [`${CORE}.ContainerPort`]: obj(
    { containerPort: int, hostIP: str, hostPort: int, name: str, protocol: { ...str, default: "TCP" } },
    { required: ["containerPort"] },
  ),
  [`${CORE}.EnvVar`]: obj(
    { name: str, value: str, valueFrom: ref(`${CORE}.EnvVarSource`) },
    { required: ["name"] },
  ),
  [`${CORE}.EnvVarSource`]: obj({
    configMapKeyRef: open,
    fieldRef: ref(`${CORE}.ObjectFieldSelector`),
    fileKeyRef: open,
    resourceFieldRef: open,
    secretKeyRef: open,
  }),
  [`${CORE}.ObjectFieldSelector`]: obj(
    { apiVersion: str, fieldPath: str },
    { required: ["fieldPath"], "x-kubernetes-map-type": "atomic" },
  ),
  [`${CORE}.EnvFromSource`]: obj({
    configMapRef: obj({ name: str, optional: bool }, { "x-kubernetes-map-type": "atomic" }),
    prefix: str,
    secretRef: obj({ name: str, optional: bool }, { "x-kubernetes-map-type": "atomic" }),
  }),
  [`${CORE}.ResourceRequirements`]: obj({
    claims: mapList(open, ["name"]),
    limits: quantities,
    requests: quantities,
  }),
  [`${CORE}.Probe`]: obj({
    exec: open,
    failureThreshold: int,
    grpc: open,
    httpGet: ref(`${CORE}.HTTPGetAction`),
    initialDelaySeconds: int,
    periodSeconds: int,
    successThreshold: int,
    tcpSocket: obj({ host: str, port: intOrString }),
    terminationGracePeriodSeconds: int64,
    timeoutSeconds: int,
  }),
  [`${CORE}.HTTPGetAction`]: obj(
    {
      host: str,
      httpHeaders: atomicList(obj({ name: str, value: str })),
      path: str,
      port: intOrString,
      scheme: str,
    },
    { required: ["port"] },
  ),
  [`${CORE}.SecurityContext`]: obj({
    allowPrivilegeEscalation: bool,
    appArmorProfile: open,
    capabilities: obj({ add: atomicStrings, drop: atomicStrings }),
    privileged: bool,
    procMount: str,
    readOnlyRootFilesystem: bool,
    runAsGroup: int64,
    runAsNonRoot: bool,
    runAsUser: int64,
    seLinuxOptions: open,
    seccompProfile: open,
    windowsOptions: open,
  }),
  [`${CORE}.PodSecurityContext`]: obj({
    appArmorProfile: open,
    fsGroup: int64,
    fsGroupChangePolicy: str,
    runAsGroup: int64,
    runAsNonRoot: bool,
    runAsUser: int64,
    seLinuxChangePolicy: str,
    seLinuxOptions: open,
    seccompProfile: open,
    supplementalGroups: atomicList(int64),
    supplementalGroupsPolicy: str,
    sysctls: atomicList(obj({ name: str, value: str })),
    windowsOptions: open,
  }),
  [`${CORE}.Toleration`]: obj({ effect: str, key: str, operator: str, tolerationSeconds: int64, value: str }),
  [`${CORE}.VolumeMount`]: obj(
    {
      mountPath: str,
      mountPropagation: str,
      name: str,
      readOnly: bool,
      recursiveReadOnly: str,
      subPath: str,
      subPathExpr: str,
    },
    { required: ["name", "mountPath"] },
  ),
  [`${CORE}.Volume`]: obj(
    {
      awsElasticBlockStore: open,
      azureDisk: open,
      azureFile: open,
      cephfs: open,
      cinder: open,
      configMap: obj({ defaultMode: int, items: atomicList(open), name: str, optional: bool }),
      csi: open,
      downwardAPI: open,
      emptyDir: obj({ medium: str, sizeLimit: ref(Q) }),
      ephemeral: open,
      fc: open,
      flexVolume: open,
      flocker: open,
      gcePersistentDisk: open,
      gitRepo: open,
      glusterfs: open,
      hostPath: obj({ path: str, type: str }, { required: ["path"] }),
      image: open,
      iscsi: open,
      name: str,
      nfs: open,
      persistentVolumeClaim: obj({ claimName: str, readOnly: bool }, { required: ["claimName"] }),
      photonPersistentDisk: open,
      portworxVolume: open,
      projected: open,
      quobyte: open,
      rbd: open,
      scaleIO: open,
      secret: obj({ defaultMode: int, items: atomicList(open), optional: bool, secretName: str }),
      storageos: open,
      vsphereVolume: open,
    },
    { required: ["name"] },
  ),
};

const apps: Record<string, Schema> = {
  [`${APPS}.Deployment`]: topLevel("apps", "v1", "Deployment", {
    spec: ref(`${APPS}.DeploymentSpec`, { default: {} }),
    status: ref(`${APPS}.DeploymentStatus`, { default: {} }),
  }),
  [`${APPS}.DeploymentSpec`]: obj(
    {
      minReadySeconds: int,
      paused: bool,
      progressDeadlineSeconds: int,
      replicas: int,
      revisionHistoryLimit: int,
      selector: ref(`${META}.LabelSelector`),
      strategy: obj({
        rollingUpdate: obj({ maxSurge: intOrString, maxUnavailable: intOrString }),
        type: str,
      }),
      template: ref(`${CORE}.PodTemplateSpec`, { default: {} }),
    },
    { required: ["selector", "template"] },
  ),
  [`${APPS}.DeploymentStatus`]: obj({
    availableReplicas: int,
    collisionCount: int,
    conditions: mapList(open, ["type"]),
    observedGeneration: int64,
    readyReplicas: int,
    replicas: int,
    terminatingReplicas: int,
    unavailableReplicas: int,
    updatedReplicas: int,
  }),
  [`${APPS}.DaemonSet`]: topLevel("apps", "v1", "DaemonSet", {
    spec: ref(`${APPS}.DaemonSetSpec`, { default: {} }),
    status: ref(`${APPS}.DaemonSetStatus`, { default: {} }),
  }),
  [`${APPS}.DaemonSetSpec`]: obj(
    {
      minReadySeconds: int,
      revisionHistoryLimit: int,
      selector: ref(`${META}.LabelSelector`),
      template: ref(`${CORE}.PodTemplateSpec`, { default: {} }),
      updateStrategy: obj({
        rollingUpdate: obj({ maxSurge: intOrString, maxUnavailable: intOrString }),
        type: str,
      }),
    },
    { required: ["selector", "template"] },
  ),
  [`${APPS}.DaemonSetStatus`]: obj({
    collisionCount: int,
    conditions: mapList(open, ["type"]),
    currentNumberScheduled: int,
    desiredNumberScheduled: int,
    numberAvailable: int,
    numberMisscheduled: int,
    numberReady: int,
    numberUnavailable: int,
    observedGeneration: int64,
    updatedNumberScheduled: int,
  }),
  [`${APPS}.StatefulSet`]: topLevel("apps", "v1", "StatefulSet", {
    spec: ref(`${APPS}.StatefulSetSpec`, { default: {} }),
    status: open,
  }),
  [`${APPS}.StatefulSetSpec`]: obj(
    {
      minReadySeconds: int,
      ordinals: open,
      persistentVolumeClaimRetentionPolicy: open,
      podManagementPolicy: str,
      replicas: int,
      revisionHistoryLimit: int,
      selector: ref(`${META}.LabelSelector`),
      serviceName: str,
      template: ref(`${CORE}.PodTemplateSpec`, { default: {} }),
      updateStrategy: open,
      volumeClaimTemplates: atomicList(open),
    },
    { required: ["selector", "template"] },
  ),
};

const policyRule = obj({
  apiGroups: atomicStrings,
  nonResourceURLs: atomicStrings,
  resourceNames: atomicStrings,
  resources: atomicStrings,
  verbs: atomicStrings,
});
const roleRef = obj(
  { apiGroup: str, kind: str, name: str },
  { required: ["apiGroup", "kind", "name"], "x-kubernetes-map-type": "atomic" },
);
const subject = obj(
  { apiGroup: str, kind: str, name: str, namespace: str },
  { "x-kubernetes-map-type": "atomic" },
);

const rbac: Record<string, Schema> = {
  [`${RBAC}.PolicyRule`]: policyRule,
  [`${RBAC}.ClusterRole`]: topLevel("rbac.authorization.k8s.io", "v1", "ClusterRole", {
    aggregationRule: open,
    rules: atomicList(ref(`${RBAC}.PolicyRule`)),
  }),
  [`${RBAC}.Role`]: topLevel("rbac.authorization.k8s.io", "v1", "Role", {
    rules: atomicList(ref(`${RBAC}.PolicyRule`)),
  }),
  [`${RBAC}.ClusterRoleBinding`]: topLevel("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", {
    roleRef,
    subjects: atomicList(subject),
  }),
  [`${RBAC}.RoleBinding`]: topLevel("rbac.authorization.k8s.io", "v1", "RoleBinding", {
    roleRef,
    subjects: atomicList(subject),
  }),
};

const storage: Record<string, Schema> = {
  "io.k8s.api.storage.v1.StorageClass": topLevel("storage.k8s.io", "v1", "StorageClass", {
    allowVolumeExpansion: bool,
    allowedTopologies: atomicList(open),
    mountOptions: atomicStrings,
    parameters: strMap,
    provisioner: str,
    reclaimPolicy: str,
    volumeBindingMode: str,
  }),
};

// k8s.io/api networking/v1 types.go: IngressClassSpec and IngressSpec (fields kubehyve sets).
const networking: Record<string, Schema> = {
  "io.k8s.api.networking.v1.IngressClass": topLevel("networking.k8s.io", "v1", "IngressClass", {
    spec: obj({ controller: str, parameters: open }),
  }),
  "io.k8s.api.networking.v1.Ingress": topLevel("networking.k8s.io", "v1", "Ingress", {
    spec: obj({
      defaultBackend: open,
      ingressClassName: str,
      rules: atomicList(open),
      tls: atomicList(open),
    }),
    status: open,
  }),
};

// k8s.io/api discovery/v1 types.go: EndpointSlice (written by the endpointslice controller stand-in).
const discovery: Record<string, Schema> = {
  "io.k8s.api.discovery.v1.EndpointSlice": topLevel("discovery.k8s.io", "v1", "EndpointSlice", {
    addressType: str,
    endpoints: atomicList(open),
    ports: atomicList(open),
  }),
};

const admission: Record<string, Schema> = {
  "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration": topLevel(
    "admissionregistration.k8s.io",
    "v1",
    "ValidatingWebhookConfiguration",
    {
      webhooks: mapList(ref("io.k8s.api.admissionregistration.v1.ValidatingWebhook"), ["name"]),
    },
  ),
  "io.k8s.api.admissionregistration.v1.ValidatingWebhook": obj(
    {
      admissionReviewVersions: atomicStrings,
      clientConfig: obj({ caBundle: { type: "string", format: "byte" }, service: open, url: str }),
      failurePolicy: str,
      matchConditions: mapList(open, ["name"]),
      matchPolicy: str,
      name: str,
      namespaceSelector: ref(`${META}.LabelSelector`),
      objectSelector: ref(`${META}.LabelSelector`),
      rules: atomicList(
        obj({
          apiGroups: atomicStrings,
          apiVersions: atomicStrings,
          operations: atomicStrings,
          resources: atomicStrings,
          scope: str,
        }),
      ),
      sideEffects: str,
      timeoutSeconds: int,
    },
    { required: ["name", "clientConfig", "sideEffects", "admissionReviewVersions"] },
  ),
};

const apiextensions: Record<string, Schema> = {
  // The CRD's own spec is validated by apiextensions-apiserver's Go validation, not by a schema the
  // stand-in could check field by field; it is published and merged as an untyped object.
  "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition": topLevel(
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    { spec: open, status: open },
  ),
};

const authorization: Record<string, Schema> = {
  "io.k8s.api.authorization.v1.SelfSubjectAccessReview": topLevel(
    "authorization.k8s.io",
    "v1",
    "SelfSubjectAccessReview",
    {
      spec: obj({
        nonResourceAttributes: obj({ path: str, verb: str }),
        resourceAttributes: obj({
          fieldSelector: open,
          group: str,
          labelSelector: open,
          name: str,
          namespace: str,
          resource: str,
          subresource: str,
          verb: str,
          version: str,
        }),
      }),
      status: obj({ allowed: bool, denied: bool, evaluationError: str, reason: str }),
    },
  ),
};

/** Every schema, keyed as in components.schemas. */
export const BUILTIN_SCHEMAS: Record<string, Schema> = {
  ...meta,
  ...core,
  ...apps,
  ...rbac,
  ...storage,
  ...networking,
  ...discovery,
  ...admission,
  ...apiextensions,
  ...authorization,
};

/** The components.schemas name of a built-in kind's top-level type. */
export function builtinSchemaName(group: string, version: string, kind: string): string | undefined {
  for (const [name, s] of Object.entries(BUILTIN_SCHEMAS)) {
    const g = (
      s["x-kubernetes-group-version-kind"] as { group: string; version: string; kind: string }[] | undefined
    )?.[0];
    if (g && g.group === group && g.version === version && g.kind === kind) return name;
  }
  return undefined;
}
