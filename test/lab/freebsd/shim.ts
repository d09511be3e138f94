/**
 * The FreeBSD commands of the simulated host, one program dispatching on its first arguments:
 * `bun shim.ts ROOT NAME ARGS…` (the wrappers in the host's bin dir add ROOT and NAME). Every command
 * cites where its behaviour and output format come from; the ones whose man page was not available
 * follow the upstream source or a verbatim capture in ../shared/oracles/freebsd/samples.
 */
import {
  appendFileSync,
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import {
  commandLog,
  type HostState,
  holdSignalsWhileChanging,
  type InterfaceState,
  type PfState,
  readRcFile,
  readState,
  updateState,
  VM_BHYVE_EXAMPLES,
  withLock,
  writeRcVars,
  zvolBacking,
} from "./state.ts";

class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

let out = "";
let err = "";
const print = (line = "") => {
  out += `${line}\n`;
};
const eprint = (line: string) => {
  err += `${line}\n`;
};
const fail = (message: string, code = 1): never => {
  eprint(message);
  throw new Exit(code);
};

function main(argv: string[]): number {
  const [root, name, ...args] = argv;
  if (!root || !name) throw new Error("usage: shim.ts ROOT COMMAND [ARGS...]");
  appendFileSync(commandLog(root), `${JSON.stringify([name, ...args])}\n`);
  const boot = readState(root);
  if (boot.latencyMs > 0) Bun.sleepSync(boot.latencyMs);
  const slow = boot.slow?.find((f) => f.command === name && (f.args ?? []).every((a, i) => args[i] === a));
  if (slow) Bun.sleepSync(slow.ms);
  const fault = takeFault(root, name, args);
  if (fault?.hangMs !== undefined) Bun.sleepSync(fault.hangMs);
  else if (fault) {
    eprint(fault.stderr);
    return fault.code;
  }
  const commands: Record<string, (root: string, args: string[]) => void> = {
    "freebsd-version": freebsdVersion,
    uname,
    id,
    kldstat,
    sysctl,
    sysrc,
    dmesg,
    zpool,
    zfs,
    pkg,
    ifconfig,
    pfctl,
    vm,
  };
  const real = boot.passthrough[name];
  if (real) return passthrough(root, boot, name, real, args);
  const command = commands[name];
  if (!command) return fail(`shim: unknown command ${name}`, 127);
  command(root, args);
  return 0;
}

/**
 * A program the host has for real, run unchanged except that /dev/zvol/NAME (as an argument, or
 * after `if=`/`of=`) becomes the file that holds the simulated zvol's contents: FreeBSD shows every
 * zvol of volmode=dev there (zfsprops.7 volmode). A zvol is a device: dd never truncates it and
 * cannot write past its end.
 */
function passthrough(root: string, state: HostState, name: string, real: string, args: string[]): number {
  const volumes: string[] = [];
  const mapped = args.map((arg) => {
    const m = /^((?:if|of)=)?\/dev\/zvol\/(.+)$/.exec(arg);
    if (!m) return arg;
    const volume = m[2]!;
    const ds = state.datasets[volume];
    if (ds?.type !== "volume") return `${m[1] ?? ""}${join(root, ".sim", "zvol-absent", volume)}`;
    ensureBacking(root, state, volume);
    if (m[1] === "of=") volumes.push(volume);
    return `${m[1] ?? ""}${zvolBacking(root, volume)}`;
  });
  if (name === "dd" && volumes.length) {
    const conv = mapped.findIndex((a) => a.startsWith("conv="));
    if (conv >= 0) mapped[conv] = `${mapped[conv]},notrunc`;
    else mapped.push("conv=notrunc");
  }
  const proc = Bun.spawnSync([real, ...mapped], { stdio: ["inherit", "inherit", "inherit"] });
  for (const volume of volumes) {
    const size = state.datasets[volume]!.volsize ?? 0;
    if (statSync(zvolBacking(root, volume)).size > size) {
      truncateSync(zvolBacking(root, volume), size);
      eprint(`dd: /dev/zvol/${volume}: end of device`);
      return 1;
    }
  }
  return proc.exitCode ?? 128;
}

/** The contents of a zvol, made when first read or written: zeros, or those of the snapshot it was cloned from. */
function ensureBacking(root: string, state: HostState, volume: string) {
  const path = zvolBacking(root, volume);
  if (existsSync(path)) return;
  mkdirSync(dirname(path), { recursive: true });
  const origin = state.datasets[volume]!.origin;
  const draft = `${path}.${process.pid}`;
  if (origin && existsSync(zvolBacking(root, origin)))
    Bun.spawnSync(["cp", "--sparse=always", zvolBacking(root, origin), draft]);
  else closeSync(openSync(draft, "w"));
  truncateSync(draft, state.datasets[volume]!.volsize ?? 0);
  renameSync(draft, path);
}

function takeFault(root: string, name: string, args: string[]) {
  // Most invocations have no fault waiting: they do not take the lock, so parallel reads stay parallel.
  if (!readState(root).faults.some((f) => f.command === name)) return undefined;
  return updateState(root, (state) => {
    const index = state.faults.findIndex(
      (f) => f.command === name && (f.args ?? []).every((a, i) => args[i] === a),
    );
    if (index < 0) return undefined;
    return state.faults.splice(index, 1)[0];
  });
}

/** getopt(3) for the flag letters a command knows; returns the flags and the operands. */
function getopt(args: string[], spec: string): { flags: Map<string, string | true>; rest: string[] } {
  const flags = new Map<string, string | true>();
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j]!;
      const at = spec.indexOf(letter);
      if (at < 0) fail(`illegal option -- ${letter}`, 64);
      if (spec[at + 1] === ":") {
        const value = arg.slice(j + 1) || args[++i];
        if (value === undefined) fail(`option requires an argument -- ${letter}`, 64);
        flags.set(letter, value!);
        break;
      }
      flags.set(letter, true);
    }
  }
  return { flags, rest: args.slice(i) };
}

// freebsd-version(1) (../shared/oracles/freebsd/freebsd-version.1): -k, -r, -u print the installed
// kernel, running kernel and userland versions, in that order; no flag means -u.
function freebsdVersion(root: string, args: string[]) {
  const { flags } = getopt(args, "kruj:");
  const state = readState(root);
  const wanted = ["k", "r", "u"].filter((f) => flags.has(f));
  for (const _ of wanted.length ? wanted : ["u"]) print(state.version);
}

// uname(1): -s sysname, -r release, -m machine, -K __FreeBSD_version of the kernel (uname.1, FreeBSD).
function uname(root: string, args: string[]) {
  const { flags } = getopt(args, "aKmnoprsUv");
  const state = readState(root);
  if (flags.has("a")) {
    print(`FreeBSD ${state.hostname} ${state.version} FreeBSD ${state.version} GENERIC amd64`);
    return;
  }
  const parts: string[] = [];
  if (flags.has("s") || flags.size === 0) parts.push("FreeBSD");
  if (flags.has("n")) parts.push(state.hostname);
  if (flags.has("r")) parts.push(state.version);
  if (flags.has("m")) parts.push("amd64");
  if (flags.has("K")) parts.push(String(state.osreldate));
  print(parts.join(" "));
}

// id(1): -u prints the effective user id.
function id(root: string, args: string[]) {
  const state = readState(root);
  if (args[0] === "-u") print(String(state.uid));
  else print(`uid=${state.uid}(${state.uid === 0 ? "root" : "user"}) gid=0(wheel) groups=0(wheel)`);
}

// kldstat(8): column layout from ../shared/oracles/freebsd/samples/kldstat-manpage-examples.txt;
// -q -m NAME prints nothing and exits 1 when the module is absent ("kldstat -q -n fakefile || …").
function kldstat(root: string, args: string[]) {
  const { flags } = getopt(args, "qm:n:vdhi:");
  const state = readState(root);
  const modules = [
    { id: 1, refs: 38, file: "kernel", modules: ["kernel"] },
    { id: 2, refs: 1, file: "zfs.ko", modules: ["zfs"] },
    ...(state.vmm.loaded ? [{ id: 17, refs: 1, file: "vmm.ko", modules: ["vmm"] }] : []),
    ...state.modules.map((mod, i) => ({ id: 18 + i, refs: 1, file: `${mod}.ko`, modules: [mod] })),
  ];
  const byModule = flags.get("m");
  if (typeof byModule === "string") {
    const found = modules.find((m) => m.modules.includes(byModule));
    if (!found) {
      if (!flags.has("q")) eprint(`kldstat: can't find module ${byModule}: No such file or directory`);
      throw new Exit(1);
    }
    if (!flags.has("q")) {
      print("Id  Refs Name");
      print(`${String(found.id).padStart(3)} ${String(found.refs).padStart(4)} ${byModule}`);
    }
    return;
  }
  const byFile = flags.get("n");
  const list =
    typeof byFile === "string"
      ? modules.filter((m) => m.file.replace(/\.ko$/, "") === byFile.replace(/\.ko$/, ""))
      : modules;
  if (typeof byFile === "string" && list.length === 0) {
    if (!flags.has("q")) eprint(`kldstat: can't find file ${byFile}: No such file or directory`);
    throw new Exit(1);
  }
  if (flags.has("q")) return;
  print("Id Refs Address                Size Name");
  for (const m of list)
    print(`${String(m.id).padStart(2)} ${String(m.refs).padStart(4)} 0xffffffff80200000  2448f20 ${m.file}`);
}

