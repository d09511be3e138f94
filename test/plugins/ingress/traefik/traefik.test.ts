/**
 * ingress/traefik against the Kubernetes API test server: the pinned upstream files come from a
 * loopback mirror, Traefik's Deployment becomes ready only when its probe would be answered, a
 * stand-in for MetalLB gives the Service a loopback address, and a real HTTP server on that address
 * answers /ping the way Traefik does. verify's HTTP request goes through a real curl on the host target.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import {
  httpGetOn,
  loadBalancerAddress,
  pingThroughEntrypoint,
} from "../../../../plugins/ingress/traefik/hops.ts";
import plugin, { KNOWN_KINDS } from "../../../../plugins/ingress/traefik/index.ts";
import { deployment, NAME, pingRoute, service } from "../../../../plugins/ingress/traefik/manifests.ts";
import { validateTraefik } from "../../../../plugins/ingress/traefik/options.ts";
import type { Diagnostic } from "../../../../src/core/diagnostics.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import { parseManifests } from "../../../../src/kube/apply.ts";
import { createKubeClient } from "../../../../src/kube/client.ts";
import type { KubeObject } from "../../../../src/kube/types.ts";
import { LocalTarget } from "../../../../src/targets/local.ts";
import { RecordingTarget } from "../../../../src/targets/recording.ts";
import { labCluster } from "../../../lab/cluster.ts";
import {
  loadBalancerStandIn,
  traefikDeploymentController,
  traefikProbeAnswers,
} from "../../../lab/kube/controllers/traefik.ts";
import { defaultControllers, deploymentController } from "../../../lab/kube/controllers.ts";
import { resourcesOfCrd } from "../../../lab/kube/resources.ts";
import { validateAgainstSchema } from "../../../lab/kube/schema.ts";
import { type StageLab, startStageLab } from "../../../lab/kube/stage-lab.ts";
import { oracle } from "../../../lab/oracles.ts";
import { have } from "../../../lab/prereq.ts";

const OPTIONS = { namespace: "traefik", replicas: 1 };
/** The title of the plan line of Traefik's own objects. */
const WHERE = "Traefik v3.7.9 in namespace traefik (entrypoints web :80, websecure :443)";
const CRD_FILE =
  "releases/traefik/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml";

/** A random loopback address, so that parallel runs each have their own port 80. */
function loopbackAddress(): string {
  const b = () => 1 + Math.floor(Math.random() * 250);
  return `127.${b()}.${b()}.${b()}`;
}

/** Traefik's ping handler (pkg/ping/ping.go): 200 and the body "OK" on GET /ping. */
function serveTraefikPing(
  hostname: string,
  answer = (path: string) =>
    path === "/ping" ? new Response("OK") : new Response("404 page not found\n", { status: 404 }),
) {
  return Bun.serve({ hostname, port: 80, fetch: (req) => answer(new URL(req.url).pathname) });
}

const codes = (ds: Diagnostic[]) => ds.map((d) => `${d.severity} ${d.code}`);

