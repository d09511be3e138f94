import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { InputError } from "../lib/errors.ts";
import { writeFileAtomic } from "../lib/fsutil.ts";
import { exampleText, globalArgs } from "./_shared.ts";
import { logger, output } from "./output.ts";

export default defineCommand({
  meta: { name: "init", description: "Write a commented example cluster file to start from" },
  args: {
    ...globalArgs,
    force: { type: "boolean", description: "Overwrite an existing file" },
  },
  async run({ args }) {
    const path = resolve(args.config ?? "kubehyve.yaml");
    if (existsSync(path) && !args.force) {
      throw new InputError(
        `${path} exists already; nothing was written`,
        "keep it, or overwrite it with kubehyve init --force",
      );
    }
    await writeFileAtomic(path, exampleText, 0o644);
    if (args.json) output().stdout(`${JSON.stringify({ v: 1, type: "init", file: path })}\n`);
    else logger().success(`wrote ${path}: edit the nodes and network, then run kubehyve plan`);
    return 0;
  },
});
