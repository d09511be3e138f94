/**
 * What a plugin hands the core, held to the contract where it crosses over, as the loader holds the
 * plugin object itself (plugins.ts): what each phase returns, each Change and Diagnostic in it, the
 * files render gives, hook answers, and the arguments of the context's helpers. A drop-in is code
 * nobody here type-checked: a string where a list of changes belongs would otherwise print as one
 * change per character, and apply would run on that plan. A violation is the plugin's error, naming
 * it, the phase and what was wrong; the phase fails with it as with any expected failure.
 */
import * as v from "valibot";
import { ExitCode, KubehyveError } from "../lib/errors.ts";
import { describeValue } from "../lib/values.ts";
import type { CheckResult, RenderedFile } from "./contract.ts";
import { type Diagnostic, SEVERITIES } from "./diagnostics.ts";

/** A plugin broke the contract: its mistake, not kubehyve's, and not a fault of the machines. */
export class PluginContractError extends KubehyveError {
  constructor(
    readonly pluginId: string,
    message: string,
  ) {
    super(
      message,
      ExitCode.phaseFailed,
      `this is a mistake of plugin ${pluginId}: update or fix it, or remove it from the cluster file`,
    );
    this.name = "PluginContractError";
  }
}

/**
 * A finding's code in the form of the doctor catalogue and `doctor --ignore`: dotted, the stage's
 * name first (`bhyve.vmm-not-loaded`); later parts may carry a foreign code (`rook.ceph.MON_DISK_LOW`).
 */
export const CODE_PATTERN = /^[a-z0-9][a-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)+$/;

const optionalString = v.optional(v.string("a string"));

export const ChangeSchema = v.object(
  {
    summary: v.pipe(v.string("a string"), v.minLength(1, "a line saying what changes")),
    target: optionalString,
    kind: optionalString,
    detail: optionalString,
    disruptive: v.optional(v.boolean("true or false")),
    data: v.optional(v.unknown()),
  },
  "an object (a Change)",
);

/**
 * `schema`, refusing a list: valibot's object() and record() take one (an array is an object) and
 * give a copy that is not, so the list is refused before them.
 */
export const notAList = <S extends v.GenericSchema>(schema: S, what: string) =>
  v.pipe(
    v.unknown(),
    v.check((value) => !Array.isArray(value), `${what}, not a list`),
    schema,
  );

/** One finding, as check, verify and a hook answer (lb:l2-host) give it. */
export const DiagnosticSchema = v.object(
  {
    code: v.pipe(
      v.string("a dotted id like bhyve.vmm-not-loaded"),
      v.regex(CODE_PATTERN, "a dotted id like bhyve.vmm-not-loaded"),
    ),
    severity: v.picklist(SEVERITIES, `one of ${SEVERITIES.join(", ")}`),
    summary: v.pipe(v.string("a string"), v.minLength(1, "a line saying what was found")),
    detail: optionalString,
    hint: optionalString,
    path: optionalString,
    target: optionalString,
    ignored: v.optional(v.boolean("true or false")),
  },
  "an object (a Diagnostic)",
);

const DiagnosticsSchema = v.array(DiagnosticSchema, "a list");

const CheckResultSchema = v.object(
  { changes: v.array(ChangeSchema, "a list"), diagnostics: DiagnosticsSchema },
  "an object of changes and diagnostics",
);

/** Inside the stage's render folder: relative, no `..` part, nothing a file system cuts short. */
const RenderPath = v.pipe(
  v.string("a relative path"),
  v.check((p) => p.length > 0 && !p.includes("\0"), "a relative path without NUL"),
  v.check((p) => !p.startsWith("/"), "a relative path, not an absolute one"),
  v.check((p) => !p.split(/[/\\]/).includes(".."), "a path inside the stage's folder (no .. part)"),
  v.check((p) => p.split(/[/\\]/).some((part) => part !== "" && part !== "."), "a path naming a file"),
);

const RenderedFilesSchema = v.array(
  v.object(
    {
      path: RenderPath,
      content: v.union([v.string(), v.instance(Uint8Array)], "text or bytes"),
      mode: v.optional(
        v.pipe(
          v.number("permission bits such as 0o644"),
          v.integer("permission bits such as 0o644"),
          v.minValue(0, "permission bits such as 0o644"),
          v.maxValue(0o777, "permission bits, at most 0o777"),
        ),
      ),
    },
    "an object (a RenderedFile)",
  ),
  "a list",
);

/** Names of the elements of each list a phase returns, for "change 2 whose summary …". */
const ELEMENT: Record<string, string> = { changes: "change", diagnostics: "diagnostic", files: "file" };

