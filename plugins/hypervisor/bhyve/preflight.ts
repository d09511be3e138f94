/**
 * Host preflight: what must hold before any VM can run, each finding a diagnostic with a stable code
 * and a hint. A pure function of the facts read by inspect.ts, so every rule is tested on its own.
 */
import { type Cluster, type Diagnostic, diag, formatSize, GiB, MiB } from "kubehyve";
import { failure, type HostFacts } from "./inspect.ts";
import type { BhyveOptions } from "./options.ts";
import { biosDisabledLine, parseFreebsdVersion, parseVmVersion, versionAtLeast } from "./parse.ts";
import { diskDevOf, disksOf, parseVmMemory } from "./vmconfig.ts";

export const MIN_FREEBSD = { major: 14, minor: 0 };
export const MIN_VM_BHYVE = [1, 7];
/**
 * How full the datastore's pool may get. OpenZFS's performance tuning guide ("Free Space") asks to
 * keep more than 10% free: past that, metaslabs fall under the 4% free where allocation switches
 * from first fit to best fit, and writes slow down for every VM on the pool. 80% is the usual
 * warning mark before that.
 */
export const POOL_WARN_CAPACITY = 0.8;
export const POOL_ERROR_CAPACITY = 0.9;

/** Below this kubeadm's preflight (1700 MB) or Kubespray's asserts (1500/1024 MB) fail, late and vaguely. */
export const MIN_NODE_MEMORY = 2 * GiB;

