import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { mergeKubeconfig, resolveKubeconfig, rewriteServer } from "../../src/kube/kubeconfig.ts";
import { adminConf, b64, CA, CERT, KEY } from "../lab/kube/kubeconfig.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kubehyve-kubeconfig-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("reading a kubeconfig", () => {
  test("resolves the current context to server, CA and client certificate", async () => {
    const creds = await resolveKubeconfig(adminConf(), "/tmp/admin.conf");
    expect(creds).toEqual({
      source: "/tmp/admin.conf",
      context: "kubernetes-admin@cluster.local",
      server: "https://127.0.0.1:6443",
      ca: CA,
      cert: CERT,
      key: KEY,
    });
  });

  test("reads certificate files relative to the kubeconfig's directory", async () => {
    writeFileSync(join(dir, "ca.crt"), CA);
    writeFileSync(join(dir, "admin.crt"), CERT);
    writeFileSync(join(dir, "admin.key"), KEY);
    const text = adminConf()
      .replace(/certificate-authority-data: .*/, "certificate-authority: ca.crt")
      .replace(/client-certificate-data: .*/, "client-certificate: admin.crt")
      .replace(/client-key-data: .*/, `client-key: ${join(dir, "admin.key")}`);
    const creds = await resolveKubeconfig(text, join(dir, "config"));
    expect([creds.ca, creds.cert, creds.key]).toEqual([CA, CERT, KEY]);
  });

  test("accepts a bearer token instead of a client certificate", async () => {
    const text = adminConf().replace(
      / {4}client-certificate-data: .*\n {4}client-key-data: .*\n/,
      "    token: abc.def\n",
    );
    const creds = await resolveKubeconfig(text, "k");
    expect(creds.token).toBe("abc.def");
    expect(creds.cert).toBeUndefined();
  });

  test("names the file and the field when the user entry is missing", async () => {
    const text = adminConf().replace("  user:\n    client-", "  userx:\n    client-");
    await expect(resolveKubeconfig(text, "/etc/kubehyve/admin.conf")).rejects.toThrow(
      'kubeconfig /etc/kubehyve/admin.conf: users["kubernetes-admin"].user: missing or not a mapping',
    );
  });

  test("names the field whose base64 is not a PEM block", async () => {
    const text = adminConf().replace(/client-key-data: .*/, `client-key-data: ${b64("not a key")}`);
    await expect(resolveKubeconfig(text, "admin.conf")).rejects.toThrow(
      'kubeconfig admin.conf: users["kubernetes-admin"].user.client-key-data: is not base64 of a PEM block',
    );
  });

  test("refuses insecure-skip-tls-verify", async () => {
    const text = adminConf().replace("    server:", "    insecure-skip-tls-verify: true\n    server:");
    await expect(resolveKubeconfig(text, "k")).rejects.toThrow(
      'clusters["cluster.local"].cluster.insecure-skip-tls-verify: kubehyve always verifies TLS',
    );
  });

  test("refuses a plain http server", async () => {
    await expect(resolveKubeconfig(adminConf("http://127.0.0.1:8080"), "k")).rejects.toThrow(
      'clusters["cluster.local"].cluster.server: must be an https:// URL, got http://127.0.0.1:8080',
    );
  });

  test("names an unknown context", async () => {
    await expect(resolveKubeconfig(adminConf(), "k", { context: "prod" })).rejects.toThrow(
      'kubeconfig k: contexts: no entry named "prod"',
    );
  });

  test("reports a YAML syntax error with its line", async () => {
    await expect(resolveKubeconfig("clusters: [\n  - a\n users: x", "broken.yaml")).rejects.toThrow(
      /^kubeconfig broken\.yaml: line \d+, column \d+: not valid YAML/,
    );
  });
});

describe("rewriting the server", () => {
  test("points the current context's cluster at the control plane and keeps everything else", () => {
    const text = rewriteServer(adminConf("https://127.0.0.1:6443"), "https://192.168.1.21:6443");
    expect(text).toBe(adminConf("https://192.168.1.21:6443"));
  });

  test("refuses a URL that is not https", () => {
    expect(() => rewriteServer(adminConf(), "192.168.1.21:6443")).toThrow("not a URL");
  });
});

describe("merging into ~/.kube/config", () => {
  const other = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "work",
        cluster: { server: "https://work.example:6443", "certificate-authority-data": b64(CA) },
      },
    ],
    contexts: [{ name: "work", context: { cluster: "work", user: "work-user", namespace: "team" } }],
    users: [{ name: "work-user", user: { token: "t0k3n" } }],
    "current-context": "work",
    preferences: {},
  };

  test("adds the cluster under its name and leaves other entries and current-context alone", async () => {
    const target = join(dir, "config");
    writeFileSync(target, JSON.stringify(other), { mode: 0o644 });
    await mergeKubeconfig(target, adminConf("https://192.168.1.21:6443"), "lab");
    const merged = parse(readFileSync(target, "utf8"));
    expect(merged["current-context"]).toBe("work");
    expect(merged.clusters).toEqual([
      other.clusters[0],
      {
        name: "lab",
        cluster: { "certificate-authority-data": b64(CA), server: "https://192.168.1.21:6443" },
      },
    ]);
    expect(merged.users).toEqual([
      other.users[0],
      { name: "lab-admin", user: { "client-certificate-data": b64(CERT), "client-key-data": b64(KEY) } },
    ]);
    expect(merged.contexts).toEqual([
      other.contexts[0],
      { name: "lab", context: { cluster: "lab", user: "lab-admin" } },
    ]);
    expect(statSync(target).mode & 0o777).toBe(0o600);
  });

  test("replaces the entries of the same name on a second merge", async () => {
    const target = join(dir, "config");
    writeFileSync(target, JSON.stringify(other));
    await mergeKubeconfig(target, adminConf("https://192.168.1.21:6443"), "lab");
    await mergeKubeconfig(target, adminConf("https://192.168.1.31:6443"), "lab");
    const merged = parse(readFileSync(target, "utf8"));
    expect(merged.clusters.map((c: { name: string }) => c.name)).toEqual(["work", "lab"]);
    expect(merged.clusters[1].cluster.server).toBe("https://192.168.1.31:6443");
    expect(merged.users).toHaveLength(2);
  });

  test("makes the cluster current in a new file", async () => {
    const target = join(dir, "new", ".kube", "config");
    await mergeKubeconfig(target, adminConf(), "lab");
    const merged = parse(readFileSync(target, "utf8"));
    expect(merged["current-context"]).toBe("lab");
    expect(merged.kind).toBe("Config");
    expect(statSync(target).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "new", ".kube")).mode & 0o777).toBe(0o700);
  });

  test("makes the cluster current in an empty file", async () => {
    const target = join(dir, "config");
    writeFileSync(target, "");
    await mergeKubeconfig(target, adminConf(), "lab");
    expect(parse(readFileSync(target, "utf8"))["current-context"]).toBe("lab");
  });

  test("refuses to touch a target that is not a kubeconfig", async () => {
    const target = join(dir, "config");
    writeFileSync(target, "clusters: nope\n");
    await expect(mergeKubeconfig(target, adminConf(), "lab")).rejects.toThrow(
      `kubeconfig ${target}: clusters: must be a list`,
    );
    expect(readFileSync(target, "utf8")).toBe("clusters: nope\n");
  });
});
