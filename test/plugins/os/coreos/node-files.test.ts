/**
 * The `os:node-files` hook: a stage asks, through the engine, for files on every node, and the os
 * stage puts them into each node's Ignition config; answers that would be unsafe on a node are
 * refused, naming the node.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinPlugins } from "../../../../plugins/index.ts";
import type { IgnitionConfig } from "../../../../plugins/os/coreos/ignition.ts";
import { NM_KEYFILE_PATH, OWN_FILE_PATHS, ZINCATI_PATH } from "../../../../plugins/os/coreos/ignition.ts";
import { collectNodeFiles } from "../../../../plugins/os/coreos/node-files.ts";
import { parseClusterText } from "../../../../src/core/config.ts";
import type { AnyPlugin } from "../../../../src/core/contract.ts";
import { runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import exampleText from "../../../../src/example/kubehyve.yaml" with { type: "text" };
import { KubehyveError } from "../../../../src/lib/errors.ts";
import { labNode } from "../../../lab/cluster.ts";
import { applyIgnition, haveIgnition } from "../../../lab/ignition.ts";
import { nodeFilesFixture } from "./lab.ts";

const dir = mkdtempSync(join(tmpdir(), "kubehyve-node-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const lookup = { find: (id: string) => builtinPlugins.find((p) => p.id === id), searchPath: [] };

/** The example lab with `extra` stages in place of its own of the same slots, and without `drop`. */
async function renderWith(extra: AnyPlugin[], name: string, drop: string[] = []) {
  const { cluster, stages: parsed } = parseClusterText(exampleText, "example", lookup);
  const taken = [...drop, ...extra.map((p) => p.id.split("/")[0]!)];
  const stages = parsed.filter((s) => !taken.includes(s.slot));
  const out = join(dir, name);
  const reporter = memoryReporter();
  const result = await runEngine({
    command: "render",
    cluster,
    stages: [...stages, ...extra.map((plugin) => ({ slot: plugin.id.split("/")[0]!, plugin, options: {} }))],
    stateDir: join(dir, `${name}-state`),
    reporter,
    renderDir: out,
  });
  return { result, reporter, out };
}

