/**
 * The simulated FreeBSD host: a temp dir standing for `/`, a bin dir of shim commands (vm, sysrc,
 * kldstat, sysctl, zfs, zpool, pkg, ifconfig, freebsd-version, uname, id, dmesg) that keep their state
 * there, and handles for tests to read that state, inject faults and add latency.
 *
 * Defaults describe a ready FreeBSD 14.3 amd64 host with 32 GiB, 8 CPUs, vmm loaded on Intel with
 * unrestricted guest, ZFS pool `zroot` (500 GiB), vm-bhyve 1.7.5 and the UEFI firmware installed, NIC
 * em0, and nothing configured for vm-bhyve yet.
 */
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalTarget } from "../../../src/targets/local.ts";
import type { Target } from "../../../src/targets/target.ts";
import { oracle } from "../oracles.ts";
import {
  commandLog,
  type HostState,
  readRcFile,
  readState,
  stateFile,
  updateState,
  VM_BHYVE_EXAMPLES,
  writeRcVars,
  writeState,
  zvolBacking,
} from "./state.ts";

export const SHIM_COMMANDS = [
  "vm",
  "sysrc",
  "kldstat",
  "sysctl",
  "zfs",
  "zpool",
  "pkg",
  "ifconfig",
  "pfctl",
  "freebsd-version",
  "uname",
  "id",
  "dmesg",
] as const;

/**
 * Programs the host has for real (the target helpers use them to read and write files): they are
 * logged like the shims, so a test sees every command run on the host, then run unchanged.
 */
export const PASSTHROUGH_COMMANDS = [
  "sh",
  "cat",
  "grep",
  "test",
  "rm",
  "mkdir",
  "dd",
  "truncate",
  "mv",
  "chmod",
  "ls",
] as const;

const GiB = 1024 ** 3;
const FIRMWARE = "usr/local/share/uefi-firmware/BHYVE_UEFI.fd";

export type Fault =
  /** The next matching invocation fails with this exit code and stderr, then behaves again. */
  | { kind: "fail-once"; command: string; args?: string[]; code?: number; stderr?: string }
  /**
   * The next matching invocation hangs: it sleeps `ms` (default an hour: until it is killed), then
   * does its work as usual. A short `ms` makes a slow command instead.
   */
  | { kind: "hang"; command: string; args?: string[]; ms?: number }
  | { kind: "vmm-not-loaded" }
  /** The BIOS has VT-x/AMD-V off: vmm cannot initialise and the kernel said so at boot. */
  | { kind: "virtualisation-disabled-by-bios" }
  | { kind: "no-unrestricted-guest" }
  | { kind: "firmware-missing" }
  | { kind: "vm-bhyve-missing" }
  | { kind: "vm-bhyve-version"; version: string }
  | { kind: "freebsd-version"; version: string }
  | { kind: "not-root" }
  | { kind: "physmem"; bytes: number }
  | { kind: "arc-max"; bytes: number }
  | { kind: "cpus"; ncpu: number; maxcpu?: number }
  /** The pool has only this many bytes free. */
  | { kind: "pool-full"; pool?: string; free: number }
  /** The guest's next start fails after `vm start` returned (bhyve exits with status 4). */
  | { kind: "guest-start-fails"; vm: string }
  /** Every matching invocation takes `ms` longer (before it does anything), until the host is made anew. */
  | { kind: "slow"; command: string; args?: string[]; ms: number }
  /** pf.ko loaded, enabled unless said otherwise, with these translation rules (`pfctl -s nat` lines). */
  | { kind: "pf"; enabled?: boolean; nat?: string[] }
  /** ipfw.ko loaded (net.inet.ip.fw.enable=1). */
  | { kind: "ipfw" }
  | { kind: "sysctl"; name: string; value: string }
  /** The NIC's own capabilities (what `ifconfig NIC` shows in options= outside a bridge). */
  | { kind: "nic-caps"; nic?: string; caps: string[] }
  /**
   * The host set up as bridge(4) EXAMPLES say, as rc.conf would do at boot: a bridge with the NIC as
   * its member and the NIC's address on the bridge.
   */
  | { kind: "address-on-bridge"; bridge?: string; nic?: string };

