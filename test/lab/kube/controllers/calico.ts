/**
 * The tigera operator (quay.io/tigera/operator v1.42.3, which Calico v3.32.1's tigera-operator.yaml
 * runs), as far as the net stage waits on it. Upstream sources are tigera/operator at v1.42.3:
 *
 * - It acts only while its own Deployment tigera-operator/tigera-operator is available.
 * - Installation `default`: the installation controller writes its defaults back into the spec
 *   with a merge patch (pkg/controller/installation/core_controller.go fillDefaults, "Write the
 *   discovered configuration back to the API"), and the IP pool controller those of each entry of
 *   spec.calicoNetwork.ipPools (pkg/controller/ippool/defaults.go fillDefaults: allowedUses,
 *   encapsulation, natOutgoing, nodeSelector, blockSize, disableNewAllocations, name,
 *   assignmentMode). Both write as field manager `operator` (controller-runtime's default, the
 *   binary's name). It renders the calico-system namespace, the calico-node DaemonSet on every
 *   Linux node (pkg/render/node.go; the flexvol-driver init container and its DirectoryOrCreate
 *   hostPath volume under spec.flexVolumePath unless that is "None"), and the calico-kube-controllers
 *   and calico-typha Deployments.
 * - APIServer `default`: the calico-apiserver Deployment in calico-system (pkg/render/apiserver.go,
 *   APIServerNamespace = common.CalicoNamespace), two replicas (controlPlaneReplicas' default).
 * - TigeraStatus `calico` and `apiserver`: the status manager (pkg/controller/status/status.go
 *   syncState and updateStatus) computes Available, Progressing and Degraded from the DaemonSets and
 *   Deployments it watches, in those words: "DaemonSet \"calico-system/calico-node\" is not
 *   available (awaiting 1 nodes)", "All objects available", Degraded with reason PodFailure and
 *   "Pod calico-system/... has crash looping container: ..." for failing pods.
 * - When its custom resource goes, the operator removes what it rendered and the TigeraStatus
 *   (OnCRNotFound, removeTigeraStatus; the Installation's finalizers keep it until then, which the
 *   test server does not model: the objects go at once).
 *
 * A node's pod network is ready when the calico-node pod on it is (what the CNI plugin's
 * readiness follows on a real node), which `networkReady` tells podControllers().
 */
import type { Controller, ControllerView, ControllerWriter } from "../controllers.ts";
import type { Obj } from "../ssa.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

const NS = "calico-system";
const OPERATOR = "operator";

function available(obj: Any): boolean {
  return obj?.status?.conditions?.some((c: Any) => c.type === "Available" && c.status === "True") ?? false;
}

function find(view: ControllerView, groupKind: string, name: string, namespace?: string): Any {
  return view.list(groupKind, namespace).find((o: Any) => o.metadata.name === name);
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object")
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Obj)[k])}`)
      .join(",")}}`;
  return JSON.stringify(value);
}

/** The spec after the installation and IP pool controllers' defaulting (the fields this lab's spec reaches). */
export function defaultedInstallationSpec(spec: Any): Any {
  const out = structuredClone(spec ?? {});
  out.variant ??= "Calico";
  out.cni ??= {};
  out.cni.type ??= "Calico";
  out.cni.ipam ??= {};
  out.cni.ipam.type ??= "Calico";
  out.calicoNetwork ??= {};
  const net = out.calicoNetwork;
  net.linuxDataplane ??= "Iptables";
  net.windowsDataplane ??= "Disabled";
  net.bgp ??= "Enabled";
  net.hostPorts ??= "Enabled";
  net.multiInterfaceMode ??= "None";
  net.linuxPolicySetupTimeoutSeconds ??= 0;
  out.controlPlaneReplicas ??= 2;
  if (!out.flexVolumePath) out.flexVolumePath = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/";
  out.kubeletVolumePluginPath ??= "/var/lib/kubelet";
  out.nodeUpdateStrategy ??= {};
  out.nodeUpdateStrategy.rollingUpdate ??= {};
  out.nodeUpdateStrategy.rollingUpdate.maxUnavailable ??= 1;
  out.nodeUpdateStrategy.type ??= "RollingUpdate";
  net.ipPools ??= [{ name: "default-ipv4-ippool", cidr: "192.168.0.0/16" }];
  net.ipPools = net.ipPools.map((p: Any, i: number) => {
    const pool = { ...p };
    if (!pool.allowedUses?.length) pool.allowedUses = ["Workload", "Tunnel"];
    pool.encapsulation ||= "IPIP";
    pool.natOutgoing ||= "Enabled";
    pool.nodeSelector ||= "all()";
    pool.blockSize ??= 26;
    pool.disableNewAllocations ??= false;
    pool.name ||= net.ipPools.length === 1 ? "default-ipv4-ippool" : `pool-${i}`;
    pool.assignmentMode ||= "Automatic";
    return pool;
  });
  return out;
}

