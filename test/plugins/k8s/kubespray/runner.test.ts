import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import {
  chmod,
  chown,
  copyFile,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type RunOptions, runOk, stringifyYaml, type Target, v } from "kubehyve";
import { kubesprayPlugin } from "../../../../plugins/k8s/kubespray/index.ts";
import { buildInventory } from "../../../../plugins/k8s/kubespray/inventory.ts";
import { handOverKubeconfig, pointServerAt } from "../../../../plugins/k8s/kubespray/kubeconfig.ts";
import { optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import type { AnsibleEvent } from "../../../../plugins/k8s/kubespray/progress.ts";
import {
  controlPathDirOf,
  createRunner,
  ensureControlPathDir,
  lineSplitter,
  playbookArgv,
  playbookEnv,
  runPlaybook,
  venvRequirements,
} from "../../../../plugins/k8s/kubespray/runner.ts";
import { CancelledError } from "../../../../src/lib/errors.ts";
import { LocalTarget } from "../../../../src/targets/local.ts";
import { labCluster } from "../../../lab/cluster.ts";
import { canMount, onFullDisk } from "../../../lab/full-disk.ts";
import { ORACLES } from "../../../lab/oracles.ts";
import { have } from "../../../lab/prereq.ts";
import { type Sshd, startSshd } from "../../../lab/sshd.ts";

const local = new LocalTarget();
const CLUSTER_ID = "0b4f6c2e-8d1a-4c3b-9e2f-5a6b7c8d9e0f";

/** ctx.local as seen by a user who points pip at a local wheelhouse; it records every argv. */
function withPipEnv(target: Target, env: Record<string, string>, seen: string[][]): Target {
  return {
    name: target.name,
    run(argv: readonly string[], opts: RunOptions = {}) {
      seen.push([...argv]);
      return target.run(argv, { ...opts, env: { ...opts.env, ...env } });
    },
    close: () => target.close(),
  };
}

/**
 * A wheelhouse holding one pure-Python wheel, laid out by hand after the binary distribution format
 * (PEP 427, packaging.python.org/en/latest/specifications/binary-distribution-format/) because no
 * build backend can be fetched here. Its console script `ansible-playbook` stands in for the one
 * Kubespray's pinned `ansible` package installs. pip installs it for real, with no index.
 */
async function standInWheelhouse(root: string): Promise<string> {
  const wheel = join(root, "kubehyve_stand_in-1.0.0-py3-none-any.whl");
  if (await Bun.file(wheel).exists()) return root;
  const src = join(root, "src");
  const info = "kubehyve_stand_in-1.0.0.dist-info";
  const files: Record<string, string> = {
    "kubehyve_stand_in/__init__.py": 'def main():\n    print("ansible-playbook stand-in 1.0.0")\n',
    [`${info}/METADATA`]: "Metadata-Version: 2.1\nName: kubehyve-stand-in\nVersion: 1.0.0\n",
    [`${info}/WHEEL`]:
      "Wheel-Version: 1.0\nGenerator: kubehyve-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    [`${info}/entry_points.txt`]: "[console_scripts]\nansible-playbook = kubehyve_stand_in:main\n",
  };
  files[`${info}/RECORD`] = `${[...Object.keys(files), `${info}/RECORD`].map((f) => `${f},,`).join("\n")}\n`;
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(src, dirname(path)), { recursive: true });
    await writeFile(join(src, path), content);
  }
  // Python's own zipfile CLI stores each argument under its base name, so the wheel's root is right.
  await runOk(local, ["python3", "-m", "zipfile", "-c", wheel, "kubehyve_stand_in", info], { cwd: src });
  return root;
}

describe("venv requirements", () => {
  test("install Kubespray's pins except cryptography, which comes from the system packages", async () => {
    const txt = await readFile(join(ORACLES, "kubespray/requirements.txt"), "utf8");
    const { install, fromSystem } = venvRequirements(txt);
    expect(fromSystem).toEqual(["cryptography==50.0.0"]);
    expect(install).toEqual([
      "ansible==11.13.0",
      "bcrypt<6",
      "jmespath==1.1.0",
      "netaddr==1.3.0",
      "passlib==1.7.4",
    ]);
  });
});

describe("the ansible-playbook command", () => {
  const runner = createRunner(
    v.parse(optionsSchema, { runner: { kind: "system" } }),
    "/state/k8s",
    local,
    CLUSTER_ID,
  );
  const req = {
    kubesprayDir: "/state/k8s/kubespray-v2.31.0",
    inventoryDir: "/state/k8s/inventory",
    playbook: "scale.yml",
    logFile: "/state/k8s/logs/x.log",
    workDir: "/state/k8s",
  };

  test("is an argv list with the inventory, become, the skipped tags, the limit and the extra vars as one JSON word", () => {
    const argv = playbookArgv(runner, {
      ...req,
      limit: ["w2", "w3"],
      extraVars: { note: "a b; rm -rf / 'x' $(y)" },
    });
    expect(argv).toEqual([
      "ansible-playbook",
      "-i",
      "/state/k8s/inventory/hosts.yaml",
      "-b",
      // Every run skips Kubespray's system_packages role, whose dnf task fails on Fedora CoreOS.
      "--skip-tags",
      "system-packages",
      "--limit",
      "w2,w3",
      "-e",
      JSON.stringify({ note: "a b; rm -rf / 'x' $(y)" }),
      "scale.yml",
    ]);
  });

  test("runs with the jsonl callback, Kubespray's ansible.cfg and known hosts in the state dir", () => {
    const env = playbookEnv(req);
    expect(env.ANSIBLE_STDOUT_CALLBACK).toBe("ansible.posix.jsonl");
    expect(env.ANSIBLE_CONFIG).toBe("/state/k8s/kubespray-v2.31.0/ansible.cfg");
    expect(env.ANSIBLE_HOST_KEY_CHECKING).toBe("True");
    expect(env.ANSIBLE_SSH_ARGS).toContain("-o UserKnownHostsFile=/state/k8s/known_hosts");
    expect(env.ANSIBLE_SSH_ARGS).toContain("-o StrictHostKeyChecking=accept-new");
    expect(env.ANSIBLE_CACHE_PLUGIN_CONNECTION).toBe("/state/k8s/facts");
    expect(env.ANSIBLE_SSH_CONTROL_PATH_DIR).toBe("/state/k8s/cp");
    expect(env.ANSIBLE_SSH_CONTROL_PATH).toBe("");
  });
});