function sysctlValues(state: HostState): Record<string, string> {
  const values: Record<string, string> = {
    "kern.ostype": "FreeBSD",
    "kern.osrelease": state.version,
    "kern.osreldate": String(state.osreldate),
    "kern.hostname": state.hostname,
    "hw.machine": "amd64",
    "hw.model":
      state.cpuVendor === "intel"
        ? "Intel(R) Xeon(R) CPU E5-2650 v4 @ 2.20GHz"
        : "AMD Ryzen 7 5800X 8-Core Processor",
    "hw.ncpu": String(state.ncpu),
    "hw.physmem": String(state.physmem),
    "hw.realmem": String(state.physmem + 512 * 1024 ** 2),
    "vfs.zfs.arc_max": String(state.arcMax),
    "vfs.zfs.arc.max": String(state.arcMax),
    "net.link.tap.up_on_open": "1",
  };
  // if_bridge's tree exists while the module is loaded (vm init loads it): sys/net/if_bridge.c
  // SYSCTL_INT(_net_link_bridge, …) with pfil_member and pfil_bridge 1, ipfw 0; member_ifaddrs
  // came with FreeBSD 15.0 (0: a member may not hold an address, bridge(4)).
  if (state.modules.includes("if_bridge")) {
    values["net.link.bridge.pfil_onlyip"] = "1";
    values["net.link.bridge.pfil_member"] = "1";
    values["net.link.bridge.pfil_bridge"] = "1";
    values["net.link.bridge.pfil_local_phys"] = "0";
    values["net.link.bridge.ipfw"] = "0";
    if (state.osreldate >= 1_500_000) values["net.link.bridge.member_ifaddrs"] = "0";
  }
  // ipfw.ko: net.inet.ip.fw.enable is 1 once the module is loaded (sys/netpfil/ipfw/ip_fw_pfil.c).
  if (state.modules.includes("ipfw")) values["net.inet.ip.fw.enable"] = "1";
  for (const [name, value] of Object.entries(state.sysctls ?? {})) values[name] = value;
  // The hw.vmm tree exists only while vmm.ko is loaded (sys/amd64/vmm/vmm.c, intel/vmx.c, amd/svm.c).
  if (state.vmm.loaded) {
    values["hw.vmm.maxcpu"] = String(state.vmm.maxcpu);
    if (state.cpuVendor === "intel") {
      values["hw.vmm.vmx.initialized"] = state.vmm.loadable ? "1" : "0";
      values["hw.vmm.vmx.cap.unrestricted_guest"] = state.vmm.unrestrictedGuest ? "1" : "0";
    } else {
      values["hw.vmm.svm.features"] = state.vmm.loadable ? "4294967295" : "0";
    }
  }
  return values;
}

// sysctl(8): "name: value" lines, -n values only, -e "name=value", -i ignores unknown names, an
// unknown name otherwise fails with "sysctl: unknown oid 'NAME'" (sbin/sysctl/sysctl.c).
function sysctl(root: string, args: string[]) {
  const { flags, rest } = getopt(args, "aeinNqbdhoxtTW");
  const values = sysctlValues(readState(root));
  let failed = false;
  for (const arg of rest) {
    const [name, assigned] = arg.split("=", 2) as [string, string | undefined];
    const value = values[name];
    if (value === undefined) {
      if (flags.has("i")) continue;
      if (!flags.has("q")) eprint(`sysctl: unknown oid '${name}'`);
      failed = true;
      continue;
    }
    if (assigned !== undefined) {
      print(`${name}: ${value} -> ${assigned}`);
      updateState(root, (state) => {
        state.sysctls = { ...state.sysctls, [name]: assigned };
      });
      continue;
    }
    if (flags.has("n")) print(value);
    else if (flags.has("e")) print(`${name}=${value}`);
    else print(`${name}: ${value}`);
  }
  if (failed) throw new Exit(1);
}

const rcConf = (root: string) => join(root, "etc", "rc.conf");

// sysrc(8) (usr.sbin/sysrc): "name: value" when reading, "name: old -> new" when setting, -n value
// only, -e sh(1) syntax, -i ignores unknown variables, -x deletes, -f FILE, name+=value appends with
// a space; an unknown variable is "sysrc: unknown variable 'NAME'" and exit 1.
function sysrc(root: string, args: string[]) {
  const { flags, rest } = getopt(args, "f:neiqxvacdADhjNR:");
  const file = typeof flags.get("f") === "string" ? (flags.get("f") as string) : rcConf(root);
  withLock(root, () => {
    const vars = readRcFile(file);
    let failed = false;
    for (const arg of rest) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(\+|-)?(?:=(.*))?$/s.exec(arg);
      if (!m) fail(`sysrc: invalid variable name '${arg}'`);
      const [, name, op, value] = m!;
      const old = vars.get(name!);
      if (flags.has("x")) {
        if (old === undefined && !flags.has("i")) {
          eprint(`sysrc: unknown variable '${name}'`);
          failed = true;
        }
        writeRcVars(file, { [name!]: undefined });
        continue;
      }
      if (value === undefined) {
        if (old === undefined) {
          if (!flags.has("i")) {
            eprint(`sysrc: unknown variable '${name}'`);
            failed = true;
          }
          continue;
        }
        if (flags.has("n")) print(old);
        else if (flags.has("e")) print(`${name}="${old}"`);
        else print(`${name}: ${old}`);
        continue;
      }
      let next = value;
      const words = (old ?? "").split(/\s+/).filter(Boolean);
      if (op === "+")
        next = [...words, ...value.split(/\s+/).filter((w) => w && !words.includes(w))].join(" ");
      if (op === "-") next = words.filter((w) => !value.split(/\s+/).includes(w)).join(" ");
      writeRcVars(file, { [name!]: next });
      vars.set(name!, next);
      if (!flags.has("q")) print(`${name}: ${old ?? ""} -> ${next}`);
    }
    if (failed) throw new Exit(1);
  });
}

// dmesg(8): the kernel message buffer, one message per line.
function dmesg(root: string) {
  for (const line of readState(root).dmesg) print(line);
}

function poolAlloc(state: HostState, pool: string): number {
  let alloc = state.pools[pool]!.baseAlloc;
  for (const [name, ds] of Object.entries(state.datasets)) {
    if (name.split("/")[0] === pool && ds.type === "volume" && !ds.sparse) alloc += ds.volsize ?? 0;
  }
  return alloc;
}

function human(bytes: number): string {
  const units = ["B", "K", "M", "G", "T"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? String(v) : `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)}${units[u]}`;
}

function table(rows: string[][], scripted: boolean): void {
  if (scripted) {
    for (const row of rows.slice(1)) print(row.join("\t"));
    return;
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows)
    print(
      row
        .map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    );
}

// zpool-list(8) (../shared/oracles/freebsd/openzfs/zfs-2.2.7/zpool-list.8): -H tab-separated without
// header, -p exact numbers, -o picks properties (zpoolprops.7 names).
function zpool(root: string, args: string[]) {
  if (args[0] !== "list") fail(`shim zpool: only 'list' is simulated, not '${args[0]}'`, 2);
  const { flags, rest } = getopt(args.slice(1), "gHLpPvo:T:");
  const state = readState(root);
  const props =
    typeof flags.get("o") === "string"
      ? (flags.get("o") as string).split(",")
      : ["name", "size", "alloc", "free", "ckpoint", "expandsz", "frag", "cap", "dedup", "health", "altroot"];
  const exact = flags.has("p");
  const pools = rest.length ? rest : Object.keys(state.pools);
  const rows = [props.map((p) => p.toUpperCase())];
  for (const name of pools) {
    const pool = state.pools[name];
    if (!pool) fail(`cannot open '${name}': no such pool`);
    const alloc = Math.min(poolAlloc(state, name), pool!.size);
    const free = pool!.size - alloc;
    const value: Record<string, string> = {
      name,
      size: exact ? String(pool!.size) : human(pool!.size),
      allocated: exact ? String(alloc) : human(alloc),
      alloc: exact ? String(alloc) : human(alloc),
      free: exact ? String(free) : human(free),
      ckpoint: "-",
      expandsz: "-",
      frag: exact ? "3" : "3%",
      fragmentation: exact ? "3" : "3%",
      cap: exact
        ? String(Math.floor((alloc / pool!.size) * 100))
        : `${Math.floor((alloc / pool!.size) * 100)}%`,
      capacity: exact
        ? String(Math.floor((alloc / pool!.size) * 100))
        : `${Math.floor((alloc / pool!.size) * 100)}%`,
      dedup: "1.00x",
      health: "ONLINE",
      altroot: "-",
    };
    rows.push(props.map((p) => value[p] ?? "-"));
  }
  table(rows, flags.has("H"));
}

/** OpenZFS 2.2's default volblocksize (ZVOL_DEFAULT_BLOCKSIZE, include/sys/fs/zfs.h). */
const ZVOL_DEFAULT_BLOCKSIZE = 16 * 1024;

function datasetProps(state: HostState, name: string, exact: boolean): Record<string, string> {
  const ds = state.datasets[name]!;
  const size = ds.type === "volume" ? (ds.volsize ?? 0) : 0;
  const pool = name.split(/[/@]/)[0]!;
  const avail = state.pools[pool]!.size - Math.min(poolAlloc(state, pool), state.pools[pool]!.size);
  const show = (n: number) => (exact ? String(n) : human(n));
  return {
    name,
    type: ds.type,
    used: show(ds.type === "volume" && !ds.sparse ? size : 0),
    avail: ds.type === "snapshot" ? "-" : show(avail),
    available: ds.type === "snapshot" ? "-" : show(avail),
    refer: show(0),
    referenced: show(0),
    mountpoint: ds.type === "filesystem" ? (ds.mountpoint ?? "none") : "-",
    mounted: ds.type === "filesystem" ? (ds.mounted ? "yes" : "no") : "-",
    volsize: ds.type === "volume" ? show(size) : "-",
    volblocksize: ds.type === "volume" ? show(ds.volblocksize ?? ZVOL_DEFAULT_BLOCKSIZE) : "-",
    volmode: ds.type === "volume" ? (ds.volmode ?? "default") : "-",
    origin: ds.origin ?? "-",
    refreservation: ds.type === "volume" && !ds.sparse ? show(size) : exact ? "0" : "none",
  };
}

/**
 * A property as `zfs get` shows it: value and source (zfs-get.8: local, default, inherited from
 * NAME, or - for read-only and unset ones). User properties (a colon in the name, zfsprops.7 "User
 * Properties") are inherited from the nearest ancestor that sets them; unset, both are "-".
 */
function propertyOf(state: HostState, name: string, prop: string, exact: boolean): [string, string] {
  if (prop.includes(":")) {
    const parts = name.split("@")[0]!.split("/");
    for (let i = parts.length; i > 0; i--) {
      const at = parts.slice(0, i).join("/");
      const value = state.datasets[at]?.props?.[prop];
      if (value !== undefined) return [value, at === name ? "local" : `inherited from ${at}`];
    }
    return ["-", "-"];
  }
  const value = datasetProps(state, name, exact)[prop];
  if (value === undefined) fail(`bad property list: invalid property '${prop}'`, 2);
  const source =
    prop === "volsize" ? "local" : ["volblocksize", "volmode", "mountpoint"].includes(prop) ? "default" : "-";
  return [value!, value === "-" ? "-" : source];
}

/** The datasets under `names` down to `depth` levels (-r: all), as zfs-list.8's -r and -d select them. */
function descendants(state: HostState, names: string[], depth: number): string[] {
  const levels = (d: string) => d.split(/[/@]/).length;
  return Object.keys(state.datasets)
    .filter((d) =>
      names.some(
        (n) =>
          d === n || ((d.startsWith(`${n}/`) || d.startsWith(`${n}@`)) && levels(d) - levels(n) <= depth),
      ),
    )
    .sort();
}

/** Repeated `-o a=b` options of zfs create, zfs clone. */
function propertyOptions(
  args: string[],
  letters: string,
): { flags: Map<string, string | true>; props: Record<string, string>; rest: string[] } {
  const props: Record<string, string> = {};
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-o") {
      const [k, ...v] = (args[++i] ?? "").split("=");
      if (!k || !v.length) fail(`missing '=' for property=value argument`, 2);
      props[k!] = v.join("=");
    } else kept.push(args[i]!);
  }
  const { flags, rest } = getopt(kept, letters);
  return { flags, props, rest };
}

