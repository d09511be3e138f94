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
import { diag } from "../../src/core/diagnostics.ts";
import { checkedHookAnswer, PluginContractError } from "../../src/core/plugin-results.ts";
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
      hookAnswers: { "os:node-files": full["os/coreos"]!.hookAnswers!["os:node-files"] },
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
    // Read by the core only when the plugin calls a hook, which it does from its loaded code.
    expect(lazy.hookAnswers).toBeUndefined();
    expect(await lazy.check("a" as never)).toEqual({ changes: [], diagnostics: [] });
    expect(await lazy.render!("b" as never)).toEqual([{ path: "f", content: "x" }]);
    expect(await lazy.hooks!["os:node-files"]!("c" as never, "d" as never)).toEqual({
      files: [{ ctx: "c", payload: "d" }],
    } as never);
    expect(calls).toEqual(["check a", "render b"]);
    expect(loads).toBe(1);
    expect(lazy.hookAnswers).toBe(real.hookAnswers!);
  });
});

describe("a built-in that calls a hook", () => {
  // What the built-ins answer, and answers a careless plugin could give: each caller declares the
  // schema the core holds every answer to, so a wrong one fails naming the plugin that gave it
  // instead of ending as a TypeError (or a file on a node) in the caller.
  const cases = [
    {
      caller: "hypervisor/bhyve",
      hook: "hypervisor:node-boot",
      good: [
        undefined,
        {
          bhyveOptions: "-s 6,virtio-rnd",
          bootImage: { kind: "zfs-snapshot", snapshot: "zroot/vm/.img/fcos@golden" },
        },
        { bootImage: { kind: "file", path: "/vm/.img/fcos-41.raw" } },
      ],
      bad: [
        [
          { bhyveOptions: 5 },
          "bhyveOptions: text (options for bhyve, as vm-bhyve's bhyve_options takes) (5, a number)",
        ],
        [
          { bootImage: { kind: "iso", path: "/x.iso" } },
          'bootImage.kind: an image: { kind: "file", path } or { kind: "zfs-snapshot", snapshot }',
        ],
        [{ bootImage: { kind: "file", path: "x.raw" } }, "bootImage.path: an absolute path"],
        [[], "an object of bhyveOptions and bootImage, not a list"],
      ],
    },
    {
      caller: "os/coreos",
      hook: "os:node-files",
      good: [undefined, {}, full["net/calico"]!.hooks!["os:node-files"]!({} as never, {} as never)],
      bad: [
        [{ files: "/etc/x" }, "files: a list of files"],
        [{ files: [{ path: "/etc/x" }] }, "files.0.contents: a file: { path, contents, mode? } (missing)"],
        [
          { files: [{ path: "/etc/x", contents: "", mode: "0644" }] },
          "files.0.mode: permission bits such as 0o644",
        ],
        [[{ path: "/etc/x", contents: "" }], "{ files: [...] }, not a list"],
      ],
    },
    {
      caller: "k8s/kubespray",
      hook: "k8s:kubespray-vars",
      good: [
        undefined,
        full["lb/metallb"]!.hooks!["k8s:kubespray-vars"]!({} as never, undefined as never),
        full["net/calico"]!.hooks!["k8s:kubespray-vars"]!({} as never, undefined as never),
      ],
      bad: [
        ["kube_proxy_strict_arp=true", "a map of Kubespray variables"],
        [[["kube_proxy_strict_arp", true]], "a map of Kubespray variables, not a list"],
      ],
    },
    {
      caller: "lb/metallb",
      hook: "lb:l2-host",
      good: [
        undefined,
        [],
        [diag.warn("bhyve.bridge-filtered", "pf filters bridged traffic", { hint: "sysctl" })],
      ],
      bad: [
        [diag.warn("bhyve.bridge-filtered", "pf filters bridged traffic"), "a list of diagnostics"],
        [
          [{ code: "bhyve.x", severity: "fatal", summary: "x" }],
          "0.severity: one of ok, info, warn, error, skip",
        ],
      ],
    },
  ] as const;

  for (const { caller, hook, good, bad } of cases) {
    test(`${caller} holds the answers of ${hook} to its schema, naming the plugin that answered`, async () => {
      const schema = full[caller]!.hookAnswers?.[hook];
      expect(schema).toBeDefined();
      const declared = { id: caller, schema };
      for (const answer of good) {
        const value = await answer;
        expect(checkedHookAnswer("test/answers", hook, declared, value)).toBe(value);
      }
      for (const [answer, why] of bad) {
        let thrown: unknown;
        try {
          checkedHookAnswer("test/answers", hook, declared, answer);
        } catch (error) {
          thrown = error;
        }
        expect(thrown).toBeInstanceOf(PluginContractError);
        expect((thrown as PluginContractError).pluginId).toBe("test/answers");
        expect((thrown as Error).message).toStartWith(
          `plugin test/answers's handler of hook ${hook} answered what ${caller} does not take: ${why}`,
        );
      }
    });
  }
});
