/**
 * Pods, for the stages' canaries: the DaemonSet controller's pod per node, kube-scheduler's
 * binding, and the kubelet's status, as far as a test server can play them.
 *
 * - DaemonSet pods: one pod per node matching the template's nodeSelector, named after the
 *   DaemonSet (pkg/controller/daemon/daemon_controller.go syncNodes creates them with the
 *   template's labels and binds them to the node through node affinity; here spec.nodeName).
 * - Scheduling: a pod without spec.nodeName is bound to the first Ready node (by name) that its
 *   nodeSelector matches and whose NoSchedule taints it tolerates (pkg/scheduler framework plugins
 *   NodeName, NodeAffinity, TaintToleration), as the binding subresource sets spec.nodeName.
 * - Kubelet: a pod on a Ready node starts once the node's pod network is ready; until then it stays
 *   Pending with its containers Waiting for ContainerCreating, which is what a kubelet reports while
 *   the CRI's RunPodSandbox fails with "network is not ready" (pkg/kubelet/kubelet.go syncPod,
 *   NetworkReady in the runtime status). hostNetwork pods need no pod network. A hostPath volume of
 *   type DirectoryOrCreate under a read-only tree cannot be made (Fedora CoreOS mounts /usr read-only:
 *   docs.fedoraproject.org/en-US/fedora-coreos/storage "Immutable /, read only /usr"), so such a pod
 *   stays Pending with its init containers Waiting for PodInitializing, the volume's MountVolume.SetUp
 *   failing (pkg/volume/hostpath/host_path.go checkType). A started pod gets
 *   an address from its node's block of the pod CIDR, status Running and Ready (the condition
 *   texts of pkg/kubelet/status/generate.go).
 * - agnhost: a container running `agnhost connect HOST:PORT` (kubernetes/kubernetes
 *   test/images/agnhost/connect/connect.go) exits 0 when a running pod has that address and serves
 *   that port, else 1 with "TIMEOUT" (nobody has the address: no route answers) or "REFUSED"
 *   (the pod does not listen there) on stderr; a pod with restartPolicy Never then ends Succeeded
 *   or Failed. `agnhost netexec --http-port=N` serves port N, as does a declared containerPort.
 */
import { createHash } from "node:crypto";
import { cidrContains, formatIpv4, parseCidr } from "../../../../src/core/ipv4.ts";
import type { Controller, ControllerView, ControllerWriter } from "../controllers.ts";

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form here
type Any = any;

export interface PodControllerOptions {
  /** The cluster's pod CIDR; each node gets a /26 of it, in node-name order. */
  podCidr?: string;
  /** Whether a node's pod network is up (a CNI's node agent ready there); default: always. */
  networkReady?: (node: string, view: ControllerView) => boolean;
  /**
   * Whether pod traffic gets from one node to another; default: always. A lab whose nodes block
   * the CNI's encapsulation (VXLAN's UDP 4789) answers false across nodes.
   */
  reachable?: (fromNode: string, toNode: string) => boolean;
}

/** Trees a node's OS mounts read-only, from the osImage its kubelet reports. */
function readOnlyTrees(node: Any): string[] {
  return String(node?.status?.nodeInfo?.osImage ?? "").startsWith("Fedora CoreOS") ? ["/usr/"] : [];
}

/** The first DirectoryOrCreate hostPath of a pod that the node cannot create. */
function unmountableVolume(pod: Any, node: Any): string | undefined {
  const trees = readOnlyTrees(node);
  for (const v of pod.spec?.volumes ?? []) {
    const path = v.hostPath?.path;
    if (
      typeof path === "string" &&
      v.hostPath.type === "DirectoryOrCreate" &&
      trees.some((t) => path.startsWith(t))
    )
      return v.name;
  }
  return undefined;
}

function nodeReady(node: Any): boolean {
  return node?.status?.conditions?.some((c: Any) => c.type === "Ready" && c.status === "True") ?? false;
}

function matches(labels: Record<string, string> | undefined, selector: Record<string, string> | undefined) {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

function tolerates(pod: Any, node: Any): boolean {
  const taints: Any[] = node.spec?.taints ?? [];
  return taints
    .filter((t) => t.effect === "NoSchedule" || t.effect === "NoExecute")
    .every((t) =>
      (pod.spec?.tolerations ?? []).some(
        (tol: Any) =>
          (tol.operator === "Exists" && (!tol.key || tol.key === t.key)) ||
          (tol.key === t.key && (tol.value ?? "") === (t.value ?? "")),
      ),
    );
}

function shortHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 5);
}

/** The port a container serves: agnhost netexec's --http-port, or a declared containerPort. */
function servedPorts(pod: Any): number[] {
  const out: number[] = [];
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (typeof p.containerPort === "number") out.push(p.containerPort);
    const args: string[] = [...(c.command ?? []), ...(c.args ?? [])];
    if (args.includes("netexec")) {
      const flag = args.find((a) => a.startsWith("--http-port="));
      out.push(flag ? Number(flag.split("=")[1]) : 8080);
    }
  }
  return out;
}