describe("os:node-files through the engine", () => {
  test("puts the sysctl a network stage asks for into every node's Ignition config", async () => {
    const { result, out } = await renderWith([nodeFilesFixture as AnyPlugin], "with-fixture");
    expect(result.exitCode).toBe(0);
    for (const node of ["cp1", "w1", "w2"]) {
      const config = JSON.parse(readFileSync(join(out, "os", `${node}.ign`), "utf8")) as IgnitionConfig;
      const sysctl = config.storage.files.find((f) => f.path === "/etc/sysctl.d/reverse-path-filter.conf");
      expect(sysctl).toEqual({
        path: "/etc/sysctl.d/reverse-path-filter.conf",
        mode: 0o644,
        overwrite: true,
        contents: { source: `data:,${encodeURIComponent("net.ipv4.conf.all.rp_filter=1\n")}` },
      });
      expect(config.storage.files.map((f) => f.path)).toContain("/etc/NetworkManager/conf.d/calico.conf");
    }
  });

  test("without such a stage the configs hold only the os stage's own files", async () => {
    const { out } = await renderWith([], "without", ["net"]);
    const config = JSON.parse(readFileSync(join(out, "os", "cp1.ign"), "utf8")) as IgnitionConfig;
    expect(config.storage.files.map((f) => f.path)).toEqual([...OWN_FILE_PATHS]);
  });

  test.each([
    ["a path under /usr", { path: "/usr/bin/x", contents: "" }, '"/usr/bin/x"'],
    ["the os stage's own keyfile", { path: NM_KEYFILE_PATH, contents: "" }, "writes that file itself"],
    ["a file below one of the os stage's own", { path: "/etc/hostname/x", contents: "" }, "/etc/hostname"],
    [
      "the directory of one of the os stage's own",
      { path: "/etc/zincati/config.d", contents: "" },
      ZINCATI_PATH,
    ],
    ["sshd's configuration", { path: "/etc/ssh/sshd_config", contents: "" }, "/etc/ssh decides who logs in"],
    ["an sshd drop-in", { path: "/etc/ssh/sshd_config.d/10-x.conf", contents: "" }, "/etc/ssh decides"],
    [
      "core's authorized keys",
      { path: "/var/home/core/.ssh/authorized_keys.d/ignition", contents: "" },
      "/var/home",
    ],
    ["a sudo rule", { path: "/etc/sudoers.d/x", contents: "" }, "/etc/sudoers.d"],
    ["a setuid mode", { path: "/etc/x", contents: "", mode: 0o4755 }, "0o4755"],
    ["a file too large", { path: "/etc/x", contents: "x".repeat(65 * 1024) }, "more than 65536"],
    ["text that is no Unicode", { path: "/etc/x", contents: "a\ud800b" }, "a lone surrogate at 1"],
  ])(
    "an answer with %s fails the render, naming the plugin that gave it and the hook",
    async (what, file, message) => {
      const bad = {
        ...nodeFilesFixture,
        id: "net/bad",
        hooks: {
          "os:node-files": () => ({ files: [{ path: "/etc/sysctl.d/ok.conf", contents: "" }, file] }),
        },
      };
      const { result, reporter } = await renderWith([bad as AnyPlugin], `bad-${what.replaceAll(/\W/g, "-")}`);
      expect(result.exitCode).not.toBe(0);
      const ended = reporter.events.find((e) => e.type === "run.end") as { message?: string };
      expect(ended.message).toContain(
        "plugin net/bad's handler of hook os:node-files answered what os/coreos does not take: files.1.",
      );
      expect(ended.message).toContain(message);
    },
  );

  test("an answer with a file of exactly 64 KiB renders, and one with a byte more does not", async () => {
    const answering = (contents: string) =>
      ({
        ...nodeFilesFixture,
        id: "net/big",
        hooks: { "os:node-files": () => ({ files: [{ path: "/etc/big.conf", contents }] }) },
      }) as AnyPlugin;
    // 65536 bytes in 32768 characters: the limit is the file's size on the node.
    const full = "é".repeat(32 * 1024);
    expect((await renderWith([answering(full)], "big-full")).result.exitCode).toBe(0);
    const over = await renderWith([answering(`${full}x`)], "big-over");
    expect(over.result.exitCode).not.toBe(0);
    const ended = over.reporter.events.find((e) => e.type === "run.end") as { message?: string };
    // Named as the answer of the plugin that gave it, before the files of all answers are put together.
    expect(ended.message).toContain(
      "plugin net/big's handler of hook os:node-files answered what os/coreos does not take: files.0.",
    );
    expect(ended.message).toContain("65537 bytes, more than 65536");
  });

  test.skipIf(!haveIgnition())(
    "the real Ignition fails a node's first boot on a file below another, which its validator lets through",
    async () => {
      const config = {
        ignition: { version: "3.3.0" },
        storage: {
          files: ["/etc/hostname", "/etc/hostname/x"].map((path) => ({
            path,
            mode: 0o644,
            overwrite: true,
            contents: { source: "data:,x" },
          })),
        },
      };
      const validated = Bun.spawnSync(["ignition-validate", "-"], {
        stdin: new TextEncoder().encode(JSON.stringify(config)),
      });
      expect(validated.exitCode).toBe(0);
      await expect(applyIgnition(JSON.stringify(config))).rejects.toThrow("not a directory");
    },
  );
});

