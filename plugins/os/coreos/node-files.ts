/**
 * The `os:node-files` hook: files other stages need on every node from its first boot, written by
 * Ignition. A network plugin asks for a sysctl drop-in or a NetworkManager drop-in this way (Calico:
 * Kubespray's docs/operating_systems/fcos.md wants /etc/sysctl.d/reverse-path-filter.conf), without
 * the os stage knowing about it.
 *
 * The hook is called once per node with `{ node }` (the NodeSpec); each stage answers nothing, or
 * `{ files: [{ path, contents, mode? }] }`. Answers are validated here, because they end up as root
 * files on every node: a bad one is a bug of the stage that gave it, reported as such.
 */
import { KubehyveError, type NodeSpec, notAList, v } from "kubehyve";
import { OWN_FILE_PATHS } from "./ignition.ts";

export const NODE_FILES_HOOK = "os:node-files";

declare module "kubehyve" {
  interface HookTypes {
    [NODE_FILES_HOOK]: { payload: NodeFilesPayload; answer: NodeFilesAnswer | undefined };
  }
}

/** One file a stage wants on a node. */
export interface NodeFile {
  /** Absolute path under /etc or /var (Fedora CoreOS's /usr is read-only). */
  path: string;
  /** UTF-8 text; written as is. */
  contents: string;
  /** Permission bits, 0o644 unless given; no setuid, setgid or sticky bit. */
  mode?: number;
}

/** What a stage answers to `os:node-files`. */
export interface NodeFilesAnswer {
  files?: NodeFile[];
}

/** What `os:node-files` is called with. */
export interface NodeFilesPayload {
  node: NodeSpec;
}

/** More would only slow the byte-by-byte fw_cfg read (README, caveats) and hint at a misuse. */
const MAX_FILE_BYTES = 64 * 1024;
const MAX_FILES = 32;
const GUEST_PATH = /^\/(?:etc|var)(?:\/[A-Za-z0-9_@+][A-Za-z0-9._@+:-]*)+$/;

/**
 * What decides who may log in to the node, and as whom: sshd's configuration and host keys, the user
 * and group databases, sudo's rules, and the home directories (Fedora CoreOS keeps them in /var/home,
 * root's in /var/roothome), where Ignition puts core's authorized keys
 * (.ssh/authorized_keys.d/ignition). A file there would lock kubehyve and Kubespray out of the node,
 * or let someone else in: the os stage alone sets the login, through Ignition's passwd section.
 */
const LOGIN_PATHS = [
  "/etc/ssh",
  "/etc/passwd",
  "/etc/shadow",
  "/etc/group",
  "/etc/gshadow",
  "/etc/sudoers",
  "/etc/sudoers.d",
  "/var/home",
  "/var/roothome",
];

/** The index of a UTF-16 surrogate without its pair (which the data URL cannot encode), if any. */
function loneSurrogate(text: string): number | undefined {
  const m = /\p{Surrogate}/u.exec(text);
  return m ? m.index : undefined;
}

const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);

/**
 * Why one asked-for path may not be written, or undefined. Besides the login files: a path at one
 * of the os stage's own files, at a directory of one, or below one. Ignition fails the node's first
 * boot on the last two ("error removing existing file …: not a directory"), which its validator does
 * not see.
 */
export function nodeFilePathProblem(
  path: string,
  reserved: readonly string[] = OWN_FILE_PATHS,
): string | undefined {
  if (!GUEST_PATH.test(path) || path.split("/").includes(".."))
    return "give a plain absolute path under /etc or /var";
  const login = LOGIN_PATHS.find((p) => within(path, p));
  if (login) return `${login} decides who logs in to the node, which only the os stage sets`;
  const own = reserved.find((p) => within(p, path) || within(path, p));
  if (own === path) return "the os stage writes that file itself";
  if (own) return `the os stage writes ${own} itself, and one path cannot be both a file and its directory`;
  return undefined;
}

const check = <T>(problem: (value: T) => string | undefined) =>
  v.rawCheck<T>(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const why = problem(dataset.value);
    if (why) addIssue({ message: why });
  });

/**
 * One answer of os:node-files as the core holds it before this stage reads it: every rule that one
 * answer can break, so that the core's message names the plugin that gave it. What no one answer can
 * tell (a path twice, a file and its directory from two stages) collectNodeFiles checks.
 */
