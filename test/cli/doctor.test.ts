/**
 * `kubehyve doctor` as a user or their monitoring runs it: the report for people, one versioned
 * JSON document (held to a JSON Schema of its own here, so that any change of shape fails), the
 * node_exporter textfile (scraped through the real node_exporter, whose output a Prometheus
 * text-format parser from npm reads), --ignore, --stage, exit codes, and --watch.
 * Two drop-in stages whose findings are what a file on this machine says.
 */
import { describe, expect, onTestFinished, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import Ajv from "ajv";
import parsePrometheusTextFormat, { type MetricFamily } from "parse-prometheus-text-format";
import { type Diagnostic, diag } from "../../src/core/diagnostics.ts";
import { type DoctorReport, doctorReport, prometheusText } from "../../src/core/doctor-report.ts";
import { acquireLock } from "../../src/core/journal.ts";
import { dropInLab, runInProcess, userEnv } from "../lab/cli.ts";
import { haveNodeExporter, startNodeExporter, type TextfileScrape } from "../lab/node-exporter.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

/** A stage whose check reports the diagnostics in its `file` (a JSON list; none when it is missing). */
const probe = (slot: string, after?: string) => `import { definePlugin, readTargetFile, v } from "kubehyve";
export default definePlugin({
  id: "${slot}/probe",
  title: "${slot} probe",
  apiVersion: 1,
  ${after ? `after: ["${after}"],` : ""}
  options: v.object({ file: v.string() }),
  async check(ctx) {
    const text = await readTargetFile(ctx.host, ctx.options.file);
    return { changes: [], diagnostics: text ? JSON.parse(text) : [] };
  },
});
`;

const FINDINGS = {
  alpha: [
    { code: "alpha.fine", severity: "ok", summary: "alpha is fine", target: "n1" },
    { code: "alpha.note", severity: "info", summary: "alpha says hello", hint: "nothing to do" },
    {
      code: "alpha.broken",
      severity: "error",
      summary: 'alpha is "broken"',
      detail: "it said so\ntwice",
      hint: "kubehyve up --only alpha",
      target: "n1",
      path: "stages.alpha.file",
    },
  ],
  beta: [
    { code: "beta.odd", severity: "warn", summary: "beta is odd", hint: "look at it", target: "n1" },
    { code: "beta.odd", severity: "ok", summary: "beta is fine elsewhere", target: "n1" },
    { code: "beta.unreadable", severity: "skip", summary: "beta could not look", hint: "reach it first" },
  ],
};

function lab(findings: Record<string, unknown[]> = FINDINGS, name = "doclab") {
  const lab = dropInLab({
    prefix: "kubehyve-doctor-cli-",
    name,
    plugins: { "alpha.ts": probe("alpha"), "beta.ts": probe("beta", "alpha") },
    stages: (dir) =>
      `  alpha:\n    plugin: probe\n    file: ${join(dir, "alpha.json")}\n  beta:\n    plugin: probe\n    file: ${join(dir, "beta.json")}\n`,
  });
  const set = (f: Record<string, unknown[]>) => {
    for (const [slot, list] of Object.entries(f))
      writeFileSync(join(lab.dir, `${slot}.json`), JSON.stringify(list));
  };
  set(findings);
  const flags = ["--plugin-dir", lab.plugins, "--state-dir", lab.state];
  const run = (args: string[], opts: { stdoutTerminal?: boolean } = {}) =>
    runInProcess(["doctor", ...args, ...flags], { cwd: lab.dir, ...opts });
  const spawn = (args: string[]) =>
    Bun.spawn([process.execPath, MAIN, "doctor", ...args, ...flags], {
      cwd: lab.dir,
      env: userEnv(lab.dir),
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
  return { ...lab, run, spawn, set };
}

/** The shape of `doctor --json`, version 1, as the README documents it. */
const SEVERITY = { enum: ["ok", "info", "warn", "error", "skip"] };
const REPORT_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["v", "cluster", "checkedAt", "durationMs", "exitCode", "summary", "stages"],
  properties: {
    v: { const: 1 },
    cluster: { type: "string" },
    checkedAt: { type: "string", pattern: "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$" },
    durationMs: { type: "integer", minimum: 0 },
    exitCode: { enum: [0, 1] },
    summary: {
      type: "object",
      additionalProperties: false,
      required: ["ok", "info", "warn", "error", "skip"],
      properties: Object.fromEntries(
        ["ok", "info", "warn", "error", "skip"].map((k) => [k, { type: "integer", minimum: 0 }]),
      ),
    },
    stages: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["slot", "plugin", "findings"],
        properties: {
          slot: { type: "string" },
          plugin: { type: "string" },
          findings: {
            type: "array",
            items: {
              type: "object",
              additionalProperties: false,
              required: ["id", "severity", "summary"],
              properties: {
                id: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$" },
                severity: SEVERITY,
                summary: { type: "string" },
                detail: { type: "string" },
                hint: { type: "string" },
                target: { type: "string" },
                path: { type: "string" },
                ignored: { const: true },
              },
            },
          },
        },
      },
    },
  },
};
const validate = new Ajv({ allErrors: true, strict: true }).compile(REPORT_SCHEMA);

function document(stdout: string): DoctorReport {
  const doc: unknown = JSON.parse(stdout);
  if (!validate(doc)) throw new Error(`doctor --json broke its schema: ${JSON.stringify(validate.errors)}`);
  return doc as unknown as DoctorReport;
}

