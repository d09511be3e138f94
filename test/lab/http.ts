/**
 * A real HTTP file server on 127.0.0.1 for download tests (Bun.serve). It serves a fixed map of
 * URL paths to bodies and logs every request, so a test can assert that a second run downloads
 * nothing. Unknown paths get 404, as a mirror would answer.
 */
import type { BunFile } from "bun";

export type Served =
  | string
  | Uint8Array
  | BunFile
  /** Full control: a status code that is not 200, a truncated body, a slow stream. */
  | ((req: Request) => Response | Promise<Response>);

export interface LoggedRequest {
  method: string;
  path: string;
}

export interface FileServer {
  /** `http://127.0.0.1:PORT`, without a trailing slash. */
  url: string;
  port: number;
  /** Every request in arrival order. */
  requests: LoggedRequest[];
  /** The requests for one path (GET and HEAD). */
  hits(path: string): number;
  /** Replaces or adds what a path serves. */
  set(path: string, body: Served): void;
  stop(): Promise<void>;
}

export interface TlsMaterial {
  cert: string;
  key: string;
}

export function serveFiles(files: Record<string, Served>, opts: { tls?: TlsMaterial } = {}): FileServer {
  const table = new Map<string, Served>(Object.entries(files));
  const requests: LoggedRequest[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: opts.tls,
    async fetch(req) {
      const path = decodeURIComponent(new URL(req.url).pathname);
      requests.push({ method: req.method, path });
      const body = table.get(path);
      if (body === undefined) return new Response("not found\n", { status: 404 });
      if (typeof body === "function") return body(req);
      return new Response(body, { headers: { "content-type": "application/octet-stream" } });
    },
  });
  const scheme = opts.tls ? "https" : "http";
  const port = server.port ?? 0;
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    requests,
    hits: (path) => requests.filter((r) => r.path === path).length,
    set: (path, body) => {
      table.set(path, body);
    },
    stop: async () => {
      await server.stop(true);
    },
  };
}