describe("the line splitter", () => {
  test("hands streamed output over line by line, the last line even without a newline", () => {
    const lines: string[] = [];
    const split = lineSplitter((l) => lines.push(l));
    for (const chunk of ["one\ntw", "o\n", "", "three\nfo", "ur"]) split.push(chunk);
    expect(lines).toEqual(["one", "two", "three"]);
    split.end();
    expect(lines).toEqual(["one", "two", "three", "four"]);
  });

  test("drops a line longer than it may be, keeping none of it, and reads the lines after it", () => {
    const lines: string[] = [];
    const dropped: number[] = [];
    const split = lineSplitter((l) => lines.push(l), { maxLength: 10, onDropped: (n) => dropped.push(n) });
    for (const chunk of ["short\n0123456789", "0123", "456789\nnext\n", "x".repeat(11)]) split.push(chunk);
    split.end();
    expect(lines).toEqual(["short", "next"]);
    expect(dropped).toEqual([20, 11]);
  });

  test("reads an endless line of output in one pass: a flood costs its length, not its square", () => {
    // 256 MiB in the 64 KiB chunks a pipe gives: splitting the whole line again at every chunk
    // took minutes and held all of it.
    const lines: string[] = [];
    const dropped: number[] = [];
    const split = lineSplitter((l) => lines.push(l), { onDropped: (n) => dropped.push(n) });
    const chunk = "x".repeat(64 * 1024);
    for (let i = 0; i < 4096; i++) split.push(chunk);
    split.push('\n{"event": "v2_playbook_on_stats"}\n');
    split.end();
    expect(dropped).toEqual([256 * 1024 * 1024]);
    expect(lines).toEqual(['{"event": "v2_playbook_on_stats"}']);
  }, 30_000);
});

