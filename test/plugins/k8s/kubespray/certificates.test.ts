/**
 * The certificates of the admin kubeconfig, made by the real openssl the way kubeadm lays them out
 * (a self-signed CA, a client certificate it signs), read back by the stage with X509Certificate.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { certificateFindings } from "../../../../plugins/k8s/kubespray/certificates.ts";
import { have } from "../../../lab/prereq.ts";

const DAY = 86_400_000;

function openssl(args: string[], cwd: string): void {
  const proc = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${proc.stderr.toString()}`);
}

describe.skipIf(!have("openssl", "openssl"))("the kubeconfig's certificates", () => {
  let dir: string;
  let ca: string;
  let client: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "kubehyve-certs-"));
    const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    // kubeadm's CA lasts ten years; this client certificate only ten days.
    openssl(
      [
        "req",
        "-x509",
        ...key,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=kubernetes",
      ],
      dir,
    );
    openssl(
      [
        "req",
        ...key,
        "-keyout",
        "admin.key",
        "-out",
        "admin.csr",
        "-subj",
        "/O=system:masters/CN=kubernetes-admin",
      ],
      dir,
    );
    openssl(
      [
        "x509",
        "-req",
        "-in",
        "admin.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "admin.crt",
        "-days",
        "10",
      ],
      dir,
    );
    ca = readFileSync(join(dir, "ca.crt"), "utf8");
    client = readFileSync(join(dir, "admin.crt"), "utf8");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** An admin.conf as Kubespray writes it, with the certificates inline. */
  const kubeconfig = (caField: string) => `apiVersion: v1
kind: Config
clusters:
- cluster:
    ${caField}
    server: https://192.168.1.21:6443
  name: cluster.local
contexts:
- context: {cluster: cluster.local, user: kubernetes-admin}
  name: kubernetes-admin@cluster.local
current-context: kubernetes-admin@cluster.local
users:
- name: kubernetes-admin
  user:
    client-certificate-data: ${Buffer.from(client).toString("base64")}
    client-key-data: ${Buffer.from("not read").toString("base64")}
`;

  test("a CA of years is fine; a client certificate with days left is a warning with the renewal", () => {
    const path = join(dir, "kubeconfig");
    const found = certificateFindings(
      kubeconfig(`certificate-authority-data: ${Buffer.from(ca).toString("base64")}`),
      path,
    );
    expect(found.map((d) => [d.code, d.severity])).toEqual([
      ["kubespray.cert-valid", "ok"],
      ["kubespray.cert-expiring", "warn"],
    ]);
    expect(found[0]!.summary).toMatch(/^the CA of cluster cluster\.local is valid for 36(49|50) more days$/);
    expect(found[1]!.summary).toMatch(
      /^the client certificate of kubernetes-admin expires in (9|10) days, on \d{4}-\d\d-\d\d$/,
    );
    expect(found[1]!.detail).toContain("CN=kubernetes-admin");
    expect(found[1]!.hint).toContain("kubeadm certs renew all");
  });

  test("once past its end it is an error; a CA named by file is read from beside the kubeconfig", () => {
    const found = certificateFindings(
      kubeconfig("certificate-authority: ca.crt"),
      join(dir, "kubeconfig"),
      Date.now() + 11 * DAY,
    );
    expect(found.map((d) => [d.code, d.severity])).toEqual([
      ["kubespray.cert-valid", "ok"],
      ["kubespray.cert-expired", "error"],
    ]);
    expect(found[1]!.summary).toMatch(
      /^the client certificate of kubernetes-admin expired on \d{4}-\d\d-\d\d$/,
    );
    const caLater = certificateFindings(
      kubeconfig("certificate-authority: ca.crt"),
      join(dir, "kubeconfig"),
      Date.now() + 3640 * DAY,
    );
    expect(caLater[0]).toMatchObject({ code: "kubespray.cert-expiring", severity: "warn" });
    expect(caLater[0]!.hint).toContain("kubeadm cannot renew a CA");
  });

  test("30 days left is still fine, and 29 days left is the warning", () => {
    const end = Date.parse(new X509Certificate(client).validTo);
    const judged = (daysLeft: number) =>
      certificateFindings(
        kubeconfig("certificate-authority: ca.crt"),
        join(dir, "kubeconfig"),
        end - daysLeft * DAY,
      )
        .filter((d) => d.summary.startsWith("the client certificate"))
        .map((d) => d.code);
    expect(judged(30)).toEqual(["kubespray.cert-valid"]);
    expect(judged(29.5)).toEqual(["kubespray.cert-expiring"]);
  });
});
