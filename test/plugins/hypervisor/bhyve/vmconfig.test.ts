import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseBhyveOptions } from "../../../../plugins/hypervisor/bhyve/options.ts";
import { parseRcVars } from "../../../../plugins/hypervisor/bhyve/parse.ts";
import {
  describeDrift,
  diffVmConfig,
  diskDrift,
  formatVmMemory,
  parseVmMemory,
  renderVmConfig,
  renderVmTemplate,
  vmConfigEntries,
} from "../../../../plugins/hypervisor/bhyve/vmconfig.ts";
import { nodeMac, nodeUuid } from "../../../../src/core/node-identity.ts";
import { GiB, MiB } from "../../../../src/core/units.ts";
import { oracle } from "../../../lab/oracles.ts";
import { exampleCluster } from "./lab.ts";

const VM_BHYVE = oracle("releases/vm-bhyve");

/**
 * The guest config keys vm.8 documents: the `.It` entries of GUEST CONFIGURATION FORMAT, where a
 * trailing X or 0 stands for any device number (network0_type, passthruX, grub_runX).
 */
function documentedKeys(): RegExp[] {
  const man = readFileSync(join(VM_BHYVE, "vm.8"), "utf8");
  const section = man.slice(man.indexOf(".Sh GUEST CONFIGURATION FORMAT"), man.indexOf(".Sh SEE ALSO"));
  const keys = [...section.matchAll(/^\.It (?:Cm )?(\S+)$/gm)].map((m) => m[1]!);
  expect(keys.length).toBeGreaterThan(50);
  return keys.map((key) => new RegExp(`^${key.replace(/(X|0)(?=_|$)/, "\\d+")}$`));
}

