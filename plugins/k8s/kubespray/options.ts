/** Options of the k8s/kubespray stage in the cluster file, with their defaults. */
import { v } from "kubehyve";

/** The Kubespray release this stage is tested against. */
export const DEFAULT_KUBESPRAY_VERSION = "v2.31.0";
/**
 * The Kubernetes version Kubespray v2.31.0 installs when none is set: the first key of
 * `kubelet_checksums` in roles/kubespray_defaults/vars/main/checksums.yml at that tag.
 */
export const DEFAULT_KUBERNETES_VERSION = "1.35.4";

const version = v.pipe(v.string(), v.regex(/^v\d+\.\d+\.\d+$/, 'a Kubespray release tag such as "v2.31.0"'));
const kubernetesVersion = v.pipe(
  v.string(),
  v.regex(/^\d+\.\d+\.\d+$/, 'a Kubernetes version without "v", such as "1.35.4"'),
);
const sha256 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "64 lower-case hex digits"));

const venvRunner = v.strictObject({
  kind: v.literal("venv"),
  /** The Python interpreter the venv is made from (pkg's python311 on FreeBSD). */
  python: v.optional(v.string(), "python3.11"),
  /** Where the venv lives; default: `<state dir>/k8s/venv-<kubespray version>`. */
  dir: v.optional(v.string()),
});

const systemRunner = v.strictObject({
  kind: v.literal("system"),
  /** An ansible-playbook that already satisfies the release's ansible_version.yml. */
  ansiblePlaybook: v.optional(v.string(), "ansible-playbook"),
});

export const optionsSchema = v.strictObject({
  version: v.optional(version, DEFAULT_KUBESPRAY_VERSION),
  kubernetesVersion: v.optional(kubernetesVersion, DEFAULT_KUBERNETES_VERSION),
  /**
   * The release tarball. GitHub's archive of the tag by default; its sha256 is not pinned here (it
   * could not be read from upstream offline), so it must be set before the first run.
   */
  release: v.optional(
    v.strictObject({
      url: v.optional(v.pipe(v.string(), v.url())),
      sha256: v.optional(sha256),
    }),
    {},
  ),
  runner: v.optional(v.variant("kind", [venvRunner, systemRunner]), { kind: "venv" }),
  /** How Ansible logs in to the nodes; the key is always the cluster key. */
  ssh: v.optional(
    v.strictObject({
      user: v.optional(v.string(), "core"),
      port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)), 22),
    }),
    {},
  ),
  /** Group vars set last, over everything else (k8s_cluster group). */
  extraVars: v.optional(v.record(v.string(), v.unknown()), {}),
});

export type KubesprayOptions = v.InferOutput<typeof optionsSchema>;

export function releaseUrlOf(version: string): string {
  return `https://github.com/kubernetes-sigs/kubespray/archive/refs/tags/${version}.tar.gz`;
}

/** Fills what valibot's defaults cannot: values derived from other options. */
export function resolvedRelease(options: KubesprayOptions): { url: string; sha256?: string } {
  return { url: options.release.url ?? releaseUrlOf(options.version), sha256: options.release.sha256 };
}