/**
 * A zvol's size as zfs create sets it: cmd/zfs/zfs_main.c (zfs_do_create) rounds a size that is not
 * a multiple of volblocksize up to one; libzfs refuses 0 ("volume size cannot be zero").
 */
function createVolume(
  s: HostState,
  name: string,
  size: string,
  opts: { sparse: boolean; props: Record<string, string> },
): void {
  const { volblocksize, volmode, ...user } = opts.props;
  const block = volblocksize ? parseZfsSize(volblocksize) : ZVOL_DEFAULT_BLOCKSIZE;
  let volsize = parseZfsSize(size);
  if (volsize === 0) fail(`cannot create '${name}': volume size cannot be zero`);
  if (volsize % block) volsize = Math.ceil(volsize / block) * block;
  s.datasets[name] = {
    type: "volume",
    volsize,
    sparse: opts.sparse,
    volblocksize: block,
    ...(volmode ? { volmode } : {}),
    ...(Object.keys(user).length ? { props: user } : {}),
  };
}

/** Whatever a destroyed or renamed zvol kept in its simulated contents goes with it. */
function moveBacking(root: string, from: string, to?: string) {
  const path = zvolBacking(root, from);
  if (!existsSync(path)) return;
  if (to === undefined) rmSync(path, { force: true });
  else {
    mkdirSync(dirname(zvolBacking(root, to)), { recursive: true });
    renameSync(path, zvolBacking(root, to));
  }
}

// zfs(8): list/get per zfs-list.8 and zfs-get.8 (-H, -p, -o, -r, -d, -t), create per zfs-create.8
// (-p, -s -V, -o), destroy -r/-f, clone per zfs-clone.8, snapshot per zfs-snapshot.8, rename, set
// (zfsprops.7: volsize, user properties); "cannot open 'NAME': dataset does not exist" is libzfs'
// wording (../shared/oracles/freebsd/openzfs/zfs-2.2.7).
function zfs(root: string, args: string[]) {
  const sub = args[0];
  const state = readState(root);
  const exists = (name: string) => state.datasets[name] !== undefined;
  if (sub === "list") {
    const { flags, rest } = getopt(args.slice(1), "HprSs:o:t:d:");
    const props =
      typeof flags.get("o") === "string"
        ? (flags.get("o") as string).split(",")
        : ["name", "used", "avail", "refer", "mountpoint"];
    const types =
      typeof flags.get("t") === "string" ? (flags.get("t") as string).split(",") : ["filesystem", "volume"];
    let names = rest.length ? rest : Object.keys(state.datasets).sort();
    for (const n of rest) if (!exists(n)) fail(`cannot open '${n}': dataset does not exist`);
    const depth = typeof flags.get("d") === "string" ? Number(flags.get("d")) : flags.has("r") ? Infinity : 0;
    if (depth > 0) names = descendants(state, names, depth);
    names = names.filter(
      (n) => types.includes("all") || types.includes(state.datasets[n]!.type) || rest.includes(n),
    );
    const rows = [props.map((p) => p.toUpperCase())];
    for (const n of names) rows.push(props.map((p) => propertyOf(state, n, p, flags.has("p"))[0]));
    table(rows, flags.has("H"));
    return;
  }
  if (sub === "get") {
    const { flags, rest } = getopt(args.slice(1), "Hprd:o:s:t:");
    const fields =
      typeof flags.get("o") === "string"
        ? (flags.get("o") as string).split(",")
        : ["name", "property", "value", "source"];
    const [propList, ...given] = rest;
    if (!propList) fail("missing property argument", 2);
    for (const n of given) if (!exists(n)) fail(`cannot open '${n}': dataset does not exist`);
    const types = typeof flags.get("t") === "string" ? (flags.get("t") as string).split(",") : ["all"];
    const depth = typeof flags.get("d") === "string" ? Number(flags.get("d")) : flags.has("r") ? Infinity : 0;
    const names = (depth > 0 ? descendants(state, given, depth) : given).filter(
      (n) => types.includes("all") || types.includes(state.datasets[n]!.type),
    );
    const rows = [fields.map((f) => f.toUpperCase())];
    for (const n of names) {
      for (const p of propList!.split(",")) {
        const [value, source] = propertyOf(state, n, p, flags.has("p"));
        const row: Record<string, string> = { name: n, property: p, value, source };
        rows.push(fields.map((f) => row[f] ?? "-"));
      }
    }
    table(rows, flags.has("H"));
    return;
  }
  const mutate = (fn: (s: HostState) => void) => updateState(root, fn);
  if (sub === "create") {
    const { flags, props, rest } = propertyOptions(args.slice(1), "psV:b:u");
    const name = rest[0];
    if (!name) fail("missing dataset name", 2);
    mutate((s) => {
      if (s.datasets[name!]) {
        // zfs_do_create: with -p an existing dataset is not an error.
        if (flags.has("p")) return;
        fail(`cannot create '${name}': dataset already exists`);
      }
      const parent = name!.split("/").slice(0, -1).join("/");
      if (!s.pools[name!.split("/")[0]!])
        fail(`cannot create '${name}': no such pool '${name!.split("/")[0]}'`);
      if (parent && !s.datasets[parent]) {
        if (!flags.has("p")) fail(`cannot create '${name}': parent does not exist`);
        const parts = name!.split("/");
        for (let i = 2; i < parts.length; i++) {
          const p = parts.slice(0, i).join("/");
          if (!s.datasets[p]) {
            // zfs-create.8 -p: properties given with -o are not applied to the parents.
            s.datasets[p] = { type: "filesystem", mountpoint: join(root, p), mounted: true };
            mkdirSync(join(root, p), { recursive: true });
          }
        }
      }
      if (s.datasets[parent]?.type === "volume") fail(`cannot create '${name}': parent is not a filesystem`);
      const volsize = flags.get("V");
      const block = flags.get("b");
      if (typeof volsize === "string") {
        createVolume(s, name!, volsize, {
          sparse: flags.has("s"),
          props: { ...props, ...(typeof block === "string" ? { volblocksize: block } : {}) },
        });
      } else {
        s.datasets[name!] = {
          type: "filesystem",
          mountpoint: join(root, name!),
          mounted: true,
          ...(Object.keys(props).length ? { props } : {}),
        };
        mkdirSync(join(root, name!), { recursive: true });
      }
    });
    return;
  }
  if (sub === "destroy") {
    const { flags, rest } = getopt(args.slice(1), "rRfnpv");
    const name = rest[0]!;
    mutate((s) => {
      if (!s.datasets[name]) fail(`cannot open '${name}': dataset does not exist`);
      const children = Object.keys(s.datasets).filter(
        (d) => d.startsWith(`${name}/`) || d.startsWith(`${name}@`),
      );
      if (children.length && !flags.has("r"))
        fail(
          `cannot destroy '${name}': filesystem has children\nuse '-r' to destroy the following datasets:\n${children.join("\n")}`,
        );
      for (const d of [...children, name]) {
        const ds = s.datasets[d]!;
        if (ds.type === "filesystem" && ds.mountpoint)
          rmSync(ds.mountpoint, { recursive: true, force: true });
        moveBacking(root, d);
        delete s.datasets[d];
      }
    });
    return;
  }
  if (sub === "snapshot") {
    const name = args.at(-1)!;
    mutate((s) => {
      const [base] = name.split("@");
      if (!s.datasets[base!]) fail(`cannot open '${base}': dataset does not exist`);
      s.datasets[name] = { type: "snapshot" };
      // A snapshot keeps the zvol's contents as they are now.
      const from = zvolBacking(root, base!);
      if (existsSync(from)) Bun.spawnSync(["cp", "--sparse=always", from, zvolBacking(root, name)]);
    });
    return;
  }
  if (sub === "clone") {
    const { props, rest } = propertyOptions(args.slice(1), "pu");
    const [snapshot, target] = rest as [string, string];
    mutate((s) => {
      if (!s.datasets[snapshot]) fail(`cannot open '${snapshot}': dataset does not exist`);
      if (s.datasets[target]) fail(`cannot create '${target}': dataset already exists`);
      if (!s.datasets[target.split("/").slice(0, -1).join("/")])
        fail(`cannot create '${target}': parent does not exist`);
      const source = s.datasets[snapshot.split("@")[0]!]!;
      const { volmode, ...user } = props;
      s.datasets[target] =
        source.type === "volume"
          ? {
              type: "volume",
              volsize: source.volsize,
              sparse: true,
              origin: snapshot,
              volblocksize: source.volblocksize ?? ZVOL_DEFAULT_BLOCKSIZE,
              ...(volmode ? { volmode } : {}),
              ...(Object.keys(user).length ? { props: user } : {}),
            }
          : { type: "filesystem", mountpoint: join(root, target), mounted: true, origin: snapshot };
    });
    return;
  }
  if (sub === "rename") {
    const { rest } = getopt(args.slice(1), "fpu");
    const [from, to] = rest as [string, string];
    mutate((s) => {
      if (!s.datasets[from]) fail(`cannot open '${from}': dataset does not exist`);
      if (s.datasets[to]) fail(`cannot rename to '${to}': dataset already exists`);
      if (!s.datasets[to.split("/").slice(0, -1).join("/")])
        fail(`cannot rename to '${to}': parent does not exist`);
      for (const d of Object.keys(s.datasets).filter(
        (d) => d === from || d.startsWith(`${from}/`) || d.startsWith(`${from}@`),
      )) {
        const moved = to + d.slice(from.length);
        const ds = s.datasets[d]!;
        if (ds.type === "filesystem" && ds.mountpoint) {
          const mountpoint = join(root, moved);
          if (existsSync(ds.mountpoint)) renameSync(ds.mountpoint, mountpoint);
          ds.mountpoint = mountpoint;
        }
        moveBacking(root, d, moved);
        s.datasets[moved] = ds;
        delete s.datasets[d];
      }
    });
    return;
  }
  if (sub === "set") {
    const assignments = args.slice(1, -1);
    const name = args.at(-1)!;
    if (!assignments.length) fail("missing property=value argument(s)", 2);
    mutate((s) => {
      const ds = s.datasets[name];
      if (!ds) fail(`cannot open '${name}': dataset does not exist`);
      for (const assignment of assignments) {
        const [prop, ...rest] = assignment.split("=");
        const value = rest.join("=");
        if (!rest.length) fail(`missing '=' for property=value argument`, 2);
        if (prop!.includes(":")) {
          ds!.props = { ...ds!.props, [prop!]: value };
        } else if (prop === "volsize") {
          if (ds!.type !== "volume")
            fail(`cannot set property for '${name}': 'volsize' does not apply to datasets of this type`);
          // module/zfs/zvol.c zvol_check_volsize: EINVAL unless a multiple of volblocksize.
          const size = parseZfsSize(value);
          if (size === 0 || size % (ds!.volblocksize ?? ZVOL_DEFAULT_BLOCKSIZE))
            fail(`cannot set property for '${name}': Invalid argument`);
          ds!.volsize = size;
          if (existsSync(zvolBacking(root, name))) truncateSync(zvolBacking(root, name), size);
        } else if (prop === "volmode") {
          ds!.volmode = value;
        } else fail(`cannot set property for '${name}': property '${prop}' is not simulated`, 2);
      }
    });
    return;
  }
  fail(`shim zfs: '${sub}' is not simulated`, 2);
}

function parseZfsSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGTP]?)B?$/i.exec(text);
  if (!m) fail(`bad numeric value '${text}'`);
  const power = " KMGTP".indexOf((m![2] || " ").toUpperCase());
  return Math.floor(Number(m![1]) * 1024 ** Math.max(0, power));
}

// pkg-info(8) (../shared/oracles/freebsd/pkg/pkg-info.8): -e exits 0 or 1, -E prints name-version,
// the default (-f) prints the full record; an absent package is "No package(s) matching NAME".
function pkg(root: string, args: string[]) {
  if (args[0] !== "info") fail(`shim pkg: only 'info' is simulated, not '${args[0]}'`, 2);
  const { flags, rest } = getopt(args.slice(1), "ABbDdEefIklOopqRrsCgix");
  const packages = readState(root).packages;
  for (const name of rest) {
    const version = packages[name];
    if (version === undefined) {
      if (flags.has("e")) throw new Exit(1);
      fail(`pkg: No package(s) matching ${name}`, 70);
    }
    if (flags.has("e")) continue;
    if (flags.has("E")) print(`${name}-${version}`);
    else
      print(
        `${name}-${version}\nName           : ${name}\nVersion        : ${version}\nOrigin         : sysutils/${name}\nArchitecture   : FreeBSD:14:*`,
      );
  }
}

function interfaceStanza(name: string, i: InterfaceState): string[] {
  // Layout of sbin/ifconfig (af_link.c, ifbridge.c, ifgroup.c); the bridge lines follow
  // ../shared/oracles/freebsd/samples/ifconfig-vm-public.txt.
  const flags =
    i.kind === "loopback"
      ? "8049<UP,LOOPBACK,RUNNING,MULTICAST>"
      : i.up
        ? i.kind === "tap"
          ? "8943<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST>"
          : "8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST>"
        : "8802<BROADCAST,SIMPLEX,MULTICAST>";
  const lines = [`${name}: flags=${flags} metric 0 mtu ${i.mtu}`];
  if (i.description) lines.push(`\tdescription: ${i.description}`);
  if (i.caps) lines.push(`\toptions=${capsHex(i.caps)}${i.caps.length ? `<${i.caps.join(",")}>` : ""}`);
  if (i.kind !== "loopback") lines.push(`\tether ${i.ether}`);
  if (i.inet) lines.push(`\tinet ${i.inet} netmask 0xffffff00 broadcast ${i.inet.replace(/\.\d+$/, ".255")}`);
  if (i.kind === "bridge") {
    lines.push("\tid 00:00:00:00:00:00 priority 32768 hellotime 2 fwddelay 15");
    lines.push("\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200");
    lines.push("\troot id 00:00:00:00:00:00 priority 32768 ifcost 0 port 0");
    i.members.forEach((m, n) => {
      lines.push(`\tmember: ${m} flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>`);
      lines.push(
        `\t        ifmaxaddr 0 port ${n + 1} priority 128 path cost ${m.startsWith("tap") ? 2000000 : 20000}`,
      );
    });
  }
  if (i.groups.length) lines.push(`\tgroups: ${i.groups.join(" ")}`);
  if (i.kind === "ether" || i.kind === "tap") lines.push("\tmedia: Ethernet autoselect", "\tstatus: active");
  lines.push(
    i.kind === "bridge"
      ? "\tnd6 options=9<PERFORMNUD,IFDISABLED>"
      : "\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>",
  );
  if (i.openedBy) lines.push(`\tOpened by PID ${i.openedBy}`);
  return lines;
}

function randomMac(prefix = "58:9c:fc"): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3));
  return `${prefix}:${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":")}`;
}

// ifconfig(8): all interfaces without arguments (or -a), one with its name, -g GROUP lists members
// of a group, "NAME create", "NAME destroy", "BRIDGE addm/deletem IF", "descr", "up".
function ifconfig(root: string, args: string[]) {
  if (args.length === 0 || args[0] === "-a") {
    const state = readState(root);
    for (const [name, i] of Object.entries(state.interfaces))
      for (const line of interfaceStanza(name, i)) print(line);
    return;
  }
  if (args[0] === "-g") {
    const group = args[1]!;
    for (const [name, i] of Object.entries(readState(root).interfaces))
      if (i.groups.includes(group)) print(name);
    return;
  }
  const [name, ...ops] = args as [string, ...string[]];
  if (ops.length === 0) {
    const i = readState(root).interfaces[name];
    if (!i) fail(`ifconfig: interface ${name} does not exist`);
    for (const line of interfaceStanza(name, i!)) print(line);
    return;
  }
  updateState(root, (s) => {
    if (ops[0] === "create") {
      const kind = name.replace(/\d+$/, "") as "bridge" | "tap";
      // ifconfig loads the cloner's module when it is missing (if_bridge.ko, if_tuntap.ko).
      const module = kind === "bridge" ? "if_bridge" : "if_tuntap";
      if (!s.modules.includes(module)) s.modules.push(module);
      print(createInterface(s, kind));
      return;
    }
    const i = s.interfaces[name];
    if (!i) fail(`ifconfig: interface ${name} does not exist`);
    for (let k = 0; k < ops.length; k++) {
      const op = ops[k]!;
      if (op === "destroy") delete s.interfaces[name];
      else if (op === "up") i!.up = true;
      else if (op === "down") i!.up = false;
      else if (op === "descr" || op === "description") i!.description = ops[++k];
      else if (op === "addm") addMember(s, name, ops[++k]!);
      else if (op === "deletem") removeMember(s, name, ops[++k]!);
      else if (op === "-tso" || op === "-lro" || op === "-txcsum") {
        const off = op === "-tso" ? ["TSO4", "TSO6"] : op === "-lro" ? ["LRO"] : ["TXCSUM", "TXCSUM_IPV6"];
        i!.caps = i!.caps?.filter((c) => !off.includes(c));
        i!.savedCaps = i!.savedCaps?.filter((c) => !off.includes(c));
      } else if (op === "group") i!.groups.push(ops[++k]!);
      else fail(`ifconfig: ${op}: bad value`);
    }
  });
}

/** IFCAP_* bits of sys/net/if.h, in bit order: ifconfig prints `options=HEX<NAMES>` from them. */
const IFCAPS = [
  "RXCSUM",
  "TXCSUM",
  "NETCONS",
  "VLAN_MTU",
  "VLAN_HWTAGGING",
  "JUMBO_MTU",
  "POLLING",
  "VLAN_HWCSUM",
  "TSO4",
  "TSO6",
  "LRO",
  "WOL_UCAST",
  "WOL_MCAST",
  "WOL_MAGIC",
  "TOE4",
  "TOE6",
  "VLAN_HWFILTER",
  "NV",
  "VLAN_HWTSO",
  "LINKSTATE",
  "NETMAP",
  "RXCSUM_IPV6",
  "TXCSUM_IPV6",
  "HWSTATS",
  "TXRTLMT",
  "HWRXTSTMP",
  "MEXTPG",
  "TXTLS4",
  "TXTLS6",
  "VXLAN_HWCSUM",
  "VXLAN_HWTSO",
  "TXTLS_RTLMT",
];

function capsHex(caps: string[]): string {
  return caps.reduce((n, c) => n + (IFCAPS.includes(c) ? 2 ** IFCAPS.indexOf(c) : 0), 0).toString(16);
}

// sys/net/if_bridge.c: BRIDGE_IFCAPS_MASK (TOE, TSO, TXCSUM) is kept only where every member has
// it, BRIDGE_IFCAPS_STRIP (LRO) is always turned off (bridge_mutecaps); a member that leaves gets
// its own capabilities back (bif_savedcaps). bridge(4) says the same.
const BRIDGE_MASK = ["TOE4", "TOE6", "TSO4", "TSO6", "TXCSUM"];
const BRIDGE_STRIP = ["LRO"];

function muteCaps(s: HostState, bridge: string): void {
  const members = (s.interfaces[bridge]?.members ?? [])
    .map((m) => s.interfaces[m])
    .filter((i): i is InterfaceState => i !== undefined);
  for (const m of members) m.savedCaps ??= [...(m.caps ?? [])];
  const common = BRIDGE_MASK.filter((c) => members.every((m) => m.savedCaps!.includes(c)));
  for (const m of members) {
    if (m.caps === undefined) continue;
    m.caps = m.savedCaps!.filter(
      (c) => !BRIDGE_STRIP.includes(c) && (!BRIDGE_MASK.includes(c) || common.includes(c)),
    );
  }
}

/**
 * `ifconfig BRIDGE addm IF` (if_bridge.c bridge_ioctl_add): since FreeBSD 15.0 an interface that
 * holds an address is refused with EINVAL unless net.link.bridge.member_ifaddrs is 1; ifconfig's
 * ifbridge.c reports it as err(1, "BRDGADD %s").
 */
function addMember(s: HostState, bridge: string, member: string): void {
  const b = s.interfaces[bridge];
  const m = s.interfaces[member];
  if (!b || !m) fail(`ifconfig: BRDGADD ${member}: No such file or directory`);
  if (b!.members.includes(member)) fail(`ifconfig: BRDGADD ${member}: File exists`);
  const refused = memberRefused(s, member);
  if (refused) fail(`ifconfig: BRDGADD ${member}: ${refused}`);
  b!.members.push(member);
  muteCaps(s, bridge);
}

