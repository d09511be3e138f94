/**
 * What vm-bhyve, OpenZFS and the shells that read rc.conf and vm-bhyve's configs would refuse or
 * misread later is refused by `config validate` (exit 2), before any host is touched.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bhyvePlugin } from "../../../../plugins/hypervisor/bhyve/index.ts";
import { parseBhyveOptions } from "../../../../plugins/hypervisor/bhyve/options.ts";
import { parseClusterText } from "../../../../src/core/config.ts";
import type { AnyPlugin } from "../../../../src/core/contract.ts";
import { InputError } from "../../../../src/lib/errors.ts";
import { runCli } from "../../../lab/cli.ts";

const lookup = {
  find: (id: string) => (id === "hypervisor/bhyve" ? (bhyvePlugin as AnyPlugin) : undefined),
  searchPath: [],
};

function clusterFile(opts: { nodes?: string; hypervisor?: string } = {}): string {
  return `name: lab
network:
  gateway: 192.168.1.1
  subnet: 192.168.1.0/24
nodes:
${
  opts.nodes ??
  `  - name: cp1
    role: control-plane
    address: 192.168.1.21
`
}stages:
  hypervisor:
    plugin: bhyve
${opts.hypervisor ?? "    nic: em0\n"}`;
}

function problemsOf(text: string): { path: string; message: string }[] {
  try {
    parseClusterText(text, "kubehyve.yaml", lookup);
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).exitCode).toBe(2);
    return (error as InputError).problems.map(({ path, message }) => ({ path, message }));
  }
  return [];
}

describe("config validate with the bhyve stage", () => {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-bhyve-validate-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("exits 2 on a one-letter node name, which vm-bhyve calls an invalid virtual machine name", () => {
    const file = join(dir, "kubehyve.yaml");
    writeFileSync(
      file,
      clusterFile({ nodes: "  - name: a\n    role: control-plane\n    address: 192.168.1.21\n" }),
    );
    const result = runCli(
      [process.execPath, join(import.meta.dir, "../../../../src/main.ts"), "config", "validate", "-c", file],
      {
        cwd: dir,
      },
    );
    expect(result.code).toBe(2);
    expect(result.out).toContain("nodes[0].name");
    expect(result.out).toContain('"a" is not a name vm-bhyve accepts for a VM');
  });

  test("takes the node names vm-bhyve takes", () => {
    for (const name of ["cp1", "w1", "node-10", "a".repeat(63)])
      expect(
        problemsOf(
          clusterFile({ nodes: `  - name: ${name}\n    role: control-plane\n    address: 192.168.1.21\n` }),
        ),
      ).toEqual([]);
  });

  test("refuses zvol sizes that are not a multiple of the zvol block size, and takes them for file disks", () => {
    const nodes =
      "  - name: cp1\n    role: control-plane\n    address: 192.168.1.21\n    disk: 20000000000\n    disks: [1.5GB]\n";
    expect(problemsOf(clusterFile({ nodes }))).toEqual([
      {
        path: "nodes[0].disk",
        message:
          "disk of 20000000000 bytes of node cp1 is not a multiple of 16 KiB, the zvol block size: OpenZFS would round it up (zfs create) or refuse it (zfs set volsize)",
      },
      {
        path: "nodes[0].disks[0]",
        message:
          "disk of 1500000000 bytes of node cp1 is not a multiple of 16 KiB, the zvol block size: OpenZFS would round it up (zfs create) or refuse it (zfs set volsize)",
      },
    ]);
    expect(problemsOf(clusterFile({ nodes, hypervisor: "    vmDir: /vm\n" }))).toEqual([]);
  });

  test("refuses a dataset whose disks' names would be too long for ZFS", () => {
    const vmDir = `zfs:zroot/${"d".repeat(240)}`;
    expect(problemsOf(clusterFile({ hypervisor: `    vmDir: ${vmDir}\n` })).map((p) => p.path)).toEqual([
      "nodes[0].name",
    ]);
  });
});

describe("the options' allowlists", () => {
  const refused = (options: Record<string, unknown>) => {
    try {
      parseBhyveOptions(options);
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  };

  test("take a plain absolute directory or a ZFS dataset name as vmDir", () => {
    for (const vmDir of [
      "zfs:zroot/vm",
      "zfs:tank/lab.vms_1:a/x-y",
      "/vm",
      "/tank/vm-store",
      "/usr/local/vm",
      "/var/vm",
    ])
      expect(refused({ vmDir })).toBeUndefined();
  });

  test("refuse every vmDir that a shell reading rc.conf would run, or that names a system directory", () => {
    for (const vmDir of [
      "/x$(id)",
      "/x`id`",
      '/x"; id; "',
      "/x'y",
      "/a b",
      "/a\nb",
      "/a\tb",
      "/a#b",
      "/a,b",
      "/a=b",
      "/a:b",
      "/",
      "//",
      "/etc",
      "/usr",
      "/var",
      "/boot",
      "/dev",
      "/dev/zvol",
      "/etc/vm",
      "/bin/vm",
      "/usr/local/etc",
      "/a/../b",
      "/a/./b",
      "/a//b",
      "/a/",
      "vm",
      "",
      `/${"a".repeat(800)}`,
    ])
      expect(refused({ vmDir }), vmDir).toMatch(/or an absolute directory/);
  });

  test("refuse every ZFS name OpenZFS's zfs_namecheck.c refuses, and blanks and % besides", () => {
    for (const dataset of [
      "zroot",
      "zroot/",
      "/zroot/vm",
      "zroot//vm",
      "zroot/./vm",
      "zroot/../vm",
      "zroot/v m",
      "zroot/v%m",
      "zroot/v$m",
      "zroot/vm@snap",
      "zroot/vm#book",
      "1pool/vm",
      "mirror/vm",
      "raidz/vm",
      "draid/vm",
      `zroot/${"a".repeat(250)}`,
      `zroot${"/a".repeat(50)}`,
    ])
      expect(refused({ vmDir: `zfs:${dataset}` }), dataset).toMatch(/or an absolute directory/);
  });

  test("refuse a firmware path that is not plain and absolute, and hostile NIC and switch names", () => {
    for (const firmware of ["BHYVE_UEFI.fd", "/x$(id).fd", "/a/../b.fd", "/a b.fd", "/"])
      expect(refused({ firmware }), firmware).toMatch(/firmware/);
    for (const nic of ["em0;id", "em0 ", "EM0", "em", `e${"m".repeat(20)}0`, "em0$(id)"])
      expect(refused({ nic }), nic).toBeDefined();
    // vm-bhyve's util::check_name wants two characters at least (lib/vm-util line 388).
    for (const sw of ["p", "-pub", "pub-", "pub lic", "pub.lic", "a-very-long-switch", "pub$"])
      expect(refused({ switch: sw }), sw).toMatch(/switch name/);
    expect(
      refused({ switch: "p1", nic: "em0", firmware: "/usr/local/share/uefi-firmware/BHYVE_UEFI.fd" }),
    ).toBeUndefined();
  });
});
