/**
 * The built-in plugin list declares each plugin up front and loads its code when a stage runs: what
 * it declares must be what the plugin's own index.ts defines, and its phases must reach that code.
 */
import { describe, expect, test } from "bun:test";
import type { AnyPlugin } from "kubehyve";
import bhyve from "../../plugins/hypervisor/bhyve/index.ts";
import { builtinPlugins, lazyPlugin } from "../../plugins/index.ts";
import traefik from "../../plugins/ingress/traefik/index.ts";
import kubespray from "../../plugins/k8s/kubespray/index.ts";
import metallb from "../../plugins/lb/metallb/index.ts";
import calico from "../../plugins/net/calico/index.ts";
import coreos from "../../plugins/os/coreos/index.ts";
import rook from "../../plugins/storage/rook/index.ts";
import { parseClusterText } from "../../src/core/config.ts";
import exampleText from "../../src/example/kubehyve.yaml" with { type: "text" };

const full: Record<string, AnyPlugin> = Object.fromEntries(
  [bhyve, coreos, kubespray, calico, metallb, traefik, rook].map((p) => [p.id, p as AnyPlugin]),
);

const PHASES = ["check", "apply", "verify", "render", "destroy"] as const;

describe("the built-in plugin list", () => {
  test("declares each plugin as its index.ts defines it", () => {
    expect(builtinPlugins.map((p) => p.id)).toEqual(Object.keys(full));
    for (const lazy of builtinPlugins) {
      const real = full[lazy.id]!;
      expect(lazy.title).toBe(real.title);
      expect(lazy.apiVersion).toBe(real.apiVersion);
      expect(lazy.version).toBe(real.version);
      expect(lazy.after).toEqual(real.after);
      expect(lazy.options).toBe(real.options);
      expect(Boolean(lazy.validate)).toBe(Boolean(real.validate));
      for (const phase of PHASES)
        expect([lazy.id, phase, Boolean(lazy[phase])]).toEqual([lazy.id, phase, Boolean(real[phase])]);
      expect(Object.keys(lazy.hooks ?? {}).sort()).toEqual(Object.keys(real.hooks ?? {}).sort());
    }
  });

  test("validates the example lab as the plugins' own validate() does", () => {
    const lookup = (list: readonly AnyPlugin[]) => ({
      find: (id: string) => list.find((p) => p.id === id),
      searchPath: [],
    });
    const config = parseClusterText(exampleText, "example", lookup(builtinPlugins));
    const again = parseClusterText(exampleText, "example", lookup(Object.values(full)));
    expect(config.stages.map((s) => s.options)).toEqual(again.stages.map((s) => s.options));
    for (const stage of config.stages) {
      const input = { cluster: config.cluster, options: stage.options };
      expect(stage.plugin.validate?.(input)).toEqual(full[stage.plugin.id]!.validate?.(input));
    }
  });

  test("loads a plugin's code once, when a phase or hook is first called, and hands it the call", async () => {
    const calls: string[] = [];
    let loads = 0;
    const real: AnyPlugin = {
      id: "test/lazy",
      title: "lazy",
      apiVersion: 1,
      check: async (ctx) => {
        calls.push(`check ${ctx}`);
        return { changes: [], diagnostics: [] };
      },
      render: async (ctx) => {
        calls.push(`render ${ctx}`);
        return [{ path: "f", content: "x" }];
      },
      hooks: { "os:node-files": (ctx, payload) => ({ files: [{ ctx, payload }] }) as never },
    };
    const lazy = lazyPlugin(
      { id: real.id, title: real.title, apiVersion: 1, phases: ["render"], hooks: ["os:node-files"] },
      async () => {
        loads++;
        return { default: real };
      },
    );
    expect(loads).toBe(0);
    expect(lazy.apply).toBeUndefined();
    expect(await lazy.check("a" as never)).toEqual({ changes: [], diagnostics: [] });
    expect(await lazy.render!("b" as never)).toEqual([{ path: "f", content: "x" }]);
    expect(await lazy.hooks!["os:node-files"]!("c" as never, "d" as never)).toEqual({
      files: [{ ctx: "c", payload: "d" }],
    } as never);
    expect(calls).toEqual(["check a", "render b"]);
    expect(loads).toBe(1);
  });
});