/** Why addm would refuse `member` (see addMember), or undefined. */
function memberRefused(s: HostState, member: string): string | undefined {
  const allowed = (sysctlValues(s)["net.link.bridge.member_ifaddrs"] ?? "1") === "1";
  return s.interfaces[member]?.inet && !allowed ? "Invalid argument" : undefined;
}

function removeMember(s: HostState, bridge: string, member: string): void {
  const b = s.interfaces[bridge];
  if (!b) return;
  b.members = b.members.filter((m) => m !== member);
  const m = s.interfaces[member];
  if (m?.savedCaps) {
    if (m.caps !== undefined) m.caps = m.savedCaps;
    delete m.savedCaps;
  }
  muteCaps(s, bridge);
}

function createInterface(s: HostState, kind: "bridge" | "tap", wanted?: string): string {
  let n = 0;
  while (s.interfaces[`${kind}${n}`]) n++;
  const name = wanted ?? `${kind}${n}`;
  s.interfaces[name] = {
    kind,
    ether: randomMac(kind === "tap" ? "58:9c:fc" : "02:4f:8a"),
    mtu: 1500,
    up: false,
    groups: [kind],
    members: [],
  };
  return name;
}

/** pfctl_parser.c print_status: "Status: Enabled for D days HH:MM:SS", padded to 44, then the debug level. */
function pfStatusLine(pf: PfState): string {
  if (!pf.enabled) return `${"Status: Disabled".padEnd(44)}${"Debug: Urgent".padStart(15)}`;
  const seconds = Math.max(0, Math.floor((Date.now() - (pf.enabledAt ?? Date.now())) / 1000));
  const two = (n: number) => String(n).padStart(2, "0");
  const line = `Status: Enabled for ${Math.floor(seconds / 86400)} days ${two(Math.floor(seconds / 3600) % 24)}:${two(Math.floor(seconds / 60) % 60)}:${two(seconds % 60)}`;
  return `${line.padEnd(44)}${"Debug: Urgent".padStart(15)}`;
}

