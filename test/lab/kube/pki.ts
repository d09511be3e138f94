/**
 * Per-run PKI for the Kubernetes API test server, made with the openssl CLI the way kubeadm lays
 * out its own (a self-signed cluster CA, an apiserver serving certificate with the address in its
 * SAN, an admin client certificate with O=system:masters): see kubeadm's certs phase docs,
 * https://kubernetes.io/docs/setup/best-practices/certificates/.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  const proc = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (proc.exitCode !== 0) {
    throw new Error(`openssl ${args.join(" ")} failed (${proc.exitCode}): ${proc.stderr.toString().trim()}`);
  }
}

/** A fresh unencrypted P-256 key for `openssl req`. */
const NEW_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** A CA and certificates signed by it; `cn` names the CA so two runs' CAs are told apart in errors. */
export function createPki(opts: { cn?: string; serverSans?: string[] } = {}): Pki {
  const dir = mkdtempSync(join(tmpdir(), "kubehyve-kube-pki-"));
  const days = ["-days", "2"];
  openssl(
    [
      "req",
      "-x509",
      ...NEW_EC_KEY,
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      ...days,
      "-subj",
      `/CN=${opts.cn ?? "kubernetes"}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  const sign = (name: string, subject: string, ext: string) => {
    openssl(
      ["req", "-new", ...NEW_EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject],
      dir,
    );
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(
      [
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        `${name}.crt`,
        ...days,
        "-extfile",
        `${name}.ext`,
      ],
      dir,
    );
  };
  const sans = opts.serverSans ?? ["IP:127.0.0.1", "DNS:localhost"];
  sign(
    "apiserver",
    "/CN=kube-apiserver",
    `subjectAltName=${sans.join(",")}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n`,
  );
  sign(
    "admin",
    "/O=system:masters/CN=kubernetes-admin",
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
  );
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return {
    dir,
    caCert: read("ca.crt"),
    serverCert: read("apiserver.crt"),
    serverKey: read("apiserver.key"),
    clientCert: read("admin.crt"),
    clientKey: read("admin.key"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
