import { defineCommand } from "citty";
import { globalArgs } from "./_shared.ts";
import { output } from "./output.ts";
import { version, versionLine } from "./version-info.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version and the commit it was built from" },
  args: { ...globalArgs },
  run({ args }) {
    output().stdout(
      args.json ? `${JSON.stringify({ v: 1, type: "version", ...version() })}\n` : `${versionLine()}\n`,
    );
    return 0;
  },
});
