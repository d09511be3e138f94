import { defineCommand } from "citty";
import { exampleArg, globalArgs, loadCluster, loadRegistry } from "./_shared.ts";
import { logger, output } from "./output.ts";

const schema = defineCommand({
  meta: {
    name: "schema",
    description:
      "Print the JSON Schema of the cluster file, built-in plugins' options included (for editors)",
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
    const { config } = await loadCluster(args);
    const c = config.cluster;
    if (args.json) {
      output().stdout(
        `${JSON.stringify({ v: 1, type: "config.valid", file: config.source, cluster: c.name, nodes: c.nodes.length, stages: config.stages.map((s) => s.plugin.id), warnings: config.warnings })}\n`,
      );
      return 0;
    }
    logger().success(
      `${config.source} is valid: cluster ${c.name}, ${c.nodes.length} nodes, stages ${config.stages.map((s) => s.plugin.id).join(", ") || "(none)"}`,
    );
    for (const w of config.warnings)
      logger().warn(`${w.path ? `${w.path}: ` : ""}${w.summary}${w.hint ? ` (${w.hint})` : ""}`);
    return 0;
  },
});

export default defineCommand({
  meta: { name: "config", description: "The cluster file: its JSON Schema, or validate one" },
  subCommands: { schema, validate },
});