/** `change 2 whose summary` from ["changes", 1, "summary"]. */
function violationSubject(keys: readonly (string | number)[], top: string): string {
  let subject = "";
  let list = top;
  for (const key of keys) {
    if (typeof key === "number") subject = `${ELEMENT[list] ?? "item"} ${key + 1}`;
    else if (subject) subject = `${subject} whose ${key}`;
    else {
      subject = key;
      list = key;
    }
  }
  return subject;
}

function violation(
  pluginId: string,
  phase: string,
  issue: v.BaseIssue<unknown>,
  top: string,
  verb = "returned",
): PluginContractError {
  const keys = (issue.path ?? []).map((p) => p.key as string | number);
  // valibot words a missing key as the object's own issue: say which key is missing instead.
  if (issue.type === "object" && issue.input === undefined && typeof keys.at(-1) === "string") {
    const missing = keys.pop() as string;
    const at = keys.length ? violationSubject(keys, top) : "a result";
    return new PluginContractError(
      pluginId,
      `plugin ${pluginId}'s ${phase} ${verb} ${at} without ${missing}`,
    );
  }
  const subject = violationSubject(keys, top);
  const found = describeValue(issue.input);
  const what = !subject
    ? `${issue.input === undefined ? "nothing" : found}, not ${issue.message}`
    : subject in ELEMENT && !keys.some((k) => typeof k === "number")
      ? `${subject} that are not ${issue.message} (${found})`
      : subject.includes(" whose ")
        ? `${subject} is not ${issue.message} (${found})`
        : `${subject} that is not ${issue.message} (${found})`;
  return new PluginContractError(pluginId, `plugin ${pluginId}'s ${phase} ${verb} ${what}`);
}

function hold<T>(schema: v.GenericSchema, pluginId: string, phase: string, value: unknown, top: string): T {
  const r = v.safeParse(schema, value, { abortEarly: true });
  // The plugin's own value, not valibot's copy: `data` and everything else stay as apply expects them.
  if (r.success) return value as T;
  throw violation(pluginId, phase, r.issues[0], top);
}

export function checkedResult(pluginId: string, value: unknown): CheckResult {
  return hold(CheckResultSchema, pluginId, "check", value, "");
}

/** What verify (or validate) returns: a list of findings. */
export function checkedDiagnostics(pluginId: string, phase: string, value: unknown): Diagnostic[] {
  return hold(DiagnosticsSchema, pluginId, phase, value, "diagnostics");
}

export function checkedRendered(pluginId: string, value: unknown): RenderedFile[] {
  const files = hold<RenderedFile[]>(RenderedFilesSchema, pluginId, "render", value, "files");
  const seen = new Set<string>();
  for (const file of files) {
    // As render-output.ts joins it: `./a` and `a//b` are `a` and `a/b` (a backslash is a name's own).
    const key = file.path
      .split("/")
      .filter((p) => p && p !== ".")
      .join("/");
    if (seen.has(key))
      throw new PluginContractError(pluginId, `plugin ${pluginId}'s render returned the file ${key} twice`);
    seen.add(key);
  }
  return files;
}

/** apply and destroy answer nothing: a value there was meant for something that never reads it. */
export function checkedNothing(pluginId: string, phase: string, value: unknown): void {
  if (value !== undefined)
    throw new PluginContractError(
      pluginId,
      `plugin ${pluginId}'s ${phase} returned ${describeValue(value)}, but ${phase} returns nothing (findings belong in check or verify)`,
    );
}

/**
 * A hook's answer, held to the schema its caller declares (Plugin.hookAnswers), the answering
 * plugin named. HookTypes types answers for the compiler only: without a declared schema an answer
 * goes to the caller as it came, and the caller reads it with care.
 */
export function checkedHookAnswer(
  answerer: string,
  hook: string,
  caller: { id: string; schema?: v.GenericSchema },
  value: unknown,
): unknown {
  if (!caller.schema) return value;
  const r = v.safeParse(caller.schema, value, { abortEarly: true });
  if (r.success) return value;
  // The schema is the caller's, and so are its messages: quoted as they are, with where.
  const issue = r.issues[0];
  const at = v.getDotPath(issue);
  throw new PluginContractError(
    answerer,
    `plugin ${answerer}'s handler of hook ${hook} answered what ${caller.id} does not take: ${at ? `${at}: ` : ""}${issue.message} (${describeValue(issue.input)})`,
  );
}

/** An argument a plugin passes to a helper of its context, checked where a wrong type would end as a TypeError. */
export function argumentProblem(
  pluginId: string,
  helper: string,
  what: string,
  value: unknown,
  expected: string,
): PluginContractError {
  return new PluginContractError(
    pluginId,
    `plugin ${pluginId} called ${helper} with ${what} that is not ${expected} (${describeValue(value)})`,
  );
}
