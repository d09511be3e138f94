/**
 * Errors that are part of the user interface. The CLI prints their message without a stack and
 * exits with their code; anything else is a bug and is printed in full.
 */
export const ExitCode = {
  ok: 0,
  phaseFailed: 1,
  badInput: 2,
  lockHeld: 3,
  interrupted: 130,
} as const;

export class KubehyveError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.phaseFailed,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "KubehyveError";
  }
}

/** Bad input: a broken cluster file, an unknown flag, a missing plugin. Exit code 2. */
export class InputError extends KubehyveError {
  constructor(
    message: string,
    hint?: string,
    readonly problems: readonly { path: string; message: string; where?: string; hint?: string }[] = [],
    /** Findings that alone would not stop a run (a stage's validate() warnings), said beside them. */
    readonly warnings: readonly { path?: string; summary: string; hint?: string }[] = [],
  ) {
    super(message, ExitCode.badInput, hint);
    this.name = "InputError";
  }
}

export class LockHeldError extends KubehyveError {
  constructor(
    readonly lockFile: string,
    readonly holderPid: number,
    /**
     * `verified`: the holder is the very process that took the lock (pid and start time match), so
     * the hint may name it. Otherwise a live process has the pid but may be any program: the hint
     * never suggests killing it (for pid 1 that would be `kill 1`).
     */
    readonly holder: { verified: boolean; what?: string; remove?: string } = { verified: true },
  ) {
    const remove = holder.remove ?? `rm ${lockFile}`;
    // Without a known holder there is no pid to name: `kill -1` would signal every process.
    super(
      holderPid <= 0
        ? `the lock ${lockFile} cannot be taken over`
        : holder.verified
          ? `another kubehyve run (pid ${holderPid}${holder.what ? `, ${holder.what}` : ""}) holds the lock ${lockFile}`
          : `the lock ${lockFile} names pid ${holderPid}, which runs but cannot be recognised as the kubehyve run that took it${holder.what ? ` (${holder.what})` : ""}`,
      ExitCode.lockHeld,
      holderPid <= 0
        ? `if no kubehyve run is going on, remove it: ${holder.remove ?? `rm -r ${lockFile}`}`
        : holder.verified
          ? `wait for it to finish, or stop it: kill ${holderPid}`
          : `if no kubehyve run is going on, remove it: ${remove}`,
    );
    this.name = "LockHeldError";
  }
}

export class CancelledError extends KubehyveError {
  constructor(message = "interrupted") {
    super(message, ExitCode.interrupted);
    this.name = "CancelledError";
  }
}
