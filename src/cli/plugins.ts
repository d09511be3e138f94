import { defineCommand } from "citty";
import type { PluginEntry } from "../core/plugins.ts";
import { globalArgs, loadRegistry } from "./_shared.ts";
import { jsonLine, logger, output, printable, shortened } from "./output.ts";
import { version } from "./version-info.ts";

/**
 * A name or a message on one line of the listing, every control character escaped: a file name is
 * whatever the directory holds (an escape sequence, a line break), and the listing is where an
 * operator goes to find such a file.
 */
const oneLine = (text: string) =>
  printable(text).replace(/[\n\t]/g, (c) => (c === "\n" ? "\\u000a" : "\\u0009"));

/** Built-in plugins are released with the binary: their version is its version. */
function versionOf(e: PluginEntry): string | undefined {
  return e.version ?? (e.origin === "built-in" ? version().version : undefined);
}

export default defineCommand({
  meta: {
    name: "plugins",
    description: "List the plugins: built-in and drop-in, with origin, version and load status",
  },
  args: { ...globalArgs },
  async run({ args }) {
    const registry = await loadRegistry(args);
    if (args.json) {
      for (const e of registry.entries) {
        output().stdout(
          jsonLine({
            type: "plugin",
            id: e.id,
            origin: e.origin,
            version: versionOf(e),
            status: e.status,
            title: e.plugin?.title,
          }),
        );
      }
      for (const d of registry.diagnostics)
        output().stdout(jsonLine({ type: "diagnostic", stage: "plugins", ...d }));
    } else {
      const width = Math.max(4, ...registry.entries.map((e) => oneLine(e.id).length));
      for (const e of registry.entries) {
        const mark = e.status === "loaded" ? "✔" : "✖";
        logger().log(
          `${mark} ${oneLine(e.id).padEnd(width)}  ${oneLine(versionOf(e) ?? "-").padEnd(8)} ${e.status.padEnd(7)} ${oneLine(e.origin)}`,
        );
      }
      // The detail is the why (the error it threw, the syntax error's place): without it the hint
      // "fix the file" leaves the user to guess what is wrong with it.
      for (const d of registry.diagnostics) {
        const detail = d.detail ? `\n${printable(shortened(d.detail)).replace(/^/gm, "      ")}` : "";
        const mark = d.severity === "error" ? "✖" : d.severity === "warn" ? "⚠" : "ℹ";
        logger().log(
          `  ${mark} ${oneLine(d.summary)}${detail}${d.hint ? `\n      → ${oneLine(d.hint)}` : ""}`,
        );
      }
      logger().log(`plugin path: ${oneLine(registry.searchPath.join(":"))}`);
    }
    return registry.diagnostics.some((d) => d.severity === "error") ? 1 : 0;
  },
});