describe("runner prerequisites", () => {
  test("an ansible-playbook that cannot run is an error naming the option", async () => {
    const runner = createRunner(
      v.parse(optionsSchema, {
        runner: { kind: "system", ansiblePlaybook: "/nonexistent/ansible-playbook" },
      }),
      "/tmp",
      local,
      CLUSTER_ID,
    );
    expect(await runner.prerequisites()).toEqual([
      expect.objectContaining({
        code: "kubespray.runner-missing",
        severity: "error",
        path: "stages.k8s.runner.ansiblePlaybook",
      }),
    ]);
  });

  test("an ansible-playbook another user owns or could swap is refused before it is run", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kh-playbook-"));
    try {
      const ran = join(dir, "ran");
      // It records that it ran: the version probe of check must not run what it refuses, as root.
      const script = `#!/bin/sh\necho ran >> ${ran}\necho 'ansible-playbook [core 2.18.1]'\n`;
      const make = async (path: string, mode = 0o755) => {
        await mkdir(dirname(path), { recursive: true });
        await writeFile(path, script, { mode });
        await chmod(path, mode);
        return path;
      };
      const theirs = await make(join(dir, "theirs", "ansible-playbook"));
      await chown(theirs, 65534, 65534);
      const open = await make(join(dir, "open", "ansible-playbook"), 0o757);
      const shared = join(dir, "shared");
      const below = await make(join(shared, "bin", "ansible-playbook"));
      await chmod(shared, 0o777);
      const link = join(dir, "links", "ansible-playbook");
      await mkdir(dirname(link));
      await symlink(below, link);
      const fine = await make(join(dir, "fine", "ansible-playbook"));
      for (const [path, why] of [
        [theirs, "it belongs to uid 65534"],
        [open, "others can write it"],
        [below, `others can write ${shared}, on the way to it`],
        [link, `it leads to ${below}, and others can write ${shared}, on the way to it`],
      ] as const) {
        const options = v.parse(optionsSchema, { runner: { kind: "system", ansiblePlaybook: path } });
        const refusal = expect.objectContaining({
          code: "kubespray.runner-unsafe",
          severity: "error",
          summary: `the ansible-playbook ${path} is not safe to run as root: ${why}`,
          hint: expect.stringContaining(`chmod go-w ${path}`),
          path: "stages.k8s.runner.ansiblePlaybook",
        });
        expect(await createRunner(options, dir, local, CLUSTER_ID).prerequisites()).toEqual([refusal]);
        expect(kubesprayPlugin.validate!({ cluster: labCluster(), options })).toEqual(
          expect.arrayContaining([refusal]),
        );
      }
      expect(existsSync(ran)).toBe(false);
      // One of its own, in directories only it can write (below the sticky /tmp), is run.
      const options = v.parse(optionsSchema, { runner: { kind: "system", ansiblePlaybook: fine } });
      expect(await createRunner(options, dir, local, CLUSTER_ID).prerequisites()).toEqual([
        expect.objectContaining({ code: "kubespray.runner", severity: "ok" }),
      ]);
      expect(await readFile(ran, "utf8")).toBe("ran\n");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test.skipIf(!have("ansible-playbook", "ansible"))(
    "a working ansible-playbook is reported with its version",
    async () => {
      const runner = createRunner(
        v.parse(optionsSchema, { runner: { kind: "system" } }),
        "/tmp",
        local,
        CLUSTER_ID,
      );
      const [found] = await runner.prerequisites();
      expect(found).toMatchObject({
        code: "kubespray.runner",
        severity: "ok",
        summary: expect.stringMatching(/^ansible-playbook: ansible-playbook \[core \d+\.\d+\.\d+\]$/),
      });
    },
  );

  test("a missing Python for the venv is an error with the package to install", async () => {
    const runner = createRunner(
      v.parse(optionsSchema, { runner: { kind: "venv", python: "python3.99" } }),
      "/tmp",
      local,
      CLUSTER_ID,
    );
    expect(await runner.prerequisites()).toEqual([
      expect.objectContaining({
        code: "kubespray.python-missing",
        severity: "error",
        hint: expect.stringContaining("pkg install python311"),
      }),
    ]);
  });
});

describe.skipIf(!have("python3", "python3-venv"))("the venv runner", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kubehyve-venv-"));
  });
  // Venvs are thousands of files: removing them takes a while on a busy machine.
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  test("checks Python, venv and the system's cryptography", async () => {
    const runner = createRunner(
      v.parse(optionsSchema, { runner: { kind: "venv", python: "python3" } }),
      dir,
      local,
      CLUSTER_ID,
    );
    const found = await runner.prerequisites();
    expect(found.map((d) => [d.code, d.severity])).toEqual([
      ["kubespray.python", "ok"],
      ["kubespray.cryptography", "ok"],
    ]);
  });

  test("makes a venv over the system site packages, where cryptography comes from the system", async () => {
    // A tree whose only requirement is one the system provides: the venv needs nothing from PyPI.
    const tree = join(dir, "kubespray");
    await mkdir(tree, { recursive: true });
    await writeFile(
      join(tree, "requirements.txt"),
      "# Needed for community.crypto module\ncryptography==50.0.0\n",
    );
    const venvDir = join(dir, "venv");
    const runner = createRunner(
      v.parse(optionsSchema, { runner: { kind: "venv", python: "python3", dir: venvDir } }),
      dir,
      local,
      CLUSTER_ID,
    );
    expect(await runner.isPrepared(tree)).toBe(false);
    await runner.prepare(tree);
    const r = await local.run([
      join(venvDir, "bin", "python"),
      "-c",
      "import sys, cryptography; print(sys.prefix)",
    ]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout.trim()).toBe(venvDir);
    expect(runner.command()).toEqual([join(venvDir, "bin", "ansible-playbook")]);
    // No ansible-playbook was installed into it, so it is not ready to run Kubespray.
    expect(await runner.isPrepared(tree)).toBe(false);
  }, 120_000);

  test("installs every requirement but cryptography with pip, after which the venv runs ansible-playbook", async () => {
    const wheelhouse = await standInWheelhouse(join(dir, "wheelhouse"));
    const tree = join(dir, "kubespray-pins");
    await mkdir(tree, { recursive: true });
    // Kubespray's format. With no index, passing the cryptography pin to pip would fail the install:
    // the system's cryptography (another version) does not satisfy it and the wheelhouse lacks it.
    const requirements = [
      "kubehyve-stand-in==1.0.0",
      "# Needed for community.crypto module",
      "cryptography==50.0.0",
      "",
    ].join("\n");
    await writeFile(join(tree, "requirements.txt"), requirements);
    const venvDir = join(dir, "venv-pins");
    const seen: string[][] = [];
    const target = withPipEnv(local, { PIP_NO_INDEX: "1", PIP_FIND_LINKS: wheelhouse }, seen);
    const runner = createRunner(
      v.parse(optionsSchema, { runner: { kind: "venv", python: "python3", dir: venvDir } }),
      dir,
      target,
      CLUSTER_ID,
    );
    await runner.prepare(tree);
    expect(seen).toEqual([
      ["python3", "-m", "venv", "--system-site-packages", venvDir],
      [
        join(venvDir, "bin", "python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "kubehyve-stand-in==1.0.0",
      ],
    ]);
    expect(await runner.isPrepared(tree)).toBe(true);
    const [program] = runner.command();
    expect((await runOk(local, [program!])).stdout).toBe("ansible-playbook stand-in 1.0.0\n");
    const where = await runOk(local, [
      join(venvDir, "bin", "python"),
      "-c",
      "import cryptography, kubehyve_stand_in; print(kubehyve_stand_in.__file__); print(cryptography.__file__)",
    ]);
    const [standIn, cryptography] = where.stdout.trim().split("\n");
    expect(standIn!.startsWith(`${venvDir}/`)).toBe(true);
    expect(cryptography!.startsWith(`${venvDir}/`)).toBe(false);
    // Another release's requirements make the venv again.
    await writeFile(join(tree, "requirements.txt"), `${requirements}jmespath==1.1.0\n`);
    expect(await runner.isPrepared(tree)).toBe(false);
  }, 120_000);

  test("a requirement pip cannot install fails the preparation with pip's words and leaves no prepared venv", async () => {
    const wheelhouse = await standInWheelhouse(join(dir, "wheelhouse"));
    const tree = join(dir, "kubespray-missing");
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, "requirements.txt"), "kubehyve-stand-in==2.0.0\n");
    const venvDir = join(dir, "venv-missing");
    const target = withPipEnv(local, { PIP_NO_INDEX: "1", PIP_FIND_LINKS: wheelhouse }, []);
    const runner = createRunner(
      v.parse(optionsSchema, { runner: { kind: "venv", python: "python3", dir: venvDir } }),
      dir,
      target,
      CLUSTER_ID,
    );
    await expect(runner.prepare(tree)).rejects.toThrow(
      /bin\/python -m pip install exited 1: .*No matching distribution found for kubehyve-stand-in==2\.0\.0/,
    );
    expect(await runner.isPrepared(tree)).toBe(false);
  }, 120_000);
});

