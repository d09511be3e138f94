/**
 * The generated files through the real upstream programs: every node's Ignition config of the
 * example lab (src/example) and of a five-node lab is applied by Debian's Ignition binary to a
 * throwaway root, and every NetworkManager keyfile goes through NetworkManager's own parser and
 * writer (`nmcli --offline`). The VM configs they are compared with come from the hypervisor stage's
 * own render, through the engine, as `kubehyve render` writes them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinPlugins } from "../../../../plugins/index.ts";
import {
  type IgnitionConfig,
  NM_KEYFILE_PATH,
  SERIAL_CONSOLE_KARG,
  serializeIgnition,
} from "../../../../plugins/os/coreos/ignition.ts";
import { parseClusterText } from "../../../../src/core/config.ts";
import type { AnyPlugin } from "../../../../src/core/contract.ts";
import { runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import exampleText from "../../../../src/example/kubehyve.yaml" with { type: "text" };
import { type AppliedConfig, applyIgnition, haveIgnition, listTree } from "../../../lab/ignition.ts";
import { haveNmcli, nmcliRoundTrip, withoutNmAdditions } from "../../../lab/nmcli.ts";
import { FIXTURE_NODE_FILES, nodeFilesFixture } from "./lab.ts";

const lookup = { find: (id: string) => builtinPlugins.find((p) => p.id === id), searchPath: [] };

/** The example lab with three control planes and two workers in its place. */
const FIVE_NODES = exampleText.replace(
  /^nodes:\n[\s\S]*?\n(?=# One plugin per stage)/m,
  `nodes:
${[
  ["cp1", "control-plane", 21],
  ["cp2", "control-plane", 22],
  ["cp3", "control-plane", 23],
  ["w1", "worker", 31],
  ["w2", "worker", 32],
]
  .map(
    ([name, role, host]) =>
      // The workers keep the example's data disks, which the storage stage needs.
      `  - { name: ${name}, role: ${role}, cpus: 2, memory: 4GiB, disk: 20GiB, address: 192.168.1.${host}${role === "worker" ? ", disks: [50GiB]" : ""} }`,
  )
  .join("\n")}

`,
);

interface Lab {
  name: string;
  /** Node name to its rendered files. */
  nodes: Map<string, { ignition: string; vmConfig: string }>;
  /** The node files another stage asked for through os:node-files. */
  extraFiles: readonly { path: string }[];
  /** The cluster's own public key, from the state dir render used. */
  clusterKey: string;
}

const work = mkdtempSync(join(tmpdir(), "kubehyve-real-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function render(name: string, text: string, extraStages: AnyPlugin[] = []): Promise<Lab> {
  const { cluster, stages } = parseClusterText(text, `${name}.yaml`, lookup);
  const out = join(work, name, "out");
  const result = await runEngine({
    command: "render",
    cluster,
    stages: [
      // An extra stage takes the place of the file's stage of the same slot.
      ...stages.filter((s) => !extraStages.some((p) => p.id.split("/")[0] === s.slot)),
      ...extraStages.map((plugin) => ({ slot: plugin.id.split("/")[0]!, plugin, options: {} })),
    ],
    stateDir: join(work, name, "state"),
    reporter: memoryReporter(),
    renderDir: out,
  });
  expect(result.exitCode).toBe(0);
  return {
    name,
    nodes: new Map(
      cluster.nodes.map((n) => [
        n.name,
        {
          ignition: readFileSync(join(out, "os", `${n.name}.ign`), "utf8"),
          vmConfig: readFileSync(join(out, "hypervisor", n.name, `${n.name}.conf`), "utf8"),
        },
      ]),
    ),
    extraFiles: extraStages.length ? FIXTURE_NODE_FILES : [],
    clusterKey: readFileSync(join(work, name, "state", "ssh", "id_ed25519.pub"), "utf8").trim(),
  };
}

let labs: Lab[] = [];
beforeAll(async () => {
  labs = [await render("example", exampleText), await render("five-nodes", FIVE_NODES, [nodeFilesFixture])];
  expect(labs.map((l) => l.nodes.size)).toEqual([3, 5]);
});

const allNodes = () =>
  labs.flatMap((lab) => [...lab.nodes].map(([node, files]) => ({ lab, node, ...files })));

function fileContents(config: IgnitionConfig, path: string): string {
  const source = config.storage.files.find((f) => f.path === path)?.contents.source ?? "";
  expect(source).toStartWith("data:,");
  return decodeURIComponent(source.slice("data:,".length));
}

function parentsOf(path: string): string[] {
  const parts = path.split("/").slice(1, -1);
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join("/")}`);
}

/** Bookkeeping of Ignition and shadow-utils' useradd beside what the config asks for. */
const IGNITION_OWN = [
  "/etc/.ignition-result.json",
  "/etc/.pwd.lock",
  "/etc/passwd-",
  "/etc/group-",
  "/etc/shadow-",
  "/etc/gshadow-",
];

describe.skipIf(!haveIgnition())("every node's Ignition config, applied by the real Ignition", () => {
  test("creates core with the cluster's keys, and writes every file at its mode and owner, and nothing else", async () => {
    for (const { lab, node, ignition } of allNodes()) {
      const config = JSON.parse(ignition) as IgnitionConfig;
      let applied: AppliedConfig | undefined;
      try {
        applied = await applyIgnition(ignition);
        const where = `${lab.name}/${node}`;

        const core = applied.user("core");
        expect(core, `${where}: user core`).toBeDefined();
        const keysPath = `${core!.home}/.ssh/authorized_keys.d/ignition`;
        const keys = applied.after.get(keysPath);
        expect(keys, `${where}: ${keysPath}`).toEqual({
          type: "file",
          mode: 0o600,
          uid: core!.uid,
          gid: core!.gid,
        });
        expect(applied.read(keysPath).trimEnd().split("\n")).toEqual(
          config.passwd.users[0]!.sshAuthorizedKeys,
        );
        expect(config.passwd.users[0]!.sshAuthorizedKeys[0]).toBe(lab.clusterKey);
        // No password: core logs in with its keys only.
        expect(
          applied
            .read("/etc/shadow")
            .split("\n")
            .filter((l) => l.startsWith("core:")),
        ).toEqual([expect.stringMatching(/^core:\*:/)]);

        expect(applied.read("/etc/hostname")).toBe(`${node}\n`);
        expect(applied.after.get(NM_KEYFILE_PATH)).toEqual({ type: "file", mode: 0o600, uid: 0, gid: 0 });
        for (const extra of lab.extraFiles)
          expect(config.storage.files.map((f) => f.path)).toContain(extra.path);
        for (const file of config.storage.files) {
          expect(applied.after.get(file.path), `${where}: ${file.path}`).toEqual({
            type: "file",
            mode: file.mode,
            uid: 0,
            gid: 0,
          });
          expect(applied.read(file.path)).toBe(fileContents(config, file.path));
        }

        // Ignition hands every kernel argument to the distribution's helper, console first.
        expect(applied.kargs).toEqual(
          config.kernelArguments.shouldExist.flatMap((k) => ["--should-exist", k]),
        );
        expect(applied.kargs.slice(0, 2)).toEqual(["--should-exist", SERIAL_CONSOLE_KARG]);

        const expected = new Set([
          ...config.storage.files.flatMap((f) => [f.path, ...parentsOf(f.path)]),
          ...[keysPath, ...parentsOf(keysPath)],
          ...IGNITION_OWN,
        ]);
        const added = [...applied.after.keys()].filter((p) => !applied!.before.has(p));
        expect(
          added.filter((p) => !expected.has(p)),
          `${where}: unexpected paths`,
        ).toEqual([]);
        for (const file of config.storage.files) expect(added).toContain(file.path);
        // Debian's build relabels what it wrote; the stand-in setfiles saw it all, inside the root.
        expect(applied.relabeled.every((p) => p.startsWith(applied!.root))).toBe(true);
      } finally {
        await applied?.cleanup();
      }
    }
  }, 120_000);

  test("the five-node lab's nodes get the files another stage asked for through os:node-files", async () => {
    const lab = labs[1]!;
    const applied = await applyIgnition(lab.nodes.get("cp2")!.ignition);
    try {
      expect(applied.read("/etc/sysctl.d/reverse-path-filter.conf")).toBe("net.ipv4.conf.all.rp_filter=1\n");
      expect(applied.after.get("/etc/sysctl.d/reverse-path-filter.conf")).toEqual({
        type: "file",
        mode: 0o644,
        uid: 0,
        gid: 0,
      });
      expect(applied.read("/etc/NetworkManager/conf.d/calico.conf")).toContain("interface-name:cali*");
    } finally {
      await applied.cleanup();
    }
  });

  test("a config the real Ignition refuses fails this harness, so its passing means something", async () => {
    const config = JSON.parse(labs[0]!.nodes.get("cp1")!.ignition) as IgnitionConfig;
    config.storage.files[0]!.path = "etc/relative";
    await expect(applyIgnition(serializeIgnition(config))).rejects.toThrow(
      /ignition -stage fetch-offline exited/,
    );
  });

  test("writes only under -root: the machine's own files are as they were", async () => {
    const marker = `kubehyve-canary-${crypto.randomUUID()}`;
    const config = JSON.parse(labs[0]!.nodes.get("w1")!.ignition) as IgnitionConfig;
    const canaries = [`/etc/${marker}`, `/var/lib/${marker}/file`];
    config.storage.files.push(
      ...canaries.map((path) => ({
        path,
        mode: 0o644,
        overwrite: true,
        contents: { source: "data:,canary" },
      })),
    );
    // Everything Ignition, its stages or useradd would touch if -root or our flags were not honoured.
    const watched = [
      "/etc/passwd",
      "/etc/group",
      "/etc/shadow",
      "/etc/gshadow",
      "/etc/hostname",
      "/etc/.ignition-result.json",
      NM_KEYFILE_PATH,
      "/etc/zincati",
      "/home/core",
      "/run/ignition.json",
      "/run/ignition",
      ...canaries,
    ];
    const snapshot = () =>
      watched.map((path) => {
        if (!existsSync(path)) return { path, exists: false };
        const s = statSync(path);
        const bytes = s.isFile()
          ? new Bun.CryptoHasher("sha256").update(readFileSync(path)).digest("hex")
          : "";
        return { path, exists: true, mtimeMs: s.mtimeMs, mode: s.mode, bytes };
      });
    const before = snapshot();
    const nmTree = () =>
      existsSync("/etc/NetworkManager") ? [...listTree("/etc/NetworkManager").keys()] : [];
    const nmBefore = nmTree();
    const applied = await applyIgnition(serializeIgnition(config));
    try {
      for (const canary of canaries) expect(applied.read(canary)).toBe("canary");
      expect(snapshot()).toEqual(before);
      expect(canaries.some((c) => existsSync(c))).toBe(false);
      expect(nmTree()).toEqual(nmBefore);
    } finally {
      await applied.cleanup();
    }
  });
});

describe.skipIf(!haveNmcli())("every node's NetworkManager keyfile, through nmcli --offline", () => {
  const keyfileOf = (ignition: string) =>
    fileContents(JSON.parse(ignition) as IgnitionConfig, NM_KEYFILE_PATH);

  test("parses, and the round trip through NetworkManager keeps every line", async () => {
    for (const { lab, node, ignition } of allNodes()) {
      const keyfile = keyfileOf(ignition);
      const result = await nmcliRoundTrip(keyfile);
      expect(result.stderr, `${lab.name}/${node}`).toBe("");
      expect(result.code).toBe(0);
      expect(withoutNmAdditions(result.stdout), `${lab.name}/${node}`).toBe(keyfile);
    }
  });

  test("the round trip is not vacuous: a value NetworkManager does not take changes the output", async () => {
    const keyfile = keyfileOf(labs[0]!.nodes.get("cp1")!.ignition);
    for (const broken of [
      keyfile.replace(/^mac-address=.*$/m, "mac-address=02:zz:00:00:00:01"),
      keyfile.replace(/\/24,/, "/99,"),
    ]) {
      const result = await nmcliRoundTrip(broken);
      expect(result.code).toBe(0);
      expect(withoutNmAdditions(result.stdout)).not.toBe(broken);
    }
    expect((await nmcliRoundTrip("not a keyfile\n")).code).not.toBe(0);
  });

  test("the MAC in each VM config is the MAC its keyfile matches, and no two nodes share one", () => {
    const macs: string[] = [];
    for (const { lab, node, ignition, vmConfig } of allNodes()) {
      const inVm = /^network0_mac="([0-9a-f:]+)"$/m.exec(vmConfig)?.[1];
      const inKeyfile = /^mac-address=([0-9A-F:]+)$/m.exec(keyfileOf(ignition))?.[1];
      expect(inVm, `${lab.name}/${node}: network0_mac`).toMatch(/^02(:[0-9a-f]{2}){5}$/);
      // MAC addresses compare without regard to case: NetworkManager writes them in upper case.
      expect(inKeyfile?.toLowerCase(), `${lab.name}/${node}`).toBe(inVm);
      macs.push(`${lab.name}/${inVm}`);
    }
    expect(new Set(macs).size).toBe(macs.length);
  });
});