// pfctl(8) (sbin/pfctl/pfctl.c main): /dev/pf is opened first and err(1, "/dev/pf") reports a pf.ko
// that is not loaded; -s info prints print_status's report (pfctl_parser.c; the counters' layout of
// a captured `pfctl -s info`), -s nat the translation rules as print_rule prints them, -s rules the
// filter rules (none kept here), -s Running "Enabled" or "Disabled" (print_running). An unknown
// modifier is "Unknown show modifier" and the usage, exit 1.
function pfctl(root: string, args: string[]) {
  const { flags } = getopt(args, "a:AdD:eqf:F:ghi:k:K:mMnNOo:Pp:rRs:t:T:vx:z");
  const pf = readState(root).pf ?? { loaded: false, enabled: false, nat: [] };
  if (!pf.loaded) fail("pfctl: /dev/pf: No such file or directory");
  const show = flags.get("s");
  if (typeof show !== "string")
    fail("usage: pfctl [-AdeghMmNnOPqRrvz] [-a anchor] [-D macro=value] [-F modifier]");
  const modifiers = [
    "ether",
    "nat",
    "queue",
    "rules",
    "Anchors",
    "Sources",
    "states",
    "info",
    "Interfaces",
    "labels",
    "timeouts",
    "memory",
    "Tables",
    "osfp",
    "Running",
    "all",
  ];
  const modifier = modifiers.find((m) => m.startsWith(show as string));
  if (!modifier) fail(`pfctl: Unknown show modifier '${show}'`);
  if (modifier === "nat") {
    for (const rule of pf.nat) print(rule);
  } else if (modifier === "Running") {
    print(pf.enabled ? "Enabled" : "Disabled");
  } else if (modifier === "info") {
    print(pfStatusLine(pf));
    print("");
    print(`${"State Table".padEnd(27)} ${"Total".padStart(14)} ${"Rate".padStart(16)}`);
    print(`  ${"current entries".padEnd(25)} ${"0".padStart(14)} ${"".padStart(14)}`);
    for (const counter of ["searches", "inserts", "removals"])
      print(`  ${counter.padEnd(25)} ${"0".padStart(14)} ${"0.0/s".padStart(16)}`);
    print("Counters");
    for (const counter of ["match", "bad-offset", "fragment", "short", "normalize", "memory"])
      print(`  ${counter.padEnd(25)} ${"0".padStart(14)} ${"0.0/s".padStart(16)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// vm(8): vm-bhyve 1.7.5 (../shared/oracles/vm-bhyve/vm.8; behaviour and messages from the
// freebsd/vm-bhyve sources at tag v1.7.5, commit ca67ef8: vm, lib/vm-base, lib/vm-config,
// lib/vm-core, lib/vm-run, lib/vm-switch*, lib/vm-util, lib/vm-zfs; line numbers are of that tag).
// ---------------------------------------------------------------------------------------------

const VM_VERSION_LINE = (v: string) => `vm-bhyve: Bhyve virtual machine management v${v}`;

interface VmEnv {
  root: string;
  state: HostState;
  /** The datastore directory ($VM_DS_PATH). */
  dir: string;
  /** The ZFS dataset of the datastore, when vm_dir is `zfs:…`. */
  dataset?: string;
  rc: Map<string, string>;
}

const vmErr = (message: string): never => fail(`/usr/local/sbin/vm: ERROR: ${message}`);
const vmWarn = (message: string) => eprint(`/usr/local/sbin/vm: WARNING: ${message}`);

function vmSetup(root: string, state: HostState): VmEnv {
  const rc = readRcFile(rcConf(root));
  // lib/vm-base: enabled in rc.conf, root, vmm loadable, then zfs::init and the datastore dirs.
  if (!/^(yes|true|on|1)$/i.test(rc.get("vm_enable") ?? ""))
    vmErr("$vm_enable is not enabled in /etc/rc.conf!");
  if (state.uid !== 0) vmErr("virtual machines can only be managed by root");
  if (!state.vmm.loaded) {
    if (!state.vmm.loadable) vmErr("kernel vmm not initialised (no VT-x / AMD SVM cpu support?)");
    state.vmm.loaded = true;
  }
  const vmDir = rc.get("vm_dir") ?? "";
  let dir = vmDir;
  let dataset: string | undefined;
  if (vmDir.startsWith("zfs:")) {
    dataset = vmDir.slice(4);
    const ds = state.datasets[dataset];
    if (ds?.type !== "filesystem" || !ds.mounted)
      vmErr(`unable to locate mountpoint for ZFS dataset ${dataset}`);
    dir = ds!.mountpoint!;
  }
  if (!dir || !existsSync(dir)) vmErr("$vm_dir has not been configured or is not a valid directory");
  // lib/vm-base lines 27-31, on every command: .config (with an empty null.iso), .templates, .iso, .img.
  for (const sub of [".config", ".templates", ".iso", ".img"]) mkdirSync(join(dir, sub), { recursive: true });
  if (!existsSync(join(dir, ".config", "null.iso"))) writeFileSync(join(dir, ".config", "null.iso"), "");
  return { root, state, dir, dataset, rc };
}

const systemConf = (env: VmEnv) => join(env.dir, ".config", "system.conf");
const guestDir = (env: VmEnv, name: string) => join(env.dir, name);
const guestConf = (env: VmEnv, name: string) => join(env.dir, name, `${name}.conf`);
const runLock = (env: VmEnv, name: string) => join(env.dir, name, "run.lock");

function guestLog(env: VmEnv, name: string, ...messages: string[]) {
  // util::log: "$(date -Iseconds): message" appended to $VM_DS_PATH/NAME/vm-bhyve.log.
  const stamp = isoSeconds(new Date());
  appendFileSync(join(guestDir(env, name), "vm-bhyve.log"), messages.map((m) => `${stamp}: ${m}\n`).join(""));
}

function isoSeconds(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}+00:00`;
}

/**
 * util::confirm (lib/vm-util lines 338-348): `while read -p "MSG (y/n)? " _resp` until an answer
 * starting with y (yes) or n (no). At the end of its input `read` fails, the loop ends without
 * running its body, and a while loop that ran no body exits 0 (POSIX sh): with nothing on stdin,
 * the answer is yes. The prompt goes to stderr only when stdin is a terminal (sh(1) read -p).
 */
function confirm(): boolean {
  let input = "";
  try {
    input = readFileSync(0, "utf8");
  } catch {
    // No stdin at all reads as its end.
  }
  for (const line of input.split("\n")) {
    if (line.startsWith("y")) return true;
    if (line.startsWith("n")) return false;
  }
  return true;
}

/** Guests whose asynchronous stop has come due are down now, as vm-run's loop ends. */
function settleStops(env: VmEnv) {
  for (const [name, run] of Object.entries(env.state.running)) {
    if (run.stopAt !== undefined && Date.now() >= run.stopAt) guestDown(env, name, 1);
  }
}

function guestDown(env: VmEnv, name: string, status: number) {
  const run = env.state.running[name];
  if (!run) return;
  const messages = [`bhyve exited with status ${status}`];
  for (const tap of run.taps) {
    messages.push(`destroying network device ${tap}`);
    for (const [bridge, i] of Object.entries(env.state.interfaces))
      if (i.members.includes(tap)) removeMember(env.state, bridge, tap);
    delete env.state.interfaces[tap];
  }
  messages.push("stopped");
  if (existsSync(guestDir(env, name))) {
    guestLog(env, name, ...messages);
    // vm::unlock (lib/vm-run lines 388-392).
    for (const f of ["run.lock", "suspending.lock", "console"])
      rmSync(join(guestDir(env, name), f), { force: true });
  }
  delete env.state.running[name];
}

function listGuests(env: VmEnv): string[] {
  return readdirSync(env.dir)
    .filter((n) => !n.startsWith(".") && existsSync(guestConf(env, n)))
    .sort();
}

function switchBridge(env: VmEnv, name: string): string | undefined {
  return Object.entries(env.state.interfaces).find(
    ([, i]) => i.kind === "bridge" && i.groups.includes(`viid-${viid(name)}@`),
  )?.[0];
}

/** switch::__viid: a short id of the switch name, used as an interface group to find its bridge. */
function viid(name: string): string {
  return new Bun.CryptoHasher("md5").update(name).digest("hex").slice(0, 5);
}

function vm(root: string, args: string[]) {
  const [sub, ...rest] = args;
  if (sub === "version") {
    const version = readState(root).packages["vm-bhyve"];
    if (version === undefined) fail("sh: vm: not found", 127);
    print(VM_VERSION_LINE(version!));
    return;
  }
  if (readState(root).packages["vm-bhyve"] === undefined) fail("sh: vm: not found", 127);
  const readOnly = sub === "list" || (sub === "switch" && rest[0] === "list");
  const snapshot = readState(root);
  const stopsDue = Object.values(snapshot.running).some(
    (r) => r.stopAt !== undefined && Date.now() >= r.stopAt,
  );
  if (readOnly && !stopsDue && snapshot.vmm.loaded) {
    vmDispatch(root, snapshot, sub, rest);
    return;
  }
  // A failing subcommand still keeps what it did before failing, as the shell script would.
  let failure: unknown;
  updateState(root, (state) => {
    try {
      vmDispatch(root, state, sub, rest);
    } catch (error) {
      failure = error;
    }
  });
  if (failure) throw failure;
}

function vmDispatch(root: string, state: HostState, sub: string | undefined, rest: string[]) {
  const env = vmSetup(root, state);
  settleStops(env);
  switch (sub) {
    case "init":
      return vmInit(env);
    case "list":
      return vmList(env, rest);
    case "switch":
      return vmSwitch(env, rest);
    case "create":
      return vmCreate(env, rest);
    case "start":
      return vmStart(env, rest);
    case "stop":
      return vmStop(env, rest);
    case "poweroff":
      return vmPoweroff(env, rest);
    case "destroy":
      return vmDestroy(env, rest);
    case "rename":
      return vmRename(env, rest);
    default:
      return vmErr(`unknown command '${sub}'. please run 'vm usage' or view the manpage for help`);
  }
}

function vmInit(env: VmEnv) {
  // cmd::parse: init runs util::setup (lib/vm-util lines 7-25), then switch::init: the modules
  // nmdm, if_bridge and if_tuntap (FreeBSD 13+), net.link.tap.up_on_open=1, a copy of the sample
  // default template when there is none, then every configured switch gets its bridge and ports.
  for (const mod of ["nmdm", "if_bridge", "if_tuntap"])
    if (!env.state.modules.includes(mod)) env.state.modules.push(mod);
  const example = join(env.root, VM_BHYVE_EXAMPLES, "default.conf");
  const template = join(env.dir, ".templates", "default.conf");
  if (existsSync(example) && !existsSync(template)) copyFileSync(example, template);
  const conf = readRcFile(systemConf(env));
  for (const sw of (conf.get("switch_list") ?? "").split(/\s+/).filter(Boolean)) ensureBridge(env, sw, conf);
}

function ensureBridge(env: VmEnv, sw: string, conf: Map<string, string>) {
  if (conf.get(`type_${sw}`) === "manual") {
    // switch::manual::init: the host made the bridge; vm-bhyve only marks it.
    const i = env.state.interfaces[conf.get(`bridge_${sw}`) ?? ""];
    if (i?.kind === "bridge")
      for (const group of ["vm-switch", `viid-${viid(sw)}@`])
        if (!i.groups.includes(group)) i.groups.push(group);
    return conf.get(`bridge_${sw}`);
  }
  let bridge = switchBridge(env, sw);
  if (!bridge) {
    // switch::standard::init (lib/vm-switch-standard lines 9-48): the bridge, then its address.
    bridge = createInterface(env.state, "bridge", sw.length <= 12 ? `vm-${sw}` : undefined);
    const i = env.state.interfaces[bridge]!;
    i.groups.push("vm-switch", `viid-${viid(sw)}@`);
    i.up = true;
    const address = conf.get(`addr_${sw}`);
    if (address) i.inet = address.split("/")[0];
  }
  const i = env.state.interfaces[bridge]!;
  for (const port of (conf.get(`ports_${sw}`) ?? "").split(/\s+/).filter(Boolean)) {
    if (env.state.interfaces[port] && !i.members.includes(port) && !memberRefused(env.state, port))
      addMember(env.state, bridge, port);
  }
  return bridge;
}

/** util::check_name (lib/vm-util lines 376-389), FreeBSD 13 and later. */
const VM_NAME = /^[a-z0-9][.a-z0-9_-]{0,229}[a-z0-9]$/i;

function vmSwitch(env: VmEnv, args: string[]) {
  const [sub, ...rest] = args;
  const file = systemConf(env);
  const conf = readRcFile(file);
  const switches = (conf.get("switch_list") ?? "").split(/\s+/).filter(Boolean);
  if (sub === "list") {
    // switch::list + switch::standard::show, through column -ts^.
    const rows = [["NAME", "TYPE", "IFACE", "ADDRESS", "PRIVATE", "MTU", "VLAN", "PORTS"]];
    for (const sw of switches) {
      if (conf.get(`type_${sw}`) === "manual") {
        // switch::manual::show (lib/vm-switch-manual lines 31-39).
        const bridge = conf.get(`bridge_${sw}`) ?? "";
        rows.push([sw, "manual", bridge, "n/a", conf.get(`private_${sw}`) || "no", "n/a", "n/a", "n/a"]);
        continue;
      }
      rows.push([
        sw,
        conf.get(`type_${sw}`) ?? "standard",
        switchBridge(env, sw) ?? "-",
        conf.get(`addr_${sw}`) || "-",
        conf.get(`private_${sw}`) || "no",
        conf.get(`mtu_${sw}`) || "-",
        conf.get(`vlan_${sw}`) || "-",
        conf.get(`ports_${sw}`) || "-",
      ]);
    }
    table(rows, false);
    return;
  }
  if (sub === "create") {
    const { flags, rest: names } = getopt(rest, "t:i:n:b:m:a:p");
    const sw = names[0] ?? "";
    // switch::create (lib/vm-switch lines 71-132).
    if (!VM_NAME.test(sw)) vmErr(`invalid switch name - '${sw}'`);
    if (switches.includes(sw)) vmErr(`switch ${sw} already exists`);
    const type = flags.get("t") ?? "standard";
    if (type === "manual") {
      // switch::manual::create and ::init (lib/vm-switch-manual lines 10-24, 45-63): the bridge must
      // exist; vm-bhyve only puts it in the vm-switch group and marks it with the switch's viid.
      const bridge = flags.get("b");
      if (typeof bridge !== "string")
        vmErr("you must specify a bridge to import when creating a manual switch");
      const i = env.state.interfaces[bridge as string];
      if (i?.kind !== "bridge") vmErr(`${bridge} does not appear to be a valid existing bridge`);
      writeRcVars(file, {
        switch_list: [...switches, sw].join(" "),
        [`type_${sw}`]: "manual",
        [`bridge_${sw}`]: bridge as string,
        ...(flags.has("p") ? { [`private_${sw}`]: "yes" } : {}),
      });
      for (const group of ["vm-switch", `viid-${viid(sw)}@`])
        if (!i!.groups.includes(group)) i!.groups.push(group);
      i!.up = true;
      return;
    }
    if (type !== "standard") fail(`shim vm: 'switch create -t ${type}' is not simulated`, 2);
    const iface = flags.get("i");
    const address = flags.get("a");
    writeRcVars(file, {
      switch_list: [...switches, sw].join(" "),
      [`type_${sw}`]: "standard",
      ...(typeof iface === "string" ? { [`ports_${sw}`]: iface } : {}),
      ...(typeof address === "string" ? { [`addr_${sw}`]: address } : {}),
      ...(flags.has("p") ? { [`private_${sw}`]: "yes" } : {}),
    });
    ensureBridge(env, sw, readRcFile(file));
    return;
  }
  if (sub === "info") {
    // info::switch and info::switch_show (lib/vm-info lines 41-133), for the named switches or all.
    for (const sw of rest.length ? rest : switches) {
      const type = conf.get(`type_${sw}`) || "standard";
      const ident = switchBridge(env, sw);
      print("------------------------");
      print(`Virtual Switch: ${sw}`);
      print("------------------------");
      print(`  type: ${type}`);
      print(`  ident: ${ident || "-"}`);
      print(`  vlan: ${conf.get(`vlan_${sw}`) || "-"}`);
      print(`  physical-ports: ${conf.get(`ports_${sw}`) || "-"}`);
      if (ident) {
        // netstat -biI BRIDGE's counters through info::__bytes_human (three decimals, B/K/M/G/T).
        print("  bytes-in: 0 (0.000B)");
        print("  bytes-out: 0 (0.000B)");
        for (const port of env.state.interfaces[ident]!.members.filter((m) => m.startsWith("tap"))) {
          const guest = /^vmnet\/([^/]+)\//.exec(env.state.interfaces[port]?.description ?? "")?.[1];
          print("");
          print("  virtual-port");
          print(`    device: ${port}`);
          print(`    vm: ${guest ?? "-"}`);
        }
      }
      print("");
    }
    return;
  }
  if (sub === "destroy") {
    // switch::remove (lib/vm-switch lines 139-170): a standard switch's bridge goes with its
    // members' capabilities restored; a manual switch's bridge stays, out of the vm-switch group.
    const [sw] = rest as [string];
    if (!sw) fail("usage: vm switch destroy <name>");
    const type = conf.get(`type_${sw}`);
    if (type !== "standard" && type !== "manual") vmErr("unable to remove switch of unknown type");
    const bridge = switchBridge(env, sw);
    if (bridge && type === "standard") {
      for (const member of [...env.state.interfaces[bridge]!.members])
        removeMember(env.state, bridge, member);
      delete env.state.interfaces[bridge];
    } else if (bridge) {
      const i = env.state.interfaces[bridge]!;
      i.groups = i.groups.filter((g) => g !== "vm-switch");
    }
    const keys = ["ports", "vlan", "nat", "type", "addr", "private", "mtu"].map((k) => `${k}_${sw}`);
    writeRcVars(file, {
      switch_list: switches.filter((x) => x !== sw).join(" ") || undefined,
      ...Object.fromEntries(keys.map((k) => [k, undefined])),
    });
    return;
  }
  if (sub === "private") {
    // switch::private (lib/vm-switch lines 259-286): only the configuration changes; guests started
    // from then on get private ports.
    const [sw, value] = rest as [string, string];
    if (!sw || !value) fail("usage: vm switch private <name> <on|off>");
    if (!switches.includes(sw)) vmErr("specified switch does not appear to be valid");
    writeRcVars(file, { [`private_${sw}`]: /^(on|yes|true|1)$/i.test(value) ? "yes" : "no" });
    return;
  }
  if (sub === "address") {
    // switch::address and switch::standard::address (lib/vm-switch lines 303-328): `none` removes it.
    const [sw, address] = rest as [string, string];
    const bridge = switchBridge(env, sw);
    if (!bridge) vmErr("unable to locate specified virtual switch");
    if ((conf.get(`type_${sw}`) ?? "standard") !== "standard")
      vmErr("feature not currently supported on switches of this type");
    if (address && address !== "none" && !/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\/\d{1,2}$/.test(address))
      vmErr("address must be supplied in CIDR notation (a.b.c.d/prefix-len)");
    const none = !address || address === "none";
    writeRcVars(file, { [`addr_${sw}`]: none ? undefined : address });
    const i = env.state.interfaces[bridge!]!;
    if (none) delete i.inet;
    else i.inet = address.split("/")[0];
    return;
  }
  if (sub === "add") {
    const [sw, iface] = rest as [string, string];
    if (!switches.includes(sw)) vmErr(`unable to locate switch id`);
    // switch::standard::__configure_port (lib/vm-switch-standard lines 251-286): `ifconfig BRIDGE
    // addm IF` first, the port is kept in ports_NAME only once that worked.
    if (!env.state.interfaces[iface] || memberRefused(env.state, iface))
      vmErr(`failed to add member ${iface} to the virtual switch ${sw}`);
    const ports = (conf.get(`ports_${sw}`) ?? "").split(/\s+/).filter(Boolean);
    if (!ports.includes(iface)) ports.push(iface);
    writeRcVars(file, { [`ports_${sw}`]: ports.join(" ") });
    ensureBridge(env, sw, readRcFile(file));
    return;
  }
  fail(`shim vm: 'switch ${sub}' is not simulated`, 2);
}

/** info::__bytes_human (lib/vm-info lines 425-451): ps's RSS in KiB, one decimal, K/M/G/T. */
function bytesHuman(kib: number): string {
  let value = kib;
  let unit = 1;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)}${" KMGT"[unit]}`;
}

/** ps -o etime (the elapsed time `[[dd-]hh:]mm:ss`), with vm-bhyve's `sed 's/\-/d /'`. */
function etime(ms: number): string {
  const s = Math.floor(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  const [d, h, m, sec] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60];
  if (d) return `${d}d ${pad(h)}:${pad(m)}:${pad(sec)}`;
  return h ? `${pad(h)}:${pad(m)}:${pad(sec)}` : `${pad(m)}:${pad(sec)}`;
}

function vmList(env: VmEnv, args: string[]) {
  // core::list (lib/vm-core lines 8-110): NAME DATASTORE LOADER CPU MEMORY VNC AUTO STATE through
  // `column -ts^`; -v adds %CPU RSZ UPTIME (printf %5s %8s %14s) before STATE. A stopped guest
  // with a run.lock is "Locked (HOST)" (lines 90-94); -r leaves out Stopped and Suspended only.
  const { flags } = getopt(args, "rv");
  const verbose = flags.has("v");
  const autostart = (env.rc.get("vm_list") ?? "").split(/\s+/).filter(Boolean);
  const rows = [
    verbose
      ? ["NAME", "DATASTORE", "LOADER", "CPU", "MEMORY", "VNC", "AUTO", "%CPU", "RSZ", "UPTIME", "STATE"]
      : ["NAME", "DATASTORE", "LOADER", "CPU", "MEMORY", "VNC", "AUTO", "STATE"],
  ];
  for (const name of listGuests(env)) {
    const conf = readRcFile(guestConf(env, name));
    const run = env.state.running[name];
    let state = run ? `Running (${run.pid})` : "Stopped";
    if (!run && existsSync(runLock(env, name)))
      state = `Locked (${readFileSync(runLock(env, name), "utf8").split("\n")[0]})`;
    if (flags.has("r") && state === "Stopped") continue;
    const position = autostart.indexOf(name);
    const row = [
      name,
      "default",
      conf.get("loader") || "none",
      conf.get("cpu") ?? "",
      conf.get("memory") ?? "",
      "-",
      position >= 0 ? `Yes [${position + 1}]` : "No",
    ];
    if (verbose) {
      const memory = (conf.get("memory") ?? "0").toUpperCase();
      // ps reports RSS in KiB; a guest's resident size is taken to be its memory.
      const unit = " KMGT".indexOf(memory.slice(-1));
      const kib =
        unit > 0 ? Number.parseInt(memory, 10) * 1024 ** (unit - 1) : Number.parseInt(memory, 10) / 1024;
      row.push(
        (run ? "0.0" : "-").padStart(5),
        (run ? bytesHuman(kib) : "-").padStart(8),
        (run ? etime(Date.now() - run.startedAt) : "-").padStart(14),
      );
    }
    rows.push([...row, state]);
  }
  table(rows, false);
}

/** zfs::__format_options (lib/vm-zfs lines 116-128): `sed -e 's/\ / -o /'` turns only the first blank. */
function zfsOptions(value: string | undefined): Record<string, string> {
  if (!value) return {};
  const words = `-o ${value.replace(" ", " -o ")}`.split(/\s+/);
  const props: Record<string, string> = {};
  for (let i = 0; i < words.length; i++) {
    if (words[i] !== "-o") vmErr(`failed to create new ZFS dataset (zfs: invalid option '${words[i]}')`);
    const [k, ...v] = (words[++i] ?? "").split("=");
    props[k!] = v.join("=");
  }
  return props;
}

function vmCreate(env: VmEnv, args: string[]) {
  // core::create (lib/vm-core lines 119-259).
  const { flags, rest } = getopt(args, "d:t:s:i:c:m:Ck:n:u:");
  const name = rest[0];
  if (!name) fail("usage: vm create [-d datastore] [-t template] [-s size] name");
  if (!VM_NAME.test(name!)) vmErr(`invalid virtual machine name - '${name}'`);
  if (existsSync(guestConf(env, name!))) vmErr(`virtual machine already exists in ${env.dir}/${name}`);
  const templateName = (flags.get("t") as string | undefined) ?? "default";
  const template = join(env.dir, ".templates", `${templateName}.conf`);
  if (!existsSync(template)) vmErr(`unable to find template ${template}`);
  const tpl = readRcFile(template);
  if (!tpl.get("disk0_name")) vmErr("template is missing disk0_name specification");
  // zfs::make_dataset (lib/vm-zfs lines 48-57) with the template's zfs_dataset_opts.
  if (env.dataset) {
    const dataset = `${env.dataset}/${name}`;
    if (env.state.datasets[dataset]) vmErr(`failed to create new ZFS dataset ${dataset}`);
    const props = zfsOptions(tpl.get("zfs_dataset_opts"));
    env.state.datasets[dataset] = {
      type: "filesystem",
      mountpoint: guestDir(env, name!),
      mounted: true,
      ...(Object.keys(props).length ? { props } : {}),
    };
  }
  mkdirSync(guestDir(env, name!), { recursive: true });
  copyFileSync(template, guestConf(env, name!));
  const changes: Record<string, string | undefined> = { uuid: crypto.randomUUID() };
  // vm::generate_static_mac (lib/vm-run lines 1015-1030) runs once, for network0, template MAC or not.
  changes.network0_mac = randomMac();
  guestLog(env, name!, `generated static mac ${changes.network0_mac}`);
  if (typeof flags.get("c") === "string") changes.cpu = flags.get("c") as string;
  if (typeof flags.get("m") === "string") changes.memory = flags.get("m") as string;
  const zvolOpts = zfsOptions(tpl.get("zfs_zvol_opts"));
  // A failure half-way leaves what was made so far, as the script does.
  try {
    for (let n = 0; tpl.get(`disk${n}_name`); n++) {
      const disk = tpl.get(`disk${n}_name`)!;
      const dev = tpl.get(`disk${n}_dev`) ?? "file";
      const size =
        n === 0 && typeof flags.get("s") === "string"
          ? (flags.get("s") as string)
          : (tpl.get(`disk${n}_size`) ?? "20G");
      if (dev === "zvol" || dev === "sparse-zvol") {
        // zfs::make_zvol (lib/vm-zfs lines 95-108): zfs create [-s]V SIZE -o volmode=dev OPTS.
        if (!env.dataset) vmErr("cannot use ZVOL storage unless ZFS support is enabled");
        const zvol = `${env.dataset}/${name}/${disk}`;
        if (env.state.datasets[zvol]) vmErr(`failed to create new ZVOL ${zvol}`);
        createVolume(env.state, zvol, size, {
          sparse: dev === "sparse-zvol",
          props: { volmode: "dev", ...zvolOpts },
        });
      } else if (dev !== "custom" && dev !== "iscsi") {
        // truncate, then "make sure only owner can read the disk image" (lines 234-241).
        const path = join(guestDir(env, name!), disk);
        closeSync(openSync(path, "a"));
        truncateSync(path, parseZfsSize(size));
        chmodSync(path, 0o600);
      }
      changes[`disk${n}_size`] = undefined;
    }
  } finally {
    writeRcVars(guestConf(env, name!), changes);
  }
}

/** The path bhyve opens for a disk: vm::get_disk_path (lib/vm-run lines 865-878). */
function diskPath(env: VmEnv, name: string, disk: string, dev: string): string {
  if (dev === "zvol" || dev === "sparse-zvol") return `/dev/zvol/${env.dataset}/${name}/${disk}`;
  if (dev === "custom") return disk;
  return join(guestDir(env, name), disk);
}

function diskExists(env: VmEnv, path: string): boolean {
  if (path.startsWith("/dev/zvol/"))
    return env.state.datasets[path.slice("/dev/zvol/".length)]?.type === "volume";
  return existsSync(path);
}

function vmStart(env: VmEnv, args: string[]) {
  // core::start and core::__start (lib/vm-core lines 794-926).
  const { rest } = getopt(args, "fi");
  let failures = 0;
  for (const name of rest) {
    print(`Starting ${name}`);
    if (!existsSync(guestConf(env, name))) {
      print(`  ! ${name} does not seem to be a valid virtual machine`);
      failures++;
      continue;
    }
    print(`  * found guest in ${guestDir(env, name)}`);
    // vm::confirm_stopped NAME 1 (lib/vm-run lines 969-994): a lock of this host is skipped.
    const lock = existsSync(runLock(env, name))
      ? readFileSync(runLock(env, name), "utf8").split("\n")[0]
      : undefined;
    if (env.state.running[name] || (lock !== undefined && lock !== env.state.hostname)) {
      print("  ! guest appears to be running already");
      failures++;
      continue;
    }
    const conf = readRcFile(guestConf(env, name));
    if (!conf.get("cpu") || !conf.get("memory")) {
      print("  ! incomplete virtual machine configuration");
      failures++;
      continue;
    }
    print("  * booting...");
    // What `vm _run` does in the background: its outcome only shows in the guest's log.
    vmRun(env, name, conf);
  }
  if (failures) throw new Exit(failures);
}

const yes = (value: string | undefined, fallback = false) =>
  value === undefined || value === "" ? fallback : !/^(no|false|off|0)$/i.test(value);

/** vm::run (lib/vm-run lines 13-291) up to bhyve running, and its log lines in their order. */
function vmRun(env: VmEnv, name: string, conf: Map<string, string>) {
  const loader = conf.get("loader") ?? "";
  const cpu = conf.get("cpu")!;
  const memory = conf.get("memory")!;
  let uuid = conf.get("uuid") ?? "";
  if (!uuid) {
    uuid = crypto.randomUUID();
    writeRcVars(guestConf(env, name), { uuid });
  }
  const hostbridge = conf.get("hostbridge") ?? "standard";
  const bootDev = conf.get("disk0_dev") ?? "file";
  guestLog(
    env,
    name,
    "initialising",
    ` [loader: ${loader}]`,
    ` [cpu: ${cpu}]`,
    ` [memory: ${memory}]`,
    ` [hostbridge: ${hostbridge}]`,
    ` [com ports: ${conf.get("comports") ?? "com1"}]`,
    ` [uuid: ${uuid}]`,
    ` [debug mode: ${conf.get("debug") ?? "no"}]`,
    ` [primary disk: ${conf.get("disk0_name") ?? ""}]`,
    ` [primary disk dev: ${bootDev}]`,
  );
  // Options in the order vm::run builds them (lines 95-134).
  let opts = "-AHPw";
  if (yes(conf.get("ignore_msr"))) opts += "w";
  const uefi = loader.replace(/-.*$/, "") === "uefi";
  if (uefi) {
    // vm::uefi (lines 297-344).
    const bootrom =
      loader === "uefi-devel"
        ? "/usr/local/share/uefi-firmware/BHYVE_UEFI_CODE-devel.fd"
        : loader === "uefi-csm"
          ? "/usr/local/share/uefi-firmware/BHYVE_UEFI_CSM.fd"
          : loader === "uefi-custom"
            ? `${env.dir}/.config/BHYVE_UEFI.fd`
            : "/usr/local/share/uefi-firmware/BHYVE_UEFI.fd";
    if (!existsSync(bootrom.startsWith(env.dir) ? bootrom : join(env.root, bootrom))) {
      guestLog(env, name, `fatal; unable to locate firmware ${bootrom}`);
      return;
    }
    opts += ` -l bootrom,${bootrom}`;
  }
  if (conf.get("bhyve_options")) opts += ` ${conf.get("bhyve_options")}`;
  if (yes(conf.get("wired_memory"))) opts += " -S";
  opts = `-c ${cpu} -m ${memory} ${opts}`;
  if (uuid) opts += ` -U ${uuid}`;
  if (yes(conf.get("utctime"), true)) opts += " -u";

  // The device string (lines 143-152): com ports, hostbridge and lpc, disks, networking, rand.
  const console: string[] = [];
  const comstring: string[] = [];
  (conf.get("comports") ?? "com1").split(/\s+/).forEach((port, i) => {
    console.push(`${port}=/dev/nmdm-${name}.${i + 1}B`);
    comstring.push(`-l ${port},/dev/nmdm-${name}.${i + 1}A`);
  });
  const devices: string[] = [];
  if (!hostbridge.startsWith("no"))
    devices.push(hostbridge === "amd" ? "-s 0,amd_hostbridge" : "-s 0,hostbridge");
  devices.push(`-s 31,lpc${conf.get("fwcfg") ? `,fwcfg=${conf.get("fwcfg")}` : ""}`);
  let slot = Number(conf.get("start_slot") ?? 4);
  let func = 0;
  const disks: string[] = [];
  for (let n = 0; conf.get(`disk${n}_name`) && conf.get(`disk${n}_type`); n++) {
    const path = diskPath(env, name, conf.get(`disk${n}_name`)!, conf.get(`disk${n}_dev`) ?? "file");
    disks.push(path);
    const extra = conf.get(`disk${n}_opts`);
    devices.push(`-s 0:${slot}:${func},${conf.get(`disk${n}_type`)},${path}${extra ? `,${extra}` : ""}`);
    if (uefi) slot++;
    else func++;
  }
  if (disks.length && !uefi) {
    slot++;
    func = 0;
  }
  const pid = env.state.nextPid++;
  const taps: string[] = [];
  let nics = 0;
  for (let n = 0; conf.get(`network${n}_type`); n++, nics++) {
    // switch::provision and switch::standard::provision (lib/vm-switch lines 426-445,
    // lib/vm-switch-standard lines 330-383).
    const tap = createInterface(env.state, "tap");
    const sw = conf.get(`network${n}_switch`) ?? "";
    const i = env.state.interfaces[tap]!;
    i.description = `vmnet/${name}/${n}/${sw || "custom"}`;
    i.groups.push("vm-port");
    i.openedBy = pid;
    taps.push(tap);
    guestLog(env, name, `initialising network device ${tap}`);
    const bridge = sw ? switchBridge(env, sw) : undefined;
    if (sw && bridge) {
      guestLog(
        env,
        name,
        `adding ${tap} -> ${bridge} (${sw} addm)`,
        `bring up ${tap} -> ${bridge} (${sw} addm)`,
      );
      addMember(env.state, bridge, tap);
      i.up = true;
    } else if (sw) {
      guestLog(env, name, `failed to find virtual switch '${sw}'`);
    }
    const mac = conf.get(`network${n}_mac`);
    devices.push(`-s 0:${slot}:${func},${conf.get(`network${n}_type`)},${tap}${mac ? `,mac=${mac}` : ""}`);
    func++;
  }
  if (nics) {
    slot++;
    func = 0;
  }
  if (yes(conf.get("virt_random"))) devices.push(`-s 0:${slot++}:0,virtio-rnd`);
  writeFileSync(join(guestDir(env, name), "console"), `${console.join("\n")}\n`);
  // vm::lock (lines 380-382): the host's name, before "booting".
  writeFileSync(runLock(env, name), `${env.state.hostname}\n`);
  guestLog(
    env,
    name,
    "booting",
    ` [bhyve options: ${opts}]`,
    ` [bhyve devices: ${devices.join(" ")}]`,
    ` [bhyve console: ${comstring.join(" ")}]`,
    "starting bhyve (run 1)",
  );
  env.state.running[name] = { pid, taps, startedAt: Date.now() };
  // bhyve exits 4 when a device cannot be set up (bhyve.8 EXIT STATUS), a missing disk among them.
  if (env.state.failingGuests.includes(name) || disks.some((d) => !diskExists(env, d)))
    guestDown(env, name, 4);
}

function vmStop(env: VmEnv, names: string[]) {
  // core::stop (lib/vm-core lines 948-981): ACPI shutdown, returns at once; the guest goes down when it has shut down.
  for (const name of names) {
    const run = env.state.running[name];
    if (!run) {
      vmWarn(`${name} doesn't appear to be a running virtual machine`);
      continue;
    }
    print(`Sending ACPI shutdown to ${name}`);
    run.stopAt ??= Date.now() + env.state.stopDelayMs;
  }
}

