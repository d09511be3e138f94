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
    readonly problems: readonly { path: string; message: string; where?: string }[] = [],
  ) {
    super(message, ExitCode.badInput, hint);
    this.name = "InputError";
  }
}

export class LockHeldError extends KubehyveError {
  constructor(
    readonly lockFile: string,
    readonly holderPid: number,
  ) {
    // Without a known holder there is no pid to name: `kill -1` would signal every process.
    super(
      holderPid > 0
        ? `another kubehyve run (pid ${holderPid}) holds the lock ${lockFile}`
        : `the lock ${lockFile} cannot be taken over`,
      ExitCode.lockHeld,
      holderPid > 0
        ? `wait for it to finish, or stop it: kill ${holderPid}`
        : `if no kubehyve run is going on, remove it: rm -r ${lockFile}`,
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