describe("validate: the fixed address", () => {
  const cluster = labCluster();
  const check = (address: string | undefined, c = cluster) =>
    validateTraefik({ cluster: c, options: { ...OPTIONS, address } }).map((d) => d.code);

  test("an address of the node subnet that no node has is accepted", () => {
    expect(check("192.168.1.240")).toEqual([]);
    expect(check(undefined)).toEqual([]);
  });

  test("anything but an IPv4 address of the node subnet is refused with the option's path", () => {
    expect(check("traefik.lab")).toEqual(["traefik.address-invalid"]);
    expect(check("192.168.1.256")).toEqual(["traefik.address-invalid"]);
    expect(check("10.0.0.5")).toEqual(["traefik.address-outside-subnet"]);
    expect(check("192.168.1.22")).toEqual(["traefik.address-taken"]);
    const [d] = validateTraefik({ cluster, options: { ...OPTIONS, address: "10.0.0.5" } });
    expect(d!.path).toBe("stages.ingress.address");
  });

  test("an address with anything around it is refused: a node's address with a blank is still the node's", () => {
    // MetalLB trims the annotation (controller/service.go getDesiredLbIPs: strings.TrimSpace), so
    // "192.168.1.22 " is the node's address to it; Go keeps a byte order mark, which makes it none.
    for (const address of ["192.168.1.22 ", " 192.168.1.240", "192.168.1.240\n", "\ufeff192.168.1.240"])
      expect({ address, codes: check(address) }).toEqual({ address, codes: ["traefik.address-invalid"] });
  });

  test("with MetalLB's pools in the cluster file, the address must lie in one of them", () => {
    const withPool = labCluster({
      stages: { lb: { plugin: "lb/metallb", options: { addresses: ["192.168.1.240-192.168.1.250"] } } },
    });
    expect(check("192.168.1.245", withPool)).toEqual([]);
    expect(check("192.168.1.230", withPool)).toEqual(["traefik.address-outside-pool"]);
    const cidrPool = labCluster({
      stages: { lb: { plugin: "lb/metallb", options: { pools: [{ addresses: ["192.168.1.224/28"] }] } } },
    });
    expect(check("192.168.1.230", cidrPool)).toEqual([]);
    // An lb stage of another shape is not understood, and not held against the address.
    const other = labCluster({ stages: { lb: { plugin: "lb/other", options: { range: 7 } } } });
    expect(check("192.168.1.230", other)).toEqual([]);
  });
});

describe("the manifests", () => {
  const schemas = new Map<string, Record<string, unknown>>();
  for (const crd of parseManifests(readFileSync(oracle(CRD_FILE), "utf8"), CRD_FILE)) {
    for (const r of resourcesOfCrd(crd))
      if (r.schema) schemas.set(`${r.group}/${r.version}/${r.kind}`, r.schema);
  }

  test("the ping IngressRoute validates against Traefik v3.7.9's CRD schema, objects closed", () => {
    const route = pingRoute("traefik");
    const schema = schemas.get("traefik.io/v1alpha1/IngressRoute")!;
    expect(validateAgainstSchema(route, schema)).toEqual([]);
    // The check can fail: a field the CRD lacks is found.
    const bad = { ...route, spec: { ...route.spec, entrypoints: ["web"] } } as KubeObject;
    expect(validateAgainstSchema(bad, schema).map((p) => p.kind)).toContain("unknown");
  });

  test("the Deployment keeps the Helm chart's defaults: ports, probes, non-root, read-only, no capabilities", () => {
    const dep = deployment({ namespace: "traefik", replicas: 1 });
    const pod = dep.spec.template.spec;
    const c = pod.containers[0];
    expect(c.image).toBe("docker.io/traefik:v3.7.9");
    expect(
      c.ports.map((p: { name: string; containerPort: number }) => `${p.name}:${p.containerPort}`),
    ).toEqual(["traefik:8080", "web:8000", "websecure:8443"]);
    expect(c.args).toContain("--ping=true");
    expect(c.args).toContain("--providers.kubernetescrd");
    expect(c.args).toContain("--providers.kubernetesingress");
    expect(c.args).toContain("--entryPoints.websecure.http.tls=true");
    expect(c.readinessProbe.httpGet).toEqual({ path: "/ping", port: 8080, scheme: "HTTP" });
    expect(c.livenessProbe.httpGet).toEqual({ path: "/ping", port: 8080, scheme: "HTTP" });
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      readOnlyRootFilesystem: true,
    });
    expect(pod.securityContext).toMatchObject({ runAsUser: 65532, runAsGroup: 65532, runAsNonRoot: true });
    expect(traefikProbeAnswers(c)).toBe(true);
  });

  test("the Service exposes web as 80 and websecure as 443, never the traefik entrypoint", () => {
    const svc = service({ namespace: "traefik", replicas: 1, address: "192.168.1.240" });
    expect(svc.spec.type).toBe("LoadBalancer");
    expect(
      svc.spec.ports.map((p: { port: number; targetPort: string }) => `${p.port}->${p.targetPort}`),
    ).toEqual(["80->web", "443->websecure"]);
    expect(svc.metadata.annotations).toEqual({ "metallb.io/loadBalancerIPs": "192.168.1.240" });
  });

  test("a Traefik whose probe asks a port without /ping is never ready in the test server", () => {
    const dep = deployment({ namespace: "traefik", replicas: 1 });
    const c = dep.spec.template.spec.containers[0];
    expect(traefikProbeAnswers({ ...c, args: c.args.filter((a: string) => a !== "--ping=true") })).toBe(
      false,
    );
    expect(traefikProbeAnswers({ ...c, readinessProbe: { httpGet: { path: "/ping", port: 8000 } } })).toBe(
      false,
    );
    expect(
      traefikProbeAnswers({ ...c, readinessProbe: { httpGet: { path: "/ping", port: "traefik" } } }),
    ).toBe(true);
  });
});

