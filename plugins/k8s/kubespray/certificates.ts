/**
 * How long the certificates in the admin kubeconfig still hold: the cluster's CA
 * (`certificate-authority-data`) and the admin's client certificate (`client-certificate-data`), or
 * the files those fields' plain forms name. kubeadm, which Kubespray runs, signs client and serving
 * certificates for one year and its CA for ten (kubeadm docs "Certificate Management with kubeadm");
 * an expired one locks kubehyve, kubectl and the kubelets out without a clearer word than "x509:
 * certificate has expired". Each PEM block is read with node:crypto's X509Certificate.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type Diagnostic, diag, parseYaml } from "kubehyve";

/** Under this many days left the certificate is a warning. */
export const CERT_WARN_DAYS = 30;
const DAY_MS = 86_400_000;

interface Named {
  name?: string;
  cluster?: Record<string, unknown>;
  user?: Record<string, unknown>;
}

/** The PEM certificates of one kubeconfig field: inline base64 data, or the file its plain form names. */
function pemOf(entry: Record<string, unknown>, field: string, base: string): string | undefined {
  const data = entry[`${field}-data`];
  if (typeof data === "string" && data) return Buffer.from(data, "base64").toString("utf8");
  const file = entry[field];
  if (typeof file === "string" && file) {
    try {
      return readFileSync(resolve(base, file), "utf8");
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function certificatesIn(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const out: X509Certificate[] = [];
  for (const block of blocks) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      // Not a certificate the client could use either; the API check says so in its own words.
    }
  }
  return out;
}

/** One finding per certificate of the kubeconfig at `path`, judged at `now`. */
export function certificateFindings(text: string, path: string, now = Date.now()): Diagnostic[] {
  let config: { clusters?: Named[]; users?: Named[] } | null;
  try {
    config = parseYaml(text) as typeof config;
  } catch {
    return [];
  }
  const base = dirname(path);
  const found: { what: string; cert: X509Certificate; ca: boolean }[] = [];
  for (const c of config?.clusters ?? []) {
    const pem = c.cluster ? pemOf(c.cluster, "certificate-authority", base) : undefined;
    for (const cert of pem ? certificatesIn(pem) : [])
      found.push({ what: `the CA of cluster ${c.name ?? "?"}`, cert, ca: true });
  }
  for (const u of config?.users ?? []) {
    const pem = u.user ? pemOf(u.user, "client-certificate", base) : undefined;
    for (const cert of pem ? certificatesIn(pem) : [])
      found.push({ what: `the client certificate of ${u.name ?? "?"}`, cert, ca: false });
  }
  return found.map(({ what, cert, ca }) => {
    const until = new Date(cert.validTo);
    const days = Math.floor((until.getTime() - now) / DAY_MS);
    const subject = cert.subject.replace(/\n/g, ", ");
    const detail = `${subject}; valid ${new Date(cert.validFrom).toISOString()} to ${until.toISOString()}; in ${path}`;
    const hint = ca
      ? "kubeadm cannot renew a CA: a new one means new certificates for every component (kubeadm docs, Certificate Management: manual certificate renewal); until then kubectl and kubehyve are locked out"
      : "on each control plane: ssh core@CP sudo kubeadm certs renew all, then kubehyve up copies the new admin.conf; stages.k8s.extraVars auto_renew_certificates: true keeps them renewed";
    if (until.getTime() <= now)
      return diag.error("kubespray.cert-expired", `${what} expired on ${until.toISOString().slice(0, 10)}`, {
        detail,
        hint,
      });
    if (days < CERT_WARN_DAYS)
      return diag.warn(
        "kubespray.cert-expiring",
        `${what} expires in ${days} day${days === 1 ? "" : "s"}, on ${until.toISOString().slice(0, 10)}`,
        { detail, hint },
      );
    return diag.ok("kubespray.cert-valid", `${what} is valid for ${days} more days`, { detail });
  });
}
