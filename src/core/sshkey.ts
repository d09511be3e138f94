/**
 * The cluster's SSH key pair, made in process: an ed25519 key written in OpenSSH's own formats, so
 * that a machine without ssh-keygen (a minimal Debian, a fresh FreeBSD jail) can still plan and
 * render. The formats follow OpenSSH's PROTOCOL.key (the "openssh-key-v1" private key container)
 * and RFC 8709 (the ssh-ed25519 public key blob), as sshkey.c writes them for an unencrypted key.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";

export interface SshKeyPair {
  /** `-----BEGIN OPENSSH PRIVATE KEY-----` … : what ssh's `-i` reads. */
  privateKey: string;
  /** `ssh-ed25519 AAAA… comment`: one authorized_keys line. */
  publicKey: string;
}

/** SSH's `string`: a uint32 length, then the bytes (RFC 4251 §5). */
function sshString(data: Uint8Array | string): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** The raw 32-byte seed and public key of a fresh ed25519 key, from its JWK form. */
function rawEd25519(): { seed: Buffer; pub: Buffer } {
  const { privateKey } = generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" });
  if (!jwk.d || !jwk.x) throw new Error("ed25519 key export gave no raw key material");
  return { seed: Buffer.from(jwk.d, "base64url"), pub: Buffer.from(jwk.x, "base64url") };
}

/** A new ed25519 key pair in OpenSSH's formats; `comment` ends the public line, as `ssh-keygen -C` does. */
export function generateEd25519KeyPair(comment: string): SshKeyPair {
  if (/[\r\n\0]/.test(comment)) throw new Error("an SSH key comment is one line");
  const { seed, pub } = rawEd25519();
  const publicBlob = Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);

  // The private section: two equal check integers (a wrong passphrase shows as a mismatch), then
  // the key (OpenSSH keeps ed25519's secret as seed ‖ public key), the comment, and padding 1, 2, 3…
  // up to the cipher's block size, which is 8 for "none".
  const check = randomBytes(4).readUInt32BE();
  let section = Buffer.concat([
    uint32(check),
    uint32(check),
    sshString("ssh-ed25519"),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  const pad = (8 - (section.length % 8)) % 8;
  section = Buffer.concat([section, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);

  const container = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"), // cipher
    sshString("none"), // kdf
    sshString(""), // kdf options
    uint32(1), // one key
    sshString(publicBlob),
    sshString(section),
  ]);
  // sshkey.c wraps the base64 body at 70 columns.
  const body = container
    .toString("base64")
    .match(/.{1,70}/g)!
    .join("\n");
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${body}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${publicBlob.toString("base64")}${comment ? ` ${comment}` : ""}`,
  };
}