describe("collectNodeFiles", () => {
  const node = labNode("cp1", "control-plane", "192.168.1.21");
  const collect = (...answers: unknown[]) => collectNodeFiles(node, answers, OWN_FILE_PATHS);

  test("takes files under /etc and /var with their modes, 0644 by default, and skips empty answers", () => {
    expect(
      collect(
        undefined,
        {},
        { files: [{ path: "/etc/a.conf", contents: "a" }] },
        { files: [{ path: "/var/lib/b@1:x", contents: "b", mode: 0o600 }] },
      ),
    ).toEqual([
      { path: "/etc/a.conf", contents: "a", mode: 0o644 },
      { path: "/var/lib/b@1:x", contents: "b", mode: 0o600 },
    ]);
  });

  test.each([
    ["a path under /usr", { files: [{ path: "/usr/lib/x", contents: "" }] }, 'the path "/usr/lib/x"'],
    ["a relative path", { files: [{ path: "etc/x", contents: "" }] }, 'the path "etc/x"'],
    [
      "a path that climbs out",
      { files: [{ path: "/etc/../usr/x", contents: "" }] },
      'the path "/etc/../usr/x"',
    ],
    ["a blank in the path", { files: [{ path: "/etc/a b", contents: "" }] }, 'the path "/etc/a b"'],
    [
      "the os stage's own keyfile",
      { files: [{ path: OWN_FILE_PATHS[1], contents: "" }] },
      "which the os stage writes itself",
    ],
    ["no text", { files: [{ path: "/etc/x" }] }, "no text for /etc/x"],
    [
      "a setuid mode",
      { files: [{ path: "/etc/x", contents: "", mode: 0o4755 }] },
      "the mode 0o4755 for /etc/x",
    ],
    ["a fractional mode", { files: [{ path: "/etc/x", contents: "", mode: 1.5 }] }, "the mode 1.5"],
    ["a list instead of a map", [{ path: "/etc/x" }], "a list, not { files: [...] }"],
    ["files that are no list", { files: "/etc/x" }, "files that are not a list"],
    ["a file too large", { files: [{ path: "/etc/x", contents: "x".repeat(65 * 1024) }] }, "more than 65536"],
  ])("refuses %s", (_what, answer, message) => {
    expect(() => collect(answer)).toThrow(KubehyveError);
    expect(() => collect(answer)).toThrow(message);
  });

  test("takes a file of exactly 64 KiB and 32 files in all answers; one byte or one file more is refused", () => {
    // 65536 bytes in 32768 characters: the limit is the file's size on the node, not its length.
    const full = "é".repeat(32 * 1024);
    expect(collect({ files: [{ path: "/etc/x", contents: full }] })).toHaveLength(1);
    expect(() => collect({ files: [{ path: "/etc/x", contents: `${full}x` }] })).toThrow(
      "/etc/x of 65537 bytes, more than 65536",
    );
    const files = (n: number, from = 0) => ({
      files: Array.from({ length: n }, (_, i) => ({ path: `/etc/f${from + i}.conf`, contents: "" })),
    });
    expect(collect(files(16), files(16, 16))).toHaveLength(32);
    expect(() => collect(files(16), files(17, 16))).toThrow("33 files, more than 32");
  });

  test("refuses a file and its directory, from one answer or two", () => {
    const file = { files: [{ path: "/etc/sysctl.d/x.conf", contents: "a" }] };
    const dir = { files: [{ path: "/etc/sysctl.d", contents: "a" }] };
    expect(() => collect(file, dir)).toThrow("both /etc/sysctl.d/x.conf and /etc/sysctl.d");
    expect(() => collect(dir, file)).toThrow("both /etc/sysctl.d and /etc/sysctl.d/x.conf");
    expect(() => collect({ files: [...dir.files, ...file.files] })).toThrow(
      "cannot be both a file and its directory",
    );
  });

  test("refuses two answers for the same file", () => {
    const one = { files: [{ path: "/etc/sysctl.d/x.conf", contents: "a" }] };
    expect(() => collect(one, one)).toThrow("/etc/sysctl.d/x.conf twice");
  });
});

describe("what the os stage answers other stages", () => {
  test("only the hypervisor's boot question: Kubespray picks its own volume plugin dir on a read-only /usr", async () => {
    const { default: coreos } = await import("../../../../plugins/os/coreos/index.ts");
    expect(Object.keys(coreos.hooks ?? {})).toEqual(["hypervisor:node-boot"]);
  });
});