export function hostPreflight(
  facts: HostFacts,
  cluster: Cluster,
  options: BhyveOptions,
  target: string,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = { target };

  // A read whose command failed says nothing about the host: reported as such, never as a "no".
  for (const { argv, result } of facts.failedReads) {
    out.push(
      diag.error("bhyve.host-read-failed", `could not read the host: ${argv.join(" ")} failed`, {
        ...at,
        detail: failure(argv, result),
        hint: "the command failed rather than answered; run it on the host to see why, then: kubehyve plan",
      }),
    );
  }
  if (facts.datastore.error) {
    out.push(
      diag.error(
        "bhyve.host-read-failed",
        `could not read the VM datastore ${facts.datastore.kind === "zfs" ? facts.datastore.dataset : facts.datastore.path}`,
        {
          ...at,
          detail: facts.datastore.error,
          hint: "the command failed rather than answered; run it on the host to see why, then: kubehyve plan",
        },
      ),
    );
  }

  const failed = (r: { code: number }) => r.code !== 0 && r.code !== 127;
  const version = parseFreebsdVersion(facts.freebsdVersion.stdout);
  if (failed(facts.freebsdVersion)) {
    // Reported above as a failed read.
  } else if (facts.freebsdVersion.code !== 0 || !version) {
    out.push(
      diag.error("bhyve.not-freebsd", "the host does not look like FreeBSD: freebsd-version failed", {
        ...at,
        detail: (facts.freebsdVersion.stderr || facts.freebsdVersion.stdout).trim(),
        hint: "run kubehyve on a FreeBSD 14.0 or later host, or point `host:` at one (ssh://root@hv1)",
      }),
    );
  } else if (version.major < MIN_FREEBSD.major) {
    out.push(
      diag.error(
        "bhyve.freebsd-too-old",
        `FreeBSD ${version.text} is older than ${MIN_FREEBSD.major}.${MIN_FREEBSD.minor}`,
        { ...at, hint: "upgrade the host: freebsd-update -r 14.3-RELEASE upgrade" },
      ),
    );
  } else {
    out.push(diag.ok("bhyve.freebsd-version", `FreeBSD ${version.text}`, at));
  }

  if (!failed(facts.uid) && facts.uid.stdout.trim() !== "0") {
    out.push(
      diag.error(
        "bhyve.not-root",
        `kubehyve runs as uid ${facts.uid.stdout.trim() || "?"} on the host, not root`,
        {
          ...at,
          hint: "run it as root (vm-bhyve manages VMs only as root): sudo kubehyve …, or host: ssh://root@HOST",
        },
      ),
    );
  }

  out.push(...vmmDiagnostics(facts, at));

  const vmVersion = parseVmVersion(facts.vmVersion.stdout);
  if (failed(facts.vmVersion)) {
    // Reported above as a failed read.
  } else if (facts.vmVersion.code !== 0 || !vmVersion) {
    out.push(
      diag.error("bhyve.vm-bhyve-missing", "vm-bhyve is not installed", {
        ...at,
        detail: facts.vmVersion.stderr.trim() || undefined,
        hint: "pkg install vm-bhyve (the port now lives at github.com/freebsd/vm-bhyve)",
      }),
    );
  } else if (!versionAtLeast(vmVersion, MIN_VM_BHYVE)) {
    out.push(
      diag.error(
        "bhyve.vm-bhyve-too-old",
        `vm-bhyve ${vmVersion.join(".")} is older than ${MIN_VM_BHYVE.join(".")}`,
        { ...at, hint: "pkg upgrade vm-bhyve" },
      ),
    );
  } else {
    out.push(diag.ok("bhyve.vm-bhyve", `vm-bhyve ${vmVersion.join(".")}`, at));
  }

  if (!facts.firmwarePresent) {
    out.push(
      diag.error("bhyve.firmware-missing", `UEFI firmware ${options.firmware} is missing`, {
        ...at,
        hint: "pkg install edk2-bhyve",
        path: "stages.hypervisor.firmware",
      }),
    );
  }

  const vmDir = facts.rc.get("vm_dir");
  if (vmDir && vmDir !== options.vmDir) {
    out.push(
      diag.error(
        "bhyve.vm-dir-mismatch",
        `rc.conf has vm_dir="${vmDir}", the cluster file ${options.vmDir}`,
        {
          ...at,
          path: "stages.hypervisor.vmDir",
          hint: `set vmDir: "${vmDir}" in the cluster file, or move the existing VMs and run: sysrc vm_dir="${options.vmDir}"`,
        },
      ),
    );
  }

  const ds = facts.datastore;
  if (ds.kind === "zfs" && ds.exists && !ds.mounted) {
    out.push(
      diag.error("bhyve.datastore-not-mounted", `ZFS dataset ${ds.dataset} is not mounted`, {
        ...at,
        hint: `zfs mount ${ds.dataset}`,
      }),
    );
  }
  if (ds.kind === "zfs" && facts.pools && !facts.pools.some((p) => p.name === ds.pool)) {
    out.push(
      diag.error("bhyve.pool-missing", `ZFS pool ${ds.pool} of vmDir ${options.vmDir} does not exist`, {
        ...at,
        path: "stages.hypervisor.vmDir",
        hint: "zpool list shows the pools; set vmDir to zfs:POOL/vm",
      }),
    );
  }

  if (!options.nic) {
    out.push(
      diag.warn(
        "bhyve.switch-nic-unset",
        `switch ${options.switch} is not bridged to a host NIC: nodes reach only each other and the host`,
        {
          ...at,
          path: "stages.hypervisor.nic",
          hint: "set nic: to the host interface on the lab network (ifconfig -l lists them)",
        },
      ),
    );
  } else if (facts.interfaces.size > 0 && !facts.interfaces.has(options.nic)) {
    out.push(
      diag.error("bhyve.nic-missing", `host NIC ${options.nic} does not exist`, {
        ...at,
        path: "stages.hypervisor.nic",
        detail: `interfaces: ${[...facts.interfaces.keys()].join(" ")}`,
        hint: "ifconfig -l lists the interfaces",
      }),
    );
  }

  out.push(...capacityDiagnostics(facts, cluster, options, at));
  out.push(...nodeMemoryDiagnostics(cluster));
  return out;
}

/**
 * Every node below the 2 GiB the installer needs. Read from the cluster file alone, so that a plan
 * that inspects nothing (`plan --offline`) says it too, before anyone boots a node to find out.
 */
export function nodeMemoryDiagnostics(cluster: Cluster): Diagnostic[] {
  const out: Diagnostic[] = [];
  cluster.nodes.forEach((node, i) => {
    if (node.memory < MIN_NODE_MEMORY) {
      out.push(
        diag.error(
          "bhyve.node-memory-too-small",
          `node ${node.name} has ${shownBelow(node.memory, MIN_NODE_MEMORY)} of memory, less than ${formatSize(MIN_NODE_MEMORY)}`,
          {
            target: node.name,
            path: `nodes[${i}].memory`,
            hint: `give it memory: 2GiB or more. Below that kubeadm's preflight (1700 MB) and Kubespray's bare "Assertion failed" (1500 MB control plane, 1024 MB worker) fail late, far from the cause`,
          },
        ),
      );
    }
  });
  return out;
}

