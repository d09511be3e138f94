/**
 * `kubeconfig --merge` edits a file that is the user's, holding other clusters' credentials: it must
 * not replace another cluster's entries of the same name (a token was lost that way), must keep
 * the file's comments, must write through a symlinked ~/.kube/config, and keeps a backup. The
 * command line from source, HOME pointing at the test's directory.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  chownSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { runCli, runInProcess } from "../lab/cli.ts";
import { adminConf } from "../lab/kube/kubeconfig.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

// Each test starts the command line a few times: room for a 2-core machine under load.
setDefaultTimeout(30_000);

/** The user's own kubeconfig: a work cluster that happens to be called `lab` too. */
const THEIRS = `# my clusters, kept in dotfiles
apiVersion: v1
kind: Config
clusters:
- name: lab # the team's lab, not mine to lose
  cluster:
    server: https://lab.work.example:6443
contexts:
- name: lab
  context:
    cluster: lab
    user: lab-admin
users:
- name: lab-admin
  user:
    token: SECRET-WORK-TOKEN # rotated monthly
current-context: lab
`;

function lab() {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-merge-"));
  writeFileSync(
    join(dir, "kubehyve.yaml"),
    "name: lab\nnetwork:\n  gateway: 10.9.0.1\n  subnet: 10.9.0.0/24\nnodes:\n  - name: n1\n    role: control-plane\n    address: 10.9.0.10\nstages: {}\n",
  );
  const state = join(dir, "state");
  mkdirSync(state, { mode: 0o700 });
  writeFileSync(join(state, "kubeconfig"), adminConf("https://10.9.0.10:6443"), { mode: 0o600 });
  writeFileSync(join(state, "cluster-id"), "5f0c3a52-8f3e-4a4e-9d1a-0b6f2f1c2d3e\n", { mode: 0o600 });
  // ~/.kube/config is a link into the user's dotfiles.
  mkdirSync(join(dir, "dotfiles"));
  writeFileSync(join(dir, "dotfiles", "kubeconfig"), THEIRS, { mode: 0o600 });
  mkdirSync(join(dir, ".kube"));
  symlinkSync("../dotfiles/kubeconfig", join(dir, ".kube", "config"));
  const merge = (...args: string[]) =>
    runCli([process.execPath, MAIN, "kubeconfig", "--merge", "--state-dir", state, ...args], { cwd: dir });
  return { dir, merge, real: join(dir, "dotfiles", "kubeconfig"), link: join(dir, ".kube", "config") };
}

describe("kubeconfig --merge", () => {
  test("refuses to replace another cluster's entries of the same name, and changes nothing", () => {
    const { merge, real, link, dir } = lab();
    const r = merge();
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `✖ ${link} already has cluster "lab" (server https://lab.work.example:6443), context "lab", user "lab-admin" that this cluster did not write; nothing was changed\n  → another cluster may go by that name: kubehyve kubeconfig --merge --overwrite replaces them (a backup of the file is kept)\n`,
    );
    expect(readFileSync(real, "utf8")).toBe(THEIRS);
    expect(readlinkSync(link)).toBe("../dotfiles/kubeconfig");
    expect(readdirSync(join(dir, "dotfiles"))).toEqual(["kubeconfig"]);
  });

  test("an admin kubeconfig edited into garbage is named by its path, and the user's file is left as it was", () => {
    const { merge, real, dir } = lab();
    const admin = join(dir, "state", "kubeconfig");
    for (const [text, problem] of [
      ["just text", "(document): expected a mapping (apiVersion: v1, kind: Config)"],
      ["apiVersion: v1\nkind: Config\n", "current-context: not set"],
    ] as const) {
      writeFileSync(admin, text, { mode: 0o600 });
      const r = merge("--overwrite");
      expect([r.code, r.stderr]).toEqual([1, `✖ kubeconfig ${admin}: ${problem}\n`]);
      expect(readFileSync(real, "utf8")).toBe(THEIRS);
    }
  });

  test("--overwrite replaces them through the link, keeps the comments and a backup of the old file", () => {
    const { merge, real, link, dir } = lab();
    const r = merge("--overwrite");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`merged lab into ${link} (→ ${real})`);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const text = readFileSync(real, "utf8");
    expect(text).toStartWith("# my clusters, kept in dotfiles\n");
    expect(parse(text).clusters[0].cluster.server).toBe("https://10.9.0.10:6443");
    const backups = readdirSync(join(dir, "dotfiles")).filter((f) =>
      f.startsWith("kubeconfig.kubehyve-backup-"),
    );
    expect(backups).toHaveLength(1);
    expect(readFileSync(join(dir, "dotfiles", backups[0]!), "utf8")).toBe(THEIRS);
    expect(r.stdout).toContain(`the file as it was: ${join(dir, "dotfiles", backups[0]!)}`);
  });

  test("adds a cluster of another name next to theirs, their token and comments kept", () => {
    const { merge, real, dir } = lab();
    writeFileSync(
      join(dir, "kubehyve.yaml"),
      readFileSync(join(dir, "kubehyve.yaml"), "utf8").replace("name: lab", "name: home"),
    );
    const r = merge();
    expect(r.code).toBe(0);
    const text = readFileSync(real, "utf8");
    expect(text).toContain("token: SECRET-WORK-TOKEN # rotated monthly\n");
    expect(text).toContain("- name: lab # the team's lab, not mine to lose\n");
    const merged = parse(text);
    expect(merged.clusters.map((c: { name: string }) => c.name)).toEqual(["lab", "home"]);
    expect(merged["current-context"]).toBe("lab");
    // Merged again (after a rebuild, say): its own entries are its to update, without --overwrite.
    expect(merge().code).toBe(0);
  });
});

