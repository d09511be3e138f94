/**
 * What a drop-in plugin hands the core is held to the contract where it crosses over: a phase's
 * result, each change and finding in it, the files render gives, a hook's answer, the arguments of
 * the context's helpers. Each breach is the plugin's error, named with its id and phase, and fails
 * the run as a failing phase does: never garbage output, never "kubehyve hit a bug", and never an
 * apply on a plan that was not one. Every plugin here runs through the real command line, in process.
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type CliResult, dropInLab, runInProcess } from "../lab/cli.ts";

/** A drop-in `bad/result` made of `members`; check answers nothing unless a member says otherwise. */
function source(members: string): string {
  const check = /\bcheck\s*\(/.test(members)
    ? ""
    : "async check() { return { changes: [], diagnostics: [] }; },";
  return `import { definePlugin, diag, pending, poll } from "kubehyve";
import { writeFileSync } from "node:fs";
export default definePlugin({
  id: "bad/result",
  title: "breaks the contract",
  apiVersion: 1,
  ${check}
  ${members}
});
`;
}

/** A plugin that applies by writing `marker`: whether apply ran is whether the file is there. */
const APPLY_MARKS = `async apply(ctx) {
    await ctx.wet("mark " + ctx.options.marker, async () => writeFileSync(ctx.options.marker, "applied"), { target: "local" });
  },`;

async function run(
  command: string[],
  members: string,
  extra: Record<string, string> = {},
): Promise<CliResult & { marker: string; dir: string }> {
  const { dir, plugins, state } = dropInLab({
    prefix: "kubehyve-contract-",
    name: "contract",
    plugins: { "bad.ts": source(members), ...extra },
    stages: (d) =>
      `  bad:\n    plugin: result\n    marker: ${join(d, "applied")}\n${Object.keys(extra).length ? "  caller:\n    plugin: asks\n" : ""}`,
  });
  const r = await runInProcess([...command, "--plugin-dir", plugins, "--state-dir", state], { cwd: dir });
  return { ...r, marker: join(dir, "applied"), dir };
}

/** The run failed as a phase of the plugin fails: exit 1, the plugin and the breach named, no bug. */
function failedForThePlugin(r: CliResult, message: string, code = 1): void {
  expect({ code: r.code, out: r.out }).toMatchObject({ code, out: expect.stringContaining(message) });
  expect(r.out).not.toContain("hit a bug");
  expect(r.out).not.toContain("undefined");
}

describe("what check returns", () => {
  test("changes that are not a list fail the plan, naming the plugin, instead of one change per character", async () => {
    const r = await run(
      ["plan"],
      `async check() { return { changes: "nope", diagnostics: [{ severity: "fatal", code: 3 }] }; },`,
    );
    failedForThePlugin(r, `plugin bad/result's check returned changes that are not a list ("nope")`);
    expect(r.out).not.toContain("4 changes");
  });

  test("a malformed change stops up before apply runs on it", async () => {
    const r = await run(
      ["up", "--yes"],
      `async check() { return { changes: [{ summary: "fine" }, { summary: 42 }], diagnostics: [] }; },
  ${APPLY_MARKS}`,
    );
    failedForThePlugin(
      r,
      "plugin bad/result's check returned change 2 whose summary is not a string (42, a number)",
    );
    expect(existsSync(r.marker)).toBe(false);
  });

  test("a change whose disruptive flag is not a boolean is refused rather than read as truthy", async () => {
    const r = await run(
      ["up", "--yes"],
      `async check() { return { changes: [{ summary: "restart it", disruptive: "no" }], diagnostics: [] }; },
  ${APPLY_MARKS}`,
    );
    failedForThePlugin(r, `change 1 whose disruptive is not true or false ("no")`);
    expect(existsSync(r.marker)).toBe(false);
  });

  test("a finding's severity must be one of the core's", async () => {
    const r = await run(
      ["plan"],
      `async check() { return { changes: [], diagnostics: [{ code: "bad.thing", severity: "fatal", summary: "it broke" }] }; },`,
    );
    failedForThePlugin(
      r,
      `plugin bad/result's check returned diagnostic 1 whose severity is not one of ok, info, warn, error, skip ("fatal")`,
    );
  });

  test("a finding's code must be a dotted id as the doctor catalogue has them", async () => {
    for (const code of ["3", '"Broke down"', '"nodot"']) {
      const r = await run(
        ["plan"],
        `async check() { return { changes: [], diagnostics: [{ code: ${code}, severity: "warn", summary: "odd" }] }; },`,
      );
      failedForThePlugin(r, "diagnostic 1 whose code is not a dotted id like bhyve.vmm-not-loaded");
    }
  });

  test("a finding's target, detail and hint must be strings", async () => {
    for (const [field, value, shown] of [
      ["target", "7", "7, a number"],
      ["detail", "{ lines: 2 }", "an object"],
      ["hint", "['kldload vmm']", "a list"],
    ] as const) {
      const r = await run(
        ["plan"],
        `async check() { return { changes: [], diagnostics: [diag.warn("bad.odd", "odd", { ${field}: ${value} })] }; },`,
      );
      failedForThePlugin(r, `diagnostic 1 whose ${field} is not a string (${shown})`);
    }
  });

  test("a result with no findings list at all is refused", async () => {
    const r = await run(["plan"], `async check() { return { changes: [] }; },`);
    failedForThePlugin(r, "plugin bad/result's check returned a result without diagnostics");
  });

  test("a check that returns nothing is refused", async () => {
    const r = await run(["plan"], `async check() {},`);
    failedForThePlugin(
      r,
      "plugin bad/result's check returned nothing, not an object of changes and diagnostics",
    );
  });

  test("doctor reports a malformed check as an error finding of the stage, not as a bug", async () => {
    const r = await run(["doctor"], `async check() { return { changes: "nope", diagnostics: [] }; },`);
    failedForThePlugin(r, `plugin bad/result's check returned changes that are not a list ("nope")`);
  });
});

describe("what verify, apply and destroy return", () => {
  test("verify's findings must be a list", async () => {
    const r = await run(["verify"], `async verify() { return { ok: true }; },`);
    failedForThePlugin(r, "plugin bad/result's verify returned an object, not a list");
  });

  test("a malformed finding of verify fails doctor as the plugin's error", async () => {
    const r = await run(["doctor"], `async verify() { return [{ code: "bad.x", severity: "error" }]; },`);
    failedForThePlugin(r, "plugin bad/result's verify returned diagnostic 1 without summary");
  });

  test("apply returns nothing: a value there is refused, as nobody reads it", async () => {
    const r = await run(
      ["up", "--yes"],
      `async check() { return { changes: [{ summary: "make it" }], diagnostics: [] }; },
  async apply() { return [diag.error("bad.broke", "apply broke")]; },`,
    );
    failedForThePlugin(r, "plugin bad/result's apply returned a list, but apply returns nothing");
  });

  test("destroy returns nothing: a value there is refused", async () => {
    const r = await run(["down", "--yes"], `async destroy() { return "destroyed"; },`);
    failedForThePlugin(r, `plugin bad/result's destroy returned "destroyed", but destroy returns nothing`);
  });
});

describe("what render returns", () => {
  for (const [what, file, message] of [
    [
      "a path that climbs out with ..",
      `{ path: "a/../../b", content: "x" }`,
      "file 1 whose path is not a path inside",
    ],
    [
      "a path with a NUL",
      `{ path: "a\\u0000b", content: "x" }`,
      "file 1 whose path is not a relative path without NUL",
    ],
    [
      "a path that is empty",
      `{ path: "", content: "x" }`,
      "file 1 whose path is not a relative path without NUL",
    ],
    [
      "content that is a number",
      `{ path: "a.txt", content: 5 }`,
      "file 1 whose content is not text or bytes (5, a number)",
    ],
    [
      "a mode that is a string",
      `{ path: "a.txt", content: "x", mode: "0644" }`,
      "file 1 whose mode is not permission bits",
    ],
    [
      "a mode past the permission bits",
      `{ path: "a.txt", content: "x", mode: 0o4755 }`,
      "file 1 whose mode is not permission bits, at most 0o777",
    ],
  ] as const)
    test(`refuses ${what}, and writes nothing`, async () => {
      const r = await run(["render", "-o", "out"], `async render() { return [${file}]; },`);
      failedForThePlugin(r, `plugin bad/result's render returned ${message}`);
      expect(existsSync(join(r.dir, "out", "bad"))).toBe(false);
    });

  test("refuses the same file twice", async () => {
    const r = await run(
      ["render", "-o", "out"],
      `async render() { return [{ path: "a.txt", content: "1" }, { path: "./a.txt", content: "2" }]; },`,
    );
    failedForThePlugin(r, "plugin bad/result's render returned the file a.txt twice");
  });
});

/** A second drop-in, `caller/asks`, whose check calls hook `caller:ask` and lists the answers. */
const CALLER = `import { definePlugin, v } from "kubehyve";
export default definePlugin({
  id: "caller/asks",
  title: "asks a hook",
  apiVersion: 1,
  after: ["bad"],
  hookAnswers: { "caller:ask": v.optional(v.object({ files: v.array(v.string()) }, "an object of files")) },
  async check(ctx) {
    const answers = await ctx.hooks.call("caller:ask", { who: "me" });
    return { changes: answers.map((a) => ({ summary: "answer " + Object.keys(a ?? {}).join(",") })), diagnostics: [] };
  },
});
`;

describe("hook answers", () => {
  test("an answer that is not what the caller declares fails the calling stage, naming the plugin that answered", async () => {
    const r = await run(["plan"], `hooks: { "caller:ask": () => "yes" },`, { "caller.ts": CALLER });
    failedForThePlugin(
      r,
      `plugin bad/result's handler of hook caller:ask answered what caller/asks does not take: an object of files ("yes")`,
    );
  });

  test("an answer is held to the schema its caller declares, down to its fields", async () => {
    const r = await run(["plan"], `hooks: { "caller:ask": () => ({ files: "a.txt" }) },`, {
      "caller.ts": CALLER,
    });
    failedForThePlugin(
      r,
      `plugin bad/result's handler of hook caller:ask answered what caller/asks does not take: files: Invalid type: Expected Array but received "a.txt" ("a.txt")`,
    );
  });

  test("a handler that is not a function keeps the plan from starting, naming the plugin and the hook", async () => {
    const r = await run(["plan"], `hooks: { "caller:ask": { files: [] } },`, { "caller.ts": CALLER });
    failedForThePlugin(
      r,
      `plugin bad/result in ${join(r.dir, "plugins", "bad.ts")} is not loaded: its handler of hook caller:ask is an object, not a function`,
      2,
    );
  });

  test("an object answer is passed on as before", async () => {
    const r = await run(["plan"], `hooks: { "caller:ask": () => ({ files: [] }) },`, { "caller.ts": CALLER });
    expect({ code: r.code, out: r.out }).toMatchObject({
      code: 0,
      out: expect.stringContaining("answer files"),
    });
  });
});

describe("arguments to the context's helpers", () => {
  test("ctx.wet without a function is refused, also in a plan, where it would never be called", async () => {
    const r = await run(
      ["plan"],
      `async check(ctx) { await ctx.wet("make it", "rm -rf /"); return { changes: [], diagnostics: [] }; },`,
    );
    failedForThePlugin(r, `plugin bad/result called ctx.wet with a step that is not a function ("rm -rf /")`);
  });

  test("ctx.wet with a description that is not a string is refused", async () => {
    const r = await run(
      ["plan"],
      `async check(ctx) { await ctx.wet({ what: 1 }, async () => {}); return { changes: [], diagnostics: [] }; },`,
    );
    failedForThePlugin(
      r,
      "plugin bad/result called ctx.wet with a description that is not a line saying what it changes",
    );
  });

  test("ctx.wet with a target that is not a string is refused", async () => {
    const r = await run(
      ["plan"],
      `async check(ctx) { await ctx.wet("make it", async () => {}, { target: ["cp1"] }); return { changes: [], diagnostics: [] }; },`,
    );
    failedForThePlugin(r, "plugin bad/result called ctx.wet with a target that is not a string (a list)");
  });

  test("ctx.onCleanup without a function is refused when it is called, not when the run ends", async () => {
    const r = await run(
      ["plan"],
      `async check(ctx) { ctx.onCleanup("rm -rf /tmp/x"); return { changes: [], diagnostics: [] }; },`,
    );
    failedForThePlugin(
      r,
      `plugin bad/result called ctx.onCleanup with a cleanup that is not a function ("rm -rf /tmp/x")`,
    );
  });

  test("ctx.state.set with a value JSON cannot hold is refused, also in a plan, which keeps state in memory", async () => {
    for (const [value, shown] of [
      ["10n", "10, a number"],
      ["() => 1", "a function"],
    ] as const) {
      const r = await run(
        ["plan"],
        `async check(ctx) { await ctx.state.set("count", ${value}); return { changes: [], diagnostics: [] }; },`,
      );
      failedForThePlugin(
        r,
        `plugin bad/result called ctx.state.set with a value for count that is not storable as JSON (${shown})`,
      );
    }
  });

  test("ctx.log with a message that is not a string is refused", async () => {
    const r = await run(
      ["plan"],
      `async check(ctx) { ctx.log.info({ a: 1 }); return { changes: [], diagnostics: [] }; },`,
    );
    failedForThePlugin(
      r,
      "plugin bad/result called ctx.log.info with a message that is not a string (an object)",
    );
  });

  test("ctx.log.progress with a count that is not a number is refused", async () => {
    const r = await run(
      ["plan"],
      `async check(ctx) { ctx.log.progress("step", "3", 10); return { changes: [], diagnostics: [] }; },`,
    );
    failedForThePlugin(
      r,
      `plugin bad/result called ctx.log.progress with a current step that is not a number ("3")`,
    );
  });

  test("poll without a timeout is refused at once instead of waiting for ever", async () => {
    const r = await run(
      ["plan"],
      `async check() { await poll("the moon", async () => pending("not yet"), { intervalMs: 5 }); return { changes: [], diagnostics: [] }; },`,
    );
    failedForThePlugin(
      r,
      "poll was called with timeoutMs for the moon that is not a number of milliseconds (missing)",
    );
  }, 20_000);

  test("ctx.canary whose passed answers no boolean is refused", async () => {
    const r = await run(
      ["up", "--yes"],
      `async verify(ctx) {
    await ctx.canary({ name: "c", description: "make a canary", passed: () => "yes" }, async () => 1);
    return [];
  },`,
    );
    failedForThePlugin(
      r,
      `called ctx.canary with a canary (c) whose passed answered that is not true or false ("yes")`,
    );
  });
});

describe("the plugin object", () => {
  test("a phase that is there but is no function keeps the plugin from loading", async () => {
    const r = await run(["plugins"], `apply: "make it so",`);
    expect(r.out).toContain("is not loaded: its apply is not a function");
  });

  test("options that are no valibot schema keep the plugin from loading", async () => {
    const r = await run(["plugins"], `options: { marker: "a path" },`);
    expect(r.out).toContain(
      'is not loaded: its options is not a valibot schema (use v.object(...) from "kubehyve")',
    );
  });

  test("a hook answer schema that is no valibot schema keeps the plugin from loading", async () => {
    const r = await run(["plugins"], `hookAnswers: { "caller:ask": { files: "list" } },`);
    expect(r.out).toContain("is not loaded: its hookAnswers of caller:ask is not a valibot schema");
  });
});

describe("what the core hands a plugin", () => {
  test("validate cannot change the cluster it judges: the file stays invalid, the plugin named", async () => {
    const r = await run(
      ["config", "validate"],
      `validate({ cluster }) { cluster.nodes[0].address = "192.0.2.7"; return []; },`,
    );
    failedForThePlugin(r, "plugin bad/result failed while checking its options, a bug in the plugin:", 2);
    expect(r.out).not.toContain("is valid");
  });

  test("a phase cannot change the cluster model or its options for the core and the stages after it", async () => {
    const r = await run(
      ["plan"],
      `async check(ctx) {
    const tries = [
      () => { ctx.cluster.nodes.push({ ...ctx.cluster.nodes[0], name: "intruder" }); },
      () => { ctx.cluster.nodes[0].address = "192.0.2.7"; },
      () => { ctx.cluster.network.dns.length = 0; },
      () => { ctx.cluster.stages.bad.options.marker = "/etc/passwd"; },
      () => { ctx.options.marker = "/etc/passwd"; },
    ];
    const refused = tries.filter((t) => { try { t(); return false; } catch (e) { return e instanceof TypeError; } });
    return { changes: [{ summary: refused.length + " of " + tries.length + " changes refused" }], diagnostics: [] };
  },`,
      {
        "caller.ts": CALLER.replace(
          "answers.map",
          "[ctx.cluster.nodes.map((n) => n.name + '@' + n.address).join(' ')].concat(answers).map",
        ).replace(
          '"answer " + Object.keys(a ?? {}).join(",")',
          'typeof a === "string" ? "sees " + a : "answer"',
        ),
      },
    );
    expect(r.out).toContain("5 of 5 changes refused");
    expect(r.out).toContain("sees n1@10.9.0.10");
    expect(r.out).not.toContain("intruder");
  });
});

describe("what a plugin throws", () => {
  test("a phase that throws a value that cannot be shown fails as the plugin's phase, not as a bug", async () => {
    const r = await run(["plan"], `async check() { throw { toString() { throw new Error("no text"); } }; },`);
    failedForThePlugin(r, "bad check failed: an object that cannot be shown");
  });

  test("validate that throws a Proxy whose reads throw makes the file invalid, naming the plugin", async () => {
    const r = await run(
      ["config", "validate"],
      `validate() { throw new Proxy({}, { get() { throw new Error("trap"); } }); },`,
    );
    failedForThePlugin(
      r,
      "plugin bad/result failed while checking its options, a bug in the plugin: an object that cannot be shown",
      2,
    );
  });
});

describe("what validate returns", () => {
  test("findings that are not a list make the cluster file invalid, naming the plugin", async () => {
    const r = await run(["config", "validate"], `validate() { return "fine"; },`);
    failedForThePlugin(r, `plugin bad/result's validate returned "fine", not a list`, 2);
  });
});