/** `size`, known to be less than `limit`, never rounded up to look like it (2047 MiB, not "2 GiB"). */
function shownBelow(size: number, limit: number): string {
  const shown = formatSize(size);
  return shown === formatSize(limit) ? `${Math.floor(size / MiB)} MiB` : shown;
}

function vmmDiagnostics(facts: HostFacts, at: { target: string }): Diagnostic[] {
  const biosLine = facts.dmesg ? biosDisabledLine(facts.dmesg) : undefined;
  if (biosLine) {
    return [
      diag.error(
        "bhyve.virtualisation-disabled",
        "hardware virtualisation is disabled in the firmware (BIOS/UEFI setup)",
        {
          ...at,
          detail: `dmesg: ${biosLine}`,
          hint: 'enable Intel VT-x ("Virtualization Technology") or AMD-V ("SVM Mode") in the firmware setup, power-cycle, then: kldload vmm',
        },
      ),
    ];
  }
  if (facts.vmmUnknown) return [];
  if (!facts.vmmLoaded) {
    return [
      diag.error("bhyve.vmm-not-loaded", "the vmm kernel module is not loaded", {
        ...at,
        hint: "kldload vmm && sysrc kld_list+=vmm",
      }),
    ];
  }
  const s = facts.sysctl;
  if (s.has("hw.vmm.vmx.initialized")) {
    if (s.get("hw.vmm.vmx.initialized") !== "1") {
      return [
        diag.error(
          "bhyve.vmx-not-initialised",
          "vmm is loaded but VT-x is not initialised (hw.vmm.vmx.initialized=0)",
          {
            ...at,
            detail:
              facts.dmesg
                ?.split("\n")
                .filter((l) => /vmx|vmm/i.test(l))
                .join("\n") || undefined,
            hint: "check the firmware setup for Intel VT-x, then: kldunload vmm && kldload vmm",
          },
        ),
      ];
    }
    if (s.get("hw.vmm.vmx.cap.unrestricted_guest") !== "1") {
      return [
        diag.error(
          "bhyve.no-unrestricted-guest",
          "the CPU lacks VT-x unrestricted guest support, which UEFI guests need",
          {
            ...at,
            hint: "use a CPU with unrestricted guest (Intel Westmere or later); vm-bhyve then only runs single-vCPU FreeBSD guests",
          },
        ),
      ];
    }
    return [diag.ok("bhyve.vmm", "vmm loaded, VT-x with unrestricted guest", at)];
  }
  if (s.has("hw.vmm.svm.features")) {
    if (s.get("hw.vmm.svm.features") === "0") {
      return [
        diag.error(
          "bhyve.svm-unavailable",
          "vmm is loaded but AMD SVM reports no features (hw.vmm.svm.features=0)",
          { ...at, hint: "enable SVM in the firmware setup, then: kldunload vmm && kldload vmm" },
        ),
      ];
    }
    return [diag.ok("bhyve.vmm", "vmm loaded, AMD SVM", at)];
  }
  return [
    diag.warn("bhyve.vmm-unknown", "vmm is loaded but neither hw.vmm.vmx nor hw.vmm.svm is present", {
      ...at,
      hint: "sysctl hw.vmm shows what vmm found; dmesg | grep -i vmm says why it found neither",
    }),
  ];
}