export const nodeFilesAnswer = v.optional(
  notAList(
    v.object(
      {
        files: v.optional(
          v.pipe(
            v.array(
              notAList(
                v.object(
                  {
                    path: v.pipe(
                      v.string("a path"),
                      check((path: string) => nodeFilePathProblem(path)),
                    ),
                    contents: v.pipe(
                      v.string("text"),
                      check((text: string) => {
                        const lone = loneSurrogate(text);
                        if (lone !== undefined)
                          return `text with a lone surrogate at ${lone}, which no UTF-8 file can hold`;
                        const bytes = new TextEncoder().encode(text).byteLength;
                        return bytes > MAX_FILE_BYTES
                          ? `${bytes} bytes, more than ${MAX_FILE_BYTES}`
                          : undefined;
                      }),
                    ),
                    mode: v.optional(
                      v.pipe(
                        v.number("permission bits such as 0o644"),
                        v.integer("permission bits such as 0o644"),
                        check((mode: number) =>
                          mode < 0 || mode > 0o777
                            ? `0o${mode.toString(8)} is not plain permission bits such as 0o644 (no setuid, setgid or sticky bit)`
                            : undefined,
                        ),
                      ),
                    ),
                  },
                  "a file: { path, contents, mode? }",
                ),
                "a file: { path, contents, mode? }",
              ),
              "a list of files",
            ),
            v.maxLength(MAX_FILES, `at most ${MAX_FILES} files`),
          ),
        ),
      },
      "{ files: [...] }",
    ),
    "{ files: [...] }",
  ),
);

function refuse(node: NodeSpec, problem: string): never {
  throw new KubehyveError(
    `a stage answered ${NODE_FILES_HOOK} for ${node.name} with ${problem}`,
    1,
    "this is a bug of the plugin that gave the answer: update or remove it",
  );
}

/**
 * The files every answer asks for, checked: plain paths under /etc or /var, none twice, none a
 * directory of another, none of the os stage's own (`reserved`) or of the login, text of a sane size,
 * plain permission bits.
 */
export function collectNodeFiles(
  node: NodeSpec,
  answers: readonly unknown[],
  reserved: readonly string[],
): Required<NodeFile>[] {
  const out: Required<NodeFile>[] = [];
  for (const answer of answers) {
    if (answer === undefined || answer === null) continue;
    if (typeof answer !== "object" || Array.isArray(answer))
      refuse(node, `a ${Array.isArray(answer) ? "list" : typeof answer}, not { files: [...] }`);
    const files = (answer as NodeFilesAnswer).files;
    if (files === undefined) continue;
    if (!Array.isArray(files)) refuse(node, "files that are not a list");
    for (const file of files as unknown[]) {
      const { path, contents, mode = 0o644 } = (file ?? {}) as Partial<NodeFile>;
      if (typeof path !== "string" || !GUEST_PATH.test(path) || path.split("/").includes(".."))
        refuse(node, `the path ${JSON.stringify(path)}: give a plain absolute path under /etc or /var`);
      if (reserved.includes(path)) refuse(node, `${path}, which the os stage writes itself`);
      const problem = nodeFilePathProblem(path, reserved);
      if (problem) refuse(node, `${path}: ${problem}`);
      if (out.some((f) => f.path === path)) refuse(node, `${path} twice (or two stages want it)`);
      const nested = out.find((f) => within(f.path, path) || within(path, f.path));
      if (nested)
        refuse(
          node,
          `both ${nested.path} and ${path} (or two stages want them): one path cannot be both a file and its directory`,
        );
      if (typeof contents !== "string") refuse(node, `no text for ${path}`);
      if (loneSurrogate(contents) !== undefined) refuse(node, `text for ${path} that is not Unicode`);
      const bytes = new TextEncoder().encode(contents).byteLength;
      if (bytes > MAX_FILE_BYTES) refuse(node, `${path} of ${bytes} bytes, more than ${MAX_FILE_BYTES}`);
      if (!Number.isInteger(mode) || mode < 0 || mode > 0o777)
        refuse(
          node,
          `the mode ${Number.isInteger(mode) ? `0o${mode.toString(8)}` : String(mode)} for ${path}: give permission bits such as 0o644`,
        );
      out.push({ path, contents, mode });
    }
  }
  if (out.length > MAX_FILES) refuse(node, `${out.length} files, more than ${MAX_FILES}`);
  return out;
}
