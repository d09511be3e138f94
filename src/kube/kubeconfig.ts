/**
 * kubeconfig files (k8s.io/client-go/tools/clientcmd/api/v1 types.go: Config, NamedCluster,
 * NamedAuthInfo, NamedContext): reading the credentials of one context, rewriting the server URL
 * and merging a cluster's admin kubeconfig into the user's ~/.kube/config.
 */
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { isMap, isSeq, parseDocument, stringify, type YAMLMap } from "yaml";
import { KubehyveError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/fsutil.ts";

export class KubeconfigError extends KubehyveError {
  constructor(
    readonly source: string,
    readonly field: string,
    problem: string,
  ) {
    super(`kubeconfig ${source}: ${field}: ${problem}`);
    this.name = "KubeconfigError";
  }
}

/** What a client needs to reach one API server: the URL, the CA and one way to authenticate. */
export interface KubeCredentials {
  /** Where these credentials came from, for error messages. */
  source: string;
  context: string;
  server: string;
  /** PEM of the CA that signed the server certificate; undefined means the system roots. */
  ca?: string;
  cert?: string;
  key?: string;
  token?: string;
}

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseYamlObject(text: string, source: string): Obj {
  const doc = parseDocument(text, { prettyErrors: true });
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : "(document)";
    throw new KubeconfigError(source, where, `not valid YAML: ${first.message.split("\n")[0]}`);
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return {};
  if (!isObj(value))
    throw new KubeconfigError(source, "(document)", "expected a mapping (apiVersion: v1, kind: Config)");
  return value;
}

/** Finds `list[name=NAME].key` and says which field is missing when it is not there. */
function named(config: Obj, listField: string, itemKey: string, name: string, source: string): Obj {
  const list = config[listField];
  if (list !== undefined && !Array.isArray(list))
    throw new KubeconfigError(source, listField, "must be a list");
  const entry = (list ?? []).find((e: unknown) => isObj(e) && e.name === name);
  if (!isObj(entry)) {
    throw new KubeconfigError(source, listField, `no entry named ${JSON.stringify(name)}`);
  }
  const body = entry[itemKey];
  if (!isObj(body)) {
    throw new KubeconfigError(
      source,
      `${listField}[${JSON.stringify(name)}].${itemKey}`,
      "missing or not a mapping",
    );
  }
  return body;
}

function decodePem(value: unknown, source: string, field: string): string {
  if (typeof value !== "string" || value.trim() === "")
    throw new KubeconfigError(source, field, "must be a base64 string");
  const text = Buffer.from(value.trim(), "base64").toString("utf8");
  if (!text.includes("-----BEGIN ")) {
    throw new KubeconfigError(source, field, "is not base64 of a PEM block (-----BEGIN ...)");
  }
  return text;
}

async function readPem(path: unknown, baseDir: string, source: string, field: string): Promise<string> {
  if (typeof path !== "string" || path === "")
    throw new KubeconfigError(source, field, "must be a file path");
  // client-go resolves relative paths against the directory of the kubeconfig that names them.
  const full = isAbsolute(path) ? path : resolve(baseDir, path);
  let text: string;
  try {
    text = await readFile(full, "utf8");
  } catch (e) {
    throw new KubeconfigError(
      source,
      field,
      `cannot read ${full}: ${(e as NodeJS.ErrnoException).code ?? e}`,
    );
  }
  if (!text.includes("-----BEGIN ")) throw new KubeconfigError(source, field, `${full} holds no PEM block`);
  return text;
}

/**
 * The credentials of `context` (default: current-context) in a kubeconfig text. `source` names the
 * file in errors and anchors relative certificate paths.
 */
export async function resolveKubeconfig(
  text: string,
  source: string,
  opts: { context?: string } = {},
): Promise<KubeCredentials> {
  const config = parseYamlObject(text, source);
  const baseDir = dirname(resolve(source));
  const contextName = opts.context ?? config["current-context"];
  if (typeof contextName !== "string" || contextName === "") {
    throw new KubeconfigError(source, "current-context", "not set, and no context was asked for");
  }
  const context = named(config, "contexts", "context", contextName, source);
  const where = (list: string, name: string, field: string) => `${list}[${JSON.stringify(name)}].${field}`;

  const clusterName = context.cluster;
  if (typeof clusterName !== "string" || !clusterName) {
    throw new KubeconfigError(source, where("contexts", contextName, "context.cluster"), "missing");
  }
  const cluster = named(config, "clusters", "cluster", clusterName, source);
  const clusterField = (f: string) => where("clusters", clusterName, `cluster.${f}`);
  const server = cluster.server;
  if (typeof server !== "string" || !server)
    throw new KubeconfigError(source, clusterField("server"), "missing");
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new KubeconfigError(source, clusterField("server"), `not a URL: ${JSON.stringify(server)}`);
  }
  if (url.protocol !== "https:") {
    throw new KubeconfigError(source, clusterField("server"), `must be an https:// URL, got ${server}`);
  }
  if (cluster["insecure-skip-tls-verify"] === true) {
    throw new KubeconfigError(
      source,
      clusterField("insecure-skip-tls-verify"),
      "kubehyve always verifies TLS: remove it and set certificate-authority-data",
    );
  }
  let ca: string | undefined;
  if (cluster["certificate-authority-data"] !== undefined) {
    ca = decodePem(cluster["certificate-authority-data"], source, clusterField("certificate-authority-data"));
  } else if (cluster["certificate-authority"] !== undefined) {
    ca = await readPem(
      cluster["certificate-authority"],
      baseDir,
      source,
      clusterField("certificate-authority"),
    );
  }

  const creds: KubeCredentials = { source, context: contextName, server: server.replace(/\/+$/, ""), ca };
  const userName = context.user;
  if (typeof userName !== "string" || !userName) {
    throw new KubeconfigError(source, where("contexts", contextName, "context.user"), "missing");
  }
  const user = named(config, "users", "user", userName, source);
  const userField = (f: string) => where("users", userName, `user.${f}`);
  if (user.exec !== undefined || user["auth-provider"] !== undefined) {
    throw new KubeconfigError(
      source,
      userField(user.exec !== undefined ? "exec" : "auth-provider"),
      "credential plugins are not supported: use a client certificate or a token",
    );
  }
  if (user["client-certificate-data"] !== undefined) {
    creds.cert = decodePem(user["client-certificate-data"], source, userField("client-certificate-data"));
  } else if (user["client-certificate"] !== undefined) {
    creds.cert = await readPem(user["client-certificate"], baseDir, source, userField("client-certificate"));
  }
  if (user["client-key-data"] !== undefined) {
    creds.key = decodePem(user["client-key-data"], source, userField("client-key-data"));
  } else if (user["client-key"] !== undefined) {
    creds.key = await readPem(user["client-key"], baseDir, source, userField("client-key"));
  }
  if (Boolean(creds.cert) !== Boolean(creds.key)) {
    const missing = creds.cert ? "client-key-data" : "client-certificate-data";
    throw new KubeconfigError(source, userField(missing), "missing: a client certificate needs its key");
  }
  if (typeof user.token === "string" && user.token) {
    creds.token = user.token;
  } else if (user.tokenFile !== undefined) {
    const file = String(user.tokenFile);
    const full = isAbsolute(file) ? file : resolve(baseDir, file);
    try {
      creds.token = (await readFile(full, "utf8")).trim();
    } catch (e) {
      throw new KubeconfigError(
        source,
        userField("tokenFile"),
        `cannot read ${full}: ${(e as NodeJS.ErrnoException).code ?? e}`,
      );
    }
  }
  if (!creds.cert && !creds.token) {
    throw new KubeconfigError(
      source,
      where("users", userName, "user"),
      "has no credentials: set client-certificate-data and client-key-data, or token",
    );
  }
  return creds;
}