function capacityDiagnostics(
  facts: HostFacts,
  cluster: Cluster,
  options: BhyveOptions,
  at: { target: string },
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const s = facts.sysctl;
  const physmem = Number(s.get("hw.physmem") ?? Number.NaN);
  const arcMax = Number(s.get("vfs.zfs.arc_max") ?? 0) || 0;
  const ours = new Set(cluster.nodes.map((n) => n.name));
  const foreign = (facts.vms ?? []).filter((vm) => !ours.has(vm.name) && vm.state.kind === "running");
  const foreignMemory = foreign.reduce((sum, vm) => sum + (parseVmMemory(vm.memory) ?? 0), 0);
  const guests = cluster.nodes.reduce((sum, n) => sum + n.memory, 0);
  const needed = guests + options.hostReserve + arcMax + foreignMemory;
  const breakdown = [
    `guests ${formatSize(guests)}`,
    `host reserve ${formatSize(options.hostReserve)}`,
    ...(arcMax ? [`vfs.zfs.arc_max ${formatSize(arcMax)}`] : []),
    ...(foreignMemory
      ? [`other running VMs (${foreign.map((v) => v.name).join(", ")}) ${formatSize(foreignMemory)}`]
      : []),
  ].join(" + ");
  if (Number.isFinite(physmem)) {
    if (needed > physmem) {
      out.push(
        diag.error(
          "bhyve.memory-insufficient",
          `the VMs need ${formatSize(needed)}, the host has ${formatSize(physmem)} (hw.physmem)`,
          {
            ...at,
            detail: breakdown,
            hint: `give the nodes less memory, lower hostReserve, or cap the ZFS ARC: sysctl vfs.zfs.arc_max=${4 * GiB}`,
          },
        ),
      );
    } else {
      out.push(
        diag.ok("bhyve.memory", `memory: ${formatSize(needed)} of ${formatSize(physmem)} needed`, {
          ...at,
          detail: breakdown,
        }),
      );
    }
  }

  const maxcpu = Number(s.get("hw.vmm.maxcpu") ?? Number.NaN);
  const ncpu = Number(s.get("hw.ncpu") ?? Number.NaN);
  cluster.nodes.forEach((node, i) => {
    if (Number.isFinite(maxcpu) && node.cpus > maxcpu) {
      out.push(
        diag.error(
          "bhyve.cpu-over-maxcpu",
          `node ${node.name} has ${node.cpus} vCPUs, bhyve allows at most ${maxcpu} (hw.vmm.maxcpu)`,
          { target: node.name, path: `nodes[${i}].cpus`, hint: `cpus: ${maxcpu} or fewer` },
        ),
      );
    }
  });
  const vcpus = cluster.nodes.reduce((sum, n) => sum + n.cpus, 0);
  if (Number.isFinite(ncpu) && vcpus > ncpu) {
    out.push(
      diag.warn(
        "bhyve.cpu-overcommit",
        `${vcpus} vCPUs on ${ncpu} host CPUs (hw.ncpu): the nodes will compete for CPU time`,
        { ...at, hint: "fine for a lab; lower nodes[].cpus if etcd or the API server time out under load" },
      ),
    );
  }

  const ds = facts.datastore;
  if (ds.kind === "zfs") {
    const pool = facts.pools?.find((p) => p.name === ds.pool);
    const existing = new Set((facts.vms ?? []).map((v) => v.name));
    const dev = diskDevOf(options);
    const toCreate = cluster.nodes.filter((n) => !existing.has(n.name));
    const bytes = toCreate.reduce((sum, n) => sum + disksOf(n, dev).reduce((a, d) => a + d.size, 0), 0);
    if (pool && pool.size > 0) {
      // zpool-list(8)'s CAPACITY is ALLOC over SIZE, shown as a whole percentage.
      const capacity = pool.alloc / pool.size;
      const shown = `pool ${pool.name} is ${Math.floor(capacity * 100)}% full (${formatSize(pool.alloc)} of ${formatSize(pool.size)})`;
      const hint = `free space in ${pool.name}: zfs list -o space -r ${pool.name} shows what takes it (old snapshots: zfs list -t snapshot -r ${pool.name}); ZFS slows down past 90%`;
      if (capacity >= POOL_ERROR_CAPACITY)
        out.push(diag.error("bhyve.pool-nearly-full", shown, { ...at, hint }));
      else if (capacity >= POOL_WARN_CAPACITY)
        out.push(diag.warn("bhyve.pool-nearly-full", shown, { ...at, hint }));
      else out.push(diag.ok("bhyve.pool-capacity", shown, at));
    }
    if (pool && bytes > pool.free) {
      // Sparse disks take only what the guests write, but the pool fills as they do: refused alike.
      const sparse = dev === "zvol" ? "" : " (sparse, so taken as the guests write)";
      out.push(
        diag.error(
          "bhyve.pool-space",
          `the new VMs' disks need ${formatSize(bytes)}${sparse}, pool ${pool.name} has ${formatSize(pool.free)} free`,
          {
            ...at,
            hint: `free space in ${pool.name} (zfs list -o space ${pool.name}), or make the nodes' disks smaller`,
          },
        ),
      );
    }
  }
  return out;
}