describe("the HTTP hop from the host", () => {
  test("without curl, FreeBSD's fetch(1) asks instead", async () => {
    const host = new RecordingTarget([], "root@hv1")
      .on(["curl"], { code: 127, stderr: "sh: curl: not found\n" })
      .on(["fetch", "-q", "-o", "-", "-T", "5", "http://192.0.2.10/ping"], { stdout: "OK" });
    expect(await pingThroughEntrypoint(httpGetOn(host), "192.0.2.10")).toMatchObject({
      severity: "ok",
      code: "traefik.ping",
    });
    expect(host.argvs.map((a) => a[0])).toEqual(["curl", "fetch"]);
  });

  test.if(have("curl", "curl"))(
    "an address where nothing listens is unreachable, in curl's words",
    async () => {
      const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("OK") });
      const port = server.port ?? 0;
      await server.stop(true);
      const d = await pingThroughEntrypoint(httpGetOn(new LocalTarget(), 2), "127.0.0.1", port);
      expect(d.code).toBe("traefik.unreachable");
      expect(d.summary).toContain(`GET http://127.0.0.1:${port}/ping got no answer: curl: (7)`);
    },
  );
});

describe("the Service's external address, as the API server reports it", () => {
  /** A server that answers what it likes: kube-apiserver admits only an IP in status.loadBalancer. */
  const answering = (ingress: unknown[]) =>
    ({
      get: async () => ({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: NAME, namespace: "traefik" },
        status: { loadBalancer: { ingress } },
      }),
    }) as never;

  test("an address that is no IPv4 address is a broken hop, and nothing is asked of it", async () => {
    for (const ip of ["203.0.113.9@evil.example", "192.168.1.240/x?", "192.168.1.240:22", " 192.168.1.240"]) {
      const lb = await loadBalancerAddress(answering([{ ip }]), "traefik");
      expect({ ip, address: lb.address, code: lb.diagnostic.code }).toEqual({
        ip,
        address: undefined,
        code: "traefik.address-malformed",
      });
      expect(lb.diagnostic.summary).toContain(JSON.stringify(ip));
    }
    expect((await loadBalancerAddress(answering([{ ip: "192.168.1.240" }]), "traefik")).address).toBe(
      "192.168.1.240",
    );
  });
});