function daemonSet(installation: Any): Obj {
  const flex = installation.spec?.flexVolumePath;
  const withFlex = flex && flex !== "None";
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: { name: "calico-node", namespace: NS, labels: { "k8s-app": "calico-node" } },
    spec: {
      selector: { matchLabels: { "k8s-app": "calico-node" } },
      template: {
        metadata: { labels: { "k8s-app": "calico-node", "app.kubernetes.io/name": "calico-node" } },
        spec: {
          hostNetwork: true,
          nodeSelector: { "kubernetes.io/os": "linux" },
          tolerations: [
            { operator: "Exists", effect: "NoSchedule" },
            { operator: "Exists", effect: "NoExecute" },
          ],
          initContainers: [
            ...(withFlex
              ? [{ name: "flexvol-driver", image: "quay.io/calico/pod2daemon-flexvol:v3.32.1" }]
              : []),
            { name: "ebpf-bootstrap", image: "quay.io/calico/node:v3.32.1" },
            { name: "install-cni", image: "quay.io/calico/cni:v3.32.1" },
          ],
          containers: [{ name: "calico-node", image: "quay.io/calico/node:v3.32.1" }],
          volumes: withFlex
            ? [
                {
                  name: "flexvol-driver-host",
                  hostPath: { path: `${flex}nodeagent~uds`, type: "DirectoryOrCreate" },
                },
              ]
            : [],
        },
      },
    },
  };
}

function deployment(name: string, replicas: number): Obj {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: NS, labels: { "k8s-app": name } },
    spec: {
      replicas,
      selector: { matchLabels: { "k8s-app": name } },
      template: {
        metadata: { labels: { "k8s-app": name } },
        spec: { containers: [{ name, image: `quay.io/calico/${name.replace(/^calico-/, "")}:v3.32.1` }] },
      },
    },
  };
}

const tigeraStatus = (name: string): Obj => ({
  apiVersion: "operator.tigera.io/v1",
  kind: "TigeraStatus",
  metadata: { name },
  spec: {},
});

/** What each TigeraStatus watches, as the controllers tell their status managers. */
const WATCHED: Record<string, { daemonSets: string[]; deployments: string[] }> = {
  calico: { daemonSets: ["calico-node"], deployments: ["calico-kube-controllers", "calico-typha"] },
  apiserver: { daemonSets: [], deployments: ["calico-apiserver"] },
};

function podsFailing(view: ControllerView, selector: Record<string, string>): string | undefined {
  const pods = view
    .list("/Pod", NS)
    .filter((p: Any) => Object.entries(selector).every(([k, v]) => p.metadata.labels?.[k] === v)) as Any[];
  for (const p of pods) {
    const at = `${p.metadata.namespace}/${p.metadata.name}`;
    if (p.status?.phase === "Failed") return `Pod ${at} has failed`;
    for (const c of [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]) {
      const waiting = c.state?.waiting?.reason;
      if (waiting === "CrashLoopBackOff") return `Pod ${at} has crash looping container: ${c.name}`;
      if (waiting === "ImagePullBackOff" || waiting === "ErrImagePull")
        return `Pod ${at} failed to pull container image for: ${c.name}`;
      if (c.state?.terminated?.reason === "Error") return `Pod ${at} has terminated container: ${c.name}`;
    }
  }
  return undefined;
}

