/**
 * A state dir records its format and the kubehyve that last changed it: an older binary (an old
 * copy in ~, or on another machine) refuses a state dir a newer one wrote, before any host is
 * touched, and changes nothing in it. Through the real command line, in process, on a lab whose
 * one stage keeps a file on this machine.
 */
import { describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { version } from "../../src/cli/version-info.ts";
import { STATE_FORMAT } from "../../src/core/state-format.ts";
import { dropInLab, runInProcess } from "../lab/cli.ts";

const PLUGIN = `import { definePlugin, readTargetFile, v, writeTargetFile } from "kubehyve";
export default definePlugin({
  id: "marker/file",
  title: "marker file",
  apiVersion: 1,
  options: v.object({ file: v.string() }),
  async check(ctx) {
    // plan --offline reaches no host: planned as a fresh install, the file off.
    const current = await readTargetFile(ctx.host, ctx.options.file).catch(() => undefined);
    return { changes: current === "on" ? [] : [{ summary: "switch " + ctx.options.file + " on" }], diagnostics: [] };
  },
  async apply(ctx) {
    await ctx.wet("switch on", () => writeTargetFile(ctx.host, ctx.options.file, "on"));
  },
  async destroy(ctx) {
    await ctx.wet("remove " + ctx.options.file, async () => {
      await ctx.host.run(["rm", "-f", ctx.options.file]);
    });
  },
});
`;

function lab() {
  const { dir, plugins, state } = dropInLab({
    prefix: "kubehyve-format-",
    name: "formatlab",
    plugins: { "marker.ts": PLUGIN },
    stages: (dir) => `  marker:\n    plugin: file\n    file: ${join(dir, "marker.txt")}\n`,
  });
  const run = (args: string[]) =>
    runInProcess([...args, "--plugin-dir", plugins, "--state-dir", state], { cwd: dir });
  const record = join(state, "format.json");
  return { dir, state, run, record, marker: join(dir, "marker.txt") };
}

/** Every entry of the tree: its kind, mode and bytes (a link: its target), for before-and-after. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (path: string, name: string) => {
    const st = lstatSync(path);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out[name] = `link ${mode} ${readlinkSync(path)}`;
    else if (st.isDirectory()) {
      out[name] = `dir ${mode}`;
      for (const inner of readdirSync(path).sort()) walk(join(path, inner), `${name}/${inner}`);
    } else out[name] = `file ${mode} ${readFileSync(path).toString("base64")}`;
  };
  walk(root, ".");
  return out;
}

const NEWER = { format: STATE_FORMAT + 1, version: "9.0.0", commit: "feedface0001" };

describe("a state dir that a newer kubehyve wrote", () => {
  test("is refused by up, down, doctor, plan and kubeconfig, naming the state dir and both versions, with nothing in it or on the host changed", async () => {
    const { state, run, record, marker } = lab();
    expect((await run(["up", "--yes"])).code).toBe(0);
    writeFileSync(record, `${JSON.stringify(NEWER)}\n`, { mode: 0o600 });
    // up would switch the marker on again and down would remove it: neither may.
    rmSync(marker);
    const before = snapshot(state);
    const me = version();
    const refusal =
      `✖ state dir ${state} was last changed by kubehyve 9.0.0 (commit feedface0001), in state format ${NEWER.format}; ` +
      `this is kubehyve ${me.version} (commit ${me.commit}), which knows state format ${STATE_FORMAT} and could misread it; nothing was done\n` +
      "  → use kubehyve 9.0.0 or newer with this state dir (kubehyve --version says which one a binary is)\n";
    for (const args of [
      ["up", "--yes"],
      ["up", "--dry-run"],
      ["down", "--yes"],
      ["doctor"],
      ["plan"],
      ["kubeconfig"],
    ]) {
      const r = await run(args);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 1, stderr: refusal });
      expect(snapshot(state)).toEqual(before);
    }
    expect(existsSync(marker)).toBe(false);
  });

  test("laid out anew, with no version this kubehyve can read, is still refused as newer, not as broken", async () => {
    const { state, run, record } = lab();
    expect((await run(["up", "--yes"])).code).toBe(0);
    writeFileSync(record, `${JSON.stringify({ format: STATE_FORMAT + 1, writer: { v: "9" } })}\n`, {
      mode: 0o600,
    });
    const before = snapshot(state);
    const r = await run(["up", "--yes"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toStartWith(
      `✖ state dir ${state} was last changed by a newer kubehyve, in state format ${STATE_FORMAT + 1};`,
    );
    expect(r.stderr).toContain("→ use the kubehyve that wrote it or newer with this state dir");
    expect(snapshot(state)).toEqual(before);
  });

  test("does not stop what reads none of the state: render, plan --offline, config validate", async () => {
    const { dir, state, run, record } = lab();
    expect((await run(["up", "--yes"])).code).toBe(0);
    writeFileSync(record, `${JSON.stringify(NEWER)}\n`, { mode: 0o600 });
    const offline = await run(["plan", "--offline"]);
    expect({ code: offline.code, err: offline.stderr }).toEqual({ code: 0, err: "" });
    expect((await run(["render", "-o", join(dir, "out")])).code).toBe(0);
    expect((await run(["config", "validate"])).code).toBe(0);
    expect(JSON.parse(readFileSync(record, "utf8"))).toEqual(NEWER);
    expect(existsSync(state)).toBe(true);
  });
});

describe("a state dir without the record (made before it existed)", () => {
  test("is taken as format 1: a dry run and doctor write no record, the next up writes it (0600), down keeps it", async () => {
    const { state, run, record, marker } = lab();
    expect((await run(["up", "--yes"])).code).toBe(0);
    // What every state dir made so far looks like.
    rmSync(record);
    rmSync(marker);
    expect((await run(["doctor"])).code).toBe(0);
    expect((await run(["up", "--dry-run"])).code).toBe(0);
    expect((await run(["down", "--dry-run"])).code).toBe(0);
    expect((await run(["plan"])).code).toBe(0);
    expect(existsSync(record)).toBe(false);
    expect((await run(["up", "--yes"])).code).toBe(0);
    expect(readFileSync(marker, "utf8")).toBe("on");
    const me = version();
    expect(JSON.parse(readFileSync(record, "utf8"))).toEqual({
      format: STATE_FORMAT,
      version: me.version,
      commit: me.commit,
    });
    expect(statSync(record).mode & 0o777).toBe(0o600);
    expect(readdirSync(state).filter((n) => n.startsWith("format.json."))).toEqual([]);
    const down = await run(["down", "--yes"]);
    expect(down.code).toBe(0);
    expect(existsSync(marker)).toBe(false);
    expect(JSON.parse(readFileSync(record, "utf8")).format).toBe(STATE_FORMAT);
  });

  test("an older kubehyve's record of the same format is replaced by this one's on the next up", async () => {
    const { run, record } = lab();
    expect((await run(["up", "--yes"])).code).toBe(0);
    writeFileSync(record, `${JSON.stringify({ format: 1, version: "0.0.1", commit: "0123456789ab" })}\n`);
    expect((await run(["doctor"])).code).toBe(0);
    expect(JSON.parse(readFileSync(record, "utf8")).version).toBe("0.0.1");
    expect((await run(["up", "--yes"])).code).toBe(0);
    expect(JSON.parse(readFileSync(record, "utf8")).version).toBe(version().version);
  });
});

describe("a broken or hostile record", () => {
  const cases: [string, (record: string, dir: string) => void, RegExp][] = [
    ["not JSON", (r) => writeFileSync(r, "format: 2\n"), /is not valid JSON/],
    ["a JSON list", (r) => writeFileSync(r, "[1]\n"), /does not hold a JSON object/],
    [
      "a format that is no whole number",
      (r) => writeFileSync(r, '{"format":"2","version":"1.0.0","commit":"x"}'),
      /holds format "2"/,
    ],
    ["format 0", (r) => writeFileSync(r, '{"format":0,"version":"1.0.0","commit":"x"}'), /holds format 0/],
    [
      "a version with a terminal escape in it",
      (r) => writeFileSync(r, '{"format":1,"version":"1.0\\u001b[2J","commit":"x"}'),
      /holds version "1\.0\\u001b\[2J", not a kubehyve version/,
    ],
    [
      "a link to a file elsewhere",
      (r, dir) => {
        writeFileSync(join(dir, "elsewhere.json"), '{"format":1,"version":"1.0.0","commit":"x"}');
        symlinkSync(join(dir, "elsewhere.json"), r);
      },
      /is a symbolic link/,
    ],
    [
      "world-writable",
      (r) => {
        writeFileSync(r, '{"format":1,"version":"1.0.0","commit":"x"}');
        chmodSync(r, 0o666);
      },
      /writable/,
    ],
    ["a directory", (r) => mkdirSync(r, { mode: 0o700 }), /is a directory, not a file/],
    [
      "a huge file",
      (r) => writeFileSync(r, `{"format":1,"pad":"${"x".repeat(1 << 20)}"}`),
      /holds \d+ bytes/,
    ],
  ];
  for (const [what, make, why] of cases)
    test(`(${what}) is refused by up, doctor and down, its path named, nothing changed`, async () => {
      const { dir, state, run, record, marker } = lab();
      expect((await run(["up", "--yes"])).code).toBe(0);
      rmSync(record);
      rmSync(marker);
      make(record, dir);
      const before = snapshot(state);
      for (const args of [["up", "--yes"], ["doctor"], ["down", "--yes"]]) {
        const r = await run(args);
        expect({ args, code: r.code }).toEqual({ args, code: 2 });
        expect(r.stderr).toContain(record);
        expect(r.stderr).toMatch(why);
        expect(r.stdout).toBe("");
        expect(snapshot(state)).toEqual(before);
      }
      expect(existsSync(marker)).toBe(false);
    });
});
