/** verify: every node's VM exists, is ours, has its disks, runs, and booted without errors. */
import { type Diagnostic, diag, type PluginContext } from "kubehyve";
import { readDatastore } from "./inspect.ts";
import { answerOf, CONFIG_MARK, CONFIG_MARK_NAME, describeOwner, type Owner, ownerOf } from "./marks.ts";
import { observeVms } from "./observe.ts";
import type { BhyveOptions } from "./options.ts";
import { parseGuestLog, parseIfconfig, parseSwitchList, parseVmList, tapsOf } from "./parse.ts";
import { guestDirOf } from "./plan.ts";
import { diskDevOf, disksOf } from "./vmconfig.ts";

type Ctx = PluginContext<BhyveOptions>;

export async function verify(ctx: Ctx): Promise<Diagnostic[]> {
  const host = ctx.host;
  // vm-bhyve loads vmm.ko for any subcommand (util::check_bhyve_support): verify only looks, so
  // without vmm it does not run vm at all (check says what to do about vmm).
  const kldstat = await host.run(["kldstat", "-q", "-m", "vmm"]);
  const vmm = answerOf(kldstat);
  if (vmm !== "yes") {
    return [
      diag.skip(
        "bhyve.vms",
        vmm === "no"
          ? "the VMs were not looked at: the vmm kernel module is not loaded, and vm would load it"
          : "the VMs were not looked at: whether the vmm kernel module is loaded is not known",
        {
          target: host.name,
          detail:
            vmm === "no"
              ? undefined
              : (kldstat.stderr || kldstat.stdout).trim() || `kldstat exited ${kldstat.code}`,
          hint: vmm === "no" ? "kldload vmm && sysrc kld_list+=vmm" : "kubehyve doctor --stage hypervisor",
        },
      ),
    ];
  }
  const [list, switches, ifconfig, ds] = await Promise.all([
    host.run(["vm", "list"]),
    host.run(["vm", "switch", "list"]),
    host.run(["ifconfig"]),
    readDatastore(host, ctx.options),
  ]);
  if (list.code !== 0) {
    return [
      diag.error("bhyve.vm-list-failed", "vm list failed on the host", {
        target: host.name,
        detail: (list.stderr || list.stdout).trim(),
        hint: "kubehyve plan shows what the host still lacks",
      }),
    ];
  }
  const vms = new Map(parseVmList(list.stdout).map((vm) => [vm.name, vm]));
  const bridge = parseSwitchList(switches.stdout).find((s) => s.name === ctx.options.switch)?.iface;
  const interfaces = parseIfconfig(ifconfig.stdout);
  const logPath = (name: string) => `${guestDirOf(ds, name)}/vm-bhyve.log`;
  const listedNodes = ctx.cluster.nodes.filter((n) => vms.has(n.name));
  const observed = await observeVms(
    ctx,
    { vms: [...vms.values()], datastore: ds },
    { boot: false, texts: listedNodes.map((n) => logPath(n.name)) },
  );
  const logs = observed.texts;
  const byNode = new Map(observed.vms.map((o) => [o.node.name, o]));
  const dev = diskDevOf(ctx.options);
  return ctx.cluster.nodes.flatMap((node) => {
    const out: Diagnostic[] = [];
    const vm = vms.get(node.name);
    const at = { target: node.name };
    if (!vm) {
      out.push(
        diag.error("bhyve.vm-missing", `VM ${node.name} does not exist`, { ...at, hint: "kubehyve up" }),
      );
      return out;
    }
    const seen = byNode.get(node.name)!;
    const owner: Owner = ownerOf(
      seen.config?.get(CONFIG_MARK),
      seen.config?.get(CONFIG_MARK_NAME),
      ctx.clusterId,
    );
    if (owner.kind !== "ours") {
      out.push(
        diag.error(
          "bhyve.vm-not-ours",
          `the VM named ${node.name} ${seen.configProblem ? `has a config that ${seen.configProblem}` : describeOwner(owner)}`,
          {
            ...at,
            hint: "kubehyve plan says what to do about it",
          },
        ),
      );
      return out;
    }
    const missing = disksOf(node, dev).filter((d) => seen.disks?.get(d.index)?.present === false);
    if (missing.length) {
      out.push(
        diag.error(
          "bhyve.vm-disk-missing",
          `VM ${node.name} lacks ${missing.map((d) => d.name).join(", ")} (an interrupted run, or removed by hand)`,
          { ...at, hint: "kubehyve up makes them" },
        ),
      );
    }
    if (vm.state.kind !== "running") {
      out.push(
        diag.error(
          "bhyve.vm-not-running",
          `VM ${node.name} is not running (${vm.state.kind === "other" ? vm.state.text : vm.state.kind === "locked" ? `locked by ${vm.state.host}` : vm.state.kind})`,
          { ...at, hint: `vm start ${node.name}, then read ${logPath(node.name)}` },
        ),
      );
    }
    const run = parseGuestLog(logs.get(logPath(node.name)) ?? "");
    if (run.errors.length) {
      out.push(
        diag.error(
          "bhyve.vm-log-error",
          `VM ${node.name} logged errors since it started${run.startedAt ? ` at ${run.startedAt}` : ""}`,
          { ...at, detail: run.errors.join("\n"), hint: `less ${logPath(node.name)}` },
        ),
      );
    }
    if (vm.state.kind === "running") {
      const taps = tapsOf(interfaces, node.name).filter((t) => t.switchName === ctx.options.switch);
      const attached = bridge ? taps.filter((t) => interfaces.get(bridge)?.members.includes(t.tap)) : [];
      if (!attached.length) {
        out.push(
          diag.error(
            "bhyve.vm-tap-detached",
            `VM ${node.name} has no tap interface on switch ${ctx.options.switch}${bridge ? ` (bridge ${bridge})` : " (its bridge does not exist)"}`,
            {
              ...at,
              detail: taps.length ? `taps: ${taps.map((t) => t.tap).join(" ")}` : undefined,
              hint: bridge
                ? `ifconfig ${bridge} addm ${taps[0]?.tap ?? "tapN"}`
                : `vm init && vm restart ${node.name}`,
            },
          ),
        );
      } else if (!run.errors.length && !missing.length) {
        out.push(
          diag.ok(
            "bhyve.vm-running",
            `VM ${node.name} running (pid ${vm.state.pid}), ${attached[0]!.tap} on ${bridge}`,
            at,
          ),
        );
      }
    }
    return out;
  });
}

// --- destroy and render ------------------------------------------------------------------------
