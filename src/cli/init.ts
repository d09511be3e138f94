import { existsSync, lstatSync, readlinkSync, type Stats, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { defineCommand } from "citty";
import { InputError } from "../lib/errors.ts";
import { pathError, writeFileAtomic } from "../lib/fsutil.ts";
import { shellQuote } from "../targets/quote.ts";
import { exampleText, globalArgs } from "./_shared.ts";
import { jsonLine, logger, output } from "./output.ts";

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    // Missing, or a file on the way: the write names what is wrong.
    return undefined;
  }
}

/** Nothing at `dir` (a file on the way, or no permission to look, is for the write to name). */
function missing(dir: string): boolean {
  try {
    statSync(dir);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT";
  }
}

export default defineCommand({
  meta: { name: "init", description: "Write a commented example cluster file to start from" },
  args: {
    ...globalArgs,
    // Not the lookup of the other commands: init writes here, never the system-wide file.
    config: { ...globalArgs.config, description: "The cluster file to write (default: ./kubehyve.yaml)" },
    force: { type: "boolean", description: "Overwrite an existing file" },
  },
  async run({ args }) {
    const path = resolve(args.config ?? "kubehyve.yaml");
    const st = lstatOrUndefined(path);
    // --force replaces a file, never a directory (the rename would fail, naming a temporary file).
    if (st && existsSync(path) && statSync(path).isDirectory())
      throw new InputError(
        `${path} is a directory, not a cluster file; nothing was written`,
        `name the file to write: kubehyve init -c ${join(path, "kubehyve.yaml")}`,
      );
    // The rename would put the file in place of what stands there: as root, init -c /dev/null
    // --force would replace the device with a regular file, and a link would be gone, not written
    // through. A dangling link is not "nothing there" either.
    if (st?.isSymbolicLink())
      throw new InputError(
        `${path} is a symbolic link (to ${readlinkSync(path)}); init replaces only a regular file, never a link; nothing was written`,
        "name the file it leads to, or remove the link first",
      );
    if (st && !st.isFile())
      throw new InputError(
        `${path} is not a regular file (a device, a FIFO or a socket); nothing was written`,
        "name a file to write: kubehyve init -c FILE",
      );
    // A typo in the directory (`-c /usr/local/etc/kubehyv/kubehyve.yaml`) must not make a tree of
    // directories nobody asked for: the file is written into a directory that is there already.
    const dir = dirname(path);
    if (missing(dir))
      throw new InputError(
        `the directory ${dir} does not exist, so ${path} cannot be written; nothing was written`,
        `make it first (mkdir -p ${shellQuote(dir)}), or name a file in a directory that is there`,
      );
    if (st && !args.force) {
      throw new InputError(
        `${path} exists already; nothing was written`,
        "keep it, or overwrite it with kubehyve init --force",
      );
    }
    try {
      await writeFileAtomic(path, exampleText, 0o644);
    } catch (error) {
      // Said of the file the user named: the error itself names the temporary one beside it.
      throw pathError(error, `cannot write ${path}`, path) ?? error;
    }
    if (args.json) output().stdout(jsonLine({ type: "init", file: path }));
    else {
      // As typed, so that it works from here: plan alone reads ./kubehyve.yaml.
      const named = path === resolve("kubehyve.yaml") ? "" : ` -c ${shellQuote(args.config!)}`;
      logger().success(`wrote ${path}: edit the nodes and network, then run kubehyve plan${named}`);
    }
    return 0;
  },
});
