/**
 * The CephCluster's status as Rook writes it (pkg/operator/ceph/cluster/cephstatus.go
 * toCustomResourceStatus: `status.ceph.health`, and `status.ceph.details` keyed by Ceph's health check
 * code with its severity and summary message), turned into diagnostics. The advice for the codes a
 * small lab meets follows Ceph's doc/rados/operations/health-checks.rst.
 */
import { type Diagnostic, diag, type KubeObject } from "kubehyve";
import { CLUSTER_NAME } from "./manifests.ts";
import { NAMESPACE } from "./release.ts";

const TOOLBOX = `kubectl -n ${NAMESPACE} exec deploy/rook-ceph-tools --`;

/** What to do about the health checks labs meet, by code (a prefix ends in `*`). */
export const HEALTH_ADVICE: Record<string, string> = {
  TOO_FEW_OSDS:
    "fewer OSDs are up than the pools' size: check that every data disk is empty (kubehyve doctor) and that the rook-ceph-osd pods run (kubectl -n rook-ceph get pods -l app=rook-ceph-osd)",
  MON_DISK_LOW:
    "a mon's data directory (/var/lib/rook on its node) is low on space: free space on that node's root filesystem, or give the VM a larger boot disk",
  MON_CLOCK_SKEW:
    "the mons' clocks disagree: make every node follow the same NTP server (ssh core@NODE chronyc tracking)",
  POOL_NO_REDUNDANCY: `a pool keeps a single copy: with one node of data disks that is all a lab can do, so mute it (${TOOLBOX} ceph config set global mon_warn_on_pool_no_redundancy false) or add data disks to two more nodes`,
  "AUTH_INSECURE_GLOBAL_ID_RECLAIM*": `once every client is updated, forbid the old reclaim: ${TOOLBOX} ceph config set mon auth_allow_insecure_global_id_reclaim false`,
};

export function adviceFor(code: string): string | undefined {
  if (HEALTH_ADVICE[code]) return HEALTH_ADVICE[code];
  const prefix = Object.keys(HEALTH_ADVICE).find((k) => k.endsWith("*") && code.startsWith(k.slice(0, -1)));
  return prefix ? HEALTH_ADVICE[prefix] : undefined;
}

interface CephDetail {
  message?: string;
  severity?: string;
}

/** Pure: one diagnostic for the cluster's phase and health, and one per health check code. */
export function cephHealth(cluster: KubeObject | undefined): Diagnostic[] {
  const ref = `CephCluster ${NAMESPACE}/${CLUSTER_NAME}`;
  if (!cluster) return [diag.error("rook.no-cluster", `${ref} does not exist`, { hint: "kubehyve up" })];
  const status = cluster.status ?? {};
  const out: Diagnostic[] = [];
  if (status.phase !== "Ready") {
    const why = [status.phase ?? "no phase yet", status.message].filter(Boolean).join(": ");
    out.push(
      diag.error("rook.cluster-not-ready", `${ref} is not Ready (${why})`, {
        hint: `kubectl -n ${NAMESPACE} logs deploy/rook-ceph-operator --tail=50`,
      }),
    );
  }
  const health: string | undefined = status.ceph?.health;
  if (health === "HEALTH_OK") {
    if (status.phase === "Ready") out.push(diag.ok("rook.health", `${ref} is Ready and HEALTH_OK`));
    return out;
  }
  if (!health) {
    out.push(
      diag.error("rook.health-unknown", `${ref} reports no Ceph health yet`, {
        hint: `kubectl -n ${NAMESPACE} logs deploy/rook-ceph-operator --tail=50   # the operator fills status.ceph once the mons answer`,
      }),
    );
    return out;
  }
  const rawDetails: unknown = status.ceph?.details;
  const details = (
    rawDetails && typeof rawDetails === "object" && !Array.isArray(rawDetails) ? rawDetails : {}
  ) as Record<string, CephDetail | null>;
  const severity = health === "HEALTH_ERR" ? diag.error : diag.warn;
  out.push(
    severity("rook.health", `Ceph reports ${health}`, {
      detail: Object.keys(details).sort().join(", "),
      hint: `the health codes below say what and what to do; all of them: ${TOOLBOX} ceph health detail`,
    }),
  );
  for (const code of Object.keys(details).sort()) {
    // Rook copies Ceph's checks as it gets them; an entry without its object still names the code.
    const d = details[code];
    const make = d?.severity === "HEALTH_ERR" ? diag.error : diag.warn;
    const message = typeof d?.message === "string" ? d.message : "(no message)";
    out.push(
      make(`rook.ceph.${code}`, `${code}: ${message}`, {
        hint:
          adviceFor(code) ??
          `${TOOLBOX} ceph health detail   # and Ceph's health-checks documentation for ${code}`,
      }),
    );
  }
  return out;
}
