import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { v } from "kubehyve";
import { pointServerAt } from "../../../../plugins/k8s/kubespray/kubeconfig.ts";
import { optionsSchema } from "../../../../plugins/k8s/kubespray/options.ts";
import {
  createRunner,
  playbookArgv,
  playbookEnv,
  spawnLocal,
  venvRequirements,
} from "../../../../plugins/k8s/kubespray/runner.ts";
import { ORACLES } from "../../../lab/oracles.ts";
import { have } from "../../../lab/prereq.ts";

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
  const runner = createRunner(v.parse(optionsSchema, { runner: { kind: "system" } }), "/state/k8s");
  const req = {
    kubesprayDir: "/state/k8s/kubespray-v2.31.0",
    inventoryDir: "/state/k8s/inventory",
    playbook: "scale.yml",
    logFile: "/state/k8s/logs/x.log",
    workDir: "/state/k8s",
  };

  test("is an argv list with the inventory, become, the limit and the extra vars as one JSON word", () => {
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
  });
});

describe("runner prerequisites", () => {
  test("a missing program reports exit code 127 instead of throwing", async () => {
    const r = await spawnLocal(["kubehyve-no-such-program", "--version"]);
    expect(r.code).toBe(127);
  });

  test("an aborted run stops the program at once", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const running = spawnLocal(["sleep", "30"], { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    const r = await running;
    expect(r.code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test("hands stdout over line by line, the last line even without a newline", async () => {
    const lines: string[] = [];
    await spawnLocal(["printf", "one\ntwo\nthree"], { onStdoutLine: (l) => lines.push(l) });
    expect(lines).toEqual(["one", "two", "three"]);
  });

  test("an ansible-playbook that cannot run is an error naming the option", async () => {
    const runner = createRunner(
      v.parse(optionsSchema, {
        runner: { kind: "system", ansiblePlaybook: "/nonexistent/ansible-playbook" },
      }),
      "/tmp",
    );
    expect(await runner.prerequisites()).toEqual([
      expect.objectContaining({
        code: "kubespray.runner-missing",
        severity: "error",
        path: "stages.k8s.runner.ansiblePlaybook",
      }),
    ]);
  });

  test.skipIf(!have("ansible-playbook", "ansible"))(
    "a working ansible-playbook is reported with its version",
    async () => {
      const runner = createRunner(v.parse(optionsSchema, { runner: { kind: "system" } }), "/tmp");
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
      v.parse(optionsSchema, { runner: { kind: "venv", python: "python-kubehyve-missing" } }),
      "/tmp",
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
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("checks Python, venv and the system's cryptography", async () => {
    const runner = createRunner(v.parse(optionsSchema, { runner: { kind: "venv", python: "python3" } }), dir);
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
    );
    expect(await runner.isPrepared(tree)).toBe(false);
    await runner.prepare(tree);
    const r = await spawnLocal([
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
});

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