/** An em(4) NIC's capabilities outside a bridge (an Intel 82574; the capture of an em0 in a bridge lacks TSO4 and LRO). */
export const EM0_CAPS = [
  "RXCSUM",
  "TXCSUM",
  "VLAN_MTU",
  "VLAN_HWTAGGING",
  "JUMBO_MTU",
  "VLAN_HWCSUM",
  "TSO4",
  "TSO6",
  "LRO",
  "WOL_MAGIC",
  "VLAN_HWFILTER",
  "VLAN_HWTSO",
  "RXCSUM_IPV6",
  "TXCSUM_IPV6",
  "HWSTATS",
  "MEXTPG",
];

export interface SimulatedVm {
  exists: boolean;
  running: boolean;
  dir: string;
  configPath: string;
  config: Record<string, string>;
  /** Edits the guest's config file the way a person with an editor would. */
  edit(changes: Record<string, string | undefined>): void;
  log(): string;
  /** Leaves a run.lock as vm-bhyve does when its host dies with the guest running (vm::lock). */
  lock(hostname?: string): void;
}

export interface FreebsdHost {
  root: string;
  binDir: string;
  stateDir: string;
  /** Environment for running commands on this host: PATH starts with binDir. */
  env: Record<string, string>;
  /** Path of the UEFI firmware on this host (under root). */
  firmwarePath: string;
  /** Every command run so far, as argv (argv[0] the command name), oldest first. */
  log(): string[][];
  clearLog(): void;
  inject(fault: Fault): void;
  /** Drops the fail-once and slow faults still waiting. */
  clearFaults(): void;
  setLatency(ms: number): void;
  /** How long a guest takes to go down after `vm stop`. */
  setStopDelay(ms: number): void;
  state(): HostState;
  rcConf(): Record<string, string>;
  /** The datastore directory of `zfs:zroot/vm` or a plain vm_dir, once it exists. */
  vmDir(): string;
  vm(name: string): SimulatedVm;
  /** Sets up vm-bhyve the way a person following vm.8 BASIC SETUP would: enabled, datastore, switch. */
  prepareVmBhyve(opts?: { dataset?: string; switchName?: string; nic?: string }): void;
  /** A VM that is not the cluster's: created by hand with vm-bhyve's default template. */
  createForeignVm(name: string, opts?: { running?: boolean }): void;
  /**
   * The first `length` bytes of zvol NAME (what /dev/zvol/NAME holds on the host), or undefined if
   * it was never read or written; `size` is the whole zvol's.
   */
  zvol(name: string, length?: number): (Buffer & { size: number }) | undefined;
  cleanup(): void;
}

export interface FreebsdHostOptions {
  latencyMs?: number;
  stopDelayMs?: number;
}

let compiled: string | undefined;

/**
 * shim.ts compiled into one executable with bytecode, once per test process: every host command
 * starts it, and a compiled start is about a third faster than `bun shim.js` (measured: 31 ms
 * against 48 ms per command on a loaded 2-core machine).
 */
function compiledShim(): string {
  if (compiled && existsSync(compiled)) return compiled;
  const source = join(import.meta.dir, "shim.ts");
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-freebsd-shim-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, "shim");
  const build = Bun.spawnSync([
    process.execPath,
    "build",
    source,
    "--compile",
    "--bytecode",
    "--outfile",
    out,
  ]);
  if (build.exitCode !== 0) throw new Error(`compiling ${source} failed: ${build.stderr.toString()}`);
  compiled = out;
  return out;
}