export async function loadKubeconfig(
  path: string,
  opts: { context?: string } = {},
): Promise<KubeCredentials> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new KubeconfigError(path, "(file)", `cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  return resolveKubeconfig(text, path, opts);
}

/**
 * Points the cluster of the current context (or every cluster when there is no current context)
 * at `url`. Kubespray's admin.conf names 127.0.0.1 or the load balancer, which the hypervisor host
 * cannot use. The rest of the document, comments included, is kept.
 */
export function rewriteServer(kubeconfigText: string, url: string, source = "kubeconfig"): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new KubeconfigError(source, "server", `not a URL: ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== "https:")
    throw new KubeconfigError(source, "server", `must be https://, got ${url}`);
  const config = parseYamlObject(kubeconfigText, source);
  const doc = parseDocument(kubeconfigText);
  const current = config["current-context"];
  let only: string | undefined;
  if (typeof current === "string" && current) {
    const ctx = named(config, "contexts", "context", current, source);
    if (typeof ctx.cluster === "string") only = ctx.cluster;
  }
  const clusters = doc.get("clusters");
  if (!isSeq(clusters) || clusters.items.length === 0)
    throw new KubeconfigError(source, "clusters", "no clusters");
  let changed = 0;
  for (const item of clusters.items) {
    if (!isMap(item)) continue;
    if (only !== undefined && item.get("name") !== only) continue;
    const cluster = item.get("cluster");
    if (!isMap(cluster)) continue;
    (cluster as YAMLMap).set("server", url.replace(/\/+$/, ""));
    changed++;
  }
  if (changed === 0)
    throw new KubeconfigError(source, "clusters", `no cluster named ${JSON.stringify(only)}`);
  // kubectl and kubeadm write sequences unindented; keep that so a rewrite changes only the server line.
  return doc.toString({ indentSeq: false });
}

