/**
 * The built-in stages together, through the engine: what one stage asks of another travels through
 * the named hooks, never through imports between plugins.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinPlugins } from "../../plugins/index.ts";
import { parseClusterText } from "../../src/core/config.ts";
import { runEngine } from "../../src/core/engine.ts";
import { memoryReporter } from "../../src/core/reporter.ts";
import exampleText from "../../src/example/kubehyve.yaml" with { type: "text" };

const dir = mkdtempSync(join(tmpdir(), "kubehyve-stages-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lookup = {
  find: (id: string) => builtinPlugins.find((p) => p.id === id),
  searchPath: [],
};

describe("the example lab's stages together", () => {
  test("render gives the VM configs the os stage's fw_cfg options", async () => {
    const { cluster, stages } = parseClusterText(exampleText, "example", lookup);
    const out = join(dir, "out");
    const result = await runEngine({
      command: "render",
      cluster,
      stages,
      stateDir: join(dir, "state"),
      reporter: memoryReporter(),
      renderDir: out,
    });
    expect(result.exitCode).toBe(0);

    const vm = readFileSync(join(out, "hypervisor/cp1/cp1.conf"), "utf8");
    expect(vm).toContain(
      `bhyve_options="-o lpc.fwcfg=qemu -f name=opt/com.coreos/config,file=${join(dir, "state/os/ignition/cp1.ign")}"`,
    );

    const ignition = JSON.parse(readFileSync(join(out, "os/w1.ign"), "utf8"));
    expect(ignition.ignition.version).toBe("3.3.0");
  });

  test("plan --offline plans a fresh install of every stage without reaching a machine", async () => {
    const { cluster, stages } = parseClusterText(exampleText, "example", lookup);
    const reporter = memoryReporter();
    const result = await runEngine({
      command: "plan",
      offline: true,
      cluster,
      stages,
      stateDir: join(dir, "state"),
      reporter,
    });
    expect(result.exitCode).toBe(0);
    const changes = reporter.events
      .filter((e) => e.type === "change")
      .map((e) => `${e.stage}: ${(e as { summary: string }).summary}`);
    expect(changes).toContain("hypervisor: create VM w1: 2 vCPU, 6 GiB, 20 GiB disk + 50 GiB data1");
    expect(changes).toContain("os: write the Ignition config of w2");
    expect(changes).toContain(
      "k8s: install Kubernetes 1.35.4 on cp1, w1, w2 with Kubespray v2.31.0 (cluster.yml)",
    );
    expect(reporter.events.filter((e) => e.type === "diagnostic" && e.severity === "error")).toEqual([]);
  });
});