function vmPoweroff(env: VmEnv, args: string[]) {
  // core::poweroff (lib/vm-core lines 1047-1063).
  const { flags, rest } = getopt(args, "f");
  const name = rest[0]!;
  if (!env.state.running[name]) vmErr(`${name} doesn't appear to be a running virtual machine`);
  if (!flags.has("f") && !confirm()) return;
  guestDown(env, name, 1);
}

function vmDestroy(env: VmEnv, args: string[]) {
  // core::destroy (lib/vm-core lines 1070-1099).
  const { flags, rest } = getopt(args, "f");
  const name = rest[0]!;
  if (!existsSync(guestConf(env, name))) vmErr(`${name} doesn't appear to be a valid virtual machine`);
  // vm::confirm_stopped NAME, without skipping this host's lock: any run.lock refuses.
  if (existsSync(runLock(env, name))) {
    vmWarn(
      `${name} appears to be running on ${readFileSync(runLock(env, name), "utf8").split("\n")[0]} (locked)`,
    );
    throw new Exit(1);
  }
  if (env.state.running[name]) {
    vmWarn(`${name} appears to be running locally (vmm exists)`);
    throw new Exit(1);
  }
  if (!flags.has("f") && !confirm()) return;
  if (env.dataset) {
    const base = `${env.dataset}/${name}`;
    for (const d of Object.keys(env.state.datasets))
      if (d === base || d.startsWith(`${base}/`) || d.startsWith(`${base}@`)) {
        moveBacking(env.root, d);
        delete env.state.datasets[d];
      }
  }
  rmSync(guestDir(env, name), { recursive: true, force: true });
}