function initialState(root: string, opts: FreebsdHostOptions): HostState {
  return {
    version: "14.3-RELEASE-p2",
    osreldate: 1403000,
    uid: 0,
    hostname: "hv1.lab.home.arpa",
    cpuVendor: "intel",
    physmem: 32 * GiB,
    ncpu: 8,
    arcMax: 0,
    vmm: { loaded: true, loadable: true, unrestrictedGuest: true, maxcpu: 8 },
    dmesg: [
      "FreeBSD 14.3-RELEASE-p2 GENERIC amd64",
      "CPU: Intel(R) Xeon(R) CPU E5-2650 v4 @ 2.20GHz (2200.05-MHz K8-class CPU)",
      "  Features2=0x7ffefbff<SSE3,PCLMULQDQ,DTES64,MON,DS_CPL,VMX,SMX,EST,TM2,SSSE3>",
    ],
    packages: { "vm-bhyve": "1.7.5", "edk2-bhyve": "g202308_5" },
    pools: { zroot: { size: 500 * GiB, baseAlloc: 40 * GiB } },
    datasets: { zroot: { type: "filesystem", mountpoint: join(root, "zroot"), mounted: true } },
    interfaces: {
      em0: {
        kind: "ether",
        ether: "00:1b:21:3a:4c:5d",
        mtu: 1500,
        up: true,
        groups: [],
        members: [],
        inet: "192.168.1.10",
        caps: [...EM0_CAPS],
      },
      lo0: {
        kind: "loopback",
        ether: "",
        mtu: 16384,
        up: true,
        groups: ["lo"],
        members: [],
        inet: "127.0.0.1",
      },
    },
    running: {},
    modules: [],
    failingGuests: [],
    faults: [],
    slow: [],
    latencyMs: opts.latencyMs ?? 0,
    stopDelayMs: opts.stopDelayMs ?? 150,
    nextPid: 41000,
    passthrough: Object.fromEntries(
      PASSTHROUGH_COMMANDS.map((name) => {
        const path = Bun.which(name, { PATH: "/usr/bin:/bin" });
        if (!path) throw new Error(`simulated host: ${name} not found in /usr/bin:/bin`);
        return [name, path];
      }),
    ),
  };
}