/** Keys config.sample marks as required, for those vm.8 forgets (cpu). */
function requiredInConfigSample(): string[] {
  const sample = readFileSync(join(VM_BHYVE, "sample-templates/config.sample"), "utf8");
  return [...sample.matchAll(/^# (\w+) \(required\)$/gm)].map((m) => m[1]!);
}

const cluster = exampleCluster();
const options = parseBhyveOptions({ nic: "em0" });
const clusterId = "6f1c2a4e-8d3b-4c5e-9f7a-1b2c3d4e5f60";

describe("the VM config of a node", () => {
  test("uses only keys documented in vm-bhyve's vm.8, cpu which config.sample documents as required, and the cluster's marks, which vm-bhyve knows nothing of", () => {
    const documented = documentedKeys();
    const required = requiredInConfigSample();
    expect(required).toContain("cpu");
    expect(documented.some((re) => re.test("cpu"))).toBe(false);
    const marks = ["kubehyve_cluster", "kubehyve_cluster_name"];
    expect(marks.filter((k) => documented.some((re) => re.test(k)) || required.includes(k))).toEqual([]);
    for (const nvme of [false, true]) {
      for (const node of cluster.nodes) {
        const opts = parseBhyveOptions({
          diskType: nvme ? "nvme" : "virtio-blk",
          vmDir: nvme ? "/vm" : "zfs:zroot/vm",
        });
        const keys = [
          ...parseRcVars(
            renderVmConfig({
              cluster: cluster.name,
              clusterId,
              node,
              options: opts,
              bhyveOptions: "-s 31,fwcfg",
            }),
          ).keys(),
        ];
        expect(keys.slice(0, 2)).toEqual(marks);
        const undocumented = keys.filter(
          (k) => !documented.some((re) => re.test(k)) && !required.includes(k) && !marks.includes(k),
        );
        expect(undocumented).toEqual([]);
      }
    }
  });

  test("boots UEFI with virtio-net, graphics off, a data disk per declared disk and the hook's bhyve options", () => {
    const w1 = cluster.nodes[1]!;
    const config = Object.fromEntries(
      parseRcVars(
        renderVmConfig({
          cluster: "lab",
          clusterId,
          node: w1,
          options,
          bhyveOptions: " -f name=opt/com.coreos/config,file=/zroot/vm/w1/ignition.json ",
        }),
      ),
    );
    expect(config).toEqual({
      kubehyve_cluster: clusterId,
      kubehyve_cluster_name: "lab",
      loader: "uefi",
      cpu: "2",
      memory: "4G",
      uuid: nodeUuid("lab", "w1"),
      graphics: "no",
      utctime: "yes",
      network0_type: "virtio-net",
      network0_switch: "public",
      network0_mac: nodeMac("lab", "w1"),
      disk0_type: "virtio-blk",
      disk0_name: "disk0",
      disk0_dev: "sparse-zvol",
      disk1_type: "virtio-blk",
      disk1_name: "disk1",
      disk1_dev: "sparse-zvol",
      bhyve_options: "-f name=opt/com.coreos/config,file=/zroot/vm/w1/ignition.json",
    });
  });

  test("uses sparse files named disk0.img in a plain directory datastore", () => {
    const entries = Object.fromEntries(
      vmConfigEntries({
        cluster: "lab",
        clusterId,
        node: cluster.nodes[0]!,
        options: parseBhyveOptions({ vmDir: "/vm" }),
      }),
    );
    expect(entries.disk0_name).toBe("disk0.img");
    expect(entries.disk0_dev).toBeUndefined();
  });

  test("gives vm create each disk's size in bytes in the template only", () => {
    const input = { cluster: "lab", clusterId, node: cluster.nodes[1]!, options };
    const template = parseRcVars(renderVmTemplate({ ...input, bootImage: false }));
    expect(template.get("disk0_size")).toBe(String(20 * GiB));
    expect(template.get("disk1_size")).toBe(String(50 * GiB));
    expect(parseRcVars(renderVmConfig(input)).has("disk0_size")).toBe(false);
  });

  test("marks the template, and the dataset vm create makes from it, with the cluster's id", () => {
    const input = { cluster: "lab", clusterId, node: cluster.nodes[1]!, options };
    const template = parseRcVars(renderVmTemplate({ ...input, bootImage: false }));
    expect(template.get("kubehyve_cluster")).toBe(clusterId);
    // vm-bhyve turns the first blank into " -o " (zfs::__format_options): two properties, one blank.
    expect(template.get("zfs_dataset_opts")).toBe(`kubehyve:cluster=${clusterId} kubehyve:cluster-name=lab`);
    // Only in the template: a config that still has it is vm create's copy, not yet ours.
    expect(template.get("kubehyve_state")).toBe("creating");
    expect(parseRcVars(renderVmConfig(input)).has("kubehyve_state")).toBe(false);
    expect(parseRcVars(renderVmConfig(input)).has("zfs_dataset_opts")).toBe(false);
  });

  test("leaves the boot disk that receives an image to kubehyve, so that one that exists is complete", () => {
    for (const vmDir of ["zfs:zroot/vm", "/vm"]) {
      const input = {
        cluster: "lab",
        clusterId,
        node: cluster.nodes[1]!,
        options: parseBhyveOptions({ vmDir }),
      };
      const template = parseRcVars(renderVmTemplate({ ...input, bootImage: true }));
      // core::create makes nothing for a custom disk (lib/vm-core lines 230-231).
      expect(template.get("disk0_dev")).toBe("custom");
      expect(template.has("disk0_size")).toBe(false);
      expect(template.get("disk1_size")).toBe(String(50 * GiB));
      expect(template.get("disk1_dev")).toBe(vmDir === "/vm" ? undefined : "sparse-zvol");
    }
  });

  test("refuses values that would break vm-bhyve's config parsing", () => {
    for (const bad of ["-s 31,fwcfg # x", 'a"b', "a$(id)", "a`id`", "a\nb", "a\\b", "-f /vm/*", "a?", "[ab]"])
      expect(() =>
        renderVmConfig({ cluster: "lab", clusterId, node: cluster.nodes[0]!, options, bhyveOptions: bad }),
      ).toThrow(/cannot contain/);
  });
});

describe("identity and sizes", () => {
  test("writes memory with vm.8's M and G suffixes and reads both back", () => {
    expect(formatVmMemory(4 * GiB)).toBe("4G");
    expect(formatVmMemory(1536 * MiB)).toBe("1536M");
    expect(parseVmMemory("4096M")).toBe(4 * GiB);
    expect(parseVmMemory("4G")).toBe(4 * GiB);
    expect(parseVmMemory("lots")).toBeUndefined();
  });
});

describe("drift", () => {
  const entries = vmConfigEntries({ cluster: "lab", clusterId, node: cluster.nodes[1]!, options });

  test("finds none when the host has the same config, memory written another way", () => {
    const actual = new Map(entries);
    actual.set("memory", "4096M");
    expect(diffVmConfig(entries, actual)).toEqual([]);
  });

  test("names changed, missing and extra keys", () => {
    const actual = new Map(entries);
    actual.set("memory", "8G");
    actual.delete("graphics");
    actual.set("wired_memory", "yes");
    const drift = diffVmConfig(entries, actual);
    expect(drift).toEqual([
      { key: "memory", expected: "4G", actual: "8G" },
      { key: "graphics", expected: "no", actual: undefined },
      { key: "wired_memory", actual: "yes" },
    ]);
    expect(describeDrift(drift)).toBe(
      "memory: 8G -> 4G\ngraphics: (unset) -> no\nwired_memory: yes -> (removed)",
    );
    expect(diskDrift(drift)).toEqual([]);
  });

  test("tells disk changes apart, which cannot be applied in place", () => {
    const actual = new Map(entries);
    actual.delete("disk1_name");
    expect(diskDrift(diffVmConfig(entries, actual)).map((d) => d.key)).toEqual(["disk1_name"]);
  });
});
