import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import {
  loadKubeconfig,
  mergeKubeconfig,
  resolveKubeconfig,
  rewriteServer,
} from "../../src/kube/kubeconfig.ts";
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

  test("a certificate, key or token file that is a FIFO or a device is refused at once, naming it", async () => {
    const fifo = join(dir, "token.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const tokenConf = (file: string) =>
      adminConf().replace(
        / {4}client-certificate-data: .*\n {4}client-key-data: .*\n/,
        `    tokenFile: ${file}\n`,
      );
    const cases: [string, string, string][] = [
      [tokenConf(fifo), "tokenFile", `${fifo} is a FIFO`],
      [tokenConf("/dev/zero"), "tokenFile", "/dev/zero is a character device"],
      [adminConf().replace(/client-key-data: .*/, `client-key: ${fifo}`), "client-key", `${fifo} is a FIFO`],
      [
        adminConf().replace(/certificate-authority-data: .*/, "certificate-authority: /dev/urandom"),
        "certificate-authority",
        "/dev/urandom is a character device",
      ],
    ];
    for (const [text, field, problem] of cases) {
      const error = await resolveKubeconfig(text, join(dir, "config")).catch((e) => e);
      expect(error).toBeInstanceOf(Error);
      expect(error.message).toContain(`${field}: `);
      expect(error.message).toContain(`${problem}, not a file`);
    }
  });

  test("a kubeconfig that is a FIFO is refused at once, not waited on", async () => {
    const fifo = join(dir, "admin.conf");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    await expect(loadKubeconfig(fifo)).rejects.toThrow(
      `kubeconfig ${fifo}: (file): ${fifo} is a FIFO, not a file`,
    );
  });

  test("a token file of more than 1 MiB is refused, not read to the end", async () => {
    const big = join(dir, "token");
    writeFileSync(big, "x".repeat(1024 * 1024 + 1));
    const text = adminConf().replace(
      / {4}client-certificate-data: .*\n {4}client-key-data: .*\n/,
      `    tokenFile: ${big}\n`,
    );
    const error = await resolveKubeconfig(text, join(dir, "config")).catch((e) => e);
    expect(error.message).toContain(`tokenFile: ${big} has more than 1 MiB`);
  });

  test("a token file reached through a symbolic link is read, as a projected service account token is", async () => {
    mkdirSync(join(dir, "..data"));
    writeFileSync(join(dir, "..data", "token"), "abc.def\n");
    symlinkSync("..data/token", join(dir, "token"));
    const text = adminConf().replace(
      / {4}client-certificate-data: .*\n {4}client-key-data: .*\n/,
      "    tokenFile: token\n",
    );
    expect((await resolveKubeconfig(text, join(dir, "config"))).token).toBe("abc.def");
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

  test("says the place of a syntax error once, not again at the end of the message", async () => {
    await expect(resolveKubeconfig("garbage: [", "broken.yaml")).rejects.toThrow(
      new Error(
        "kubeconfig broken.yaml: line 1, column 11: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]",
      ),
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

  const ID = "5f0c3a52-8f3e-4a4e-9d1a-0b6f2f1c2d3e";
  const markOf = (id: string) => ({ extensions: [{ name: "kubehyve", extension: { "cluster-id": id } }] });
  const mark = markOf(ID);

  test("replaces its own entries on a second merge: those marked with this cluster's id", async () => {
    const target = join(dir, "config");
    writeFileSync(target, JSON.stringify(other));
    await mergeKubeconfig(target, adminConf("https://192.168.1.21:6443"), "lab", { clusterId: ID });
    const first = parse(readFileSync(target, "utf8"));
    expect(first.clusters[1].cluster.extensions).toEqual(mark.extensions);
    expect(first.users[1].user.extensions).toEqual(mark.extensions);
    expect(first.contexts[1].context).toEqual({ cluster: "lab", user: "lab-admin", ...mark });
    const again = await mergeKubeconfig(target, adminConf("https://192.168.1.31:6443"), "lab", {
      clusterId: ID,
    });
    expect(again.replaced).toEqual(['cluster "lab"']);
    const merged = parse(readFileSync(target, "utf8"));
    expect(merged.clusters.map((c: { name: string }) => c.name)).toEqual(["work", "lab"]);
    expect(merged.clusters[1].cluster.server).toBe("https://192.168.1.31:6443");
    expect(merged.users).toHaveLength(2);
  });

  test("refuses entries of the same name that another cluster wrote, and changes nothing", async () => {
    const target = join(dir, "config");
    const theirs = {
      ...other,
      clusters: [...other.clusters, { name: "lab", cluster: { server: "https://lab.work.example:6443" } }],
      users: [...other.users, { name: "lab-admin", user: { token: "their-token" } }],
    };
    const text = JSON.stringify(theirs);
    writeFileSync(target, text);
    await expect(mergeKubeconfig(target, adminConf(), "lab", { clusterId: ID })).rejects.toThrow(
      `${target} already has cluster "lab" (server https://lab.work.example:6443), user "lab-admin" that this cluster did not write; nothing was changed`,
    );
    expect(readFileSync(target, "utf8")).toBe(text);
    expect(readdirSync(dir)).toEqual(["config"]);
    // Another cluster's marked entries are someone else's too.
    const marked = { ...theirs, users: [{ name: "lab-admin", user: { token: "t", ...markOf("other-id") } }] };
    writeFileSync(target, JSON.stringify(marked));
    await expect(mergeKubeconfig(target, adminConf(), "lab", { clusterId: ID })).rejects.toThrow(
      "nothing was changed",
    );
  });

  test("--overwrite replaces them, keeping the old file as a backup beside it", async () => {
    const target = join(dir, "config");
    const theirs = {
      ...other,
      users: [...other.users, { name: "lab-admin", user: { token: "their-token" } }],
    };
    writeFileSync(target, JSON.stringify(theirs));
    const result = await mergeKubeconfig(target, adminConf(), "lab", {
      clusterId: ID,
      overwrite: true,
      now: new Date("2026-01-02T03:04:05.678Z"),
    });
    expect(result.replaced).toEqual(['user "lab-admin"']);
    expect(result.backup).toBe(`${target}.kubehyve-backup-2026-01-02T03-04-05-678Z`);
    expect(parse(readFileSync(result.backup!, "utf8"))).toEqual(theirs);
    expect(statSync(result.backup!).mode & 0o777).toBe(0o600);
    expect(parse(readFileSync(target, "utf8")).users[1].user.token).toBeUndefined();
  });

  test("keeps the comments and the rest of the file as it was", async () => {
    const target = join(dir, "config");
    const text = `# my clusters: do not lose them
apiVersion: v1
kind: Config
clusters:
- name: work # the one that pays
  cluster:
    server: https://work.example:6443
contexts:
- name: work
  context:
    cluster: work
    user: work-user # rotated monthly
users:
- name: work-user
  user:
    token: t0k3n
current-context: work
`;
    writeFileSync(target, text);
    await mergeKubeconfig(target, adminConf(), "lab", { clusterId: ID });
    const merged = readFileSync(target, "utf8");
    expect(merged).toStartWith(text.split("contexts:")[0]!);
    expect(merged).toContain("    user: work-user # rotated monthly\n");
    expect(merged).toContain("token: t0k3n");
    expect(merged).toContain("current-context: work\n");
    expect(parse(merged).clusters.map((c: { name: string }) => c.name)).toEqual(["work", "lab"]);
  });

  test("writes through a symbolic link to the file it leads to, atomically there", async () => {
    const dotfiles = join(dir, "dotfiles");
    mkdirSync(dotfiles);
    const real = join(dotfiles, "kubeconfig");
    writeFileSync(real, JSON.stringify(other), { mode: 0o600 });
    const link = join(dir, "config");
    symlinkSync("dotfiles/kubeconfig", link);
    const result = await mergeKubeconfig(link, adminConf(), "lab", { clusterId: ID });
    expect(result.file).toBe(real);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe("dotfiles/kubeconfig");
    expect(parse(readFileSync(real, "utf8")).clusters).toHaveLength(2);
    expect(readdirSync(dotfiles).filter((f) => !f.includes("kubehyve-backup"))).toEqual(["kubeconfig"]);
  });

  test("a second merge of the same cluster changes nothing and makes no backup", async () => {
    const target = join(dir, "config");
    writeFileSync(target, JSON.stringify(other));
    await mergeKubeconfig(target, adminConf(), "lab", { clusterId: ID });
    const before = readFileSync(target, "utf8");
    const backups = readdirSync(dir).length;
    const again = await mergeKubeconfig(target, adminConf(), "lab", { clusterId: ID });
    expect(again.changed).toBe(false);
    expect(readFileSync(target, "utf8")).toBe(before);
    expect(readdirSync(dir)).toHaveLength(backups);
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

  test("refuses a YAML file that is something else ($KUBECONFIG naming a cluster file), changing nothing", async () => {
    const cluster = join(dir, "kubehyve.yaml");
    const text = "name: lab\nhost: local\nnetwork: { gateway: 192.168.1.1 }\nnodes: []\nstages: {}\n";
    writeFileSync(cluster, text);
    await expect(mergeKubeconfig(cluster, adminConf(), "lab")).rejects.toThrow(
      `kubeconfig ${cluster}: (file): is not a kubeconfig: it has "name", "host", "network", "nodes", …, which a kubeconfig does not; nothing was changed`,
    );
    const manifest = join(dir, "deploy.yaml");
    writeFileSync(manifest, "apiVersion: apps/v1\nkind: Deployment\n");
    await expect(mergeKubeconfig(manifest, adminConf(), "lab")).rejects.toThrow(
      `kubeconfig ${manifest}: kind: is "Deployment": this file is not a kubeconfig (kind: Config)`,
    );
    expect(readFileSync(cluster, "utf8")).toBe(text);
    expect(
      readdirSync(dir).filter((f) => f.startsWith("kubehyve.yaml.") || f.startsWith("deploy.yaml.")),
    ).toEqual([]);
  });
});