function listOf(config: Obj, field: string, target: string): Obj[] {
  const value = config[field];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new KubeconfigError(target, field, "must be a list");
  return value as Obj[];
}

function upsert(list: Obj[], entry: Obj): Obj[] {
  const at = list.findIndex((e) => isObj(e) && e.name === entry.name);
  if (at < 0) return [...list, entry];
  const copy = [...list];
  copy[at] = entry;
  return copy;
}

/** The names a cluster's entries get in a merged kubeconfig. */
export function mergedNames(name: string): { cluster: string; user: string; context: string } {
  return { cluster: name, user: `${name}-admin`, context: name };
}

/**
 * Merges the current context of `sourceText` (a cluster's admin kubeconfig) into the kubeconfig at
 * `targetPath` as cluster `name`, user `name-admin` and context `name`. Only entries with those
 * names are replaced; current-context changes only when the target had none (a new or empty file).
 * The file is replaced atomically with mode 0600.
 */
export async function mergeKubeconfig(targetPath: string, sourceText: string, name: string): Promise<void> {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) {
    throw new KubeconfigError(targetPath, "name", `${JSON.stringify(name)} is not a valid cluster name`);
  }
  const source = parseYamlObject(sourceText, "admin kubeconfig");
  const contextName = source["current-context"];
  if (typeof contextName !== "string" || !contextName) {
    throw new KubeconfigError("admin kubeconfig", "current-context", "not set");
  }
  const ctx = named(source, "contexts", "context", contextName, "admin kubeconfig");
  const cluster = named(source, "clusters", "cluster", String(ctx.cluster), "admin kubeconfig");
  const user = named(source, "users", "user", String(ctx.user), "admin kubeconfig");

  let existing = "";
  try {
    existing = await readFile(targetPath, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new KubeconfigError(
        targetPath,
        "(file)",
        `cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`,
      );
    }
  }
  const target = parseYamlObject(existing, targetPath);
  const names = mergedNames(name);
  const hadCurrent = typeof target["current-context"] === "string" && target["current-context"] !== "";
  const merged: Obj = {
    apiVersion: target.apiVersion ?? "v1",
    kind: target.kind ?? "Config",
    ...target,
    clusters: upsert(listOf(target, "clusters", targetPath), { name: names.cluster, cluster }),
    contexts: upsert(listOf(target, "contexts", targetPath), {
      name: names.context,
      context: { cluster: names.cluster, user: names.user },
    }),
    users: upsert(listOf(target, "users", targetPath), { name: names.user, user }),
    "current-context": hadCurrent ? target["current-context"] : names.context,
  };
  await writeFileAtomic(targetPath, stringify(merged, { indentSeq: false }), 0o600);
}