export function createFreebsdHost(opts: FreebsdHostOptions = {}): FreebsdHost {
  const root = mkdtempSync(join(tmpdir(), "kubehyve-freebsd-"));
  const binDir = join(root, ".sim", "bin");
  const stateDir = join(root, ".sim");
  mkdirSync(binDir, { recursive: true });
  for (const dir of ["etc", "zroot", "usr/local/share/uefi-firmware", VM_BHYVE_EXAMPLES])
    mkdirSync(join(root, dir), { recursive: true });
  writeFileSync(join(root, FIRMWARE), "simulated BHYVE_UEFI.fd\n");
  // The vm-bhyve package installs its sample templates there (its Makefile: EXAMPLESDIR).
  copyFileSync(
    oracle("vm-bhyve/sample-templates/default.conf"),
    join(root, VM_BHYVE_EXAMPLES, "default.conf"),
  );
  writeFileSync(
    join(root, "etc/rc.conf"),
    'hostname="hv1.lab.home.arpa"\nzfs_enable="YES"\nifconfig_em0="DHCP"\n',
  );
  writeState(root, initialState(root, opts));
  writeFileSync(commandLog(root), "");

  const shim = compiledShim();
  for (const name of [...SHIM_COMMANDS, ...PASSTHROUGH_COMMANDS]) {
    const wrapper = join(binDir, name);
    // Absolute paths only: an ssh session's PATH or cwd must not change which shim runs.
    writeFileSync(wrapper, `#!/bin/sh\nexec '${shim}' '${root}' '${name}' "$@"\n`);
    chmodSync(wrapper, 0o755);
  }

  const env = { PATH: `${binDir}:${process.env.PATH ?? "/usr/bin:/bin"}` };
  const rcPath = join(root, "etc/rc.conf");

  const datastore = (): string => {
    const vmDir = readRcFile(rcPath).get("vm_dir") ?? "";
    if (vmDir.startsWith("zfs:")) {
      const ds = readState(root).datasets[vmDir.slice(4)];
      if (!ds?.mountpoint) throw new Error(`simulated host: dataset ${vmDir.slice(4)} does not exist`);
      return ds.mountpoint;
    }
    if (!vmDir) throw new Error("simulated host: vm_dir is not set");
    return vmDir;
  };

  const host: FreebsdHost = {
    root,
    binDir,
    stateDir,
    env,
    firmwarePath: join(root, FIRMWARE),
    log: () =>
      readFileSync(commandLog(root), "utf8")
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as string[]),
    clearLog: () => writeFileSync(commandLog(root), ""),
    inject(fault) {
      if (fault.kind === "firmware-missing") {
        rmSync(join(root, FIRMWARE), { force: true });
        return;
      }
      updateState(root, (s) => {
        switch (fault.kind) {
          case "hang":
            s.faults.push({
              command: fault.command,
              args: fault.args,
              code: 0,
              stderr: "",
              hangMs: fault.ms ?? 3600_000,
            });
            break;
          case "fail-once":
            s.faults.push({
              command: fault.command,
              args: fault.args,
              code: fault.code ?? 1,
              stderr: fault.stderr ?? `${fault.command}: simulated failure`,
            });
            break;
          case "vmm-not-loaded":
            s.vmm.loaded = false;
            break;
          case "virtualisation-disabled-by-bios":
            // vmx_init refuses (sys/amd64/vmm/intel/vmx.c), so loading vmm.ko fails with ENXIO (6).
            s.vmm.loaded = false;
            s.vmm.loadable = false;
            s.dmesg.push(
              "vmx_init: VMX operation disabled by BIOS",
              "module_register_init: MOD_LOAD (vmm, 0xffffffff82a4e0f0, 0) error 6",
            );
            break;
          case "no-unrestricted-guest":
            s.vmm.unrestrictedGuest = false;
            break;
          case "vm-bhyve-missing":
            delete s.packages["vm-bhyve"];
            break;
          case "vm-bhyve-version":
            s.packages["vm-bhyve"] = fault.version;
            break;
          case "freebsd-version": {
            // __FreeBSD_version of a release: major * 100000 + minor * 1000 (sys/sys/param.h).
            s.version = fault.version;
            const m = /^(\d+)\.(\d+)/.exec(fault.version);
            if (m) s.osreldate = Number(m[1]) * 100_000 + Number(m[2]) * 1000;
            break;
          }
          case "not-root":
            s.uid = 1001;
            break;
          case "physmem":
            s.physmem = fault.bytes;
            break;
          case "arc-max":
            s.arcMax = fault.bytes;
            break;
          case "cpus":
            s.ncpu = fault.ncpu;
            s.vmm.maxcpu = fault.maxcpu ?? fault.ncpu;
            break;
          case "pool-full": {
            const pool = s.pools[fault.pool ?? "zroot"]!;
            pool.baseAlloc = pool.size - fault.free;
            break;
          }
          case "guest-start-fails":
            s.failingGuests.push(fault.vm);
            break;
          case "slow":
            s.slow.push({ command: fault.command, args: fault.args, ms: fault.ms });
            break;
          case "pf":
            s.pf = {
              loaded: true,
              enabled: fault.enabled ?? true,
              enabledAt: Date.now() - 754_000,
              nat: fault.nat ?? [],
            };
            break;
          case "ipfw":
            if (!s.modules.includes("ipfw")) s.modules.push("ipfw");
            break;
          case "sysctl":
            s.sysctls = { ...s.sysctls, [fault.name]: fault.value };
            break;
          case "nic-caps": {
            const nic = s.interfaces[fault.nic ?? "em0"]!;
            if (nic.savedCaps) nic.savedCaps = [...fault.caps];
            nic.caps = [...fault.caps];
            break;
          }
          case "address-on-bridge": {
            const name = fault.bridge ?? "bridge0";
            const nic = s.interfaces[fault.nic ?? "em0"]!;
            s.interfaces[name] = {
              kind: "bridge",
              ether: "58:9c:fc:10:12:5b",
              mtu: nic.mtu,
              up: true,
              groups: ["bridge"],
              members: [fault.nic ?? "em0"],
              inet: nic.inet,
              caps: [],
            };
            delete nic.inet;
            // bridge_mutecaps strips LRO from a member (sys/net/if_bridge.c).
            nic.savedCaps = [...(nic.caps ?? [])];
            nic.caps = nic.caps?.filter((c) => c !== "LRO");
            if (!s.modules.includes("if_bridge")) s.modules.push("if_bridge");
            break;
          }
        }
      });
    },
    clearFaults: () =>
      updateState(root, (s) => {
        s.faults = [];
        s.slow = [];
      }),
    setLatency: (ms) =>
      updateState(root, (s) => {
        s.latencyMs = ms;
      }),
    setStopDelay: (ms) =>
      updateState(root, (s) => {
        s.stopDelayMs = ms;
      }),
    state: () => readState(root),
    rcConf: () => Object.fromEntries(readRcFile(rcPath)),
    vmDir: datastore,
    vm(name) {
      let dir = "";
      try {
        dir = join(datastore(), name);
      } catch {
        dir = join(root, "nonexistent", name);
      }
      const configPath = join(dir, `${name}.conf`);
      const exists = existsSync(configPath);
      const state = readState(root);
      const run = state.running[name];
      return {
        exists,
        running: run !== undefined && (run.stopAt === undefined || Date.now() < run.stopAt),
        dir,
        configPath,
        config: exists ? Object.fromEntries(readRcFile(configPath)) : {},
        edit: (changes) => writeRcVars(configPath, changes),
        lock: (hostname = readState(root).hostname) => writeFileSync(join(dir, "run.lock"), `${hostname}\n`),
        log: () =>
          existsSync(join(dir, "vm-bhyve.log")) ? readFileSync(join(dir, "vm-bhyve.log"), "utf8") : "",
      };
    },
    prepareVmBhyve({ dataset = "zroot/vm", switchName = "public", nic = "em0" } = {}) {
      run(host, ["zfs", "create", "-p", dataset]);
      run(host, ["sysrc", `vm_enable=YES`, `vm_dir=zfs:${dataset}`]);
      run(host, ["vm", "init"]);
      run(host, ["vm", "switch", "create", switchName]);
      run(host, ["vm", "switch", "add", switchName, nic]);
    },
    createForeignVm(name, { running = false } = {}) {
      // `vm init` puts vm-bhyve's sample default.conf into .templates (util::setup).
      run(host, ["vm", "init"]);
      run(host, ["vm", "create", "-s", "1G", name]);
      if (running) run(host, ["vm", "start", name]);
    },
    zvol(name, length = 65536) {
      // A clone never written since holds what its origin snapshot holds.
      let path = zvolBacking(root, name);
      let origin = readState(root).datasets[name]?.origin;
      while (!existsSync(path) && origin) {
        path = zvolBacking(root, origin);
        origin = readState(root).datasets[origin.split("@")[0]!]?.origin;
      }
      if (!existsSync(path)) return undefined;
      const fd = openSync(path, "r");
      try {
        const size = fstatSync(fd).size;
        const head = Buffer.alloc(Math.min(length, size));
        readSync(fd, head, 0, head.length, 0);
        return Object.assign(head, { size });
      } finally {
        closeSync(fd);
      }
    },
    cleanup() {
      rmSync(root, { recursive: true, force: true });
    },
  };
  return host;
}

/** The host as a local Target whose commands see the shims first on PATH. */
export function hostTarget(host: FreebsdHost, name = "hv1"): Target {
  const local = new LocalTarget();
  return {
    name,
    run: (argv, opts = {}) => local.run(argv, { ...opts, env: { ...host.env, ...opts.env } }),
    close: () => local.close(),
  };
}

/** Runs a shim directly (test set-up); throws with its stderr when it fails. */
export function run(host: FreebsdHost, argv: string[]): string {
  const proc = Bun.spawnSync(argv, { env: { ...process.env, ...host.env } });
  if (proc.exitCode !== 0)
    throw new Error(`simulated host: ${argv.join(" ")} exited ${proc.exitCode}: ${proc.stderr.toString()}`);
  return proc.stdout.toString();
}

export { stateFile };
