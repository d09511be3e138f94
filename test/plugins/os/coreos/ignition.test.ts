import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Ajv from "ajv";
import * as v from "valibot";
import {
  type IgnitionConfig,
  NM_KEYFILE_PATH,
  renderIgnition,
  renderNmKeyfile,
  renderZincati,
  serializeIgnition,
  ZINCATI_PATH,
} from "../../../../plugins/os/coreos/ignition.ts";
import { CoreosOptionsSchema } from "../../../../plugins/os/coreos/options.ts";
import { nodeMac } from "../../../../src/core/node-identity.ts";
import { have } from "../../../lab/prereq.ts";
import { coreosOptions, labCluster, ORACLES } from "./lab.ts";

const CLUSTER_KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubehyveClusterKeyForTestsOnlyxxxxxxxxxxxx kubehyve@lab";

function renderAll(optionsInput: Record<string, unknown> = {}) {
  const cluster = labCluster();
  const options = coreosOptions(optionsInput);
  return cluster.nodes.map((node) => ({
    node,
    config: renderIgnition({ cluster, node, options, clusterPublicKey: CLUSTER_KEY }),
  }));
}

function fileContents(config: IgnitionConfig, path: string): string {
  const entry = config.storage.files.find((f) => f.path === path);
  if (!entry) throw new Error(`no ${path} in the config`);
  expect(entry.contents.source.startsWith("data:,")).toBe(true);
  return decodeURIComponent(entry.contents.source.slice("data:,".length));
}

const VARIANTS: Record<string, Record<string, unknown>> = {
  defaults: {},
  immediate: { zincati: { strategy: "immediate" }, kernelArgs: ["mitigations=auto"] },
  off: { zincati: { strategy: "off" } },
  "periodic in a time zone": {
    zincati: {
      strategy: "periodic",
      days: ["Wed"],
      startTime: "23:30",
      lengthMinutes: 90,
      timeZone: "Europe/Berlin",
    },
  },
};

describe("renderIgnition", () => {
  test("gives core the cluster key and the user's keys, and sets the hostname", () => {
    const { config } = renderAll()[0]!;
    expect(config.ignition.version).toBe("3.3.0");
    expect(config.passwd.users).toEqual([
      { name: "core", sshAuthorizedKeys: [CLUSTER_KEY, labCluster().ssh.authorizedKeys[0]!] },
    ]);
    expect(fileContents(config, "/etc/hostname")).toBe("cp1\n");
    expect(config.kernelArguments.shouldExist).toContain("console=ttyS0,115200n8");
  });

  test("writes a NetworkManager keyfile readable by root only, matched by the node's MAC", () => {
    const cluster = labCluster();
    const w1 = cluster.nodes[1]!;
    const config = renderIgnition({
      cluster,
      node: w1,
      options: coreosOptions(),
      clusterPublicKey: CLUSTER_KEY,
    });
    const entry = config.storage.files.find((f) => f.path === NM_KEYFILE_PATH)!;
    expect(entry.mode).toBe(0o600);
    const keyfile = fileContents(config, NM_KEYFILE_PATH);
    expect(keyfile).toBe(renderNmKeyfile(cluster, w1));
    expect(keyfile).toContain(`mac-address=${nodeMac("lab", "w1").toUpperCase()}\n`);
    expect(keyfile).toContain("address1=192.168.1.22/24,192.168.1.1\n");
    expect(keyfile).toContain("dns=192.168.1.1;\n");
    expect(keyfile).toContain("dns-search=lab.home.arpa;\n");
    expect(keyfile).toContain("method=manual\n");
  });

  test("defaults Zincati to a weekend window", () => {
    const { config } = renderAll()[0]!;
    expect(fileContents(config, ZINCATI_PATH)).toBe(
      '[updates]\nstrategy = "periodic"\n\n[[updates.periodic.window]]\ndays = [ "Sat", "Sun" ]\nstart_time = "02:00"\nlength_minutes = 240\n',
    );
  });

  test("turns Zincati's updates off or to immediate on request", () => {
    expect(renderZincati({ strategy: "off" })).toBe("[updates]\nenabled = false\n");
    expect(renderZincati({ strategy: "immediate" })).toBe('[updates]\nstrategy = "immediate"\n');
  });

  test("holds no private key material", () => {
    for (const { config } of renderAll())
      expect(serializeIgnition(config)).not.toMatch(/PRIVATE KEY|passwordHash/);
  });

  test("the options schema rejects a kernel argument with a space and a bad start time", () => {
    expect(v.safeParse(CoreosOptionsSchema, { kernelArgs: ["a b"] }).success).toBe(false);
    expect(
      v.safeParse(CoreosOptionsSchema, { zincati: { strategy: "periodic", startTime: "25:00" } }).success,
    ).toBe(false);
    expect(v.safeParse(CoreosOptionsSchema, { stream: "rawhide" }).success).toBe(false);
    expect(v.parse(CoreosOptionsSchema, { minMemory: "3GiB" }).minMemory).toBe(3 * 1024 ** 3);
  });
});

describe("generated configs against the upstream Ignition schema (ajv)", () => {
  const schemaPath = join(ORACLES, "ignition/ignition-v3_3.schema.json");

  test.each(Object.keys(VARIANTS))("%s: every node's config is valid", async (variant) => {
    const schema = JSON.parse(await readFile(schemaPath, "utf8"));
    // The upstream file is draft-04, which ajv 8 does not load; it uses only keywords that mean the
    // same in draft-07 (type, properties, items, required, allOf, $ref into definitions).
    expect(schema.$schema).toBe("http://json-schema.org/draft-04/schema#");
    delete schema.$schema;
    const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);
    for (const { config } of renderAll(VARIANTS[variant])) {
      const ok = validate(JSON.parse(serializeIgnition(config)));
      expect(validate.errors ?? []).toEqual([]);
      expect(ok).toBe(true);
    }
  });

  test("the schema check is not vacuous: a config with a wrong type fails", async () => {
    const schema = JSON.parse(await readFile(schemaPath, "utf8"));
    delete schema.$schema;
    const validate = new Ajv({ strict: false }).compile(schema);
    const { config } = renderAll()[0]!;
    expect(
      validate({ ...config, passwd: { users: [{ name: "core", sshAuthorizedKeys: "not-a-list" }] } }),
    ).toBe(false);
  });
});

describe.skipIf(!have("ignition-validate", "ignition"))("generated configs against ignition-validate", () => {
  async function validate(content: string) {
    const dir = await mkdtemp(join(tmpdir(), "kubehyve-ign-"));
    try {
      const file = join(dir, "config.ign");
      await writeFile(file, content);
      const proc = Bun.spawnSync(["ignition-validate", file], { stdout: "pipe", stderr: "pipe" });
      return { code: proc.exitCode, output: proc.stdout.toString() + proc.stderr.toString() };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  test.each(Object.keys(VARIANTS))(
    "%s: every node's config passes with no output at all",
    async (variant) => {
      for (const { config } of renderAll(VARIANTS[variant])) {
        expect(await validate(serializeIgnition(config))).toEqual({ code: 0, output: "" });
      }
    },
  );

  test("the validator is strict enough here: an unknown key gives output", async () => {
    const { config } = renderAll()[0]!;
    const result = await validate(JSON.stringify({ ...config, storage: { ...config.storage, filez: [] } }));
    expect(result.output).toContain("filez");
  });
});