describe("up, verify and doctor against the API test server", () => {
  let lab: StageLab;
  let address: string;
  let http: ReturnType<typeof Bun.serve>;
  let pingAnswer: (path: string) => Response;
  const host = new LocalTarget();

  beforeAll(async () => {
    if (!have("openssl", "openssl") || !have("curl", "curl")) return;
    address = loopbackAddress();
    pingAnswer = (path) =>
      path === "/ping" ? new Response("OK") : new Response("404 page not found\n", { status: 404 });
    http = serveTraefikPing(address, (path) => pingAnswer(path));
    const controllers = [
      ...defaultControllers().filter((c) => c !== deploymentController),
      traefikDeploymentController,
      loadBalancerStandIn([address]),
    ];
    lab = await startStageLab(labCluster(), controllers);
  }, 60_000);
  afterAll(async () => {
    await http?.stop(true);
    await lab?.stop();
  }, 60_000);

  test("a fresh cluster plans every object's creation file by file, apply brings Traefik up, verify reaches /ping through the address", async () => {
    const ctx = lab.ctx(plugin, OPTIONS, { host });
    const first = await plugin.check(ctx as never);
    expect(first.changes.map((c) => c.summary)).toEqual([
      "Traefik v3.7.9 CRDs: create 10 objects",
      "Traefik's namespace and RBAC: create 4 objects",
      `${WHERE}: create 4 objects`,
    ]);
    await plugin.apply!(ctx as never, first.changes);

    const svc = lab.server.get("v1", "Service", "traefik", "traefik") as unknown as KubeObject;
    expect(svc.metadata.labels).toMatchObject({
      "app.kubernetes.io/managed-by": "kubehyve",
      "kubehyve.io/stage": "ingress",
    });
    // The upstream RBAC's binding follows Traefik into its namespace.
    const binding = lab.server.get(
      "rbac.authorization.k8s.io/v1",
      "ClusterRoleBinding",
      "traefik-ingress-controller",
    )!;
    expect(binding.subjects).toEqual([
      { kind: "ServiceAccount", name: "traefik-ingress-controller", namespace: "traefik" },
    ]);
    expect(
      (lab.server.get("networking.k8s.io/v1", "IngressClass", "traefik") as unknown as KubeObject).metadata
        .annotations,
    ).toMatchObject({
      "ingressclass.kubernetes.io/is-default-class": "true",
    });

    const diagnostics = await plugin.verify!(ctx as never);
    expect(codes(diagnostics)).toEqual(["ok traefik.ready", "ok traefik.address", "ok traefik.ping"]);
    expect(diagnostics[2]!.summary).toBe(`GET http://${address}/ping is answered by Traefik`);
  }, 60_000);

  test("a second up changes nothing", async () => {
    const ctx = lab.ctx(plugin, OPTIONS, { host });
    const before = lab.server.resourceVersion();
    const again = await plugin.check(ctx as never);
    expect(again.changes).toEqual([]);
    expect(lab.server.resourceVersion()).toBe(before);
  }, 60_000);

  test("a changed option is planned as a change of the objects it touches", async () => {
    const ctx = lab.ctx(plugin, { ...OPTIONS, replicas: 2 }, { host });
    const { changes } = await plugin.check(ctx as never);
    expect(changes.map((c) => c.summary)).toEqual([
      `${WHERE}: update Deployment traefik/traefik (spec.replicas)`,
    ]);
    expect(changes[0]!.detail).toBe("update Deployment traefik/traefik: spec.replicas");
  }, 60_000);

  test("verify names the hop that fails: something else answers at the address", async () => {
    pingAnswer = () => new Response("<html>router login</html>", { status: 200 });
    try {
      const diagnostics = await plugin.verify!(lab.ctx(plugin, OPTIONS, { host }) as never);
      expect(codes(diagnostics)).toEqual([
        "ok traefik.ready",
        "ok traefik.address",
        "error traefik.ping-failed",
      ]);
    } finally {
      pingAnswer = (path) =>
        path === "/ping" ? new Response("OK") : new Response("404 page not found\n", { status: 404 });
    }
  }, 60_000);

  test("verify names the hop that fails: a fixed address that the load balancer did not give", async () => {
    const diagnostics = await plugin.verify!(
      lab.ctx(plugin, { ...OPTIONS, address: "192.168.1.240" }, { host }) as never,
    );
    expect(codes(diagnostics)).toContain("warn traefik.address-differs");
  }, 60_000);

  test("doctor flags IngressRoutes of the old traefik.containo.us group", async () => {
    const kube = await lab.kube();
    await kube.apply({
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: "ingressroutes.traefik.containo.us" },
      spec: {
        group: "traefik.containo.us",
        names: {
          kind: "IngressRoute",
          plural: "ingressroutes",
          singular: "ingressroute",
          listKind: "IngressRouteList",
        },
        scope: "Namespaced",
        versions: [
          {
            name: "v1alpha1",
            served: true,
            storage: true,
            schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
          },
        ],
      },
    });
    await Bun.sleep(50);
    await kube.refreshDiscovery?.();
    await kube.apply({
      apiVersion: "traefik.containo.us/v1alpha1",
      kind: "IngressRoute",
      metadata: { name: "old-app", namespace: "default" },
      spec: { entryPoints: ["web"], routes: [] },
    });
    const { diagnostics } = await plugin.check(lab.ctx(plugin, OPTIONS, { host }) as never);
    const legacy = diagnostics.filter((d) => d.code === "traefik.legacy-ingressroute");
    expect(legacy.map((d) => d.summary)).toEqual([
      "IngressRoute default/old-app is of the old traefik.containo.us group: Traefik v3 ignores it without a word",
    ]);
    expect(legacy[0]!.hint).toBe(
      "change its apiVersion to traefik.io/v1alpha1 (kubectl -n default get ingressroute.traefik.containo.us old-app -o yaml | sed 's#traefik.containo.us/v1alpha1#traefik.io/v1alpha1#' | kubectl apply -f -)",
    );
  }, 60_000);

  test("render writes every manifest, labelled as apply sends them", async () => {
    const files = await plugin.render!(lab.ctx(plugin, OPTIONS, { host }) as never);
    expect(files.map((f) => f.path)).toEqual(["crds.yaml", "rbac.yaml", "traefik.yaml"]);
    const objects = files.flatMap((f) => parseManifests(String(f.content), f.path));
    expect(objects).toHaveLength(18);
    for (const o of objects) expect(o.metadata.labels?.["kubehyve.io/stage"]).toBe("ingress");
    // A down without a record of what was applied still looks in every kind rendered.
    const known = KNOWN_KINDS.map((k) => `${k.apiVersion} ${k.kind}`);
    for (const o of objects) expect(known).toContain(`${o.apiVersion} ${o.kind}`);
  }, 60_000);

  test("destroy removes what the stage applied, custom resources first and the namespace last, and leaves what it did not make", async () => {
    const kube = await lab.kube();
    // An object of the same name that this cluster did not label: not ours to delete.
    const ic = lab.server.get("networking.k8s.io/v1", "IngressClass", "traefik") as unknown as KubeObject;
    lab.server.put({ ...ic, metadata: { ...ic.metadata, labels: {} } });
    // Someone's own Middleware, in their namespace: deleting its CRD would delete it with it.
    lab.server.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "apps" } });
    const theirs = {
      apiVersion: "traefik.io/v1alpha1",
      kind: "Middleware",
      metadata: { name: "strip-prefix", namespace: "apps" },
      spec: { stripPrefix: { prefixes: ["/app"] } },
    };
    lab.server.put(theirs);
    const dry = lab.ctx(plugin, OPTIONS, { host, dryRun: true });
    await plugin.destroy!(dry as never);
    const reporter = memoryReporter();
    const ctx = lab.ctx(plugin, OPTIONS, { host, reporter });
    await plugin.destroy!(ctx as never);
    expect(ctx.wetLog).toEqual(dry.wetLog);
    expect(lab.server.get("traefik.io/v1alpha1", "Middleware", "strip-prefix", "apps")).toBeDefined();
    expect(
      lab.server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "middlewares.traefik.io"),
    ).toBeDefined();
    expect(ctx.wetLog).not.toContain("delete CustomResourceDefinition middlewares.traefik.io");
    expect(reporter.events).toContainEqual(
      expect.objectContaining({
        type: "log",
        level: "warn",
        message:
          "left CustomResourceDefinition middlewares.traefik.io: 1 object of it that this stage did not make (apps/strip-prefix) would go with it; once they are not needed: kubectl delete crd middlewares.traefik.io",
      }),
    );
    expect(lab.server.get("apps/v1", "Deployment", "traefik", "traefik")).toBeUndefined();
    expect(lab.server.get("v1", "Service", "traefik", "traefik")).toBeUndefined();
    expect(lab.server.get("networking.k8s.io/v1", "IngressClass", "traefik")).toBeDefined();
    expect(
      lab.server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "ingressroutes.traefik.io"),
    ).toBeUndefined();
    const deletes = ctx.wetLog.filter((l) => l.startsWith("delete "));
    // Custom resources first, while their CRDs still serve them; the namespace last.
    expect(deletes[0]).toBe("delete IngressRoute traefik/traefik-ping");
    expect(deletes.at(-2)).toMatch(/^delete CustomResourceDefinition /);
    expect(deletes.at(-1)).toBe("delete Namespace traefik");
    expect(deletes).not.toContain("delete IngressClass traefik");
    expect(await kube.get("v1", "Namespace", "traefik")).toBeUndefined();
  }, 60_000);

  test("down keeps Traefik's namespace while someone's own Deployment, claim or Middleware is in it, naming it; once it is gone, the namespace goes", async () => {
    const kube = await lab.kube();
    // Made with kubectl, by its own field manager.
    const kubectl = await createKubeClient(lab.server.kubeconfigPath, { fieldManager: "kubectl-create" });
    const theirs: KubeObject[] = [
      {
        ...deployment({ namespace: "traefik", replicas: 1 }),
        metadata: { name: "whoami", namespace: "traefik" },
      },
      {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name: "app-data", namespace: "traefik" },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
      },
      {
        apiVersion: "traefik.io/v1alpha1",
        kind: "Middleware",
        metadata: { name: "auth", namespace: "traefik" },
        spec: { basicAuth: { secret: "users" } },
      },
    ];
    // The Deployment's status is its controller's, the claim's the volume binder's.
    const managers: Record<string, string> = {
      Deployment: '"kube-controller-manager", "kubectl-create"',
      PersistentVolumeClaim: '"kube-controller-manager", "kubectl-create"',
      Middleware: '"kubectl-create"',
    };
    const warnings = (r: ReturnType<typeof memoryReporter>) =>
      r.events.flatMap((e) => (e.type === "log" && e.level === "warn" ? [e.message] : []));
    for (const obj of theirs) {
      const up = lab.ctx(plugin, OPTIONS, { host });
      await plugin.apply!(up as never, (await plugin.check(up as never)).changes);
      await kubectl.create(obj);
      const { apiVersion, kind, metadata } = obj;
      const dryReporter = memoryReporter();
      const dry = lab.ctx(plugin, OPTIONS, { host, dryRun: true, reporter: dryReporter });
      await plugin.destroy!(dry as never);
      const reporter = memoryReporter();
      const ctx = lab.ctx(plugin, OPTIONS, { host, reporter });
      await plugin.destroy!(ctx as never);
      expect(ctx.wetLog).toEqual(dry.wetLog);
      expect(ctx.wetLog).not.toContain("delete Namespace traefik");
      const kept = `left Namespace traefik: 1 object in it that this stage did not make (${kind} traefik/${metadata.name}: its fields are set by ${managers[kind]}) would go with it; once they are not needed: kubectl delete namespace traefik`;
      expect(warnings(reporter)).toContain(kept);
      expect(warnings(dryReporter)).toContain(kept);
      // A Middleware in the kept namespace counts for its CRD too, besides the one in apps.
      if (kind === "Middleware")
        expect(warnings(reporter)).toContain(
          "left CustomResourceDefinition middlewares.traefik.io: 2 objects of it that this stage did not make (apps/strip-prefix, …) would go with it; once they are not needed: kubectl delete crd middlewares.traefik.io",
        );
      expect(lab.server.get(apiVersion, kind, metadata.name, "traefik")).toBeDefined();
      expect(await kube.get("v1", "Namespace", "traefik")).toBeDefined();
      // The stage's own objects in it are deleted all the same.
      expect(lab.server.get("apps/v1", "Deployment", "traefik", "traefik")).toBeUndefined();
      expect(lab.server.get("v1", "Service", "traefik", "traefik")).toBeUndefined();
      await kubectl.delete(apiVersion, kind, metadata.name, "traefik");
      const again = lab.ctx(plugin, OPTIONS, { host });
      await plugin.destroy!(again as never);
      expect(again.wetLog.filter((l) => l.startsWith("delete ")).at(-1)).toBe("delete Namespace traefik");
      expect(await kube.get("v1", "Namespace", "traefik")).toBeUndefined();
    }
  }, 60_000);
});

