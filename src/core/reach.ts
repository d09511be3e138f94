/**
 * "Cannot reach it" as doctor reports it: once per machine, never as a cascade. In a run that looks
 * once (doctor), the pool wraps every target so that the first connection failure ssh classifies
 * (unreachable, login refused, host key changed, ssh itself failing) is remembered, and every later
 * command on that machine fails at once with the same UnreachableError instead of waiting for its
 * own connect timeout. The run then reports one error per machine; each check that needed it is a
 * `skip` naming that error (core/checks.ts, and the engine for a whole phase).
 */
import { KubehyveError } from "../lib/errors.ts";
import { SshError, type SshErrorKind } from "../targets/ssh.ts";
import type { RunOptions, RunResult, Target } from "../targets/target.ts";

/** The finding id of each kind of connection failure. */
export const UNREACHABLE_IDS: Record<SshErrorKind, string> = {
  unreachable: "target.unreachable",
  "auth-failed": "target.login-refused",
  "host-key-changed": "target.host-key-changed",
  "ssh-failed": "target.ssh-failed",
};

/** A machine the run could not reach: nothing that needs it can be checked in this run. */
export class UnreachableError extends KubehyveError {
  constructor(
    /** The machine as findings name it: a node's name, or the host target's name. */
    readonly machine: string,
    /** The id of the one finding that reports it (`target.unreachable`, …). */
    readonly id: string,
    override readonly cause: SshError,
  ) {
    super(cause.message, cause.exitCode, cause.hint);
    this.name = "UnreachableError";
  }
}

/** Remembers the first connection failure of a machine; later commands on it fail at once. */
export class ReachGuard implements Target {
  private failure?: UnreachableError;
  constructor(
    private readonly target: Target,
    readonly machine: string,
    private readonly onFailure: (error: UnreachableError) => void,
  ) {}

  get name(): string {
    return this.target.name;
  }

  get unreachable(): UnreachableError | undefined {
    return this.failure;
  }

  async run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    if (this.failure) throw this.failure;
    try {
      return await this.target.run(argv, opts);
    } catch (error) {
      if (!(error instanceof SshError)) throw error;
      if (!this.failure) {
        this.failure = new UnreachableError(this.machine, UNREACHABLE_IDS[error.kind], error);
        this.onFailure(this.failure);
      }
      throw this.failure;
    }
  }

  close(): Promise<void> {
    return this.target.close();
  }
}