function vmRename(env: VmEnv, args: string[]) {
  // core::rename (lib/vm-core lines 1155-1192): the dataset (with its zvols and snapshots), then
  // the directory if it is still there, then the config file; the config's contents stay as they are.
  const [old, name] = args;
  if (!old || !name) fail("usage: vm rename <name> <new-name>");
  if (!VM_NAME.test(name!)) vmErr(`invalid virtual machine name - '${name}'`);
  if (existsSync(guestConf(env, name!))) vmErr(`directory ${env.dir}/${name} already exists`);
  if (!existsSync(guestConf(env, old!))) vmErr(`${old} doesn't appear to be a valid virtual machine`);
  if (existsSync(runLock(env, old!)) || env.state.running[old!]) {
    vmWarn(`${old} appears to be running locally (vmm exists)`);
    throw new Exit(1);
  }
  if (env.dataset) {
    const from = `${env.dataset}/${old}`;
    const to = `${env.dataset}/${name}`;
    for (const d of Object.keys(env.state.datasets).filter(
      (d) => d === from || d.startsWith(`${from}/`) || d.startsWith(`${from}@`),
    )) {
      const moved = to + d.slice(from.length);
      const ds = env.state.datasets[d]!;
      if (ds.type === "filesystem" && ds.mountpoint)
        ds.mountpoint = join(env.dir, moved.slice(env.dataset.length + 1));
      moveBacking(env.root, d, moved);
      env.state.datasets[moved] = ds;
      delete env.state.datasets[d];
    }
  }
  renameSync(guestDir(env, old!), guestDir(env, name!));
  renameSync(join(guestDir(env, name!), `${old}.conf`), guestConf(env, name!));
}

holdSignalsWhileChanging();
let code: number;
try {
  code = main(process.argv.slice(2));
} catch (error) {
  if (error instanceof Exit) code = error.code;
  else {
    err += `shim: ${(error as Error).stack ?? error}\n`;
    code = 70;
  }
}
process.stdout.write(out);
process.stderr.write(err);
process.exitCode = code;