describe.skipIf(!have("python3", "python3-venv"))("the venv runner's directory", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kubehyve-venv-owner-"));
  });
  // Venvs are thousands of files: removing them takes a while on a busy machine.
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  async function treeWith(requirements: string): Promise<string> {
    const tree = await mkdtemp(join(dir, "tree-"));
    await writeFile(join(tree, "requirements.txt"), requirements);
    return tree;
  }
  const runnerAt = (venvDir: string, clusterId = CLUSTER_ID) =>
    createRunner(
      v.parse(optionsSchema, { runner: { kind: "venv", python: "python3", dir: venvDir } }),
      join(dir, "state", "k8s"),
      local,
      clusterId,
    );

  test("a directory someone else made is refused, and nothing in it is removed", async () => {
    const theirs = join(dir, "their-project");
    await mkdir(join(theirs, "src"), { recursive: true });
    await writeFile(join(theirs, "src", "precious.txt"), "keep me\n");
    const runner = runnerAt(theirs);
    expect(await runner.prerequisites()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          code: "kubespray.runner-dir-foreign",
          severity: "error",
          path: "stages.k8s.runner.dir",
          summary: expect.stringContaining(
            `${theirs} was not made by kubehyve: it holds 1 entry and no .kubehyve-venv marker`,
          ),
        }),
      ]),
    );
    await expect(runner.prepare(await treeWith("cryptography==50.0.0\n"))).rejects.toThrow(
      "was not made by kubehyve",
    );
    expect(await readFile(join(theirs, "src", "precious.txt"), "utf8")).toBe("keep me\n");
  });

  test("a directory another user owns or others can write is refused: they could swap the ansible-playbook root runs", async () => {
    // Empty, so it would be taken; whoever owns it (or may write it, or the directory above it)
    // could rename bin/ once the venv is made and put an ansible-playbook of their own there.
    const tree = await treeWith("cryptography==50.0.0\n");
    const theirs = join(dir, "nobodys-venv");
    await mkdir(theirs);
    await chown(theirs, 65534, 65534);
    const open = join(dir, "open-venv");
    await mkdir(open);
    await chmod(open, 0o777);
    const shared = join(dir, "shared");
    await mkdir(shared);
    await chmod(shared, 0o777);
    const below = join(shared, "venv");
    for (const [venvDir, why] of [
      [theirs, "it belongs to uid 65534"],
      [open, "others can write it"],
      [below, `others can write ${shared}, above it`],
    ] as const) {
      const runner = runnerAt(venvDir);
      expect(await runner.prerequisites()).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            code: "kubespray.runner-dir-foreign",
            summary: `the runner directory ${venvDir} was not made by kubehyve: ${why}`,
          }),
        ]),
      );
      await expect(runner.prepare(tree)).rejects.toThrow(why);
      expect(existsSync(join(venvDir, ".kubehyve-venv"))).toBe(false);
    }
  });

  test("a symlink is refused as the venv directory", async () => {
    const elsewhere = join(dir, "elsewhere");
    await mkdir(elsewhere, { recursive: true });
    const link = join(dir, "venv-link");
    await symlink(elsewhere, link);
    await expect(runnerAt(link).prepare(await treeWith("cryptography==50.0.0\n"))).rejects.toThrow(
      "it is a symlink",
    );
  });

  test("an empty directory is taken and marked with the cluster's id, then made again as its own", async () => {
    const venvDir = join(dir, "empty-venv");
    await mkdir(venvDir);
    const runner = runnerAt(venvDir);
    const tree = await treeWith("cryptography==50.0.0\n");
    await runner.prepare(tree);
    expect(await readFile(join(venvDir, ".kubehyve-venv"), "utf8")).toBe(`${CLUSTER_ID}\n`);
    expect((await stat(join(venvDir, ".kubehyve-venv"))).mode & 0o777).toBe(0o600);
    await writeFile(join(venvDir, "left-over"), "");
    await runner.prepare(tree);
    // Its own directory is made again from scratch.
    expect(existsSync(join(venvDir, "left-over"))).toBe(false);
    expect(await readFile(join(venvDir, ".kubehyve-venv"), "utf8")).toBe(`${CLUSTER_ID}\n`);
  }, 120_000);

  test("another cluster's venv is refused, naming its owner", async () => {
    const venvDir = join(dir, "shared-venv");
    await mkdir(venvDir);
    await writeFile(join(venvDir, ".kubehyve-venv"), "7d0c9a8e-1111-4222-8333-944455556666\n");
    await writeFile(join(venvDir, "pyvenv.cfg"), "home = /usr/bin\n");
    const runner = runnerAt(venvDir);
    await expect(runner.prepare(await treeWith("cryptography==50.0.0\n"))).rejects.toThrow(
      "belongs to another cluster (id 7d0c9a8e-1111-4222-8333-944455556666)",
    );
    expect(existsSync(join(venvDir, "pyvenv.cfg"))).toBe(true);
  });

  test("config validate refuses a foreign runner directory and system or unsafe paths", () => {
    const theirs = join(dir, "their-project");
    const parse = (runner: Record<string, unknown>) =>
      v.safeParse(optionsSchema, { runner: { kind: "venv", ...runner } });
    for (const bad of [
      "/",
      "/usr/local",
      "/etc/kubehyve",
      "relative/venv",
      "/opt/a b",
      "/opt/x/../y",
      "/opt/$(id)",
      "/opt/x/",
    ]) {
      expect(parse({ dir: bad }).success).toBe(false);
    }
    for (const bad of ["python3; rm -rf /", "/usr/bin/perl", "../python3", "py"]) {
      expect(parse({ python: bad }).success).toBe(false);
    }
    expect(parse({ python: "/usr/local/bin/python3.11", dir: "/opt/kubehyve/venv" }).success).toBe(true);
    const options = v.parse(optionsSchema, { runner: { kind: "venv", dir: theirs } });
    expect(kubesprayPlugin.validate!({ cluster: labCluster(), options })).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "kubespray.runner-dir-foreign", path: "stages.k8s.runner.dir" }),
      ]),
    );
  });
});

