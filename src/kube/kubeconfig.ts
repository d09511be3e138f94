/**
 * kubeconfig files (k8s.io/client-go/tools/clientcmd/api/v1 types.go: Config, NamedCluster,
 * NamedAuthInfo, NamedContext): reading the credentials of one context, rewriting the server URL
 * and merging a cluster's admin kubeconfig into the user's ~/.kube/config.
 */
import { constants, type Stats } from "node:fs";
import { chown, lstat, mkdir, open, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { isMap, isScalar, isSeq, parseDocument, type YAMLMap, type YAMLSeq } from "yaml";
import { ExitCode, KubehyveError } from "../lib/errors.ts";
import { kindOf, writeFileAtomic } from "../lib/fsutil.ts";
import { isJsonObject } from "./types.ts";

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

function parseYamlObject(text: string, source: string): Obj {
  const doc = parseDocument(text, { prettyErrors: true });
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : "(document)";
    // The library's pretty message repeats the place at its end ("… at line 1, column 11:").
    const message = first.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    throw new KubeconfigError(source, where, `not valid YAML: ${message}`);
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return {};
  if (!isJsonObject(value))
    throw new KubeconfigError(source, "(document)", "expected a mapping (apiVersion: v1, kind: Config)");
  return value;
}

/** Finds `list[name=NAME].key` and says which field is missing when it is not there. */
function named(config: Obj, listField: string, itemKey: string, name: string, source: string): Obj {
  const list = config[listField];
  if (list !== undefined && !Array.isArray(list))
    throw new KubeconfigError(source, listField, "must be a list");
  const entry = (list ?? []).find((e: unknown) => isJsonObject(e) && e.name === name);
  if (!isJsonObject(entry)) {
    throw new KubeconfigError(source, listField, `no entry named ${JSON.stringify(name)}`);
  }
  const body = entry[itemKey];
  if (!isJsonObject(body)) {
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

/** Most bytes of a file a kubeconfig names: a CA bundle or a token is kilobytes. */
const CREDENTIAL_FILE_MAX = 1024 * 1024;
/** Most bytes of a kubeconfig: one with many clusters and inlined certificates has some hundred KiB. */
const KUBECONFIG_MAX = 16 * 1024 * 1024;

/**
 * A file a kubeconfig names (certificate-authority, client-certificate, client-key, tokenFile), as
 * text. Links are followed, as client-go follows them (a projected service account token is one),
 * but what they lead to must be a regular file of at most CREDENTIAL_FILE_MAX bytes: reading a FIFO
 * waits for a writer forever, and /dev/zero never ends. Opened without blocking, so that a FIFO is
 * told apart before anything waits on it.
 */
async function readCredentialFile(
  full: string,
  source: string,
  field: string,
  max = CREDENTIAL_FILE_MAX,
  what = "a certificate, key or token",
): Promise<string> {
  const cannot = (e: unknown) =>
    new KubeconfigError(source, field, `cannot read ${full}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(full, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw cannot(e);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new KubeconfigError(source, field, `${full} is ${kindOf(st)}, not a file`);
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > max)
        throw new KubeconfigError(
          source,
          field,
          `${full} has more than ${max / 1024 / 1024} MiB: not ${what}`,
        );
      chunks.push(chunk.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks).toString("utf8");
  } catch (e) {
    if (e instanceof KubeconfigError) throw e;
    throw cannot(e);
  } finally {
    await handle.close();
  }
}

async function readPem(path: unknown, baseDir: string, source: string, field: string): Promise<string> {
  if (typeof path !== "string" || path === "")
    throw new KubeconfigError(source, field, "must be a file path");
  // client-go resolves relative paths against the directory of the kubeconfig that names them.
  const full = isAbsolute(path) ? path : resolve(baseDir, path);
  const text = await readCredentialFile(full, source, field);
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
    creds.token = (await readCredentialFile(full, source, userField("tokenFile"))).trim();
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
  // Read as the files it names are: a FIFO would be waited on for good.
  const text = await readCredentialFile(path, path, "(file)", KUBECONFIG_MAX, "a kubeconfig");
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

/** The names a cluster's entries get in a merged kubeconfig. */
export function mergedNames(name: string): { cluster: string; user: string; context: string } {
  return { cluster: name, user: `${name}-admin`, context: name };
}

/**
 * The mark kubehyve leaves on the entries it merges (clientcmd's `extensions`, a NamedExtension
 * list that kubectl keeps, as minikube's `cluster_info` shows): an entry carrying this cluster's id
 * is ours to update, anything else of the same name belongs to someone else.
 */
const MARK = "kubehyve";

function markOf(id: string | undefined): Obj {
  return id ? { extensions: [{ name: MARK, extension: { "cluster-id": id } }] } : {};
}

function carriesMark(body: unknown, id: string | undefined): boolean {
  if (!id || !isJsonObject(body) || !Array.isArray(body.extensions)) return false;
  return body.extensions.some(
    (e: unknown) =>
      isJsonObject(e) && e.name === MARK && isJsonObject(e.extension) && e.extension["cluster-id"] === id,
  );
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isJsonObject(value)) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, sortKeys(value[k])]),
  );
}

/**
 * Where writing `path` really lands: through every symbolic link, to the file they lead to. Root
 * follows a link that another user owns only to a file of that user's (or, for a file not made
 * yet, into a directory of theirs), as Linux's fs.protected_symlinks reasons: with `sudo -E` the
 * path is in the user's HOME, and a link they planted must not get root to write where they cannot.
 */
async function followLinks(path: string): Promise<string> {
  let at = resolve(path);
  const links: { link: string; uid: number }[] = [];
  for (let hops = 0; hops < 40; hops++) {
    let st: Stats;
    try {
      st = await lstat(at);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      await refuseForeignTarget(path, at, links);
      return at;
    }
    if (!st.isSymbolicLink()) {
      await refuseForeignTarget(path, at, links);
      return at;
    }
    if (process.getuid?.() === 0 && st.uid !== 0) links.push({ link: at, uid: st.uid });
    at = resolve(dirname(at), await readlink(at));
  }
  throw new KubeconfigError(path, "(file)", "too many levels of symbolic links");
}

async function refuseForeignTarget(path: string, target: string, links: { link: string; uid: number }[]) {
  if (!links.length) return;
  // The file, or for one not made yet the nearest folder that exists: whose it is.
  let at = target;
  let owner: number | undefined;
  while (owner === undefined) {
    try {
      owner = (await stat(at)).uid;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || dirname(at) === at) throw e;
      at = dirname(at);
    }
  }
  const foreign = links.find((l) => l.uid !== owner);
  if (!foreign) return;
  throw new KubehyveError(
    `${path}: ${foreign.link} is a symbolic link of uid ${foreign.uid} leading to ${target}, ` +
      `${at === target ? "a file" : `in ${at}, a folder`} of uid ${owner}: root does not write through it`,
    ExitCode.badInput,
    `point the link at a file of uid ${foreign.uid}, or name the file to merge into: KUBECONFIG=${target}`,
  );
}

/**
 * Makes the missing folders down to `dir` (0700, as kubectl's own ~/.kube) owned by whoever owns
 * the first one that exists above them, and returns that owner.
 */
async function makeFoldersOfOwner(dir: string): Promise<{ uid: number; gid: number }> {
  const missing: string[] = [];
  let at = resolve(dir);
  let st: Stats | undefined;
  while (!st) {
    try {
      st = await stat(at);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || dirname(at) === at) throw e;
      missing.push(at);
      at = dirname(at);
    }
  }
  const owner = { uid: st.uid, gid: st.gid };
  for (const level of missing.reverse()) {
    await mkdir(level, { mode: 0o700 });
    // Through a descriptor that refuses a link: the folder is in a home its user can write, and
    // a link swapped in for it must not get them root's chown of wherever it leads.
    const handle = await open(level, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      await handle.chown(owner.uid, owner.gid);
    } finally {
      await handle.close();
    }
  }
  return owner;
}

export interface MergeResult {
  /** The file written: the target, or where its symbolic links lead. */
  file: string;
  /** A copy of the file as it was, when there was one and it changed. */
  backup?: string;
  changed: boolean;
  /** Entries of the same name that were replaced (only ever with `overwrite`, or marked ours). */
  replaced: string[];
}

/**
 * Merges the current context of `sourceText` (a cluster's admin kubeconfig) into the kubeconfig at
 * `targetPath` as cluster `name`, user `name-admin` and context `name`, each marked with the
 * cluster's id. An entry of the same name that is not this cluster's (not marked with `clusterId`)
 * is never replaced unless `overwrite`: the merge is refused and nothing changes. current-context
 * changes only when the target had none. The rest of the file stays as it was, comments included;
 * a symbolic link is written through, to its target, atomically there, keeping the file's owner;
 * the file's previous content is kept beside it as `<file>.kubehyve-backup-<time>`.
 */
/**
 * The fields of a kubeconfig (client-go tools/clientcmd/api/v1 types.go, Config). A mapping with
 * others, or of another kind, is some other YAML file ($KUBECONFIG naming a cluster file, say), and
 * entries merged into it would break it for whatever reads it.
 */
const CONFIG_FIELDS = new Set([
  "apiVersion",
  "kind",
  "preferences",
  "clusters",
  "users",
  "contexts",
  "current-context",
  "extensions",
]);

function notAKubeconfig(data: Record<string, unknown>, path: string): void {
  if (data.kind !== undefined && data.kind !== null && data.kind !== "Config")
    throw new KubeconfigError(
      path,
      "kind",
      `is ${JSON.stringify(data.kind)}: this file is not a kubeconfig (kind: Config)`,
    );
  const others = Object.keys(data).filter((key) => !CONFIG_FIELDS.has(key));
  if (others.length)
    throw new KubeconfigError(
      path,
      "(file)",
      `is not a kubeconfig: it has ${others
        .slice(0, 4)
        .map((k) => JSON.stringify(k))
        .join(", ")}${others.length > 4 ? ", …" : ""}, which a kubeconfig does not; nothing was changed`,
    );
}

export async function mergeKubeconfig(
  targetPath: string,
  sourceText: string,
  name: string,
  /** `sourcePath`: where the admin kubeconfig was read, for the messages about it. */
  opts: { clusterId?: string; overwrite?: boolean; now?: Date; sourcePath?: string } = {},
): Promise<MergeResult> {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) {
    throw new KubeconfigError(targetPath, "name", `${JSON.stringify(name)} is not a valid cluster name`);
  }
  const from = opts.sourcePath ?? "admin kubeconfig";
  const source = parseYamlObject(sourceText, from);
  const contextName = source["current-context"];
  if (typeof contextName !== "string" || !contextName) {
    throw new KubeconfigError(from, "current-context", "not set");
  }
  const ctx = named(source, "contexts", "context", contextName, from);
  const cluster = named(source, "clusters", "cluster", String(ctx.cluster), from);
  const user = named(source, "users", "user", String(ctx.user), from);

  const file = await followLinks(targetPath);
  let existing: string | undefined;
  let owner: { uid: number; gid: number } | undefined;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new KubeconfigError(targetPath, "(file)", "is not a regular file");
    owner = { uid: st.uid, gid: st.gid };
    existing = await readFile(file, "utf8");
  } catch (e) {
    if (e instanceof KubeconfigError) throw e;
    if ((e as NodeJS.ErrnoException).code !== "ENOENT")
      throw new KubeconfigError(
        targetPath,
        "(file)",
        `cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`,
      );
  }
  // Checked as data first: the same errors as every other kubeconfig, with their line.
  const data = parseYamlObject(existing ?? "", targetPath);
  notAKubeconfig(data, targetPath);
  const doc = parseDocument(existing ?? "");
  if (doc.contents === null) doc.contents = doc.createNode({}) as never;
  const root = doc.contents as unknown as YAMLMap;
  if (!root.has("apiVersion")) root.set("apiVersion", "v1");
  if (!root.has("kind")) root.set("kind", "Config");

  const names = mergedNames(name);
  const mark = markOf(opts.clusterId);
  const wanted: { field: string; key: string; entry: Obj }[] = [
    { field: "clusters", key: "cluster", entry: { name: names.cluster, cluster: { ...cluster, ...mark } } },
    {
      field: "contexts",
      key: "context",
      entry: { name: names.context, context: { cluster: names.cluster, user: names.user, ...mark } },
    },
    { field: "users", key: "user", entry: { name: names.user, user: { ...user, ...mark } } },
  ];
  const clashes: string[] = [];
  const replaced: string[] = [];
  const edits: (() => void)[] = [];
  for (const { field, key, entry } of wanted) {
    let list: unknown = root.get(field, true);
    if (list === undefined || list === null || (isScalar(list) && list.value === null)) {
      list = doc.createNode([]);
      root.set(field, list);
    }
    if (!isSeq(list)) throw new KubeconfigError(targetPath, field, "must be a list");
    const items = (list as YAMLSeq).items;
    const at = items.findIndex((item) => isMap(item) && item.get("name") === entry.name);
    if (at < 0) {
      edits.push(() => items.push(doc.createNode(entry)));
      continue;
    }
    const present = (items[at] as YAMLMap).toJSON() as Obj;
    if (sameJson(present, entry)) continue;
    const what = `${key} ${JSON.stringify(entry.name)}`;
    if (!carriesMark(present[key], opts.clusterId) && !opts.overwrite) {
      const server = key === "cluster" && isJsonObject(present.cluster) ? present.cluster.server : undefined;
      clashes.push(`${what}${typeof server === "string" ? ` (server ${server})` : ""}`);
      continue;
    }
    replaced.push(what);
    edits.push(() => {
      items[at] = doc.createNode(entry);
    });
  }
  if (clashes.length)
    throw new KubehyveError(
      `${targetPath} already has ${clashes.join(", ")} that this cluster did not write; nothing was changed`,
      1,
      "another cluster may go by that name: kubehyve kubeconfig --merge --overwrite replaces them (a backup of the file is kept)",
    );
  for (const edit of edits) edit();
  const current = root.get("current-context");
  if (typeof current !== "string" || current === "") root.set("current-context", names.context);

  // kubectl writes sequences unindented; keep that, so that a merge reads like kubectl's own.
  const text = doc.toString({ indentSeq: false });
  if (existing !== undefined && text === existing) return { file, changed: false, replaced };
  let backup: string | undefined;
  if (existing !== undefined && existing.trim() !== "") {
    const stamp = (opts.now ?? new Date()).toISOString().replace(/[:.]/g, "-");
    backup = `${file}.kubehyve-backup-${stamp}`;
    await writeFile(backup, existing, { mode: 0o600, flag: "wx" });
    if (owner && process.getuid?.() === 0) await chown(backup, owner.uid, owner.gid);
  }
  // A new file, written by root for someone (`sudo -E kubehyve kubeconfig --merge` keeps their
  // HOME): theirs, as the directory it goes into is, and so are the folders made for it. Root's,
  // ~/.kube and the config in it would be closed to the very user kubectl runs as.
  if (!owner && process.getuid?.() === 0) owner = await makeFoldersOfOwner(dirname(file));
  // A kubeconfig holds credentials: 0600, whatever the old file's mode was.
  await writeFileAtomic(file, text, 0o600, owner);
  return { file, backup, changed: true, replaced };
}
