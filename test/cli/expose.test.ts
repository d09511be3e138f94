/**
 * `kubehyve expose` as its user runs it, in process: bad arguments are refused before anything is
 * read, `--json` gives every hop with its status, and an Ingress that kubehyve did not make is never
 * applied over. The cluster is the exposure lab's (test/lab/expose-lab.ts); the host is this machine.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runInProcess } from "../lab/cli.ts";
import { CLUSTER_ID, type ExposeLab, startExposeLab } from "../lab/expose-lab.ts";
import { have } from "../lab/prereq.ts";

let lab: ExposeLab;
let dir: string;
let state: string;

function clusterFile(net: string): string {
  return `name: lab
host: local
network:
  domain: lab.home.arpa
  gateway: ${net}.1
  dns: [${net}.2]
  subnet: ${net}.0/24
nodes:
  - { name: cp1, role: control-plane, address: ${net}.21 }
  - { name: w1, role: worker, address: ${net}.22 }
stages:
  lb:
    plugin: metallb
    pools: [{ name: lab, addresses: [${net}.240-${net}.243] }]
  ingress:
    plugin: traefik
    namespace: traefik
    replicas: 1
`;
}

beforeAll(async () => {
  if (!have("dnsmasq", "dnsmasq-base") || !have("curl", "curl") || !have("openssl", "openssl")) return;
  lab = await startExposeLab();
  dir = mkdtempSync(join(tmpdir(), "kubehyve-expose-cli-"));
  state = join(dir, "state");
  mkdirSync(state, { mode: 0o700 });
  writeFileSync(join(dir, "kubehyve.yaml"), clusterFile(lab.net));
  writeFileSync(join(state, "kubeconfig"), lab.kube.server.kubeconfig, { mode: 0o600 });
  writeFileSync(join(state, "cluster-id"), `${CLUSTER_ID}\n`, { mode: 0o600 });
  await lab.dns([lab.record("web.lab.home.arpa"), lab.record()]);
  const labels = { app: "web" };
  lab.kube.server.put({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web", namespace: "default" },
    spec: {
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          containers: [
            {
              name: "web",
              image: "docker.io/library/nginx:1.27",
              ports: [{ name: "http", containerPort: 8080 }],
            },
          ],
        },
      },
    },
  });
  lab.kube.server.put({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "web", namespace: "default" },
    spec: { selector: labels, ports: [{ name: "http", port: 80, targetPort: "http" }] },
  });
  lab.kube.server.reconcile();
}, 60_000);
afterAll(async () => {
  await lab?.stop();
}, 60_000);

// The stages' pinned release files come from the lab's loopback mirror, never from upstream.
const run = (args: string[]) =>
  runInProcess([...args, "--state-dir", state], { cwd: dir, env: { KUBEHYVE_MIRROR: lab.kube.mirror.url } });

describe("kubehyve expose", () => {
  test("bad arguments exit 2 naming each flag, before the cluster is asked anything", async () => {
    const before = lab.kube.server.requests.length;
    const r = await run(["expose", "Web", "--host", "web", "--port", "0", "--namespace", "Default"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      [
        "✖ kubehyve expose was given what it cannot use; nothing was done",
        '  SERVICE: "Web" is not a Service name',
        '  --namespace: "Default" is not a namespace name',
        '  --host: "web" is not a DNS name an Ingress can carry (lowercase, at least two labels)',
        '  --port: "0" is neither a port number (1-65535) nor a port name',
        "  → kubehyve expose --help",
        "",
      ].join("\n"),
    );
    const missing = await run(["expose", "web"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--host: the name clients use is needed");
    expect(lab.kube.server.requests.length).toBe(before);
  }, 60_000);

  test("a Service name that begins with a digit is refused before the cluster is asked anything", async () => {
    const before = lab.kube.server.requests.length;
    const r = await run(["expose", "1web", "--host", "web.lab.home.arpa", "--namespace", "1team"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('  SERVICE: "1web" is not a Service name\n');
    // A namespace may begin with a digit: only Services are held to DNS-1035.
    expect(r.stderr).not.toContain("--namespace");
    expect(lab.kube.server.requests.length).toBe(before);
  }, 60_000);

  test("a host with a label longer than DNS allows is refused before the cluster is asked anything", async () => {
    const before = lab.kube.server.requests.length;
    // 64 characters: RFC 1035 2.3.4 allows a label 63 octets; no server can hold the name.
    const host = `${"a".repeat(64)}.lab.home.arpa`;
    const r = await run(["expose", "web", "--host", host]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--host: "${host}" is not a DNS name an Ingress can carry`);
    expect(lab.kube.server.requests.length).toBe(before);
    expect(lab.kube.server.get("networking.k8s.io/v1", "Ingress", "web", "default")).toBeUndefined();
  }, 60_000);

  test("a port the Service does not have is refused, and nothing is made", async () => {
    const r = await run(["expose", "web", "--host", "web.lab.home.arpa", "--port", "8443"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Service default/web has no port 8443 (it has: http (80))");
    expect(lab.kube.server.get("networking.k8s.io/v1", "Ingress", "web", "default")).toBeUndefined();
  }, 60_000);

  test("a UDP port is refused, and nothing is made: an Ingress carries HTTP", async () => {
    lab.kube.server.put({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "dns", namespace: "default" },
      spec: {
        selector: { app: "web" },
        ports: [
          { name: "dns", port: 53, protocol: "UDP", targetPort: 53 },
          { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 53 },
        ],
      },
    });
    try {
      const r = await run(["expose", "dns", "--host", "dns.lab.home.arpa", "--port", "dns"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        "Service default/dns port dns (53) is UDP: an Ingress carries HTTP, which goes over TCP",
      );
      expect(lab.kube.server.get("networking.k8s.io/v1", "Ingress", "dns", "default")).toBeUndefined();
      // By number, the TCP port of the two is the one meant.
      const tcp = await run(["expose", "dns", "--host", "dns.lab.home.arpa", "--port", "53", "--dry-run"]);
      expect(tcp.code).toBe(0);
      expect(tcp.out).toContain(
        "would apply Ingress default/dns: http://dns.lab.home.arpa/ to Service dns port dns-tcp",
      );
    } finally {
      lab.kube.server.delete("v1", "Service", "dns", "default");
    }
  }, 60_000);

  test("--json gives each hop with its status, in path order, then the verdict", async () => {
    try {
      const r = await run(["expose", "web", "--host", "web.lab.home.arpa", "--json"]);
      expect(r.code).toBe(0);
      const events = r.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      const hops = events.filter((e) => e.type === "hop");
      expect(hops.map((h) => [h.index, h.id, h.place, h.from, h.status])).toEqual([
        [1, "traefik.address", "entry", "ingress", "ok"],
        [2, "expose.dns", "name", "kubehyve", "ok"],
        [3, "metallb.address", "address", "lb", "ok"],
        [4, "traefik.route", "route", "ingress", "ok"],
        [5, "expose.endpoints", "service", "kubehyve", "ok"],
        [6, "expose.pods", "pod", "kubehyve", "ok"],
      ]);
      for (const h of hops) {
        expect(h).toMatchObject({ v: 1, stage: "expose" });
        expect(typeof h.title).toBe("string");
        expect(typeof h.summary).toBe("string");
      }
      expect(events.find((e) => e.type === "diagnostic" && e.code === "expose.ok")).toBeDefined();
      expect(events.at(-1)).toMatchObject({ type: "run.end", status: "ok", exitCode: 0 });
    } finally {
      lab.kube.server.delete("networking.k8s.io/v1", "Ingress", "web", "default");
    }
  }, 60_000);

  test("its first line says a dry run only when it is one: expose makes an Ingress, verify --expose a canary, and verify alone nothing", async () => {
    const start = (stdout: string) =>
      stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
        .find((e) => e.type === "run.start");
    try {
      const cases: [string[], boolean][] = [
        [["expose", "web", "--host", "web.lab.home.arpa", "--dry-run"], true],
        [["expose", "web", "--host", "web.lab.home.arpa"], false],
        [["verify", "--expose", "--dry-run", "--only", "ingress"], true],
        [["verify", "--expose", "--only", "ingress"], false],
        // Changing nothing by design is not a dry run: there is no real run it stands in for.
        [["verify", "--only", "ingress"], false],
        [["plan", "--only", "ingress"], true],
      ];
      for (const [args, dryRun] of cases) {
        const r = await run([...args, "--json"]);
        expect([args, r.code, start(r.stdout)?.dryRun]).toEqual([args, 0, dryRun]);
      }
      const human = await run(["expose", "web", "--host", "web.lab.home.arpa"]);
      expect(human.out).not.toContain("(dry run)");
      const first = (out: string, command: string) =>
        out.split("\n").find((l) => l.startsWith(`ℹ ${command} `));
      const verify = await run(["verify", "--only", "ingress"]);
      expect([verify.code, first(verify.out, "verify")]).toEqual([0, "ℹ verify lab: ingress"]);
      const plan = await run(["plan", "--only", "ingress"]);
      expect(first(plan.out, "plan")).toBe("ℹ plan lab: ingress (dry run)");
    } finally {
      lab.kube.server.delete("networking.k8s.io/v1", "Ingress", "web", "default");
    }
  }, 60_000);

  test("an Ingress of that name that kubehyve did not make is refused and left as it was", async () => {
    const theirs = {
      apiVersion: "networking.k8s.io/v1",
      kind: "Ingress",
      metadata: { name: "web", namespace: "default", labels: { team: "web" } },
      spec: { rules: [{ host: "shop.lab.home.arpa" }] },
    };
    lab.kube.server.put(theirs);
    try {
      const r = await run(["expose", "web", "--host", "web.lab.home.arpa"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        "Ingress default/web exists and is not this cluster's kubehyve's: it is not touched",
      );
      const live = lab.kube.server.get("networking.k8s.io/v1", "Ingress", "web", "default") as typeof theirs;
      expect(live.metadata.labels).toEqual({ team: "web" });
      expect(live.spec).toEqual(theirs.spec);
    } finally {
      lab.kube.server.delete("networking.k8s.io/v1", "Ingress", "web", "default");
    }
  }, 60_000);

  test("another Ingress that already routes the host is refused: which one wins would be the controller's choice", async () => {
    lab.kube.server.put({
      apiVersion: "networking.k8s.io/v1",
      kind: "Ingress",
      metadata: { name: "shop", namespace: "default" },
      spec: { rules: [{ host: "web.lab.home.arpa" }] },
    });
    try {
      const r = await run(["expose", "web", "--host", "web.lab.home.arpa"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("Ingress default/shop already routes web.lab.home.arpa: nothing was made");
      expect(lab.kube.server.get("networking.k8s.io/v1", "Ingress", "web", "default")).toBeUndefined();
    } finally {
      lab.kube.server.delete("networking.k8s.io/v1", "Ingress", "shop", "default");
    }
  }, 60_000);
});

describe("kubehyve expose, twice", () => {
  test("a host that another exposure of this cluster already routes is refused too, and that one kept", async () => {
    lab.kube.server.put({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "shop", namespace: "default" },
      spec: { selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: "http" }] },
    });
    try {
      expect((await run(["expose", "web", "--host", "web.lab.home.arpa"])).code).toBe(0);
      const r = await run(["expose", "shop", "--host", "web.lab.home.arpa"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("Ingress default/web already routes web.lab.home.arpa: nothing was made");
      expect(lab.kube.server.get("networking.k8s.io/v1", "Ingress", "shop", "default")).toBeUndefined();
      expect(lab.kube.server.get("networking.k8s.io/v1", "Ingress", "web", "default")).toBeDefined();
      // The same Service again, to the same host, is the same Ingress: nothing to refuse.
      expect((await run(["expose", "web", "--host", "web.lab.home.arpa"])).code).toBe(0);
    } finally {
      lab.kube.server.delete("networking.k8s.io/v1", "Ingress", "web", "default");
      lab.kube.server.delete("networking.k8s.io/v1", "Ingress", "shop", "default");
      lab.kube.server.delete("v1", "Service", "shop", "default");
    }
  }, 60_000);
});

describe("kubehyve verify --expose", () => {
  test("--dry-run without --expose is refused: verify alone changes nothing", async () => {
    const r = await run(["verify", "--dry-run"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--dry-run goes with --expose");
  }, 60_000);

  test("walks the canary hop by hop, says so in its last line, and leaves nothing behind", async () => {
    const r = await run(["verify", "--expose", "--only", "ingress"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(
      "  ✔ 4. Traefik routes whoami.lab.home.arpa to Service default/kubehyve-whoami: ",
    );
    expect(r.out).toMatch(
      /✔ every stage verified; the walk: whoami\.lab\.home\.arpa answers from the host through all 6 hops, down to Service default\/kubehyve-whoami in /,
    );
    expect(lab.canaryLeft()).toEqual([]);
  }, 60_000);
});

describe("doctor and the exposures", () => {
  const mutationsSince = (n: number) =>
    lab.kube.server.requests
      .slice(n)
      .filter((r) => r.method !== "GET" && !r.query.includes("dryRun=All"))
      .map((r) => `${r.method} ${r.path}`);
  // biome-ignore lint/suspicious/noExplicitAny: the report document
  const walkOf = (stdout: string): any[] =>
    // biome-ignore lint/suspicious/noExplicitAny: the report document
    JSON.parse(stdout).stages.find((s: any) => s.slot === "expose")?.findings ?? [];

  test("with nothing exposed, doctor says so and changes nothing", async () => {
    const before = lab.kube.server.requests.length;
    const r = await run(["doctor", "--json", "--stage", "ingress"]);
    expect(walkOf(r.stdout).map((f) => `${f.severity} ${f.id}`)).toEqual(["info expose.none"]);
    expect(mutationsSince(before)).toEqual([]);
  }, 60_000);

  test("doctor walks what kubehyve expose made, read-only, and names a hop that broke since", async () => {
    const made = await run(["expose", "web", "--host", "web.lab.home.arpa"]);
    expect(made.code).toBe(0);
    const service = lab.kube.server.get("v1", "Service", "web", "default")!;
    try {
      let before = lab.kube.server.requests.length;
      const healthy = await run(["doctor", "--json", "--stage", "ingress"]);
      expect(walkOf(healthy.stdout).map((f) => `${f.severity} ${f.id}`)).toEqual(["ok expose.ok"]);
      expect(mutationsSince(before)).toEqual([]);

      lab.kube.server.delete("v1", "Service", "web", "default");
      lab.kube.server.reconcile();
      before = lab.kube.server.requests.length;
      const r = await run(["doctor", "--json", "--stage", "ingress"]);
      expect(r.code).toBe(1);
      const [finding] = walkOf(r.stdout);
      expect(finding).toMatchObject({ id: "expose.broken", severity: "error" });
      expect(finding.summary).toBe(
        "web.lab.home.arpa: the first broken hop is 4, Traefik routes web.lab.home.arpa to Service default/web: Traefik has no route for web.lab.home.arpa: it sends web.lab.home.arpa to Service default/web, which does not exist",
      );
      expect(finding.detail).toBe(
        'Traefik logs: ERR Cannot create service error="service not found" ingress=web namespace=default providerName=kubernetes serviceName=web servicePort=http',
      );
      expect(mutationsSince(before)).toEqual([]);
    } finally {
      lab.kube.server.put(service);
      lab.kube.server.delete("networking.k8s.io/v1", "Ingress", "web", "default");
    }
  }, 90_000);
});

/**
 * The README's steps to reach an application from the LAN: its sh block under "The exposure walk",
 * with the objects its two kubectl lines make (kubectl create deployment: labels app=NAME, a
 * container named after the image, its --port as containerPort; kubectl expose deployment --port 80: the Deployment's
 * selector, port 80 to targetPort 80, TCP), then its `kubehyve expose` line as written.
 */
