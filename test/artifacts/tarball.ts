/**
 * Tarballs built entry by entry for tests, hostile ones included: node-tar's Header encodes each
 * 512-byte ustar header (POSIX.1-1988 layout), so a test can write what no well-behaved tar would
 * (an absolute path, `..`, a device file, a link out of the tree).
 */
import { Header, Pax } from "tar";

export interface TarEntry {
  path: string;
  type?: "File" | "Directory" | "SymbolicLink" | "Link" | "CharacterDevice" | "BlockDevice" | "FIFO";
  mode?: number;
  content?: string | Uint8Array;
  linkpath?: string;
}

const BLOCK = 512;

export function buildTarball(entries: readonly TarEntry[], gzip = true): Uint8Array<ArrayBuffer> {
  const blocks: Uint8Array[] = [];
  for (const e of entries) {
    const type = e.type ?? (e.path.endsWith("/") ? "Directory" : "File");
    const body =
      typeof e.content === "string" ? new TextEncoder().encode(e.content) : (e.content ?? new Uint8Array());
    const header = new Header({
      path: e.path,
      mode: e.mode ?? (type === "Directory" ? 0o755 : 0o644),
      uid: 0,
      gid: 0,
      size: type === "File" ? body.byteLength : 0,
      mtime: new Date(0),
      type,
      linkpath: e.linkpath,
      uname: "root",
      gname: "root",
    });
    const block = Buffer.alloc(BLOCK);
    // A path or link target longer than ustar holds goes before the header in a pax extended
    // header (POSIX.1-2001), as GitHub's archives write them.
    if (header.encode(block, 0)) blocks.push(new Pax({ path: e.path, linkpath: e.linkpath }).encode());
    blocks.push(block);
    if (type === "File" && body.byteLength > 0) {
      const padded = new Uint8Array(Math.ceil(body.byteLength / BLOCK) * BLOCK);
      padded.set(body);
      blocks.push(padded);
    }
  }
  blocks.push(new Uint8Array(BLOCK * 2));
  const tar = Buffer.concat(blocks);
  return gzip ? Bun.gzipSync(tar) : new Uint8Array(tar);
}
