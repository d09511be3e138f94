import { defineCommand } from "citty";
import { globalArgs } from "./_shared.ts";
import { jsonLine, output } from "./output.ts";
import { version, versionLine } from "./version-info.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version and the commit it was built from" },
  args: { ...globalArgs },
  run({ args }) {
    output().stdout(args.json ? jsonLine({ type: "version", ...version() }) : `${versionLine()}\n`);
    return 0;
  },
});
