/**
 * The inventory and group vars are written into the stage's directory of the state dir, which the
 * core checks but does not walk: what is found where they go (a link left by hand, a directory, a
 * file of another mode) must not make kubehyve write anywhere else, or leave a file readable by
 * others.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { v } from "kubehyve";
import { writeStageFiles } from "../../../../plugins/k8s/kubespray/files.ts";
import { optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import { createRunner, runPlaybook } from "../../../../plugins/k8s/kubespray/runner.ts";
import { KubehyveError } from "../../../../src/lib/errors.ts";
import { LocalTarget } from "../../../../src/targets/local.ts";

let dir: string;
let stage: string;
let outside: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "kubehyve-stage-files-"));
  stage = join(dir, "state", "k8s");
  outside = join(dir, "outside");
  await mkdir(stage, { recursive: true, mode: 0o700 });
  await mkdir(outside, { recursive: true });
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const files = [
  { path: "inventory/hosts.yaml", content: "all: {}\n" },
  { path: "inventory/group_vars/k8s_cluster/kubehyve.yml", content: "kube_version: 1.35.4\n" },
];

describe("writing the stage's files", () => {
  test("makes the directories 0700 and the files 0600", async () => {
    await writeStageFiles(stage, files);
    for (const f of files) {
      expect(await readFile(join(stage, f.path), "utf8")).toBe(f.content);
      expect((await stat(join(stage, f.path))).mode & 0o777).toBe(0o600);
    }
    expect((await stat(join(stage, "inventory"))).mode & 0o777).toBe(0o700);
    expect((await stat(join(stage, "inventory", "group_vars", "k8s_cluster"))).mode & 0o777).toBe(0o700);
  });

  test("replaces a link left where a file goes, and leaves what it led to alone", async () => {
    const theirs = join(outside, "their-hosts.yaml");
    await writeFile(theirs, "theirs\n", { mode: 0o644 });
    await mkdir(join(stage, "inventory"), { mode: 0o700 });
    await symlink(theirs, join(stage, "inventory", "hosts.yaml"));
    await writeStageFiles(stage, files);
    expect(await readFile(theirs, "utf8")).toBe("theirs\n");
    expect((await lstat(join(stage, "inventory", "hosts.yaml"))).isFile()).toBe(true);
    expect(await readFile(join(stage, "inventory", "hosts.yaml"), "utf8")).toBe("all: {}\n");
  });

  test("a file of another mode ends 0600, and no temporary file is left", async () => {
    await mkdir(join(stage, "inventory"), { mode: 0o700 });
    await writeFile(join(stage, "inventory", "hosts.yaml"), "old\n", { mode: 0o644 });
    await writeStageFiles(stage, files);
    expect((await stat(join(stage, "inventory", "hosts.yaml"))).mode & 0o777).toBe(0o600);
    expect((await readdir(join(stage, "inventory"))).sort()).toEqual(["group_vars", "hosts.yaml"]);
  });

  test("refuses a directory that is a link, naming it, and writes nothing through it", async () => {
    await symlink(outside, join(stage, "inventory"));
    const error = await writeStageFiles(stage, files).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubehyveError);
    expect((error as Error).message).toContain(join(stage, "inventory"));
    expect((error as Error).message).toContain("symlink");
    expect(await readdir(outside)).toEqual([]);
  });

  test("refuses a directory where a file goes, naming it, and leaves what is in it", async () => {
    await mkdir(join(stage, "inventory", "hosts.yaml"), { recursive: true });
    await writeFile(join(stage, "inventory", "hosts.yaml", "other.yaml"), "x\n");
    const error = await writeStageFiles(stage, files).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubehyveError);
    expect((error as Error).message).toContain(join(stage, "inventory", "hosts.yaml"));
    expect(await readdir(join(stage, "inventory", "hosts.yaml"))).toEqual(["other.yaml"]);
  });

  test("a directory others may read is made private again", async () => {
    await mkdir(join(stage, "inventory"), { mode: 0o755 });
    await writeStageFiles(stage, files);
    expect((await stat(join(stage, "inventory"))).mode & 0o777).toBe(0o700);
  });

  test("a playbook's log is never written through a link, nor into a logs directory that is one, nor waits on a FIFO", async () => {
    const runner = {
      ...createRunner(v.parse(optionsSchema, { runner: { kind: "system" } }), stage, new LocalTarget(), "id"),
      command: () => ["true"],
    };
    const request = (logFile: string) => ({
      kubesprayDir: stage,
      inventoryDir: join(stage, "inventory"),
      playbook: "cluster.yml",
      logFile,
      workDir: stage,
    });
    const theirs = join(outside, "theirs.log");
    await writeFile(theirs, "theirs\n");
    await mkdir(join(stage, "logs"), { mode: 0o700 });
    await symlink(theirs, join(stage, "logs", "cluster.log"));
    await expect(runPlaybook(runner, request(join(stage, "logs", "cluster.log")))).rejects.toThrow(
      `${join(stage, "logs", "cluster.log")} is a symlink`,
    );
    await rm(join(stage, "logs"), { recursive: true });
    await symlink(outside, join(stage, "logs"));
    await expect(runPlaybook(runner, request(join(stage, "logs", "other.log")))).rejects.toThrow(
      `${join(stage, "logs")} is a symlink`,
    );
    await rm(join(stage, "logs"));
    await mkdir(join(stage, "logs"), { mode: 0o700 });
    // A FIFO without a reader: opening it to write would wait forever.
    Bun.spawnSync(["mkfifo", join(stage, "logs", "fifo.log")]);
    await expect(runPlaybook(runner, request(join(stage, "logs", "fifo.log")))).rejects.toThrow(
      `${join(stage, "logs", "fifo.log")} is a FIFO`,
    );
    expect(await readdir(outside)).toEqual(["theirs.log"]);
    expect(await readFile(theirs, "utf8")).toBe("theirs\n");
  });
});
