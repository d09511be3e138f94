/** The example lab with both stages: valid as it ships, and planned offline like every other stage. */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinPlugins } from "../../../../plugins/index.ts";
import { parseClusterText } from "../../../../src/core/config.ts";
import { runEngine } from "../../../../src/core/engine.ts";
import { memoryReporter } from "../../../../src/core/reporter.ts";
import exampleText from "../../../../src/example/kubehyve.yaml" with { type: "text" };

const lookup = { find: (id: string) => builtinPlugins.find((p) => p.id === id), searchPath: [] };

test("the built-ins run ingress and storage last, after net and lb", () => {
  const ids = builtinPlugins.map((p) => p.id);
  expect(ids.slice(-2)).toEqual(["ingress/traefik", "storage/rook"]);
});

test("plan --offline of the example plans Traefik and Rook on the workers' data disks", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-example-"));
  try {
    const { cluster, stages } = parseClusterText(exampleText, "example", lookup);
    expect(stages.map((s) => s.slot)).toContain("storage");
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
    expect(changes).toContain(
      "ingress: install Traefik v3.7.9 in namespace traefik (entrypoints web :80, websecure :443)",
    );
    expect(changes).toContain(
      "storage: install Rook v1.20.6 (Ceph Tentacle): 3 mon(s), 2 OSD(s) on w1:vdb, w2:vdb, 2 replica(s), StorageClass rook-ceph-block",
    );
    const warnings = reporter.events.filter(
      (e) => e.type === "diagnostic" && (e as { severity: string }).severity !== "ok",
    );
    expect(warnings.map((e) => (e as { code: string }).code)).toContain("rook.no-redundancy");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
