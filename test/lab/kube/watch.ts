/**
 * Watches as kube-apiserver's watch cache serves them (k8s.io/apiserver pkg/storage/cacher:
 * cacher.go Watch, cache_watcher.go, watch_cache_history.go GetIntervalLocked; handlers/watch.go):
 *   - every write gets the next resourceVersion of one global counter (etcd's revision), and the
 *     server keeps the last `capacity` events;
 *   - `resourceVersion` unset or "0" starts with an ADDED event per matching object, then changes;
 *     a resourceVersion N replays the kept events after N, then changes; an N older than the kept
 *     window is an ERROR event with a 410 Expired Status, "too old resource version: N (M)"
 *     (errors.NewResourceExpired in watch_cache_history.go), sent as the first and only event of
 *     a 200 stream, as newErrWatcher does;
 *   - an object that stops matching the selectors is DELETED for that watcher, one that starts
 *     matching is ADDED (cache_watcher.go convertToWatchEvent);
 *   - with allowWatchBookmarks, a BOOKMARK carrying only kind, apiVersion and
 *     metadata.resourceVersion comes every bookmark interval (defaultBookmarkFrequency, a minute)
 *     and shortly before the timeout (nextBookmarkTime: 2 s before the deadline);
 *   - `timeoutSeconds` ends the stream cleanly.
 * Events are newline-delimited JSON `{"type":..,"object":..}` on a chunked response
 * (watch-stream-added-bookmark.client-go-golden.http).
 */
import { clone, type Obj } from "./ssa.ts";

export type EventType = "ADDED" | "MODIFIED" | "DELETED";

export interface StoredEvent {
  rv: number;
  type: EventType;
  /** group/resource, to route the event. */
  resourceKey: string;
  namespace?: string;
  object: Obj;
  previous?: Obj;
}

export interface WatchFilter {
  resourceKey: string;
  namespace?: string;
  matches(obj: Obj): boolean;
  /** The object as served at the watched version (kind and apiVersion set). */
  present(obj: Obj): Obj;
}

interface Watcher {
  filter: WatchFilter;
  send(type: string, object: Obj): void;
  close(): void;
}

export class WatchHub {
  private events: StoredEvent[] = [];
  private watchers = new Set<Watcher>();
  /** The resourceVersion before the oldest kept event: watching from below it is too old. */
  private floor = 0;

  constructor(
    private capacity: number,
    private current: () => number,
  ) {}

  record(event: StoredEvent): void {
    this.events.push(event);
    if (this.events.length > this.capacity) this.floor = this.events.shift()!.rv;
    for (const w of this.watchers) deliver(w, event);
  }

  /** Forgets every event up to now, as an etcd compaction does. */
  compact(): void {
    this.floor = this.current();
    this.events = [];
  }

  /** Events after `rv`, or undefined when they are no longer kept. */
  since(rv: number): StoredEvent[] | undefined {
    if (rv < this.floor) return undefined;
    return this.events.filter((e) => e.rv > rv);
  }

  oldest(): number {
    return this.floor;
  }

  /** The stored objects as they were at `rv` (for list resourceVersionMatch=Exact), by undoing later events. */
  snapshotAt(rv: number, now: Obj[], keyOf: (o: Obj) => string, resourceKey: string): Obj[] | undefined {
    const later = this.since(rv);
    if (!later) return undefined;
    const byKey = new Map(now.map((o) => [keyOf(o), o]));
    for (const e of [...later].reverse()) {
      if (e.resourceKey !== resourceKey) continue;
      const k = keyOf(e.object);
      if (e.type === "ADDED") byKey.delete(k);
      else if (e.previous) byKey.set(k, e.previous);
    }
    return [...byKey.values()];
  }

  open(opts: {
    filter: WatchFilter;
    resourceVersion?: string;
    initial: Obj[];
    allowBookmarks: boolean;
    bookmarkIntervalMs: number;
    timeoutMs: number;
    signal: AbortSignal;
    bookmarkObject: () => Obj;
  }): Response {
    const encoder = new TextEncoder();
    let controllerRef: ReadableStreamDefaultController<Uint8Array> | undefined;
    let closed = false;
    const timers: ReturnType<typeof setTimeout>[] = [];
    const hub = this;
    const watcher: Watcher = {
      filter: opts.filter,
      send(type, object) {
        if (closed) return;
        controllerRef?.enqueue(encoder.encode(`${JSON.stringify({ type, object })}\n`));
      },
      close() {
        if (closed) return;
        closed = true;
        for (const t of timers) clearTimeout(t);
        clearInterval(bookmarks);
        hub.watchers.delete(watcher);
        try {
          controllerRef?.close();
        } catch {
          // already cancelled by the client
        }
      },
    };
    let bookmarks: ReturnType<typeof setInterval> | undefined;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controllerRef = controller;
      },
      cancel() {
        watcher.close();
      },
    });
    const rvText = opts.resourceVersion ?? "";
    if (rvText !== "" && rvText !== "0") {
      const rv = Number(rvText);
      const events = Number.isFinite(rv) ? this.since(rv) : undefined;
      if (!events) {
        queueMicrotask(() => {
          watcher.send("ERROR", {
            kind: "Status",
            apiVersion: "v1",
            metadata: {},
            status: "Failure",
            message: `too old resource version: ${rvText} (${this.floor})`,
            reason: "Expired",
            code: 410,
          });
          watcher.close();
        });
        return streamResponse(stream);
      }
      queueMicrotask(() => {
        for (const e of events) deliver(watcher, e);
      });
    } else {
      queueMicrotask(() => {
        for (const o of opts.initial) watcher.send("ADDED", opts.filter.present(o));
      });
    }
    this.watchers.add(watcher);
    if (opts.allowBookmarks) {
      bookmarks = setInterval(() => watcher.send("BOOKMARK", opts.bookmarkObject()), opts.bookmarkIntervalMs);
      const before = opts.timeoutMs - 2000;
      if (before > 0) timers.push(setTimeout(() => watcher.send("BOOKMARK", opts.bookmarkObject()), before));
    }
    timers.push(setTimeout(() => watcher.close(), opts.timeoutMs));
    opts.signal.addEventListener("abort", () => watcher.close());
    return streamResponse(stream);
  }

  closeAll(): void {
    for (const w of [...this.watchers]) w.close();
  }
}

function streamResponse(stream: ReadableStream<Uint8Array>): Response {
  return new Response(stream, {
    status: 200,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-cache, private" },
  });
}

function deliver(w: Watcher, e: StoredEvent): void {
  const f = w.filter;
  if (e.resourceKey !== f.resourceKey) return;
  if (f.namespace !== undefined && e.namespace !== f.namespace) return;
  const now = e.type === "DELETED" ? false : f.matches(e.object);
  const before = e.previous ? f.matches(e.previous) : false;
  if (e.type === "ADDED" && now) w.send("ADDED", f.present(clone(e.object)));
  else if (e.type === "DELETED" && f.matches(e.object)) w.send("DELETED", f.present(clone(e.object)));
  else if (e.type === "MODIFIED") {
    if (now && before) w.send("MODIFIED", f.present(clone(e.object)));
    else if (now) w.send("ADDED", f.present(clone(e.object)));
    else if (before) w.send("DELETED", f.present(clone(e.object)));
  }
}