describe("the README's way to reach an application", () => {
  const readme = readFileSync(join(import.meta.dir, "../../README.md"), "utf8");
  const at = readme.indexOf("## The exposure walk");
  const block = /```sh\n([\s\S]*?)\n```/.exec(readme.slice(at))![1]!;
  const lines = block.split("\n").map((l) => l.replace(/#.*$/, "").trim());

  test("its kubehyve expose line reaches the app once the line its DNS hint gives is added", async () => {
    const deployment = /^kubectl --context lab create deployment (\S+) --image=(\S+) --port=(\d+)$/.exec(
      lines[1]!,
    );
    const service = /^kubectl --context lab expose deployment (\S+) --port (\d+)$/.exec(lines[2]!);
    const expose = /^kubehyve (expose .*)$/.exec(lines[3]!);
    expect([lines[0], Boolean(deployment), Boolean(service), Boolean(expose)]).toEqual([
      "kubehyve kubeconfig --merge",
      true,
      true,
      true,
    ]);
    const [, name, image, containerPort] = deployment!;
    const labels = { app: name! };
    lab.kube.server.put({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name, namespace: "default", labels },
      spec: {
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [{ name: "whoami", image, ports: [{ containerPort: Number(containerPort) }] }],
          },
        },
      },
    });
    const port = Number(service![2]);
    lab.kube.server.put({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: service![1], namespace: "default", labels },
      spec: { selector: labels, ports: [{ port, targetPort: port, protocol: "TCP" }] },
    });
    lab.kube.server.reconcile();
    const args = expose![1]!.split(/\s+/);
    const host = args[args.indexOf("--host") + 1]!;
    try {
      const first = await run(args);
      expect(first.code).toBe(1);
      const record = `host-record=${host},${lab.address}`;
      expect(first.out).toContain(`add to the router's dnsmasq configuration and reload it: ${record}`);

      await lab.dns([record, lab.record("web.lab.home.arpa"), lab.record()]);
      const again = await run(args);
      expect(again.out).not.toContain("broken");
      expect(again.code).toBe(0);

      // The walk's hops are the README's table of them, in its order, each from the stage it names.
      const table = readme
        .slice(at, readme.indexOf("\n## ", at + 1))
        .split("\n")
        .filter((l) => /^\| `[a-z]+\.[a-z-]+`/.test(l))
        .map((l) =>
          l
            .split("|")
            .slice(1, 3)
            .map((c) => c.trim().replace(/`/g, "")),
        );
      const json = await run([...args, "--json"]);
      const hops = json.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
        .filter((e) => e.type === "hop")
        .map((h) => [h.id, h.from]);
      expect(hops).toEqual(table);
    } finally {
      lab.kube.server.delete("networking.k8s.io/v1", "Ingress", name!, "default");
      lab.kube.server.delete("v1", "Service", name!, "default");
      lab.kube.server.delete("apps/v1", "Deployment", name!, "default");
      await lab.dns([lab.record("web.lab.home.arpa"), lab.record()]);
    }
  }, 120_000);
});
