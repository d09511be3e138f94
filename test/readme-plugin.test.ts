/**
 * The README's "Writing a plugin" example is the first plugin a third party writes: its code and
 * its cluster-file line, exactly as the README shows them, are loaded through the real plugin loader
 * and driven by plan, up, verify and doctor, the way its reader would. An example that no longer
 * loads, or that does what the README does not say, fails here.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Glob } from "bun";
import { parse } from "yaml";
import { dropInLab, runInProcess } from "./lab/cli.ts";

const ROOT = join(import.meta.dir, "..");
const readme = readFileSync(join(ROOT, "README.md"), "utf8");

/** The section's one `ts` block, and the cluster-file line the text after it gives. */
function example(): { code: string; stage: string; entry: Record<string, unknown> } {
  const start = readme.indexOf("### Writing a plugin");
  const section = readme.slice(start, readme.indexOf("\n## ", start));
  const code = /```ts\n([\s\S]*?)\n```/.exec(section)?.[1];
  const line = /`stages: (\{[^`]*\})`/.exec(section)?.[1];
  if (!code || !line) throw new Error("the README's plugin example or its cluster-file line is missing");
  const stages = parse(line) as Record<string, Record<string, unknown>>;
  const [stage, entry] = Object.entries(stages)[0]!;
  return { code, stage, entry };
}

/** The members of an interface of src/core/contract.ts, as its source declares them. */
function members(name: string): string[] {
  const source = readFileSync(join(import.meta.dir, "..", "src", "core", "contract.ts"), "utf8");
  const start = source.search(new RegExp(`export interface ${name}[<\\s]`));
  const body = source.slice(start, source.indexOf("\n}\n", start));
  return [...body.matchAll(/^ {2}(?:readonly )?([a-zA-Z]+)\??[(<:]/gm)].map((m) => m[1]!);
}

describe("the README's section on writing a plugin", () => {
  test("names every member of the plugin object and of the context it is given", () => {
    const start = readme.indexOf("### Writing a plugin");
    const section = readme.slice(start, readme.indexOf("\n## ", start));
    const names = [...members("Plugin"), ...members("PluginContext")];
    expect(names).toEqual(
      expect.arrayContaining(["id", "check", "hookAnswers", "wet", "clusterId", "hooks"]),
    );
    // `name`, `name(…)` or `name:` in a code span, or a key of the example's object.
    const named = (n: string) =>
      new RegExp(`\`(ctx\\.)?${n}[\`(]|\`${n}:|^ {2}(async )?${n}[(:]`, "m").test(section);
    expect(names.filter((n) => !named(n))).toEqual([]);
  });
});