describe("kubeconfig --merge run by root for a user (sudo -E keeps their HOME)", () => {
  /**
   * A user's home (uid 65534), with ~/.kube theirs when `kube`, and a lab whose admin kubeconfig is
   * to be merged into it.
   */
  function sudoLab(kube = true) {
    const dir = mkdtempSync(join(tmpdir(), "kubehyve-merge-sudo-"));
    writeFileSync(
      join(dir, "kubehyve.yaml"),
      "name: lab\nnetwork:\n  gateway: 10.9.0.1\n  subnet: 10.9.0.0/24\nnodes:\n  - name: n1\n    role: control-plane\n    address: 10.9.0.10\n",
    );
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    writeFileSync(join(state, "kubeconfig"), adminConf("https://10.9.0.10:6443"), { mode: 0o600 });
    const home = join(dir, "home");
    mkdirSync(home, { mode: 0o755 });
    chownSync(home, 65534, 65534);
    if (kube) {
      mkdirSync(join(home, ".kube"), { mode: 0o700 });
      chownSync(join(home, ".kube"), 65534, 65534);
    }
    const config = join(home, ".kube", "config");
    /** ~/.kube/config as a link the user made. */
    const link = (to: string) => {
      symlinkSync(to, config);
      lchownSync(config, 65534, 65534);
    };
    const merge = () =>
      runInProcess(["kubeconfig", "--merge", "--state-dir", state], { cwd: dir, env: { HOME: home } });
    return { dir, home, config, link, merge };
  }

  test.skipIf(process.getuid?.() !== 0)(
    "makes ~/.kube and ~/.kube/config theirs, not root's: they can read their own kubeconfig",
    async () => {
      const { home, merge } = sudoLab(false);
      const r = await merge();
      expect(r.code).toBe(0);
      for (const path of [join(home, ".kube"), join(home, ".kube", "config")])
        expect([statSync(path).uid, statSync(path).gid], path).toEqual([65534, 65534]);
      expect(statSync(join(home, ".kube")).mode & 0o777).toBe(0o700);
      expect(statSync(join(home, ".kube", "config")).mode & 0o777).toBe(0o600);
    },
  );

  test.skipIf(process.getuid?.() !== 0)(
    "does not write through the user's link to a file of root's, nor create one in root's folder",
    async () => {
      const { dir, config, link, merge } = sudoLab();
      const roots = join(dir, "root-only");
      mkdirSync(roots, { mode: 0o700 });
      const victim = join(roots, "config");
      writeFileSync(victim, THEIRS, { mode: 0o600 });
      link(victim);
      const r = await merge();
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `${config} is a symbolic link of uid 65534 leading to ${victim}, a file of uid 0: root does not write through it`,
      );
      expect(readFileSync(victim, "utf8")).toBe(THEIRS);
      expect(readdirSync(roots)).toEqual(["config"]);

      // A file not made yet, in a folder of root's: not made there either.
      const { config: config2, link: link2, merge: merge2 } = sudoLab();
      link2(join(roots, "new-config"));
      const r2 = await merge2();
      expect(r2.code).toBe(2);
      expect(r2.stderr).toContain(
        `${config2} is a symbolic link of uid 65534 leading to ${join(roots, "new-config")}, in ${roots}, a folder of uid 0`,
      );
      expect(readdirSync(roots)).toEqual(["config"]);
    },
  );

  test.skipIf(process.getuid?.() !== 0)(
    "writes through the user's link to a file of theirs, which stays theirs",
    async () => {
      const { home, link, merge } = sudoLab();
      const dotfiles = join(home, "dotfiles");
      mkdirSync(dotfiles, { mode: 0o700 });
      chownSync(dotfiles, 65534, 65534);
      const real = join(dotfiles, "kubeconfig");
      writeFileSync(real, "apiVersion: v1\nkind: Config\n", { mode: 0o600 });
      chownSync(real, 65534, 65534);
      link("../dotfiles/kubeconfig");
      const r = await merge();
      expect(r.code, r.stderr).toBe(0);
      expect(parse(readFileSync(real, "utf8")).clusters.map((c: { name: string }) => c.name)).toEqual([
        "lab",
      ]);
      expect([statSync(real).uid, statSync(real).gid]).toEqual([65534, 65534]);
    },
  );
});