describe("on a cluster that has a Traefik of its own", () => {
  let lab: StageLab;
  const host = new LocalTarget();

  /** Server-side apply by another field manager (Helm's), as someone else's install does it. */
  async function applyAsHelm(obj: KubeObject): Promise<void> {
    const { apiVersion, kind, metadata } = obj;
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const where = metadata.namespace ? `/namespaces/${metadata.namespace}` : "";
    const path = `${base}${where}/${kind.toLowerCase()}s/${metadata.name}?fieldManager=helm`;
    const res = await fetch(`${lab.server.url}${path}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/apply-patch+yaml" },
      body: JSON.stringify(obj),
      tls: { cert: lab.server.pki.clientCert, key: lab.server.pki.clientKey, ca: lab.server.caCert },
    } as RequestInit);
    if (res.status !== 200 && res.status !== 201)
      throw new Error(`${path}: ${res.status} ${await res.text()}`);
  }

  beforeAll(async () => {
    if (!have("openssl", "openssl")) return;
    lab = await startStageLab(labCluster(), defaultControllers());
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  }, 60_000);

  test.if(have("openssl", "openssl"))(
    "a Deployment named like Traefik's that someone else made is refused, never applied over, and left alone",
    async () => {
      // Someone's own Traefik in a namespace of its own name, and a Deployment named like ours.
      await applyAsHelm({ apiVersion: "v1", kind: "Namespace", metadata: { name: "edge" } });
      const theirs = { ...deployment({ namespace: "edge", replicas: 3 }) };
      await applyAsHelm(theirs);
      // Its controller's status written first (it runs just after a write): what is left alone is
      // the Deployment as it then is, however soon this test gets here.
      lab.server.reconcile();
      const before = lab.server.get("apps/v1", "Deployment", NAME, "edge");
      const options = { ...OPTIONS, namespace: "edge" };

      const { changes, diagnostics } = await plugin.check(lab.ctx(plugin, options, { host }) as never);
      const foreign = diagnostics.filter((d) => d.severity === "error");
      expect(foreign).toEqual([
        {
          code: "traefik.foreign-objects",
          severity: "error",
          summary:
            "2 objects of Traefik's manifests already exist without this stage's labels: kubehyve does not take over what it did not make",
          detail: "Namespace edge\nDeployment edge/traefik",
          hint: "another Traefik (or an object of the same name) is on this cluster: remove it, or set stages.ingress.namespace to another namespace",
        },
      ]);
      // The plan leaves both out of what it would apply.
      const planned = changes.flatMap((c) =>
        (c.data as KubeObject[]).map((o) => `${o.kind}/${o.metadata.name}`),
      );
      expect(planned).not.toContain("Deployment/traefik");
      expect(planned).not.toContain("Namespace/edge");

      // A plan made before the cluster could be read is checked again by apply, and refused alike.
      const install = await plugin.check(lab.ctx(plugin, options, { host, upstreamPending: true }) as never);
      const writes = () =>
        lab.server.requests.filter((r) => r.method !== "GET" && !r.query.includes("dryRun=All"));
      const mutations = writes().length;
      await expect(
        plugin.apply!(lab.ctx(plugin, options, { host }) as never, install.changes),
      ).rejects.toThrow("2 objects of Traefik's manifests already exist without this stage's labels");
      expect(writes().length).toBe(mutations);

      // down does not delete what it did not make.
      await plugin.destroy!(lab.ctx(plugin, options, { host }) as never);
      expect(lab.server.get("apps/v1", "Deployment", NAME, "edge")).toEqual(before);
      expect(lab.server.get("v1", "Namespace", "edge")).toBeDefined();
    },
    60_000,
  );
});