describe("a playbook that floods its output", () => {
  test("keeps every byte in the log, still reads the events after the flood, and notes the exit on a line of its own", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-flood-"));
    try {
      const task =
        '{"_event":"v2_playbook_on_task_start","hosts":{},"task":{"id":"t1","name":"after the flood","path":"x.yml:1"}}';
      // 40 MiB on one line, more than a line read for progress may be, then an event and a last
      // line without a newline.
      const script = `head -c 41943040 /dev/zero | tr '\\0' x; printf '\\n%s\\n' '${task}'; printf 'no newline'`;
      const runner = {
        ...createRunner(v.parse(optionsSchema, { runner: { kind: "system" } }), dir, local, CLUSTER_ID),
        command: () => ["sh", "-c", script, "ansible-playbook"],
      };
      const events: AnsibleEvent[] = [];
      const logFile = join(dir, "logs", "flood.log");
      const r = await runPlaybook(runner, {
        kubesprayDir: dir,
        inventoryDir: dir,
        playbook: "cluster.yml",
        logFile,
        workDir: dir,
        onEvent: (e) => events.push(e),
      });
      expect(r.code).toBe(0);
      expect(events.map((e) => (e.type === "task" ? e.name : e.type))).toEqual(["after the flood"]);
      const log = await readFile(logFile, "utf8");
      const lines = log.split("\n");
      expect(lines[0]).toStartWith("# ");
      expect(lines[1]).toBe("x".repeat(41943040));
      expect(lines.slice(2)).toEqual([task, "no newline", "# exit 0", ""]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("a playbook whose log fills the disk", () => {
  test.skipIf(!canMount)(
    "runs to its end and then fails naming the log, rather than ending kubehyve with a stray error",
    () => {
      const runnerModule = join(import.meta.dir, "../../../../plugins/k8s/kubespray/runner.ts");
      const result = onFullDisk(
        // Room for the directories, the log's first page and little more.
        "mkdir -m 700 k8s k8s/logs k8s/facts k8s/cp && : > k8s/logs/cluster.log && chmod 600 k8s/logs/cluster.log && dd if=/dev/zero of=room bs=4k count=2 2>/dev/null",
        `const fs = await import("node:fs");
         const { createRunner, runPlaybook } = await import(${JSON.stringify(runnerModule)});
         const { LocalTarget } = await import(${JSON.stringify(join(import.meta.dir, "../../../../src/targets/local.ts"))});
         const { v } = await import(${JSON.stringify(join(import.meta.dir, "../../../../src/api.ts"))});
         const { optionsSchema } = await import(${JSON.stringify(join(import.meta.dir, "../../../../plugins/k8s/kubespray/options.ts"))});
         fs.rmSync("room");
         const dir = process.cwd() + "/k8s";
         const runner = { ...createRunner(v.parse(optionsSchema, { runner: { kind: "system" } }), dir, new LocalTarget(), "id"),
           command: () => ["sh", "-c", "head -c 1000000 /dev/zero | tr '\\\\0' x; echo; touch ran-to-the-end", "ansible-playbook"] };
         let outcome;
         try {
           outcome = await runPlaybook(runner, { kubesprayDir: dir, inventoryDir: dir, playbook: "cluster.yml",
             logFile: dir + "/logs/cluster.log", workDir: dir });
         } catch (e) { outcome = { name: e.name, message: e.message }; }
         console.log(JSON.stringify({ outcome, ran: fs.existsSync(dir + "/ran-to-the-end") }));`,
      );
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({
        outcome: {
          name: "KubehyveError",
          message: expect.stringMatching(
            /^ansible-playbook cluster\.yml exited 0, but its log .*\/k8s\/logs\/cluster\.log could not be written: ENOSPC: no space left on device/,
          ),
        },
        ran: true,
      });
    },
  );
});

describe.skipIf(!(have("ansible-playbook", "ansible") && have("sudo", "sudo")))("a playbook run", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kubehyve-playbook-"));
  });
  // Venvs are thousands of files: removing them takes a while on a busy machine.
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  test("runs with none of the operator's Ansible or Python settings, which would change what it does", async () => {
    const tree = join(dir, "env-kubespray");
    const inventoryDir = join(dir, "env-inventory");
    await mkdir(tree, { recursive: true });
    await mkdir(inventoryDir, { recursive: true });
    await writeFile(join(tree, "ansible.cfg"), "[defaults]\ninterpreter_python = auto_silent\n");
    await writeFile(
      join(inventoryDir, "hosts.yaml"),
      "all:\n  hosts:\n    lab:\n      ansible_connection: local\n",
    );
    const marker = join(dir, "env-ran");
    await writeFile(
      join(tree, "touch.yml"),
      [
        "- name: One task",
        "  hosts: all",
        "  gather_facts: false",
        "  tasks:",
        "    - name: Touch the marker",
        "      ansible.builtin.file: { path: '{{ marker }}', state: touch }",
        "",
      ].join("\n"),
    );
    const saved = { ...process.env };
    // An operator's shell: only tasks tagged "other" would run, from someone else's roles.
    Object.assign(process.env, {
      ANSIBLE_RUN_TAGS: "other",
      ANSIBLE_ROLES_PATH: "/nonexistent/roles",
      PYTHONPATH: "/nonexistent/python",
    });
    try {
      const runner = createRunner(
        v.parse(optionsSchema, { runner: { kind: "system" } }),
        dir,
        local,
        CLUSTER_ID,
      );
      const r = await runPlaybook(runner, {
        kubesprayDir: tree,
        inventoryDir,
        playbook: "touch.yml",
        extraVars: { marker },
        logFile: join(dir, "logs", "env.log"),
        workDir: dir,
      });
      expect(r.code).toBe(0);
      expect(existsSync(marker)).toBe(true);
    } finally {
      for (const name of ["ANSIBLE_RUN_TAGS", "ANSIBLE_ROLES_PATH", "PYTHONPATH"]) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
  }, 60_000);

  test("runs without the packages of the user's own site directory, which would come before the system's", async () => {
    const tree = join(dir, "site-kubespray");
    const inventoryDir = join(dir, "site-inventory");
    await mkdir(tree, { recursive: true });
    await mkdir(inventoryDir, { recursive: true });
    await writeFile(join(tree, "ansible.cfg"), "[defaults]\ninterpreter_python = auto_silent\n");
    await writeFile(
      join(inventoryDir, "hosts.yaml"),
      "all:\n  hosts:\n    lab:\n      ansible_connection: local\n",
    );
    await writeFile(
      join(tree, "ping.yml"),
      "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n",
    );
    // `pip install --user` by root: Python puts ~/.local's packages before the system's (and the
    // venv's system site packages, pkg's cryptography among them). Here a jinja2 that breaks.
    const home = join(dir, "site-home");
    const userSite = (
      await runOk(local, ["python3", "-c", "import site; print(site.getusersitepackages())"], {
        env: { HOME: home },
      })
    ).stdout.trim();
    expect(userSite.startsWith(`${home}/`)).toBe(true);
    await mkdir(join(userSite, "jinja2"), { recursive: true });
    await writeFile(
      join(userSite, "jinja2", "__init__.py"),
      'raise ImportError("a jinja2 of the user\'s own")\n',
    );
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      const runner = createRunner(
        v.parse(optionsSchema, { runner: { kind: "system" } }),
        dir,
        local,
        CLUSTER_ID,
      );
      const logFile = join(dir, "logs", "site.log");
      const r = await runPlaybook(runner, {
        kubesprayDir: tree,
        inventoryDir,
        playbook: "ping.yml",
        logFile,
        workDir: dir,
      });
      expect({ code: r.code, log: (await readFile(logFile, "utf8")).includes("of the user's own") }).toEqual({
        code: 0,
        log: false,
      });
    } finally {
      process.env.HOME = saved;
    }
  }, 60_000);

  test("stops with its whole process group when the run is interrupted, its output kept in a private log", async () => {
    const tree = join(dir, "kubespray");
    const inventoryDir = join(dir, "inventory");
    await mkdir(tree, { recursive: true });
    await mkdir(inventoryDir, { recursive: true });
    await writeFile(join(tree, "ansible.cfg"), "[defaults]\ninterpreter_python = auto_silent\n");
    await writeFile(
      join(inventoryDir, "hosts.yaml"),
      "all:\n  hosts:\n    lab:\n      ansible_connection: local\n",
    );
    // The task's shell becomes the sleep (exec), so its pid is the process that must end.
    await writeFile(
      join(tree, "long.yml"),
      [
        "- name: A long task",
        "  hosts: all",
        "  gather_facts: false",
        "  tasks:",
        "    - name: Wait a minute",
        "      ansible.builtin.shell: echo $$ > {{ pid_file }} && exec sleep 60",
        "",
      ].join("\n"),
    );
    const pidFile = join(dir, "task.pid");
    const logFile = join(dir, "logs", "long.log");
    const events: AnsibleEvent[] = [];
    const controller = new AbortController();
    const runner = createRunner(
      v.parse(optionsSchema, { runner: { kind: "system" } }),
      dir,
      local,
      CLUSTER_ID,
    );
    const running = runPlaybook(runner, {
      kubesprayDir: tree,
      inventoryDir,
      playbook: "long.yml",
      extraVars: { pid_file: pidFile },
      logFile,
      workDir: dir,
      signal: controller.signal,
      onEvent: (e) => events.push(e),
    });
    const failed = running.then(
      () => undefined,
      (e: unknown) => e,
    );
    const pid = await waitFor(async () => Number((await readFile(pidFile, "utf8").catch(() => "")).trim()));
    controller.abort();
    const stoppedAt = Date.now();
    expect(await failed).toBeInstanceOf(CancelledError);
    expect(Date.now() - stoppedAt).toBeLessThan(5_000);
    expect(await waitFor(async () => !isAlive(pid))).toBe(true);
    // The events came through the streamed lines before the interruption.
    expect(events.some((e) => e.type === "task")).toBe(true);
    expect((await stat(logFile)).mode & 0o777).toBe(0o600);
    const log = await readFile(logFile, "utf8");
    expect(log).toContain('"_event":"v2_playbook_on_task_start"');
    expect(log.trimEnd().split("\n").at(-1)).toMatch(
      /^# local: interrupted `.*ansible-playbook .* long\.yml`$/,
    );
  }, 60_000);
});

describe.skipIf(!(have("ansible-playbook", "ansible") && have("sshd", "openssh-server")))(
  "Ansible's ssh control sockets",
  () => {
    let sshd: Sshd;
    let dir: string;
    beforeAll(async () => {
      sshd = await startSshd();
      dir = await mkdtemp(join(tmpdir(), "kubehyve-cp-"));
    });
    afterAll(async () => {
      await sshd?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    /** Ansible's own name for a host's socket: sha1 of `host-port-user`, cut to 10 (ssh.py _create_control_path). */
    const socketName = () =>
      new Bun.CryptoHasher("sha1").update(`127.0.0.1-${sshd.port}-${sshd.user}`).digest("hex").slice(0, 10);

    /** One raw task on the loopback sshd, with HOME elsewhere so that ~/.ansible/cp is seen. */
    async function runOnLoopback(workDir: string, home: string, cfg = "", identityFile = sshd.identityFile) {
      const tree = join(dir, "tree");
      const inventoryDir = join(dir, "inventory");
      await mkdir(tree, { recursive: true });
      await mkdir(inventoryDir, { recursive: true });
      // Kubespray's ansible.cfg turns on ControlPersist; a control_path there would move the socket.
      await writeFile(
        join(tree, "ansible.cfg"),
        `[defaults]\ninterpreter_python = auto_silent\n[ssh_connection]\nssh_args = -o ControlMaster=auto -o ControlPersist=30m\n${cfg}`,
      );
      await writeFile(
        join(inventoryDir, "hosts.yaml"),
        stringifyYaml({
          all: {
            hosts: {
              lab: {
                ansible_host: "127.0.0.1",
                ansible_port: sshd.port,
                ansible_user: sshd.user,
                ansible_ssh_private_key_file: identityFile,
              },
            },
          },
        }),
      );
      await writeFile(
        join(tree, "raw.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.raw: 'true'\n",
      );
      await mkdir(workDir, { recursive: true, mode: 0o700 });
      const runner = createRunner(
        v.parse(optionsSchema, { runner: { kind: "system" } }),
        workDir,
        local,
        CLUSTER_ID,
      );
      const saved = process.env.HOME;
      process.env.HOME = home;
      try {
        return await runPlaybook(runner, {
          kubesprayDir: tree,
          inventoryDir,
          playbook: "raw.yml",
          logFile: join(workDir, "logs", "raw.log"),
          workDir,
        });
      } finally {
        process.env.HOME = saved;
      }
    }

    /** Ends the master Ansible left behind (ControlPersist=30m). */
    async function stopMaster(socket: string) {
      await local.run(["ssh", "-F", "none", "-o", `ControlPath=${socket}`, "-O", "exit", "lab"], {
        timeoutMs: 10_000,
      });
    }

    test("are kept in a private directory of the state dir, not in the shared ~/.ansible/cp", async () => {
      const workDir = join(dir, "state", "k8s");
      const home = join(dir, "home");
      const r = await runOnLoopback(workDir, home, "control_path = %(directory)s/ansible-%%r@%%h:%%p\n");
      const log = await readFile(join(workDir, "logs", "raw.log"), "utf8");
      expect({ code: r.code, log }).toMatchObject({ code: 0 });
      const socket = join(controlPathDirOf(workDir), socketName());
      try {
        expect(controlPathDirOf(workDir)).toBe(join(workDir, "cp"));
        expect((await lstat(socket)).isSocket()).toBe(true);
        expect((await stat(controlPathDirOf(workDir))).mode & 0o777).toBe(0o700);
        expect(existsSync(join(home, ".ansible", "cp"))).toBe(false);
      } finally {
        await stopMaster(socket);
      }
    }, 60_000);

    test("a state dir with a % in its path keeps Ansible's pins in its own known_hosts, which ssh would read as a token", async () => {
      // ssh expands %-tokens in UserKnownHostsFile (%p: the port), so the pins went elsewhere.
      const workDir = join(dir, "100%p", "k8s");
      // The cluster key in that state dir too, as the inventory names it.
      const key = join(dir, "100%p", "id_ed25519");
      await mkdir(workDir, { recursive: true, mode: 0o700 });
      await copyFile(sshd.identityFile, key);
      const { vars } = buildInventory({
        cluster: labCluster(),
        options: v.parse(optionsSchema, {}),
        privateKeyPath: key,
      }).all as { vars: { ansible_ssh_private_key_file: string } };
      const r = await runOnLoopback(
        workDir,
        join(dir, "home-percent"),
        "",
        vars.ansible_ssh_private_key_file,
      );
      const socket = join(controlPathDirOf(workDir), socketName());
      try {
        expect(r.code).toBe(0);
        expect(await readFile(join(workDir, "known_hosts"), "utf8")).toContain(`[127.0.0.1]:${sshd.port} `);
      } finally {
        await stopMaster(socket);
        await rm(controlPathDirOf(workDir), { recursive: true, force: true });
      }
    }, 60_000);

    test("a state dir whose path Ansible's and ssh's quoting would change is refused before any host is touched", async () => {
      for (const odd of ["o'brien", 'say"hi', "back\\slash", "$HOME", "two words"]) {
        const workDir = join(dir, odd, "k8s");
        await expect(runOnLoopback(workDir, join(dir, "home-odd"))).rejects.toThrow(
          `the state dir ${workDir} holds a character that Ansible's ssh_args cannot carry`,
        );
        expect(existsSync(join(workDir, "logs"))).toBe(false);
      }
    });

    test("go to a private directory of this user in the temp dir when the state dir's path is too long for a socket", async () => {
      // FreeBSD's sun_path holds 103 bytes and a NUL; ssh binds `<path>.<16 characters>` first.
      const workDir = join(dir, "a".repeat(60), "state", "k8s");
      const home = join(dir, "home-long");
      const cpDir = controlPathDirOf(workDir);
      expect(cpDir.startsWith(join(tmpdir(), `kubehyve-${process.getuid!()}`, "ansible-"))).toBe(true);
      expect(Buffer.byteLength(join(cpDir, socketName())) + 17).toBeLessThan(104);
      const r = await runOnLoopback(workDir, home);
      const socket = join(cpDir, socketName());
      try {
        expect(r.code).toBe(0);
        expect((await lstat(socket)).isSocket()).toBe(true);
        expect((await stat(cpDir)).mode & 0o777).toBe(0o700);
      } finally {
        await stopMaster(socket);
        await rm(cpDir, { recursive: true, force: true });
      }
    }, 60_000);

    test("are measured where Ansible puts them: past the links of the state dir's path", async () => {
      // Ansible resolves control_path_dir (unfrackpath: realpath), as FreeBSD's /home leads to
      // /usr/home: a short path through a link may lead to one too long for a socket.
      const deep = join(dir, "d".repeat(70));
      await mkdir(join(deep, "k8s"), { recursive: true, mode: 0o700 });
      const link = join(dir, "short");
      await symlink(deep, link);
      const workDir = join(link, "k8s");
      const cpDir = controlPathDirOf(workDir);
      expect(cpDir.startsWith(join(tmpdir(), `kubehyve-${process.getuid!()}`, "ansible-"))).toBe(true);
      const r = await runOnLoopback(workDir, join(dir, "home-link"));
      const socket = join(cpDir, socketName());
      try {
        expect(r.code).toBe(0);
        expect((await lstat(socket)).isSocket()).toBe(true);
      } finally {
        await stopMaster(socket);
        await rm(cpDir, { recursive: true, force: true });
      }
    }, 60_000);

    test("a fallback directory others could change is refused before any host is touched", async () => {
      const workDir = join(dir, "b".repeat(80), "k8s");
      // A temp dir of its own, short enough to leave room for the socket.
      const tmp = await mkdtemp(join(tmpdir(), "t"));
      const theirs = controlPathDirOf(workDir, tmp);
      await mkdir(theirs, { recursive: true, mode: 0o700 });
      await chmod(dirname(theirs), 0o777);
      await expect(ensureControlPathDir(workDir, tmp)).rejects.toThrow(
        `${dirname(theirs)} must be a directory owned by uid ${process.getuid!()} that only it can write`,
      );
      await chmod(dirname(theirs), 0o700);
      await chmod(theirs, 0o755);
      await expect(ensureControlPathDir(workDir, tmp)).rejects.toThrow(`${theirs} must be a directory`);
      await rm(theirs, { recursive: true });
      await symlink(dir, theirs);
      await expect(ensureControlPathDir(workDir, tmp)).rejects.toThrow(`${theirs} must be a directory`);
      await rm(theirs);
      expect(await ensureControlPathDir(workDir, tmp)).toBe(theirs);
      expect((await lstat(theirs)).mode & 0o777).toBe(0o700);
      await rm(tmp, { recursive: true });
    });

    test("a state dir ssh would read tokens in, or no room for a socket anywhere, is a clear error", async () => {
      expect(controlPathDirOf(join(dir, "100%", "k8s")).startsWith(tmpdir())).toBe(true);
      const deep = join(dir, "c".repeat(80), "k8s");
      await expect(ensureControlPathDir(deep, join(dir, "t".repeat(60)))).rejects.toThrow(
        "no directory for Ansible's ssh control sockets fits",
      );
    });
  },
);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls until `probe` gives a truthy value; fails after 30 s. */
async function waitFor<T>(probe: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("waited 30 s in vain");
    await Bun.sleep(50);
  }
}

describe("pointServerAt", () => {
  const kubeconfig = [
    "apiVersion: v1",
    "clusters:",
    "  - cluster:",
    "      certificate-authority-data: LS0tLS1CRUdJTi==",
    "      server: https://10.233.0.1:6443",
    "    name: cluster.local",
    "current-context: kubernetes-admin-cluster.local@cluster.local",
    "",
  ].join("\n");

  test("moves the server to the control plane's address and keeps every other byte", () => {
    expect(pointServerAt(kubeconfig, "192.168.1.21")).toBe(kubeconfig.replace("10.233.0.1", "192.168.1.21"));
  });

  test("writes an IPv6 address in brackets", () => {
    expect(pointServerAt(kubeconfig, "fd00::21")).toContain("server: https://[fd00::21]:6443");
  });

  test("refuses a kubeconfig without a server", () => {
    expect(() => pointServerAt("apiVersion: v1\nclusters: []\n", "192.168.1.21")).toThrow(
      "no `server:` line",
    );
  });
});

describe("handOverKubeconfig", () => {
  test("writes the admin kubeconfig 0600 in a 0700 dir, never through a link planted at a temporary name", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-handover-"));
    try {
      const adminConf = join(dir, "inventory", "artifacts", "admin.conf");
      await mkdir(dirname(adminConf), { recursive: true });
      await writeFile(
        adminConf,
        "apiVersion: v1\nclusters:\n  - cluster:\n      server: https://10.233.0.1:6443\n",
      );
      const dest = join(dir, "state", "kubeconfig");
      await handOverKubeconfig(adminConf, dest, "192.168.1.21");
      expect((await stat(dest)).mode & 0o777).toBe(0o600);
      expect((await stat(dirname(dest))).mode & 0o777).toBe(0o700);
      expect(await readFile(dest, "utf8")).toContain("server: https://192.168.1.21:6443");

      // A link planted at the name a temporary file had (the state dir's, then the process id):
      // written through, the cluster's admin credentials would land where it leads.
      const victim = join(dir, "victim");
      await writeFile(victim, "not kubehyve's\n", { mode: 0o644 });
      const planted = `${dest}.${process.pid}.tmp`;
      await symlink(victim, planted);
      await handOverKubeconfig(adminConf, dest, "192.168.1.22");
      expect(await readFile(victim, "utf8")).toBe("not kubehyve's\n");
      expect((await lstat(dest)).isFile()).toBe(true);
      expect((await stat(dest)).mode & 0o777).toBe(0o600);
      expect(await readFile(dest, "utf8")).toContain("server: https://192.168.1.22:6443");
      // Not made by kubehyve, so left alone.
      expect((await lstat(planted)).isSymbolicLink()).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("says Kubespray wrote no admin kubeconfig when there is none, and writes nothing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-handover-"));
    try {
      const adminConf = join(dir, "artifacts", "admin.conf");
      await expect(
        handOverKubeconfig(adminConf, join(dir, "state", "kubeconfig"), "192.168.1.21"),
      ).rejects.toThrow(
        `Kubespray did not write the admin kubeconfig ${adminConf} (is kubeconfig_localhost set?)`,
      );
      expect(existsSync(join(dir, "state"))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
