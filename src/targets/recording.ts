/**
 * A target that runs nothing: it records every command and answers from rules. Unit tests use it to
 * see exactly which commands a plugin issues; dry runs use it where a command must not reach a
 * machine. A command no rule matches gets code 127, as an unknown program would in a shell, so a
 * missing rule shows up as a failure and never as a silent success.
 */
import { CancelledError } from "../lib/errors.ts";
import type { RunOptions, RunResult, Target } from "./target.ts";

/** A function, or an argv prefix: `["zfs", "list"]` matches `zfs list -H -o name`. */
export type ArgvMatcher = ((argv: readonly string[]) => boolean) | readonly string[];

export type RuleResult =
  | Partial<RunResult>
  | ((argv: readonly string[], opts: RunOptions) => Partial<RunResult> | Promise<Partial<RunResult>>);

export interface RecordingRule {
  match: ArgvMatcher;
  result: RuleResult;
}

export interface RecordedCall {
  argv: readonly string[];
  opts: RunOptions;
}

export class RecordingTarget implements Target {
  readonly calls: RecordedCall[] = [];
  private readonly rules: RecordingRule[];
  closed = false;

  constructor(
    rules: readonly RecordingRule[] = [],
    readonly name = "recording",
  ) {
    this.rules = [...rules];
  }

  /** Adds a rule after the existing ones; the first matching rule answers. */
  on(match: ArgvMatcher, result: RuleResult): this {
    this.rules.push({ match, result });
    return this;
  }

  /** Every command run so far, as argv arrays. */
  get argvs(): (readonly string[])[] {
    return this.calls.map((c) => c.argv);
  }

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (opts.signal?.aborted) throw new CancelledError(`${this.name}: interrupted \`${argv.join(" ")}\``);
    const recorded = Object.freeze([...argv]);
    this.calls.push({ argv: recorded, opts });
    const rule = this.rules.find((r) => matches(r.match, recorded));
    const partial = rule
      ? typeof rule.result === "function"
        ? await rule.result(recorded, opts)
        : rule.result
      : { code: 127, stderr: `${this.name}: no rule for \`${argv.join(" ")}\`\n` };
    const result: RunResult = {
      code: partial.code ?? 0,
      stdout: partial.stdout ?? "",
      stderr: partial.stderr ?? "",
    };
    if (result.stdout) opts.onStdout?.(result.stdout);
    if (result.stderr) opts.onStderr?.(result.stderr);
    return result;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function matches(matcher: ArgvMatcher, argv: readonly string[]): boolean {
  if (typeof matcher === "function") return matcher(argv);
  return matcher.length <= argv.length && matcher.every((word, i) => argv[i] === word);
}