describe("the README's plugin example", () => {
  test("is found with its cluster-file line", () => {
    const { code, stage, entry } = example();
    expect(code).toContain("definePlugin(");
    expect(stage).toBe("motd");
    expect(entry.plugin).toBe("banner");
  });

  test("loads through the real loader and plans, applies, verifies and is checked by doctor", async () => {
    const { code, stage, entry } = example();
    // The example writes /etc/motd.template on the host by default; here the host is this machine,
    // so the reader's one documented option points it into the test's own directory.
    let banner = "";
    const lab = dropInLab({
      prefix: "kubehyve-readme-plugin-",
      name: "readme",
      plugins: { "banner.ts": code },
      stages: (dir) => {
        banner = join(dir, "motd.template");
        return `  ${stage}: ${JSON.stringify({ ...entry, path: banner })}\n`;
      },
    });
    const run = (...args: string[]) =>
      runInProcess([...args, "--plugin-dir", lab.plugins, "--state-dir", lab.state], { cwd: lab.dir });

    const listed = await run("plugins");
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(`motd/banner`);
    expect(listed.stdout).toMatch(new RegExp(`✔ motd/banner +- +loaded +${join(lab.plugins, "banner.ts")}`));

    const plan = await run("plan");
    expect(plan.code).toBe(0);
    expect(plan.out).toContain(`+ write ${banner}`);
    expect(existsSync(banner)).toBe(false);

    const up = await run("up");
    expect(up.code).toBe(0);
    expect(readFileSync(banner, "utf8")).toBe(String(entry.text));
    expect(up.out).toContain("motd apply done");

    const again = await run("up");
    expect(again.code).toBe(0);
    expect(again.out).toContain("motd check up-to-date");
    expect(again.out).not.toContain("motd apply");

    expect((await run("verify")).code).toBe(0);

    writeFileSync(banner, "someone else's banner");
    const verify = await run("verify");
    expect(verify.code).toBe(1);
    expect(verify.out).toContain("banner missing");
    const doctor = await run("doctor", "--json");
    expect(doctor.code).toBe(1);
    const findings = JSON.parse(doctor.stdout).stages.find(
      (s: { slot: string }) => s.slot === "motd",
    ).findings;
    expect(findings).toContainEqual({
      id: "motd.missing",
      severity: "error",
      summary: "banner missing",
      hint: "kubehyve up --only motd",
    });

    // Its hint is a command that works: it puts the banner back.
    expect((await run("up", "--only", "motd")).code).toBe(0);
    expect(readFileSync(banner, "utf8")).toBe(String(entry.text));
  });

  test("refuses a misspelled option instead of dropping it, as the built-in stages do", async () => {
    const { code, stage, entry } = example();
    const lab = dropInLab({
      prefix: "kubehyve-readme-plugin-",
      name: "readme",
      plugins: { "banner.ts": code },
      stages: () => `  ${stage}: ${JSON.stringify({ plugin: entry.plugin, txt: entry.text })}\n`,
    });
    const r = await runInProcess(["config", "validate", "--plugin-dir", lab.plugins], { cwd: lab.dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("stages.motd.txt: unknown field");
  });
});

describe("the README's hooks", () => {
  const start = readme.indexOf("### Writing a plugin");
  const section = readme.slice(start, readme.indexOf("\n## ", start));

  test("its table names every hook a stage or the core declares, and no other", () => {
    const declared = new Set<string>();
    for (const file of new Glob("{src,plugins}/**/*.ts").scanSync(ROOT))
      for (const [, name] of readFileSync(join(ROOT, file), "utf8").matchAll(
        /\bconst [A-Z0-9_]*HOOK[A-Z0-9_]* = "([a-z0-9-]+:[a-z0-9-]+)"/g,
      ))
        declared.add(name!);
    expect(declared.size).toBeGreaterThan(3);
    const table = section
      .split("\n")
      .filter((l) => /^\| `[a-z0-9-]+:[a-z0-9-]+`/.test(l))
      .map((l) => /`([^`]+)`/.exec(l)![1]!);
    expect(table.sort()).toEqual([...declared].sort());
  });

  test("its example answers os:node-files through the real loader, and the file is in every node's Ignition", async () => {
    const code = [...section.matchAll(/```ts\n([\s\S]*?)\n```/g)]
      .map((m) => m[1]!)
      .find((c) => c.includes("os:node-files"));
    const line = /with `stages: (\{[^`]*\})`/.exec(section)?.[1];
    expect(code && line).toBeTruthy();
    const [stage, entry] = Object.entries(parse(line!) as Record<string, Record<string, unknown>>)[0]!;
    const { exampleText } = await import("../src/cli/_shared.ts");
    const lab = dropInLab({
      prefix: "kubehyve-readme-hook-",
      name: "unused",
      plugins: { "sysctl.ts": code! },
      stages: () => "",
    });
    writeFileSync(join(lab.dir, "kubehyve.yaml"), `${exampleText}  ${stage}: ${JSON.stringify(entry)}\n`);
    const out = join(lab.dir, "rendered");
    const r = await runInProcess(
      ["render", "-o", out, "--plugin-dir", lab.plugins, "--state-dir", lab.state],
      {
        cwd: lab.dir,
      },
    );
    expect(r.code).toBe(0);
    const answered = /path: "([^"]+)", contents: "([^"]+)"/.exec(code!)!;
    for (const node of ["cp1", "w1", "w2"]) {
      const ignition = JSON.parse(readFileSync(join(out, "os", `${node}.ign`), "utf8"));
      const file = ignition.storage.files.find((f: { path: string }) => f.path === answered[1]);
      expect(file).toBeDefined();
      const source: string = file.contents.source;
      const data = decodeURIComponent(source.slice(source.indexOf(",") + 1));
      expect(data).toBe(JSON.parse(`"${answered[2]}"`));
    }
  });
});
