import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  parsePythonVersion,
  verifyNodes,
  volumePluginDirOf,
} from "../../../../plugins/k8s/kubespray/nodes.ts";
import type { Target } from "../../../../src/targets/target.ts";
import { have } from "../../../lab/prereq.ts";
import { type FakeNode, KUBELET_ENV_FCOS, startFakeNode } from "./fake-node.ts";
import { node } from "./lab.ts";

describe("what verify reads from a node", () => {
  test("the volume plugin directory is kubelet.env's flag, else the kubelet's default", () => {
    expect(volumePluginDirOf(KUBELET_ENV_FCOS)).toBe("/var/lib/kubelet/volumeplugins");
    expect(volumePluginDirOf('KUBELET_ARGS="--config=/etc/kubernetes/kubelet-config.yaml"\n')).toBe(
      "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/",
    );
  });

  test("Python's version line is read whatever the stream", () => {
    expect(parsePythonVersion("Python 3.14.0\n")).toEqual([3, 14, 0]);
    expect(parsePythonVersion("Python 3.9\n")).toEqual([3, 9, 0]);
    expect(parsePythonVersion("sh: python3: not found")).toBeUndefined();
  });
});

describe.skipIf(!(have("sshd", "openssh-server") && have("sudo", "sudo")))(
  "verify on the nodes over SSH",
  () => {
    let tmp: string;
    let modern: FakeNode;
    let newer: FakeNode;
    const targets: Target[] = [];
    const cp1 = node("cp1", "control-plane");
    const w1 = node("w1", "worker");

    beforeAll(async () => {
      tmp = await mkdtemp(join(tmpdir(), "kubehyve-kubespray-nodes-"));
      await chmod(tmp, 0o755);
      modern = await startFakeNode(tmp, "Python 3.13.5");
      newer = await startFakeNode(tmp, "Python 3.14.2");
    });
    afterAll(async () => {
      await Promise.all(targets.map((t) => t.close()));
      await Promise.all([modern?.sshd.stop(), newer?.sshd.stop()]);
      await rm(tmp, { recursive: true, force: true });
    });

    async function verifyOn(fake: Record<string, FakeNode>) {
      const stateDir = await mkdtemp(join(tmp, "state-"));
      return verifyNodes([cp1, w1], (name) => {
        const target = fake[name]!.target(name === "cp1" ? cp1 : w1, stateDir);
        targets.push(target);
        return target;
      });
    }

    test("a writable volume plugin directory and a supported Python pass; a newer Python is a warning", async () => {
      for (const n of [modern, newer]) {
        await n.write("/etc/kubernetes/kubelet.env", KUBELET_ENV_FCOS);
        await n.mkdir("/var/lib/kubelet/volumeplugins");
      }
      const found = await verifyOn({ cp1: modern, w1: newer });
      expect(found.map((d) => [d.code, d.severity, d.target])).toEqual([
        ["kubespray.node-python", "ok", "cp1"],
        ["kubespray.volume-plugin-dir", "ok", "cp1"],
        ["kubespray.node-python-unsupported", "warn", "w1"],
        ["kubespray.volume-plugin-dir", "ok", "w1"],
      ]);
      expect(found[2]!.summary).toBe(
        "node w1 has Python 3.14.2, newer than ansible-core 2.18 supports (3.13)",
      );
      expect(found[2]!.hint).toContain("Python 3.13 or older");
    }, 60_000);

    test("a volume plugin directory that does not exist is an error naming it", async () => {
      const lonely = await startFakeNode(tmp);
      try {
        // kubelet.env names the kubelet's default, which lies on Fedora CoreOS's read-only /usr.
        await lonely.write(
          "/etc/kubernetes/kubelet.env",
          'KUBELET_ARGS="--config=/etc/kubernetes/kubelet-config.yaml"\n',
        );
        const found = await verifyOn({ cp1: lonely, w1: lonely });
        expect(
          found.find((d) => d.code === "kubespray.volume-plugin-dir" && d.target === "cp1"),
        ).toMatchObject({
          severity: "error",
          summary:
            "node cp1: the kubelet's volume plugin directory /usr/libexec/kubernetes/kubelet-plugins/volume/exec/ does not exist",
          hint: expect.stringContaining("leave kubelet_flexvolumes_plugins_dir to Kubespray"),
        });
      } finally {
        await lonely.sshd.stop();
      }
    }, 60_000);

    test("a node without Kubespray's kubelet.env is an error", async () => {
      const bare = await startFakeNode(tmp);
      try {
        const found = await verifyOn({ cp1: bare, w1: bare });
        expect(found.filter((d) => d.severity === "error").map((d) => [d.code, d.target])).toEqual([
          ["kubespray.kubelet-env-missing", "cp1"],
          ["kubespray.kubelet-env-missing", "w1"],
        ]);
      } finally {
        await bare.sshd.stop();
      }
    }, 60_000);
  },
);
