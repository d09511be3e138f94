/**
 * "Cannot reach it" as doctor reports it: once per machine, never as a cascade. In a run that looks
 * once (doctor), the pool wraps every target so that the first connection failure ssh classifies
 * (unreachable, login refused, host key changed, ssh itself failing) is remembered, and every later
 * command on that machine fails at once with the same UnreachableError instead of waiting for its
 * own connect timeout. The Kubernetes API is guarded alike: a request that gets no HTTP answer at
 * all (refused, timed out, TLS) marks the API unreachable for the rest of the run. The run then
 * reports one error per machine; each check that needed it is a `skip` naming that error
 * (core/checks.ts, and the engine for a whole phase).
 */
import { KubeTransportError } from "../kube/status.ts";
import type { KubeClient } from "../kube/types.ts";
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
    override readonly cause: KubehyveError,
    hint = cause.hint,
  ) {
    super(cause.message, cause.exitCode, hint);
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

  get knownHostsFile(): string | undefined {
    return this.target.knownHostsFile;
  }

  async forgetHostKey(): Promise<void> {
    await this.target.forgetHostKey?.();
  }
}

/** The id of the finding that reports a Kubernetes API no request reached. */
export const API_UNREACHABLE = "api.unreachable";

/** What the stages' clients of one run share about the API. */
export interface ApiReach {
  failure?: UnreachableError;
  /** The first request, while no request has had an answer yet: the others wait for it. */
  probe?: Promise<void>;
  answered?: boolean;
}

/**
 * The Kubernetes client with the API's reachability remembered in `state`, which every stage's client
 * of a run shares. Until one request has had an answer, the others wait for the first: the client
 * retries a refused connection for seconds, and the stages side by side must not each sit through
 * that. After a request got no answer at all, every call fails at once.
 */
export function guardKube(
  client: KubeClient,
  state: ApiReach,
  onFailure: (error: UnreachableError) => void,
): KubeClient {
  let machine = client.server;
  try {
    machine = `the Kubernetes API at ${new URL(client.server).host}`;
  } catch {}
  const judge = (error: unknown): unknown => {
    if (!(error instanceof KubeTransportError)) {
      state.answered = true;
      return error;
    }
    if (!state.failure) {
      state.failure = new UnreachableError(
        machine,
        API_UNREACHABLE,
        error,
        "is the control plane up? kubehyve doctor --stage hypervisor,os looks at its VM and node; on it: sudo crictl ps --name kube-apiserver",
      );
      onFailure(state.failure);
    }
    return state.failure;
  };
  return new Proxy(client, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        if (!state.answered && state.probe) await state.probe;
        if (state.failure) throw state.failure;
        const call = (async () => value.apply(target, args))();
        if (!state.answered && !state.probe)
          // Judged here too, before anyone waiting on the probe looks at the outcome.
          state.probe = call.then(
            () => {
              state.answered = true;
            },
            (error) => void judge(error),
          );
        try {
          const result = await call;
          state.answered = true;
          return result;
        } catch (error) {
          throw judge(error);
        }
      };
    },
  });
}