/** `agnhost connect HOST:PORT` in a container's command line, or undefined. */
function connectTarget(pod: Any): { host: string; port: number } | undefined {
  for (const c of pod.spec?.containers ?? []) {
    const args: string[] = [...(c.command ?? []), ...(c.args ?? [])];
    const i = args.indexOf("connect");
    if (i < 0 || !args[i + 1]) continue;
    const m = /^(.*):(\d+)$/.exec(args[i + 1]!);
    if (m) return { host: m[1]!, port: Number(m[2]) };
  }
  return undefined;
}

export function podControllers(opts: PodControllerOptions = {}): Controller[] {
  const podCidr = parseCidr(opts.podCidr ?? "10.233.64.0/18")!;
  const networkReady = opts.networkReady ?? (() => true);
  const reachable = opts.reachable ?? (() => true);
  const nodeNames = (view: ControllerView) =>
    view
      .list("/Node")
      .map((n: Any) => String(n.metadata.name))
      .sort();

  function addressFor(pod: Any, view: ControllerView): string | undefined {
    const names = nodeNames(view);
    const index = names.indexOf(pod.spec.nodeName);
    if (index < 0) return undefined;
    const base = podCidr.network + index * 64;
    const taken = new Set(
      view
        .list("/Pod")
        .filter((p: Any) => p.metadata.uid !== pod.metadata.uid)
        .map((p: Any) => p.status?.podIP),
    );
    for (let i = 1; i < 63; i++) {
      const ip = formatIpv4(base + i);
      if (!taken.has(ip) && cidrContains(podCidr, base + i)) return ip;
    }
    return undefined;
  }

  const daemonSetPods: Controller = {
    name: "daemonset-pods",
    owns: [],
    reconcile: () => undefined,
    sync(view: ControllerWriter) {
      for (const ds of view.list("apps/DaemonSet") as Any[]) {
        const template = ds.spec?.template ?? {};
        const ns = ds.metadata.namespace;
        const wanted = new Set<string>();
        for (const node of view.list("/Node") as Any[]) {
          if (!matches(node.metadata.labels, template.spec?.nodeSelector)) continue;
          const name = `${ds.metadata.name}-${shortHash(node.metadata.name)}`;
          wanted.add(name);
          view.write(
            {
              apiVersion: "v1",
              kind: "Pod",
              metadata: {
                name,
                namespace: ns,
                labels: { ...template.metadata?.labels },
                ownerReferences: [
                  {
                    apiVersion: "apps/v1",
                    kind: "DaemonSet",
                    name: ds.metadata.name,
                    uid: ds.metadata.uid,
                    controller: true,
                  },
                ],
              },
              spec: { ...template.spec, nodeName: node.metadata.name },
            },
            "kube-controller-manager",
          );
        }
        for (const pod of view.list("/Pod", ns) as Any[]) {
          const owner = pod.metadata.ownerReferences?.find((o: Any) => o.kind === "DaemonSet");
          if (owner?.uid === ds.metadata.uid && !wanted.has(pod.metadata.name))
            view.remove("v1", "Pod", pod.metadata.name, ns);
        }
      }
      // Pods of a DaemonSet that is gone go with it (the garbage collector follows ownerReferences).
      const live = new Set((view.list("apps/DaemonSet") as Any[]).map((d) => d.metadata.uid));
      for (const pod of view.list("/Pod") as Any[]) {
        const owner = pod.metadata.ownerReferences?.find((o: Any) => o.kind === "DaemonSet");
        if (owner && !live.has(owner.uid))
          view.remove("v1", "Pod", pod.metadata.name, pod.metadata.namespace);
      }
    },
  };

  const scheduler: Controller = {
    name: "scheduler",
    owns: [],
    reconcile: () => undefined,
    sync(view: ControllerWriter) {
      for (const pod of view.list("/Pod") as Any[]) {
        if (pod.spec?.nodeName) continue;
        const node = (view.list("/Node") as Any[])
          .filter(
            (n) => nodeReady(n) && matches(n.metadata.labels, pod.spec?.nodeSelector) && tolerates(pod, n),
          )
          .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1))[0];
        if (!node) continue;
        const { managedFields: _m, resourceVersion: _r, ...meta } = pod.metadata;
        view.write(
          { ...pod, metadata: meta, spec: { ...pod.spec, nodeName: node.metadata.name } },
          "kube-scheduler",
        );
      }
    },
  };

  const kubelet: Controller = {
    name: "kubelet",
    manager: "kubelet",
    owns: ["/Pod"],
    reconcile(pod: Any, view) {
      const now = view.now();
      const prev = pod.status ?? {};
      const containers: Any[] = pod.spec?.containers ?? [];
      const condition = (type: string, ok: boolean, reason?: string) => ({
        type,
        status: ok ? "True" : "False",
        lastProbeTime: null,
        lastTransitionTime:
          prev.conditions?.find((c: Any) => c.type === type && c.status === (ok ? "True" : "False"))
            ?.lastTransitionTime ?? now,
        ...(reason ? { reason } : {}),
      });
      if (!pod.spec?.nodeName) {
        return {
          phase: "Pending",
          conditions: [
            {
              ...condition("PodScheduled", false, "Unschedulable"),
              message: `0/${view.list("/Node").length} nodes are available`,
            },
          ],
        };
      }
      const node = view.list("/Node").find((n: Any) => n.metadata.name === pod.spec.nodeName) as Any;
      const hostIP = node?.status?.addresses?.find((a: Any) => a.type === "InternalIP")?.address;
      const hostNetwork = pod.spec?.hostNetwork === true;
      if (prev.phase === "Succeeded" || prev.phase === "Failed") return prev;
      const canStart =
        nodeReady(node) && !view.held(pod) && (hostNetwork || networkReady(pod.spec.nodeName, view));
      if (!canStart) {
        return {
          phase: "Pending",
          ...(hostIP ? { hostIP, hostIPs: [{ ip: hostIP }] } : {}),
          conditions: [
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("Ready", false, "ContainersNotReady"),
            condition("ContainersReady", false, "ContainersNotReady"),
          ],
          containerStatuses: containers.map((c) => ({
            name: c.name,
            image: c.image,
            imageID: "",
            ready: false,
            restartCount: 0,
            started: false,
            state: { waiting: { reason: "ContainerCreating" } },
          })),
        };
      }
      if (unmountableVolume(pod, node)) {
        return {
          phase: "Pending",
          ...(hostIP ? { hostIP, hostIPs: [{ ip: hostIP }] } : {}),
          conditions: [
            condition("PodScheduled", true),
            condition("Initialized", false, "ContainersNotInitialized"),
            condition("Ready", false, "ContainersNotReady"),
            condition("ContainersReady", false, "ContainersNotReady"),
          ],
          initContainerStatuses: (pod.spec?.initContainers ?? []).map((c: Any) => ({
            name: c.name,
            image: c.image,
            imageID: "",
            ready: false,
            restartCount: 0,
            started: false,
            state: { waiting: { reason: "PodInitializing" } },
          })),
          containerStatuses: containers.map((c) => ({
            name: c.name,
            image: c.image,
            imageID: "",
            ready: false,
            restartCount: 0,
            started: false,
            state: { waiting: { reason: "PodInitializing" } },
          })),
        };
      }
      const podIP = hostNetwork ? hostIP : (prev.podIP ?? addressFor(pod, view));
      const base = {
        ...(hostIP ? { hostIP, hostIPs: [{ ip: hostIP }] } : {}),
        ...(podIP ? { podIP, podIPs: [{ ip: podIP }] } : {}),
        startTime: prev.startTime ?? now,
        qosClass: "BestEffort",
      };
      const target = connectTarget(pod);
      if (target && pod.spec?.restartPolicy === "Never") {
        const peer = view
          .list("/Pod")
          .find((p: Any) => p.status?.podIP === target.host && p.status?.phase === "Running") as Any;
        const result =
          !peer || !reachable(pod.spec.nodeName, peer.spec.nodeName)
            ? "TIMEOUT"
            : servedPorts(peer).includes(target.port)
              ? ""
              : "REFUSED";
        const ok = result === "";
        return {
          ...base,
          phase: ok ? "Succeeded" : "Failed",
          conditions: [
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("Ready", false, "PodCompleted"),
            condition("ContainersReady", false, "PodCompleted"),
          ],
          containerStatuses: containers.map((c) => ({
            name: c.name,
            image: c.image,
            imageID: "",
            ready: false,
            restartCount: 0,
            started: false,
            state: {
              terminated: {
                exitCode: ok ? 0 : 1,
                reason: ok ? "Completed" : "Error",
                startedAt: base.startTime,
                finishedAt: now,
                // terminationMessagePolicy FallbackToLogsOnError puts the log's tail here.
                ...(ok || pod.spec.containers[0]?.terminationMessagePolicy !== "FallbackToLogsOnError"
                  ? {}
                  : { message: `${result}\n` }),
              },
            },
          })),
        };
      }
      return {
        ...base,
        phase: "Running",
        conditions: [
          condition("PodScheduled", true),
          condition("Initialized", true),
          condition("Ready", true),
          condition("ContainersReady", true),
        ],
        containerStatuses: containers.map((c) => ({
          name: c.name,
          image: c.image,
          imageID: "",
          ready: true,
          restartCount: 0,
          started: true,
          state: { running: { startedAt: base.startTime } },
        })),
      };
    },
  };

  return [daemonSetPods, scheduler, kubelet];
}