function statusOf(obj: Any, view: ControllerView): Obj {
  const watched = WATCHED[obj.metadata.name] ?? { daemonSets: [], deployments: [] };
  const progressing: string[] = [];
  const failing: string[] = [];
  for (const name of watched.daemonSets) {
    const ds = find(view, "apps/DaemonSet", name, NS);
    if (!ds) continue;
    const s = ds.status ?? {};
    const at = `"${NS}/${name}"`;
    const desired = s.desiredNumberScheduled ?? 0;
    if ((s.updatedNumberScheduled ?? 0) < desired)
      progressing.push(
        `DaemonSet ${at} update is rolling out (${s.updatedNumberScheduled ?? 0} out of ${desired} updated)`,
      );
    else if ((s.numberUnavailable ?? 0) > 0)
      progressing.push(`DaemonSet ${at} is not available (awaiting ${s.numberUnavailable} nodes)`);
    else if ((s.numberAvailable ?? 0) === 0 && desired !== 0)
      progressing.push(`DaemonSet ${at} is not yet scheduled on any nodes`);
    const f = podsFailing(view, ds.spec.selector.matchLabels);
    if (f) failing.push(f);
  }
  for (const name of watched.deployments) {
    const d = find(view, "apps/Deployment", name, NS);
    if (!d) continue;
    const s = d.status ?? {};
    const at = `"${NS}/${name}"`;
    if ((s.unavailableReplicas ?? 0) > 0)
      progressing.push(`Deployment ${at} is not available (awaiting ${s.unavailableReplicas} replicas)`);
    else if ((s.availableReplicas ?? 0) === 0)
      progressing.push(`Deployment ${at} is not yet scheduled on any nodes`);
    const f = podsFailing(view, d.spec.selector.matchLabels);
    if (f) failing.push(f);
  }
  const isAvailable = failing.length === 0 && progressing.length === 0;
  const isProgressing = progressing.length > 0 && failing.length === 0;
  const now = view.now();
  const prev: Any[] = obj.status?.conditions ?? [];
  const cond = (type: string, status: boolean, reason: string, message: string) => {
    const same = prev.find((c) => c.type === type);
    const s = status ? "True" : "False";
    return {
      type,
      status: s,
      lastTransitionTime: same && same.status === s ? same.lastTransitionTime : now,
      reason,
      message,
    };
  };
  const all = "All objects available";
  return {
    conditions: [
      isAvailable
        ? cond("Available", true, "AllObjectsAvailable", all)
        : cond("Available", false, "Unknown", ""),
      isProgressing
        ? cond("Progressing", true, "ResourceNotReady", progressing.join("\n"))
        : isAvailable
          ? cond("Progressing", false, "AllObjectsAvailable", all)
          : cond("Progressing", false, "Unknown", ""),
      failing.length
        ? cond("Degraded", true, "PodFailure", failing.join("\n"))
        : isAvailable
          ? cond("Degraded", false, "AllObjectsAvailable", all)
          : cond("Degraded", false, "Unknown", ""),
    ],
  };
}

/** A node's pod network is up: the calico-node pod there is running and ready. */
export function calicoNetworkReady(node: string, view: ControllerView): boolean {
  return view
    .list("/Pod", NS)
    .some(
      (p: Any) =>
        p.metadata.labels?.["k8s-app"] === "calico-node" &&
        p.spec?.nodeName === node &&
        p.status?.phase === "Running" &&
        p.status?.conditions?.some((c: Any) => c.type === "Ready" && c.status === "True"),
    );
}

export function calicoControllers(opts: { calicoVersion?: string } = {}): Controller[] {
  const version = opts.calicoVersion ?? "v3.32.1";
  const operator: Controller = {
    name: "tigera-operator",
    manager: OPERATOR,
    owns: ["operator.tigera.io/TigeraStatus", "operator.tigera.io/Installation"],
    reconcile(obj: Any, view) {
      if (!available(find(view, "apps/Deployment", "tigera-operator", "tigera-operator"))) return undefined;
      if (obj.kind === "Installation") {
        return { ...obj.status, variant: "Calico", calicoVersion: version, mtu: 1450 };
      }
      return statusOf(obj, view);
    },
    sync(view: ControllerWriter) {
      if (!available(find(view, "apps/Deployment", "tigera-operator", "tigera-operator"))) return;
      const installation = find(view, "operator.tigera.io/Installation", "default");
      const apiServer = find(view, "operator.tigera.io/APIServer", "default");
      if (!installation) {
        view.remove("v1", "Namespace", NS);
        view.remove("operator.tigera.io/v1", "TigeraStatus", "calico");
        view.remove("operator.tigera.io/v1", "TigeraStatus", "apiserver");
        return;
      }
      const spec = defaultedInstallationSpec(installation.spec);
      if (canonical(spec) !== canonical(installation.spec)) {
        const { managedFields: _m, ...meta } = installation.metadata;
        view.write({ ...installation, metadata: meta, spec }, OPERATOR);
      }
      const current = { ...installation, spec };
      view.write(
        {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: {
            name: NS,
            labels: { name: NS, "pod-security.kubernetes.io/enforce": "privileged" },
          },
        },
        OPERATOR,
      );
      view.write(daemonSet(current), OPERATOR);
      view.write(deployment("calico-kube-controllers", 1), OPERATOR);
      view.write(deployment("calico-typha", 1), OPERATOR);
      view.write(tigeraStatus("calico"), OPERATOR);
      if (apiServer) {
        view.write(deployment("calico-apiserver", spec.controlPlaneReplicas ?? 2), OPERATOR);
        view.write(tigeraStatus("apiserver"), OPERATOR);
      } else {
        view.remove("apps/v1", "Deployment", "calico-apiserver", NS);
        view.remove("operator.tigera.io/v1", "TigeraStatus", "apiserver");
      }
    },
  };
  return [operator];
}
