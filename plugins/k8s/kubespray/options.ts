/** Options of the k8s/kubespray stage in the cluster file, with their defaults. */
import { ownDirProblem, plainPathProblem, TREE_DIGEST_V1, v } from "kubehyve";

/** The Kubespray release this stage is tested against. */
export const DEFAULT_KUBESPRAY_VERSION = "v2.31.0";
/**
 * The Kubernetes version Kubespray v2.31.0 installs when none is set: the first key of
 * `kubelet_checksums` in roles/kubespray_defaults/vars/main/checksums.yml at that tag.
 */
export const DEFAULT_KUBERNETES_VERSION = "1.35.4";

/** What kubehyve knows of a Kubespray release without downloading it. */
export interface KnownRelease {
  /** The tag's commit and tree, for whoever wants to check the digest against git. */
  commit: string;
  tree: string;
  /** tree-sha256-v1 of the tag's tree, which GitHub's archive holds unchanged. */
  treeSha256V1: string;
  /**
   * The Kubernetes versions the release can install: the keys of kubelet_checksums, kubeadm_checksums
   * and kubectl_checksums for amd64 in roles/kubespray_defaults/vars/main/checksums.yml, which
   * roles/validate_inventory/tasks/main.yml ("Check if requested Kubernetes are supported") asserts.
   */
  kubernetesVersions: readonly string[];
}

const range = (minor: string, last: number) =>
  Array.from({ length: last + 1 }, (_, patch) => `${minor}.${patch}`);

export const KNOWN_RELEASES: Readonly<Record<string, KnownRelease>> = {
  // .gitattributes at the tag has no export-ignore or export-subst, so GitHub's archive holds the tree
  // unchanged: 1223 entries (1178 plain files, 32 executables, 13 symlinks), 5,510,052 bytes.
  "v2.31.0": {
    commit: "1c9add48975060f45396b34d8e022c30d7f80dab",
    tree: "be1344305045541c383b0f9e72ffe903653930c0",
    treeSha256V1: "5739f59bab42016d667a979ad6b467816966a7887f8079dbbf43811f039bda33",
    kubernetesVersions: [...range("1.33", 11), ...range("1.34", 7), ...range("1.35", 4)],
  },
};

const version = v.pipe(v.string(), v.regex(/^v\d+\.\d+\.\d+$/, 'a Kubespray release tag such as "v2.31.0"'));
const kubernetesVersion = v.pipe(
  v.string(),
  v.regex(/^\d+\.\d+\.\d+$/, 'a Kubernetes version without "v", such as "1.35.4"'),
);
const sha256 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "64 lower-case hex digits"));

const check = (problem: (value: string) => string | undefined) =>
  v.rawCheck<string>(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const why = problem(dataset.value);
    if (why) addIssue({ message: why });
  });

/** A program given by name (looked up on PATH) or as a plain absolute path, whose name is `name`. */
const program = (name: RegExp, what: string) =>
  v.pipe(
    v.string(),
    check((value) => {
      if (value.includes("/")) {
        const plain = plainPathProblem(value);
        if (plain) return plain;
      }
      const base = value.slice(value.lastIndexOf("/") + 1);
      return name.test(base) ? undefined : `must name ${what}`;
    }),
  );

const venvRunner = v.strictObject({
  kind: v.literal("venv"),
  /** The Python interpreter the venv is made from (pkg's python311 on FreeBSD). */
  python: v.optional(
    program(
      /^python3(\.\d{1,2})?$/,
      'a Python 3 interpreter, such as "python3.11" or "/usr/local/bin/python3.11"',
    ),
    "python3.11",
  ),
  /** Where the venv lives; default: `<state dir>/k8s/venv-<kubespray version>`. */
  dir: v.optional(
    v.pipe(
      v.string(),
      check((path) => ownDirProblem(path)),
    ),
  ),
});

const systemRunner = v.strictObject({
  kind: v.literal("system"),
  /** An ansible-playbook that already satisfies the release's ansible_version.yml. */
  ansiblePlaybook: v.optional(
    program(/^ansible-playbook(-[0-9.]+)?$/, "ansible-playbook, by name or as an absolute path"),
    "ansible-playbook",
  ),
});

/** A login name as FreeBSD's pw(8) and Linux's useradd accept it, for ansible_user. */
const userName = v.pipe(
  v.string(),
  v.regex(/^[a-z_][a-z0-9_-]{0,31}$/, "a user name: lower-case letters, digits, _ and -, at most 32"),
);

const httpUrl = v.pipe(
  v.string(),
  v.url("must be a URL"),
  v.regex(/^https?:\/\//, "must be an http:// or https:// URL (the content is pinned by its digest)"),
);

export const optionsSchema = v.strictObject({
  version: v.optional(version, DEFAULT_KUBESPRAY_VERSION),
  kubernetesVersion: v.optional(kubernetesVersion, DEFAULT_KUBERNETES_VERSION),
  /**
   * The release tarball: GitHub's archive of the tag by default, pinned by the tree-sha256-v1 digest
   * of its content (known for the default version), and optionally by the sha256 of its bytes.
   */
  release: v.optional(
    v.strictObject({
      url: v.optional(httpUrl),
      sha256: v.optional(sha256),
      [TREE_DIGEST_V1]: v.optional(sha256),
    }),
    {},
  ),
  runner: v.optional(v.variant("kind", [venvRunner, systemRunner]), { kind: "venv" }),
  /** How Ansible logs in to the nodes; the key is always the cluster key. */
  ssh: v.optional(
    v.strictObject({
      user: v.optional(userName, "core"),
      port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)), 22),
    }),
    {},
  ),
  /** Group vars set last, over everything else (k8s_cluster group). Checked by validate(). */
  extraVars: v.optional(v.record(v.string(), v.unknown()), {}),
});

export type KubesprayOptions = v.InferOutput<typeof optionsSchema>;

export function releaseUrlOf(version: string): string {
  return `https://github.com/kubernetes-sigs/kubespray/archive/refs/tags/${version}.tar.gz`;
}

export interface ResolvedRelease {
  url: string;
  sha256?: string;
  /** The content pin: the option, else the one known for the version. */
  treeSha256V1?: string;
}

/** Fills what valibot's defaults cannot: values derived from other options. */
export function resolvedRelease(options: KubesprayOptions): ResolvedRelease {
  return {
    url: options.release.url ?? releaseUrlOf(options.version),
    sha256: options.release.sha256,
    treeSha256V1: options.release[TREE_DIGEST_V1] ?? KNOWN_RELEASES[options.version]?.treeSha256V1,
  };
}