describe("the README's doctor --json", () => {
  test("its example document has the shape doctor writes, and its field table names each field", () => {
    const readme = readFileSync(join(import.meta.dir, "../../README.md"), "utf8");
    const at = readme.indexOf("### `doctor --json`");
    const section = readme.slice(at, readme.indexOf("\n### ", at + 1));
    const example = JSON.parse(/```json\n([\s\S]*?)\n```/.exec(section)![1]!);
    expect(validate(example) ? [] : validate.errors).toEqual([]);
    const named = new Set(
      section
        .split("\n")
        .filter((l) => l.startsWith("| `"))
        .flatMap((l) => [...l.matchAll(/`([a-zA-Z]+)(?:\[\]|: [^`]+)?`/g)].map((m) => m[1]!)),
    );
    const fields = (schema: { properties?: Record<string, unknown> }): string[] =>
      Object.entries(schema.properties ?? {}).flatMap(([name, sub]) => {
        const inner = sub as {
          properties?: Record<string, unknown>;
          items?: { properties?: Record<string, unknown> };
        };
        return [name, ...fields(inner.items ?? inner)];
      });
    expect(fields(REPORT_SCHEMA).filter((f) => !named.has(f))).toEqual([]);
  });
});

describe("kubehyve doctor for people", () => {
  test("a section per stage with its counts, a line and a hint per finding, the summary line last; exit 1 with an error", async () => {
    const { run } = lab();
    const r = await run([]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^doctor doclab: alpha, beta \(\d{4}-\d\d-\d\dT[\d:.]+Z, \d+ ms\)$/);
    expect(lines.slice(1).join("\n")).toBe(
      [
        "alpha (alpha/probe): 1 error, 1 info, 1 ok",
        "  ℹ alpha says hello (alpha.note)",
        "      → nothing to do",
        '  ✖ alpha is "broken" [n1 stages.alpha.file] (alpha.broken)',
        "      it said so",
        "      twice",
        "      → kubehyve up --only alpha",
        "beta (beta/probe): 1 warning, 1 skipped, 1 ok",
        "  ⚠ beta is odd [n1] (beta.odd)",
        "      → look at it",
        "  ○ beta could not look (beta.unreadable)",
        "      → reach it first",
        "doctor: 1 error, 1 warning, 1 skipped, 1 info, 2 ok",
        "",
      ].join("\n"),
    );
    expect(r.stderr).toBe("");
  });

  test("its log does not call it a dry run: doctor changes nothing by design, it stands in for no real run", async () => {
    const { run, state } = lab();
    expect((await run([])).code).toBe(1);
    const logs = (readdirSync(state, { recursive: true }) as string[]).filter((f) =>
      f.endsWith("-doctor.ndjson"),
    );
    expect(logs).toHaveLength(1);
    const start = readFileSync(join(state, logs[0]!), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .find((e) => e.type === "run.start");
    expect(start).toMatchObject({ command: "doctor", stages: ["alpha", "beta"], dryRun: false });
  });

  test("run from cron it keeps its newest 20 logs, removing only older logs of its own", async () => {
    const { run, state } = lab();
    const logs = join(state, "logs");
    mkdirSync(logs, { recursive: true, mode: 0o700 });
    chmodSync(state, 0o700);
    const others = [
      "2026-01-01T00-00-00-000Z-up.ndjson",
      "notes.txt",
      "2026-01-01T00-00-00-000Z-doctor.ndjson.bak",
    ];
    for (const name of others) writeFileSync(join(logs, name), "", { mode: 0o600 });
    // As old as can be, in doctor's own name: the first to go.
    writeFileSync(join(logs, "2000-01-01T00-00-00-000Z-doctor.ndjson"), "", { mode: 0o600 });
    for (let i = 0; i < 22; i++) expect((await run([])).code).toBe(1);
    const names = readdirSync(logs).sort();
    const own = names.filter((n) => /-doctor\.ndjson$/.test(n));
    expect(own).toHaveLength(20);
    expect(own).not.toContain("2000-01-01T00-00-00-000Z-doctor.ndjson");
    expect(names.filter((n) => !own.includes(n)).sort()).toEqual([...others].sort());
  });

  test("it reads while up holds the state dir's lock, neither waiting for it nor taking it", async () => {
    const { run, state } = lab();
    mkdirSync(state, { mode: 0o700 });
    chmodSync(state, 0o700);
    // Held by a live run: this process, as an up in the middle of its apply.
    const lock = acquireLock(state, "up");
    try {
      const r = await run(["--json"]);
      expect(r.code).toBe(1);
      expect(document(r.stdout).summary.error).toBe(1);
      expect(JSON.parse(readFileSync(lock.file, "utf8"))).toMatchObject({ pid: process.pid, command: "up" });
    } finally {
      lock.release();
    }
  });

  test("--verbose shows the ok lines too; no error is exit 0", async () => {
    const { run, set } = lab();
    set({ alpha: FINDINGS.alpha.filter((f) => f.severity !== "error") });
    const r = await run(["--verbose"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("  ✔ alpha is fine [n1] (alpha.fine)\n");
    expect(r.stdout).toEndWith("doctor: 0 errors, 1 warning, 1 skipped, 1 info, 2 ok\n");
  });

  test("--ignore, repeated or comma-separated, shows the error as an ignored warning and exits 0", async () => {
    const { run } = lab();
    for (const args of [["--ignore", "alpha.broken"], ["--ignore=nothing.here,alpha.broken"]]) {
      const r = await run(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('  ⚠ alpha is "broken" [n1 stages.alpha.file] (alpha.broken, ignored)\n');
      expect(r.stdout).toEndWith("doctor: 0 errors, 2 warnings, 1 skipped, 1 info, 2 ok\n");
    }
    // Each --ignore counts, not only the last: the error's id comes first.
    const both = await run(["--ignore", "alpha.broken", "--ignore", "beta.odd"]);
    expect(both.code).toBe(0);
    expect(both.stdout).toContain("(alpha.broken, ignored)");
  });

  test("--stage limits it to those stages; an unknown one is refused with exit 2", async () => {
    const { run } = lab();
    const r = await run(["--stage", "beta"]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("alpha");
    expect(r.stdout).toEndWith("doctor: 0 errors, 1 warning, 1 skipped, 0 info, 1 ok\n");
    const bad = await run(["--stage", "gamma"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('✖ no stage "gamma" in this cluster file\n  → stages here: alpha, beta\n');
  });

  test("bad values are refused before anything runs, naming the flag", async () => {
    const { run, dir } = lab();
    const notSeconds = "is not a number of seconds (or a duration such as 90s, 10m, 2h)";
    const cases: [string[], string][] = [
      [["--watch", "soon"], `✖ --watch "soon" ${notSeconds}\n  → kubehyve doctor --watch 60\n`],
      [["--timeout", "0"], `✖ --timeout "0" ${notSeconds}\n  → kubehyve doctor --timeout 300\n`],
      // Number() read these as 16 s and as no time at all (a round back to back with the last).
      [["--watch", "0x10"], `✖ --watch "0x10" ${notSeconds}\n  → kubehyve doctor --watch 60\n`],
      [["--timeout", "1e-300"], `✖ --timeout "1e-300" ${notSeconds}\n  → kubehyve doctor --timeout 300\n`],
      [["--watch", "0.05"], '✖ --watch "0.05" is less than 0.1 s\n  → kubehyve doctor --watch 60\n'],
      // Past a timer's range: taken, they would time every check out at once, or run a round a millisecond.
      [
        ["--timeout", "600h"],
        '✖ --timeout "600h" is more than 2147483 seconds (24 days), the longest kubehyve can wait\n  → kubehyve doctor --timeout 300\n',
      ],
      [
        ["--watch", "2147484"],
        '✖ --watch "2147484" is more than 2147483 seconds (24 days), the longest kubehyve can wait\n  → kubehyve doctor --watch 60\n',
      ],
      [
        ["--format", "xml"],
        '✖ --format "xml" is not one of human, json, prometheus\n  → kubehyve doctor --format prometheus --output /var/tmp/node_exporter/kubehyve.prom\n',
      ],
      [
        ["--format", "prometheus", "--output", join(dir, "kubehyve.txt")],
        `✖ --output ${join(dir, "kubehyve.txt")}: node_exporter's textfile collector reads only files ending in .prom\n  → --output ${join(dir, "kubehyve.prom")}\n`,
      ],
      [
        ["--format", "prometheus", "--output", join(dir, "nowhere/kubehyve.prom")],
        `✖ --output ${join(dir, "nowhere/kubehyve.prom")}: the directory ${join(dir, "nowhere")} does not exist\n  → make it first (node_exporter's --collector.textfile.directory names it)\n`,
      ],
      // Whole ids, not patterns (the README).
      [
        ["--ignore", "bhyve.*"],
        '✖ --ignore "bhyve.*" is not a check id\n  → the ids are in parentheses at the end of each line of the report, e.g. --ignore bhyve.cpu-overcommit\n',
      ],
      [
        ["--ignore", "a b"],
        '✖ --ignore "a b" is not a check id\n  → the ids are in parentheses at the end of each line of the report, e.g. --ignore bhyve.cpu-overcommit\n',
      ],
    ];
    for (const [args, stderr] of cases) {
      const r = await run(args);
      expect([args, r.code, r.stderr]).toEqual([args, 2, stderr]);
      expect(r.stdout).toBe("");
    }
    // The cluster file's durations are taken as well as bare seconds.
    const plain = await run([]);
    expect(plain.code).not.toBe(2);
    for (const timeout of ["2m", "90s", "1500ms", "1.5"]) {
      const r = await run(["--timeout", timeout]);
      expect([timeout, r.code, r.stderr]).toEqual([timeout, plain.code, plain.stderr]);
    }
    // With --json the refusal is a JSON line on stdout, like every error of a --json run.
    const json = await run(["--json", "--format", "prometheus"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({
      type: "error",
      message: "--json and --format prometheus ask for two formats",
      exitCode: 2,
    });
  });
});

describe("kubehyve doctor --output", () => {
  test("a directory is refused before anything runs, with the file to name inside it", async () => {
    const { run, dir } = lab();
    const textfiles = join(dir, "textfile.prom");
    mkdirSync(textfiles);
    const r = await run(["--format", "prometheus", "--output", textfiles]);
    expect([r.code, r.stderr]).toEqual([
      2,
      `✖ --output ${textfiles} is a directory\n  → name the file to write in it: --output ${join(textfiles, "kubehyve.prom")}\n`,
    ]);
    expect(r.stdout).toBe("");
    expect(readdirSync(textfiles)).toEqual([]);
  });

  test("a directory reached through a symbolic link is the directory it leads to", async () => {
    const { run, dir } = lab();
    mkdirSync(join(dir, "textfile"));
    symlinkSync(join(dir, "textfile"), join(dir, "link"));
    const r = await run(["--format", "prometheus", "--output", join(dir, "link/kubehyve.prom")]);
    expect(r.code).toBe(1);
    expect(readdirSync(join(dir, "textfile"))).toEqual(["kubehyve.prom"]);
  });

  test("a place that takes no file names --output and why, exit 2, and leaves no temporary file", async () => {
    const { run } = lab();
    for (const out of ["/proc/kubehyve.prom", "/sys/kubehyve.prom"]) {
      const r = await run(["--format", "prometheus", "--output", out]);
      expect([out, r.code]).toEqual([out, 2]);
      expect(r.stderr).toStartWith(`✖ --output ${out} cannot be written: `);
      expect(r.stderr).not.toContain(".tmp");
    }
  });
});

describe("kubehyve doctor run by a user who is not root", () => {
  test("root's state dir is refused with exit 2, told to run as root, never to take root's state over", async () => {
    const { dir, plugins, state } = lab();
    mkdirSync(state, { mode: 0o700 });
    chmodSync(dir, 0o755);
    const proc = Bun.spawnSync(
      [process.execPath, MAIN, "doctor", "--json", "--plugin-dir", plugins, "--state-dir", state],
      {
        cwd: dir,
        env: userEnv(dir),
        uid: 65534,
        gid: 65534,
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    expect([proc.exitCode, proc.stderr.toString()]).toEqual([2, ""]);
    const error = JSON.parse(proc.stdout.toString());
    expect(error).toMatchObject({
      v: 1,
      type: "error",
      message: `state dir ${state} is root's, not of the user running kubehyve (uid 65534)`,
      exitCode: 2,
    });
    expect(error.hint).toStartWith("run kubehyve as root (sudo kubehyve …)");
    expect(error.hint).not.toContain("chown");
    expect(readdirSync(state)).toEqual([]);
  });
});

describe("kubehyve doctor --output over what is already there", () => {
  test("another program's file and a symbolic link are left as they were, exit 2, before anything runs", async () => {
    const { run, dir, state } = lab();
    const textfiles = join(dir, "textfile");
    mkdirSync(textfiles);
    const other = join(textfiles, "smartmon.prom");
    writeFileSync(other, "# TYPE smartmon_device_active gauge\nsmartmon_device_active 1\n");
    const secret = join(dir, "shadow.prom");
    writeFileSync(secret, "not a report\n");
    const link = join(textfiles, "kubehyve.prom");
    symlinkSync(secret, link);
    const cases: [string, string][] = [
      [
        other,
        `✖ --output ${other} is a file kubehyve doctor did not write; it is left as it is\n  → doctor replaces only its own report: name another file (--output ${join(textfiles, "kubehyve-doclab.prom")}), or remove this one first\n`,
      ],
      [
        link,
        `✖ --output ${link} is a symbolic link: doctor replaces only a file of its own, never a link\n  → name the file itself, or a new one in a directory of your choice\n`,
      ],
    ];
    for (const [out, stderr] of cases) {
      const r = await run(["--format", "prometheus", "--output", out]);
      expect([out, r.code, r.stderr, r.stdout]).toEqual([out, 2, stderr, ""]);
    }
    expect(readFileSync(other, "utf8")).toBe(
      "# TYPE smartmon_device_active gauge\nsmartmon_device_active 1\n",
    );
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(secret, "utf8")).toBe("not a report\n");
    expect(readdirSync(textfiles).sort()).toEqual(["kubehyve.prom", "smartmon.prom"]);
    // Refused before any stage was looked at: not even the state dir was made.
    expect(existsSync(state)).toBe(false);
  });

  test("its own report is replaced round after round, in each format, and so is an empty file; another cluster's is not", async () => {
    const { run, dir } = lab();
    for (const [args, file] of [
      [["--format", "prometheus"], "kubehyve.prom"],
      [["--json"], "kubehyve.json"],
      [[], "kubehyve.txt"],
    ] as const) {
      const out = join(dir, file);
      writeFileSync(out, "");
      const inodes = [statSync(out).ino];
      for (let i = 0; i < 2; i++) {
        const r = await run([...args, "--output", out]);
        expect([file, r.code, r.stderr]).toEqual([file, 1, ""]);
        inodes.push(statSync(out).ino);
      }
      // Each round's file is a new one renamed into place (the one before it is still there when it
      // is made, so it cannot have its inode), never rewritten where a reader may be halfway.
      expect(inodes.slice(1).map((ino, i) => ino !== inodes[i])).toEqual([true, true]);
    }
    const other = lab(FINDINGS, "otherlab");
    const out = join(dir, "kubehyve.prom");
    const r = await other.run(["--format", "prometheus", "--output", out]);
    expect([r.code, r.stderr]).toEqual([
      2,
      `✖ --output ${out} holds the report of cluster "doclab", not of "otherlab"\n  → give each cluster a file of its own: --output ${join(dir, "kubehyve-otherlab.prom")}\n`,
    ]);
    expect(readFileSync(out, "utf8")).toContain('cluster="doclab"');
  });
});

describe("kubehyve doctor --output after a doctor killed mid-write", () => {
  test("the temporary file it left is removed; a live writer's, and other files' temporary names, are not", async () => {
    const { run, dir } = lab();
    const textfiles = join(dir, "textfile");
    mkdirSync(textfiles);
    // A process that has ended: its pid names no one now.
    const gone = Bun.spawnSync([process.execPath, "-e", ""]).pid;
    const left = `kubehyve.prom.${gone}.1.tmp`;
    // Another process that still runs, as a second doctor writing the same file would.
    const live = Bun.spawn([process.execPath, "-e", "setTimeout(() => {}, 60_000)"]);
    onTestFinished(() => live.kill());
    const kept = [
      `kubehyve.prom.${process.pid}.7.tmp`,
      `kubehyve.prom.${live.pid}.3.tmp`,
      `smartmon.prom.${gone}.1.tmp`,
      `kubehyve.prom.${gone}.tmp`,
    ];
    for (const name of [left, ...kept]) writeFileSync(join(textfiles, name), "# half a file");
    const r = await run(["--format", "prometheus", "--output", join(textfiles, "kubehyve.prom")]);
    expect(r.code).toBe(1);
    expect(readdirSync(textfiles).sort()).toEqual(["kubehyve.prom", ...kept].sort());
  });
});

describe("kubehyve doctor --output and stdout", () => {
  test("off a terminal nothing is written there, in any format; on one, the summary and where the report went", async () => {
    const { run, dir } = lab();
    for (const [args, file] of [
      [["--format", "prometheus"], "kubehyve.prom"],
      [["--json"], "kubehyve.json"],
      [[], "kubehyve.txt"],
    ] as const) {
      const out = join(dir, file);
      const r = await run([...args, "--output", out]);
      expect([file, r.code, r.stdout, r.stderr]).toEqual([file, 1, "", ""]);
      const seen = await run([...args, "--output", out], { stdoutTerminal: true });
      expect([file, seen.code, seen.stdout]).toEqual([
        file,
        1,
        `doctor: 1 error, 1 warning, 1 skipped, 1 info, 2 ok (written to ${out})\n`,
      ]);
    }
  });
});

describe("kubehyve doctor --watch --output", () => {
  test("a directory removed between rounds is not made anew: the watch ends naming it, exit 2", async () => {
    const { run, dir } = lab();
    const textfiles = join(dir, "textfile");
    mkdirSync(textfiles);
    const out = join(textfiles, "kubehyve.prom");
    const running = run(["--format", "prometheus", "--output", out, "--watch", "0.2"]);
    for (const deadline = Date.now() + 20_000; !existsSync(out) && Date.now() < deadline; )
      await Bun.sleep(20);
    rmSync(textfiles, { recursive: true });
    const stop = setTimeout(() => process.emit("SIGINT"), 10_000);
    const r = await running;
    clearTimeout(stop);
    expect([r.code, r.stderr]).toEqual([
      2,
      `✖ --output ${out}: the directory ${textfiles} does not exist\n  → make it first (node_exporter's --collector.textfile.directory names it)\n`,
    ]);
    expect(existsSync(textfiles)).toBe(false);
  });
});

describe("the report made of a round's findings", () => {
  const report = (findings: Diagnostic[], stage: Diagnostic[]) =>
    doctorReport({
      cluster: "doclab",
      outcomes: [{ slot: "alpha", plugin: "alpha/probe", status: "ok", changes: [], diagnostics: stage }],
      findings,
      exitCode: 1,
      finishedAt: new Date(0),
      durationMs: 1,
    });

  test("counts the run's own findings (an unreachable machine) with the stages' in its summary", () => {
    const doc = report([diag.error("target.unreachable", "n1 cannot be reached", { target: "n1" })], []);
    expect(doc.summary).toEqual({ ok: 0, info: 0, skip: 0, warn: 0, error: 1 });
  });

  test("gives a check found more than once on one target its worst status, in whichever order", () => {
    const found = [
      diag.ok("alpha.disk", "vdb is fine", { target: "n1" }),
      diag.error("alpha.disk", "vdc is broken", { target: "n1" }),
    ];
    for (const order of [found, [...found].reverse()]) {
      const series = prometheusText(report([], order))
        .split("\n")
        .filter((l) => l.startsWith("kubehyve_check_status{"));
      expect(series).toEqual([
        'kubehyve_check_status{cluster="doclab",stage="alpha",id="alpha.disk",target="n1"} 4',
      ]);
    }
  });
});

describe("kubehyve doctor --json", () => {
  test("is one document of version 1 with every finding, the counts and the exit code", async () => {
    const { run } = lab();
    const r = await run(["--json", "--ignore", "beta.odd"]);
    expect(r.code).toBe(1);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    const doc = document(r.stdout);
    expect(doc).toMatchObject({
      v: 1,
      cluster: "doclab",
      exitCode: 1,
      summary: { ok: 2, info: 1, warn: 1, error: 1, skip: 1 },
    });
    expect(doc.stages.map((s: { slot: string; plugin: string }) => [s.slot, s.plugin])).toEqual([
      ["kubehyve", "kubehyve"],
      ["alpha", "alpha/probe"],
      ["beta", "beta/probe"],
    ]);
    expect(doc.stages[1]!.findings[2]).toEqual({
      id: "alpha.broken",
      severity: "error",
      summary: 'alpha is "broken"',
      detail: "it said so\ntwice",
      hint: "kubehyve up --only alpha",
      target: "n1",
      path: "stages.alpha.file",
    });
    // A warning of an ignored id stays a warning, and is not marked: only errors move.
    expect(doc.stages[2]!.findings[0]).toEqual({
      id: "beta.odd",
      severity: "warn",
      summary: "beta is odd",
      hint: "look at it",
      target: "n1",
    });
    expect(Math.abs(Date.parse(doc.checkedAt) - Date.now())).toBeLessThan(60_000);
  });

  test("the schema above is strict: a field it does not know fails it", () => {
    expect(
      validate({
        v: 1,
        cluster: "x",
        checkedAt: "2026-01-01T00:00:00.000Z",
        durationMs: 1,
        exitCode: 0,
        summary: { ok: 0, info: 0, warn: 0, error: 0, skip: 0 },
        stages: [
          { slot: "a", plugin: "a/b", findings: [{ id: "a.b", severity: "ok", summary: "", code: "a.b" }] },
        ],
      }),
    ).toBe(false);
  });
});

/** The npm parser's sample of `name` whose labels include `labels`. */
function sampleOf(families: MetricFamily[], name: string, labels: Record<string, string> = {}) {
  return families
    .find((f) => f.name === name)
    ?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
}

/** node_exporter read every .prom file of its directory: no refused file, no dropped sample. */
function expectReadCleanly(scrape: TextfileScrape, file: string) {
  expect({
    errors: scrape.errors,
    gatheringErrors: scrape.gatheringErrors,
    scrapeError: scrape.scrapeError,
  }).toEqual({ errors: [], gatheringErrors: 0, scrapeError: 0 });
  expect(scrape.mtimes.has(file)).toBe(true);
}

// Every test here reads doctor's textfile through the real node_exporter.
describe.skipIf(!haveNodeExporter())("kubehyve doctor --format prometheus", () => {
  test("writes a node_exporter textfile atomically that node_exporter reads: one gauge per check, HELP and TYPE, the run's time", async () => {
    const { run, dir } = lab();
    const textfiles = join(dir, "textfile");
    mkdirSync(textfiles);
    // Running before the file exists, as on a monitored host.
    const exporter = await startNodeExporter(textfiles);
    try {
      const path = join(textfiles, "kubehyve.prom");
      const before = Date.now() / 1000;
      const r = await run(["--format", "prometheus", "--output", path, "--ignore", "alpha.broken"]);
      expect(r.code).toBe(0);
      // Nothing on stdout off a terminal: from cron that would be a mail every five minutes.
      expect([r.stdout, r.stderr]).toEqual(["", ""]);
      // Renamed into place: nothing else is left in the directory node_exporter reads.
      expect(readdirSync(textfiles)).toEqual(["kubehyve.prom"]);
      expect(statSync(path).mode & 0o777).toBe(0o644);
      const text = readFileSync(path, "utf8");
      // The npm parser starts a new family whenever the name changes: one family per name means
      // each metric's lines stand together, as the format asks and node_exporter does not check.
      expect(parsePrometheusTextFormat(text).map((f) => f.name)).toEqual([
        "kubehyve_check_status",
        "kubehyve_doctor_findings",
        "kubehyve_doctor_last_run_timestamp_seconds",
      ]);

      const scrape = await exporter.scrape();
      expectReadCleanly(scrape, path);
      // textfile.go:181 reports the file's mtime in whole seconds.
      expect(scrape.mtimes.get(path)).toBe(Math.floor(statSync(path).mtimeMs / 1000));

      const byName = new Map(scrape.families.map((f) => [f.name, f]));
      const status = byName.get("kubehyve_check_status")!;
      expect(status.type).toBe("GAUGE");
      expect(status.help).toBe(
        "Result of one kubehyve doctor check: 0 ok, 1 info, 2 skipped (could not run), 3 warning, 4 error.",
      );
      // node_exporter serves a family's series sorted by their labels.
      expect(status.metrics.map((m) => m.labels)).toEqual(
        [
          { stage: "alpha", id: "alpha.broken", target: "n1" },
          { stage: "alpha", id: "alpha.fine", target: "n1" },
          { stage: "alpha", id: "alpha.note", target: "" },
          { stage: "beta", id: "beta.odd", target: "n1" },
          { stage: "beta", id: "beta.unreadable", target: "" },
        ].map((l) => ({ cluster: "doclab", ...l })),
      );
      expect(status.metrics.map((m) => [m.labels!.id, Number(m.value)])).toEqual([
        // Ignored: shown as the warning it was turned into.
        ["alpha.broken", 3],
        ["alpha.fine", 0],
        ["alpha.note", 1],
        // Two findings of one check on one target are one series, at the worse of the two.
        ["beta.odd", 3],
        ["beta.unreadable", 2],
      ]);
      const findings = byName.get("kubehyve_doctor_findings")!;
      expect(findings.type).toBe("GAUGE");
      expect(
        Object.fromEntries(
          findings.metrics.map((m) => [m.labels!.severity, [m.labels!.cluster, Number(m.value)]]),
        ),
      ).toEqual({
        ok: ["doclab", 2],
        info: ["doclab", 1],
        warn: ["doclab", 2],
        error: ["doclab", 0],
        skip: ["doclab", 1],
      });
      const stamp = byName.get("kubehyve_doctor_last_run_timestamp_seconds")!;
      expect(stamp.type).toBe("GAUGE");
      expect(stamp.metrics.map((m) => m.labels)).toEqual([{ cluster: "doclab" }]);
      const seconds = Number(stamp.metrics[0]!.value);
      expect(seconds).toBeGreaterThanOrEqual(Math.floor(before));
      expect(seconds).toBeLessThanOrEqual(Date.now() / 1000);
    } finally {
      await exporter.stop();
    }
  });

  test("label values are escaped as the format asks, and node_exporter reads them back unchanged", async () => {
    const target = 'a "quoted"\\back\nslash';
    const { run, dir } = lab({
      alpha: [{ code: "alpha.odd", severity: "warn", summary: "odd", target }],
      beta: [],
    });
    const r = await run(["--format", "prometheus"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('target="a \\"quoted\\"\\\\back\\nslash"} 3\n');
    expect(existsSync(join(dir, "kubehyve.prom"))).toBe(false);

    const textfiles = join(dir, "textfile");
    const path = join(textfiles, "kubehyve.prom");
    const exporter = await startNodeExporter(textfiles);
    try {
      writeFileSync(path, r.stdout);
      const scrape = await exporter.scrape();
      expectReadCleanly(scrape, path);
      expect(sampleOf(scrape.families, "kubehyve_check_status", { id: "alpha.odd" })?.labels?.target).toBe(
        target,
      );
    } finally {
      await exporter.stop();
    }
  });

  test("two clusters' textfiles in one directory are read together: the cluster label keeps their series apart", async () => {
    const first = lab();
    const second = lab(
      { alpha: [{ code: "alpha.fine", severity: "ok", summary: "fine", target: "n1" }] },
      "otherlab",
    );
    const textfiles = join(first.dir, "textfile");
    const exporter = await startNodeExporter(textfiles);
    try {
      const files = [join(textfiles, "doclab.prom"), join(textfiles, "otherlab.prom")];
      expect((await first.run(["--format", "prometheus", "--output", files[0]!])).code).toBe(1);
      expect((await second.run(["--format", "prometheus", "--output", files[1]!])).code).toBe(0);
      const scrape = await exporter.scrape();
      for (const file of files) expectReadCleanly(scrape, file);
      const status = scrape.families.find((f) => f.name === "kubehyve_check_status")!;
      expect(status.metrics.filter((m) => m.labels!.cluster === "doclab")).toHaveLength(5);
      expect(
        sampleOf(scrape.families, "kubehyve_check_status", { cluster: "otherlab", id: "alpha.fine" })?.value,
      ).toBe("0");
      for (const cluster of ["doclab", "otherlab"])
        expect(
          sampleOf(scrape.families, "kubehyve_doctor_last_run_timestamp_seconds", { cluster }),
        ).toBeDefined();
    } finally {
      await exporter.stop();
    }
  });

  test("node_exporter refuses a textfile that breaks its rules, so the checks above can fail", async () => {
    const { run, dir } = lab();
    const r = await run(["--format", "prometheus"]);
    expect(r.code).toBe(1);
    const good = r.stdout;
    const textfiles = join(dir, "textfile");
    const path = join(textfiles, "kubehyve.prom");
    const exporter = await startNodeExporter(textfiles);
    try {
      writeFileSync(path, good);
      expectReadCleanly(await exporter.scrape(), path);

      const stamp = /^kubehyve_doctor_last_run_timestamp_seconds\{.*\n/m;
      const refused = {
        // text_parse.go:511 (prometheus/common v0.39.0).
        "a second TYPE line": good.replace(
          "# TYPE kubehyve_check_status gauge\n",
          "# TYPE kubehyve_check_status gauge\n# TYPE kubehyve_check_status gauge\n",
        ),
        // textfile.go:281-282 (node_exporter v1.5.0).
        "a client-side timestamp": good.replace(stamp, (line) => `${line.trimEnd()} 1700000000000\n`),
        // text_parse.go:116.
        "no line feed after the last line": good.trimEnd(),
      };
      for (const [what, text] of Object.entries(refused)) {
        expect(text, what).not.toBe(good);
        writeFileSync(path, text);
        const scrape = await exporter.scrape();
        expect(scrape.scrapeError, what).toBe(1);
        expect(scrape.mtimes.has(path), what).toBe(false);
        expect(scrape.errors.join("\n"), what).toContain("failed to collect textfile data");
        // The whole file is dropped, not only the line that broke the rule.
        expect(sampleOf(scrape.families, "kubehyve_doctor_findings"), what).toBeUndefined();
      }

      // A series given twice parses, and node_textfile_scrape_error stays 0: the registry drops the
      // second sample while gathering (client_golang v1.14.0 registry.go:937-940).
      const line = /^kubehyve_doctor_findings\{.*severity="ok".*\n/m.exec(good)![0];
      writeFileSync(path, good.replace(line, `${line}${line}`));
      const twice = await exporter.scrape();
      expect(twice.scrapeError).toBe(0);
      expect(twice.gatheringErrors).toBe(1);
      expect(twice.errors.join("\n")).toContain("was collected before with the same name and label values");

      writeFileSync(path, good);
      expectReadCleanly(await exporter.scrape(), path);
    } finally {
      await exporter.stop();
    }
  });
});

/** Reads a child's stdout until `done` says it has enough, or 20 s pass. */
async function readUntil(
  stream: ReadableStream<Uint8Array>,
  done: (text: string) => boolean,
): Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + 20_000;
  while (!done(text) && Date.now() < deadline) {
    const chunk = await Promise.race([reader.read(), Bun.sleep(deadline - Date.now()).then(() => undefined)]);
    if (!chunk || chunk.done) break;
    text += decoder.decode(chunk.value, { stream: true });
  }
  reader.releaseLock();
  return text;
}

describe("kubehyve doctor --watch", () => {
  test("without a terminal: one JSON document per round, and Ctrl-C ends it with 130", async () => {
    const { spawn, set } = lab();
    const proc = spawn(["--watch", "1", "--json"]);
    const first = await readUntil(proc.stdout, (t) => t.split("\n").length > 1);
    // What the next round sees changes between rounds: each document is its round's.
    set({ alpha: [], beta: [] });
    const both = first + (await readUntil(proc.stdout, (t) => (first + t).split("\n").length > 2));
    proc.kill("SIGINT");
    const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(130);
    const docs = both.trim().split("\n").map(document);
    expect(docs).toHaveLength(2);
    expect(docs.map((d) => [d.exitCode, d.summary.error])).toEqual([
      [1, 1],
      [0, 0],
    ]);
    // Rounds start --watch seconds apart (a round's own time is part of its interval), so their
    // starts are compared: a first round that took longer can finish less than a second before the next.
    const startOf = (d: { checkedAt: string; durationMs: number }) => Date.parse(d.checkedAt) - d.durationMs;
    expect(startOf(docs[1]!) - startOf(docs[0]!)).toBeGreaterThanOrEqual(900);
    expect(await new Response(proc.stderr).text()).toContain("interrupted");
  });

  test("a round that takes longer than the interval is followed by the next at once", async () => {
    // A stage whose check takes 3 s, watched every 2 s: the next round is due before this one ends.
    const slow = dropInLab({
      prefix: "kubehyve-doctor-slow-",
      name: "slowlab",
      plugins: {
        "slow.ts": `import { definePlugin, diag, sleep } from "kubehyve";
export default definePlugin({
  id: "alpha/slow",
  title: "slow",
  apiVersion: 1,
  async check(ctx) {
    await sleep(3000, ctx.signal);
    return { changes: [], diagnostics: [diag.ok("alpha.slow", "took its time")] };
  },
});
`,
      },
      stages: () => "  alpha:\n    plugin: slow\n",
    });
    const proc = Bun.spawn(
      [
        process.execPath,
        MAIN,
        "doctor",
        "--watch",
        "2",
        "--json",
        "--plugin-dir",
        slow.plugins,
        "--state-dir",
        slow.state,
      ],
      { cwd: slow.dir, env: userEnv(slow.dir), stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    try {
      const text = await readUntil(proc.stdout, (t) => t.split("\n").length > 2);
      const [first, second] = text.trim().split("\n").map(document);
      const endOf = (d: { checkedAt: string }) => Date.parse(d.checkedAt);
      const startOf = (d: { checkedAt: string; durationMs: number }) => endOf(d) - d.durationMs;
      expect(first!.durationMs).toBeGreaterThanOrEqual(2000);
      // Not two more seconds after the end: the interval runs from one start to the next.
      expect(startOf(second!) - endOf(first!)).toBeLessThan(1500);
    } finally {
      proc.kill("SIGINT");
      await proc.exited;
    }
  }, 45_000);

  test("a reader of its stdout that goes away ends the watch, with the last round's exit code", async () => {
    const { spawn } = lab();
    const proc = spawn(["--watch", "0.2", "--json"]);
    const first = await readUntil(proc.stdout, (t) => t.includes("\n"));
    expect(document(first.split("\n")[0]!).exitCode).toBe(1);
    // `kubehyve doctor --watch 5 --json | head -1`: the reader reads one round and leaves.
    await proc.stdout.cancel();
    const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(1);
    expect(await new Response(proc.stderr).text()).toBe("");
  });

  test("on a terminal the report is cleared and drawn anew each round", async () => {
    const { run } = lab();
    const clear = "\x1b[H\x1b[2J";
    const running = run(["--watch", "0.2"], { stdoutTerminal: true });
    // Rounds every 0.2 s: after 1.5 s several have been drawn. Ctrl-C reaches the handler the
    // command installed, as the terminal's would.
    const stop = setTimeout(() => process.emit("SIGINT"), 1500);
    const r = await running;
    clearTimeout(stop);
    expect(r.code).toBe(130);
    const drawn = r.stdout.split(clear).slice(1);
    expect(drawn.length).toBeGreaterThanOrEqual(2);
    expect(r.stdout.startsWith(clear)).toBe(true);
    for (const report of drawn)
      expect(report).toEndWith("doctor: 1 error, 1 warning, 1 skipped, 1 info, 2 ok\n");
  });
});

/**
 * A lab of one stage whose check writes `started` into the lab's directory, then does what `body`
 * says (plugin code), then reports nothing: for signals that arrive in the middle of a round.
 */
function slowLab(body: string) {
  const slow = `import { definePlugin, v } from "kubehyve";
import { writeFileSync } from "node:fs";
export default definePlugin({
  id: "slow/probe",
  title: "slow probe",
  apiVersion: 1,
  options: v.object({ dir: v.string() }),
  async check(ctx) {
    writeFileSync(ctx.options.dir + "/started", "");
    ${body}
    return { changes: [], diagnostics: [] };
  },
});
`;
  const lab = dropInLab({
    prefix: "kubehyve-doctor-cli-",
    name: "doclab",
    plugins: { "slow.ts": slow },
    stages: (dir) => `  slow:\n    plugin: probe\n    dir: ${dir}\n`,
  });
  const flags = ["--plugin-dir", lab.plugins, "--state-dir", lab.state];
  const spawn = (args: string[]) =>
    Bun.spawn([process.execPath, MAIN, "doctor", ...args, ...flags], {
      cwd: lab.dir,
      env: userEnv(lab.dir),
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
  const started = async () => {
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await Bun.sleep(50))
      if (existsSync(join(lab.dir, "started"))) return;
    throw new Error("the check never started");
  };
  return { ...lab, spawn, started };
}

describe("kubehyve doctor stopped by a signal in the middle of a round", () => {
  test("a check that runs on after SIGTERM to the end of the round still ends the run with 130 and writes no file", async () => {
    // The check ignores the stop, as a plugin may: the round's last step ends normally.
    const { spawn, started, dir } = slowLab("await new Promise((r) => setTimeout(r, 1500));");
    mkdirSync(join(dir, "textfile"));
    const out = join(dir, "textfile", "kubehyve.prom");
    const proc = spawn(["--format", "prometheus", "--output", out]);
    await started();
    proc.kill("SIGTERM");
    const code = await Promise.race([proc.exited, Bun.sleep(20_000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(130);
    expect(readdirSync(join(dir, "textfile"))).toEqual([]);
    expect(await new Response(proc.stdout).text()).toBe("");
  });

  test("SIGTERM ends a check's running command at once: doctor changes nothing, so there is no step to let finish", async () => {
    // Not told of the stop, this command would run for 30 s, the whole round with it.
    const { spawn, started } = slowLab('await ctx.host.run(["sleep", "30"]);');
    const proc = spawn(["--json"]);
    await started();
    await Bun.sleep(200);
    const sent = Date.now();
    proc.kill("SIGTERM");
    const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(130);
    expect(Date.now() - sent).toBeLessThan(10_000);
    expect(await new Response(proc.stdout).text()).toBe("");
  });
});
