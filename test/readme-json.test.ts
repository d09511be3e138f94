/**
 * The README's `--json` section is a contract for scripts: one object per line, `v: 1`, a `ts` on
 * each, a documented `type`, and only the fields its row names (fields are only ever added, so a
 * field the README does not name is one a script cannot know about). Every command's `--json` is
 * run here, its one-shot answers as well as the event stream of a run, and held to that table.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dropInLab, runInProcess } from "./lab/cli.ts";
import { adminConf } from "./lab/kube/kubeconfig.ts";

const readme = readFileSync(join(import.meta.dir, "..", "README.md"), "utf8");

/** The table's rows: type → the fields it names, leaving out the values given in parentheses. */
function documented(): Map<string, Set<string>> {
  const start = readme.indexOf("### `--json`");
  const section = readme.slice(start, readme.indexOf("\n## ", start));
  const rows = new Map<string, Set<string>>();
  for (const row of section.split("\n").filter((l) => l.startsWith("| `"))) {
    const [, typeCell, fieldsCell] = row.split(/(?<!\\)\|/);
    let fields = fieldsCell!;
    // Innermost parentheses first: `status` (`ok`, `failed`) names values, not fields.
    while (/\([^()]*\)/.test(fields)) fields = fields.replace(/\([^()]*\)/g, "");
    for (const [, type] of typeCell!.matchAll(/`([^`]+)`/g))
      rows.set(type!, new Set([...fields.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)));
  }
  return rows;
}

const CLUSTER = `name: lab
network:
  gateway: 10.9.0.1
  subnet: 10.9.0.0/24
nodes:
  - name: n1
    role: control-plane
    address: 10.9.0.10
stages: {}
`;

/** A plugin that logs, reports progress, asks for a change and carries it out: every event of a run. */
const CHATTY = `import { definePlugin, diag } from "kubehyve";
export default definePlugin({
  id: "chatty/one",
  title: "says everything",
  apiVersion: 1,
  async check(ctx) {
    ctx.log.info("looking");
    return { changes: [{ summary: "do it", target: "host" }], diagnostics: [diag.warn("chatty.note", "a note", { hint: "none" })] };
  },
  async apply(ctx) {
    await ctx.wet("do it", async () => {}, { target: "host" });
  },
  async verify() {
    return [diag.ok("chatty.ok", "fine")];
  },
});
`;

async function everyJsonLine(): Promise<{ command: string; line: Record<string, unknown> }[]> {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-readme-json-"));
  writeFileSync(join(dir, "kubehyve.yaml"), CLUSTER);
  const state = join(dir, "state");
  mkdirSync(state, { mode: 0o700 });
  writeFileSync(join(state, "kubeconfig"), adminConf("https://10.9.0.10:6443"), { mode: 0o600 });
  writeFileSync(join(state, "cluster-id"), "5f0c3a52-8f3e-4a4e-9d1a-0b6f2f1c2d3e\n", { mode: 0o600 });
  const empty = mkdtempSync(join(tmpdir(), "kubehyve-readme-json-init-"));
  const chatty = dropInLab({
    prefix: "kubehyve-readme-json-lab-",
    name: "chatty",
    plugins: { "chatty.ts": CHATTY },
    stages: () => "  chatty: { plugin: one }\n",
  });
  const withChatty = ["--plugin-dir", chatty.plugins, "--state-dir", chatty.state];
  const runs: { args: string[]; cwd: string }[] = [
    { args: ["version"], cwd: dir },
    { args: ["plugins"], cwd: dir },
    { args: ["config", "validate"], cwd: dir },
    { args: ["config", "validate", "-c", "missing.yaml"], cwd: dir },
    { args: ["init"], cwd: empty },
    { args: ["kubeconfig", "--state-dir", state], cwd: dir },
    { args: ["kubeconfig", "--merge", "--state-dir", state], cwd: dir },
    { args: ["plan", "--example", "--offline"], cwd: dir },
    { args: ["render", "--example", "-o", join(dir, "rendered")], cwd: dir },
    { args: ["up", "--yes", ...withChatty], cwd: chatty.dir },
    { args: ["verify", ...withChatty], cwd: chatty.dir },
    { args: ["down", "--dry-run", ...withChatty], cwd: chatty.dir },
  ];
  const lines: { command: string; line: Record<string, unknown> }[] = [];
  for (const { args, cwd } of runs) {
    const r = await runInProcess([...args, "--json"], { cwd });
    const command = args.join(" ");
    expect({ command, stdout: r.stdout.endsWith("\n") }).toEqual({ command, stdout: true });
    for (const text of r.stdout.trimEnd().split("\n")) lines.push({ command, line: JSON.parse(text) });
  }
  return lines;
}

describe("the README's --json table", () => {
  test("names the types and their fields", () => {
    const rows = documented();
    expect(rows.get("phase.end")).toEqual(
      new Set(["stage", "plugin", "phase", "status", "durationMs", "error"]),
    );
    expect(rows.get("error")).toEqual(new Set(["message", "hint", "problems", "warnings", "exitCode"]));
  });

  test("holds every line each command's --json writes: v 1, a ts, a documented type and fields", async () => {
    const rows = documented();
    const lines = await everyJsonLine();
    const wrong: string[] = [];
    for (const { command, line } of lines) {
      const { v, ts, type, ...fields } = line;
      const where = `${command} --json: ${JSON.stringify(line).slice(0, 160)}`;
      if (v !== 1) wrong.push(`${where}: v is not 1`);
      if (typeof ts !== "string" || Number.isNaN(Date.parse(ts)) || new Date(ts).toISOString() !== ts)
        wrong.push(`${where}: no ISO 8601 ts`);
      const known = rows.get(String(type));
      if (!known) {
        wrong.push(`${where}: type ${String(type)} is not in the README`);
        continue;
      }
      for (const field of Object.keys(fields))
        if (!known.has(field)) wrong.push(`${where}: field ${field} is not in the README`);
    }
    expect(wrong).toEqual([]);
    // The one exception the README names: the schema, one JSON document, with or without --json.
    const schema = await runInProcess(["config", "schema", "--json"], { cwd: tmpdir() });
    expect(JSON.parse(schema.stdout).$schema).toBe("http://json-schema.org/draft-07/schema#");
    expect(readme).toContain("and `config schema` the schema itself, with or without `--json`");
    // What was run reached every kind of answer, so the check above looked at each.
    const seen = new Set(lines.map((l) => l.line.type));
    for (const type of ["version", "plugin", "config.valid", "init", "kubeconfig", "kubeconfig.merged"])
      expect(seen).toContain(type);
    for (const type of ["error", "run.start", "phase.end", "change", "diagnostic", "wet", "log", "run.end"])
      expect(seen).toContain(type);
  });
});
