import { defineCommand } from "citty";
import { exampleArg, globalArgs, loadCluster, loadRegistry } from "./_shared.ts";
import { jsonLine, logger, output, printable } from "./output.ts";

const schema = defineCommand({
  meta: {
    name: "schema",
    description:
      "Print the JSON Schema of the cluster file, every loaded plugin's options included (for editors)",
  },
  args: { ...globalArgs },
  async run({ args }) {
    // Its converter is loaded by this command alone.
    const [registry, { clusterJsonSchema }] = await Promise.all([
      loadRegistry(args),
      import("../core/json-schema.ts"),
    ]);
    const plugins = registry.entries.flatMap((e) => (e.plugin ? [e.plugin] : []));
    output().stdout(`${JSON.stringify(clusterJsonSchema(plugins), null, 2)}\n`);
    return 0;
  },
});

const validate = defineCommand({
  meta: {
    name: "validate",
    description: "Check the cluster file and every stage's options; touches nothing",
  },
  args: { ...globalArgs, ...exampleArg },
  async run({ args }) {
    const { config, registry } = await loadCluster(args);
    const c = config.cluster;
    // The file is valid without them (no stage of it names them), but they are broken: said here,
    // where the plugin path is first tried, as plan and up say it.
    const pluginProblems = registry.diagnostics;
    if (args.json) {
      for (const d of pluginProblems)
        output().stdout(jsonLine({ type: "diagnostic", stage: "plugins", ...d }));
      output().stdout(
        jsonLine({
          type: "config.valid",
          file: config.source,
          cluster: c.name,
          nodes: c.nodes.length,
          stages: config.stages.map((s) => s.plugin.id),
          warnings: config.warnings,
        }),
      );
      return 0;
    }
    logger().success(
      `${config.source} is valid: cluster ${c.name}, ${c.nodes.length} nodes, stages ${config.stages.map((s) => s.plugin.id).join(", ") || "(none)"}`,
    );
    // A stage's own words and a file's name, shown escaped: either may hold an escape sequence.
    for (const w of config.warnings)
      logger().warn(printable(`${w.path ? `${w.path}: ` : ""}${w.summary}${w.hint ? ` (${w.hint})` : ""}`));
    for (const d of pluginProblems)
      logger().warn(
        printable(
          `${d.summary}${d.detail ? `: ${d.detail.split("\n")[0]}` : ""}${d.hint ? ` (${d.hint})` : ""}`,
        ),
      );
    return 0;
  },
});

export default defineCommand({
  meta: { name: "config", description: "The cluster file: its JSON Schema, or validate one" },
  subCommands: { schema, validate },
});
