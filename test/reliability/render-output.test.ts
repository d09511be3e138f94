/**
 * `render -o DIR` writes into the user's directory: only into a new or empty one, or one render made
 * itself (its manifest says which files are render's); it never deletes or overwrites a file it
 * did not write, and a failure leaves DIR as it was. The command line from source with the
 * built-in example, and the writer itself for the cases the example cannot stage.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { checkRenderDir, MANIFEST, writeRenderOutput } from "../../src/core/render-output.ts";
import { InputError } from "../../src/lib/errors.ts";
import { runCli } from "../lab/cli.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

// Each test starts the command line a few times: room for a 2-core machine under load.
setDefaultTimeout(30_000);

function fresh(): string {
  return mkdtempSync(join(tmpdir(), "kubehyve-render-"));
}

const render = (cwd: string, ...args: string[]) =>
  runCli([process.execPath, MAIN, "render", "--example", ...args], {
    cwd,
    env: { XDG_STATE_HOME: join(cwd, "xdg") },
  });

/** Every file under `dir`, relative, with its content. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (at: string) => {
    for (const name of readdirSync(at)) {
      const path = join(at, name);
      if (statSync(path).isDirectory()) walk(path);
      else out[relative(dir, path)] = readFileSync(path, "utf8");
    }
  };
  walk(dir);
  return out;
}

describe("render -o DIR", () => {
  test("refuses a directory holding the user's files, and deletes nothing in it", () => {
    const cwd = fresh();
    const out = join(cwd, "out");
    mkdirSync(join(out, "os"), { recursive: true });
    mkdirSync(join(out, "k8s"));
    writeFileSync(join(out, "os", "notes.txt"), "my notes");
    writeFileSync(join(out, "k8s", "inventory.ini"), "[all]");
    const before = tree(out);
    const r = render(cwd, "-o", out);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `✖ render output ${out} holds files that kubehyve render did not write; nothing was written\n  → render into a new or empty directory, or add --force to write next to them (render never deletes or overwrites a file it did not write)\n`,
    );
    expect(tree(out)).toEqual(before);
  });

  test("writes a new directory with a manifest of what it wrote, and re-renders into it", () => {
    const cwd = fresh();
    const out = join(cwd, "out");
    const first = render(cwd, "-o", out);
    expect(first.code).toBe(0);
    const manifest = JSON.parse(readFileSync(join(out, MANIFEST), "utf8"));
    expect(manifest.generator).toBe("kubehyve render");
    const written = Object.keys(tree(out))
      .filter((f) => f !== MANIFEST)
      .sort();
    expect(Object.keys(manifest.files).sort()).toEqual(written);
    expect(written).toContain("os/cp1.ign");

    // The user keeps a file of their own in it: a second render leaves it alone.
    writeFileSync(join(out, "os", "notes.txt"), "my notes");
    const again = render(cwd, "-o", out);
    expect(again.code).toBe(0);
    expect(readFileSync(join(out, "os", "notes.txt"), "utf8")).toBe("my notes");
    expect(existsSync(join(out, "os", "cp1.ign"))).toBe(true);
    expect(readdirSync(out).filter((f) => f.startsWith(".kubehyve-render.") && f !== MANIFEST)).toEqual([]);
  });

  test("keeps a rendered file the user edited unless --force", () => {
    const cwd = fresh();
    const out = join(cwd, "out");
    expect(render(cwd, "-o", out).code).toBe(0);
    const edited = join(out, "k8s", "inventory", "hosts.yaml");
    writeFileSync(edited, "# tuned by hand\n");
    const r = render(cwd, "-o", out);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${edited} was changed since render wrote it; nothing was written`);
    expect(readFileSync(edited, "utf8")).toBe("# tuned by hand\n");
    const forced = render(cwd, "-o", out, "--force");
    expect(forced.code).toBe(0);
    expect(readFileSync(edited, "utf8")).not.toBe("# tuned by hand\n");
  });

  test("--force writes next to the user's files, and still never over one of them", () => {
    const cwd = fresh();
    const out = join(cwd, "out");
    mkdirSync(join(out, "os"), { recursive: true });
    writeFileSync(join(out, "os", "notes.txt"), "my notes");
    const r = render(cwd, "-o", out, "--force");
    expect(r.code).toBe(0);
    expect(readFileSync(join(out, "os", "notes.txt"), "utf8")).toBe("my notes");
    expect(existsSync(join(out, "os", "cp1.ign"))).toBe(true);

    const other = join(cwd, "other");
    mkdirSync(join(other, "os"), { recursive: true });
    writeFileSync(join(other, "os", "cp1.ign"), "{}");
    const clash = render(cwd, "-o", other, "--force");
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain(
      `${join(other, "os", "cp1.ign")} was not written by render; nothing was written`,
    );
    expect(tree(other)).toEqual({ "os/cp1.ign": "{}" });
  });

  test("does not write through a link inside the directory", () => {
    const cwd = fresh();
    const out = join(cwd, "out");
    expect(render(cwd, "-o", out).code).toBe(0);
    const elsewhere = join(cwd, "elsewhere");
    mkdirSync(elsewhere);
    rmSync(join(out, "os"), { recursive: true });
    symlinkSync(elsewhere, join(out, "os"));
    const r = render(cwd, "-o", out);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${join(out, "os")} is a symbolic link (render does not write through links)`);
    expect(readdirSync(elsewhere)).toEqual([]);
  });
});

describe("the root directory", () => {
  test("is refused as render's output even with --force, directly or through a link", () => {
    // The check alone, never the writer: on code without it, the writer would scatter into /.
    expect(() => checkRenderDir("/", true)).toThrow(
      new InputError("render output / is the root directory; nothing was written"),
    );
    const dir = fresh();
    symlinkSync("/", join(dir, "root"));
    expect(() => checkRenderDir(join(dir, "root"), true)).toThrow(
      new InputError(`render output ${join(dir, "root")} is the root directory; nothing was written`),
    );
  });
});

describe("the render writer", () => {
  const file = (path: string, content: string) => ({ path, content });

  test("names another render writing into the directory, or the work folders of a killed one", async () => {
    const out = join(fresh(), "out");
    writeRenderOutput(out, [{ slot: "os", files: [file("a.ign", "a")] }]);
    const before = tree(out);
    // Another render in the middle of its moves: its staging folder is there, it is running.
    const other = Bun.spawn(["sleep", "30"]);
    try {
      mkdirSync(join(out, `.kubehyve-render.${other.pid}.new`));
      expect(() => writeRenderOutput(out, [{ slot: "os", files: [file("a.ign", "b")] }])).toThrow(
        `render output ${out} is being written by another kubehyve render (pid ${other.pid}); nothing was written`,
      );
      expect(tree(out)).toEqual(before);
    } finally {
      other.kill("SIGKILL");
      await other.exited;
    }
    // Killed midway: its folder stays, and the directory may be half-written.
    expect(() => checkRenderDir(out)).toThrow(
      `render output ${out} holds ${join(out, `.kubehyve-render.${other.pid}.new`)}, left by a render that was killed midway (pid ${other.pid}), so it may be half-written; nothing was written`,
    );
    expect(tree(out)).toEqual(before);
  });

  test("removes its own files that a new render no longer makes, and the folders it made for them", () => {
    const out = join(fresh(), "out");
    writeRenderOutput(out, [{ slot: "os", files: [file("a.ign", "a"), file("old/b.ign", "b")] }]);
    writeFileSync(join(out, "os", "mine.txt"), "mine");
    writeRenderOutput(out, [{ slot: "os", files: [file("a.ign", "a2")] }]);
    expect(tree(out)).toEqual({
      [MANIFEST]: readFileSync(join(out, MANIFEST), "utf8"),
      "os/a.ign": "a2",
      "os/mine.txt": "mine",
    });
    expect(existsSync(join(out, "os", "old"))).toBe(false);
    expect(JSON.parse(readFileSync(join(out, MANIFEST), "utf8")).dirs).toEqual(["os"]);
  });

  test("a write that fails half-way leaves the directory exactly as it was", () => {
    const out = join(fresh(), "out");
    writeRenderOutput(out, [{ slot: "os", files: [file("a.ign", "a"), file("b.ign", "b")] }]);
    writeFileSync(join(out, "os", "mine.txt"), "mine");
    const before = tree(out);
    // The old files are moved aside, the first new one is in place, then a move fails.
    for (const failAt of [1, 2, 3, 4]) {
      let moves = 0;
      const rename = (from: string, to: string) => {
        if (++moves === failAt) throw new Error("the disk went away");
        renameSync(from, to);
      };
      expect(() =>
        writeRenderOutput(out, [{ slot: "os", files: [file("a.ign", "new"), file("c/d.ign", "d")] }], {
          rename,
        }),
      ).toThrow(`render could not write into ${out}: the disk went away; it is left as it was`);
      expect(tree(out)).toEqual(before);
      expect(readdirSync(out).sort()).toEqual([MANIFEST, "os"]);
      expect(readdirSync(join(out, "os")).sort()).toEqual(["a.ign", "b.ign", "mine.txt"]);
    }
    // A file new to the directory, already in place when a later move fails, goes again too.
    let moves = 0;
    const failFourth = (from: string, to: string) => {
      if (++moves === 4) throw new Error("the disk went away");
      renameSync(from, to);
    };
    expect(() =>
      writeRenderOutput(out, [{ slot: "os", files: [file("c/d.ign", "d"), file("a.ign", "new")] }], {
        rename: failFourth,
      }),
    ).toThrow(`render could not write into ${out}: the disk went away; it is left as it was`);
    expect(tree(out)).toEqual(before);
    expect(readdirSync(join(out, "os")).sort()).toEqual(["a.ign", "b.ign", "mine.txt"]);

    const made = join(fresh(), "new", "out");
    const failing = () => {
      throw new Error("the disk went away");
    };
    expect(() =>
      writeRenderOutput(made, [{ slot: "os", files: [file("a.ign", "a")] }], { rename: failing }),
    ).toThrow();
    expect(existsSync(join(made, ".."))).toBe(false);
  });

  test("refuses a manifest it cannot read rather than guessing which files are its own", () => {
    const out = join(fresh(), "out");
    mkdirSync(out);
    writeFileSync(
      join(out, MANIFEST),
      '{"generator": "kubehyve render", "files": {"../../etc/passwd": "x"}, "dirs": []}',
    );
    expect(() => writeRenderOutput(out, [{ slot: "os", files: [file("a.ign", "a")] }])).toThrow(
      `${join(out, MANIFEST)} is not a render manifest, so render cannot tell its own files from yours; nothing was written`,
    );
  });
});
