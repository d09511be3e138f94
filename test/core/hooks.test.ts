/**
 * Typed hooks: a caller gets every stage's answer, in stage order, each handler called with its own
 * stage's context; a misspelt name or a wrong payload does not type-check.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Stage } from "../../src/core/config.ts";
import { type AnyPlugin, definePlugin } from "../../src/core/contract.ts";
import { runEngine } from "../../src/core/engine.ts";
import { memoryReporter } from "../../src/core/reporter.ts";
import { RecordingTarget } from "../../src/targets/recording.ts";
import { labCluster, labNode } from "../lab/cluster.ts";

declare module "kubehyve" {
  interface HookTypes {
    "test:greeting": { payload: { to: string }; answer: string };
  }
}

const cluster = labCluster({ name: "t", nodes: [labNode("cp1", "control-plane", "192.168.1.21")] });
let stateDir: string;
beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), "kubehyve-hooks-"));
});
afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

function answerer(slot: string, after: string[]): Stage {
  const plugin = definePlugin({
    id: `${slot}/answers`,
    title: slot,
    apiVersion: 1,
    after,
    check: async () => ({ changes: [], diagnostics: [] }),
    hooks: { "test:greeting": (ctx, { to }) => `hello ${to} from ${ctx.plugin.slot}` },
  });
  return { slot, plugin: plugin as AnyPlugin, options: {} };
}

test("a hook's answers come from every stage that has a handler, in stage order, with its context", async () => {
  const heard: string[][] = [];
  const caller = definePlugin({
    id: "zeta/asks",
    title: "asks",
    apiVersion: 1,
    after: ["beta"],
    async check(ctx) {
      heard.push(await ctx.hooks.call("test:greeting", { to: "you" }));
      // @ts-expect-error: no hook has this name
      await ctx.hooks.call("test:greting", { to: "you" });
      // @ts-expect-error: the payload is { to: string }
      await ctx.hooks.call("test:greeting", { too: "you" });
      return { changes: [], diagnostics: [] };
    },
  });
  const host = new RecordingTarget();
  const result = await runEngine({
    command: "plan",
    cluster,
    stages: [
      { slot: "zeta", plugin: caller as AnyPlugin, options: {} },
      answerer("beta", ["alpha"]),
      answerer("alpha", []),
    ],
    stateDir,
    reporter: memoryReporter(),
    targets: { host: () => host, node: () => host },
  });
  expect(result.exitCode).toBe(0);
  expect(heard).toEqual([["hello you from alpha", "hello you from beta"]]);
});

test("a handler cannot change the payload that the handlers after it and the caller see", async () => {
  const seen: string[] = [];
  const meddler = definePlugin({
    id: "alpha/meddles",
    title: "meddles",
    apiVersion: 1,
    check: async () => ({ changes: [], diagnostics: [] }),
    hooks: {
      "test:greeting": (_ctx, payload) => {
        try {
          (payload as { to: string }).to = "everyone";
        } catch (error) {
          return `refused: ${error instanceof TypeError}`;
        }
        return "changed it";
      },
    },
  });
  const payload = { to: "you" };
  const caller = definePlugin({
    id: "zeta/asks",
    title: "asks",
    apiVersion: 1,
    after: ["beta"],
    async check(ctx) {
      seen.push(...(await ctx.hooks.call("test:greeting", payload)), payload.to);
      return { changes: [], diagnostics: [] };
    },
  });
  const host = new RecordingTarget();
  const result = await runEngine({
    command: "plan",
    cluster,
    stages: [
      { slot: "zeta", plugin: caller as AnyPlugin, options: {} },
      answerer("beta", ["alpha"]),
      { slot: "alpha", plugin: meddler as AnyPlugin, options: {} },
    ],
    stateDir,
    reporter: memoryReporter(),
    targets: { host: () => host, node: () => host },
  });
  expect(result.exitCode).toBe(0);
  expect(seen).toEqual(["refused: true", "hello you from beta", "you"]);
});
