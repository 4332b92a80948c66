/**
 * Fan-out of tailnet changes to every connected client.
 *
 * Changes are collected for a short window and coalesced per node (a node added then patched goes out
 * once, whole; several patches merge into one), then each connected node gets at most one message per
 * window. Recipients whose message would be byte-identical — in an allow-all tailnet, everyone not
 * involved in the change — share one encoded and compressed frame; only the Noise encryption is per
 * connection. That keeps a change that touches every node of a large tailnet at one JSON encoding and
 * one compression instead of one per node.
 */
import type { Logger } from '../observe/logger.ts';
import type { NodeChange, PeerPatch, TailnetNode } from '../state/model.ts';
import type { Tailnet } from '../state/tailnet.ts';
import type { PeerChange } from '../tailcfg/index.ts';
import type { MapBuilder } from './builder.ts';
import { type Compression, frame } from './frame.ts';
import { peerChange } from './node-view.ts';
import { type FrameSink, MapSession } from './session.ts';

export interface BroadcasterOptions {
  log: Logger;
  /** How long changes gather before they are sent. */
  batchDelayMs: number;
  keepAliveMs: number;
  keepAliveJitterMs: number;
  maxQueuedBytes: number;
}

export const DEFAULT_BROADCASTER_OPTIONS = {
  batchDelayMs: 100,
  // Tailscale's clients restart a silent long poll after 120 s; Headscale and testcontrol send a
  // keep-alive after 50 s plus jitter.
  keepAliveMs: 50_000,
  keepAliveJitterMs: 9_000,
  maxQueuedBytes: 4 * 1024 * 1024,
} as const;

/** Changes waiting for the next flush, coalesced per node. */
class PendingChanges {
  /** Nodes peers need whole (added or updated). */
  readonly whole = new Set<number>();
  /** Nodes whose own view changed. */
  readonly self = new Set<number>();
  readonly patches = new Map<number, PeerPatch>();
  readonly removed = new Set<number>();

  get empty(): boolean {
    return (
      this.whole.size === 0 && this.patches.size === 0 && this.removed.size === 0 && this.self.size === 0
    );
  }

  record(change: NodeChange): void {
    const id = change.node.id;
    switch (change.kind) {
      case 'added':
      case 'updated':
        this.whole.add(id);
        this.patches.delete(id);
        if (change.kind === 'updated' && change.self) this.self.add(id);
        break;
      case 'patched':
        if (!this.whole.has(id)) this.patches.set(id, { ...this.patches.get(id), ...change.patch });
        break;
      case 'removed':
        this.whole.delete(id);
        this.self.delete(id);
        this.patches.delete(id);
        this.removed.add(id);
        break;
    }
  }
}

export class MapBroadcaster {
  readonly #tailnet: Tailnet;
  readonly #builder: MapBuilder;
  readonly #options: BroadcasterOptions;
  readonly #sessions = new Map<number, Set<MapSession>>();
  #pending = new PendingChanges();
  #timer: NodeJS.Timeout | undefined;
  readonly #unsubscribe: () => void;

  constructor(tailnet: Tailnet, builder: MapBuilder, options: BroadcasterOptions) {
    this.#tailnet = tailnet;
    this.#builder = builder;
    this.#options = options;
    this.#unsubscribe = tailnet.subscribe((change) => this.#onChange(change));
  }

  get sessionCount(): number {
    let count = 0;
    for (const sessions of this.#sessions.values()) count += sessions.size;
    return count;
  }

  /** A full map for a one-shot (non-streaming) map request. */
  fullMapFrame(node: TailnetNode, compression: Compression): Buffer | Promise<Buffer> {
    return frame(this.#builder.fullMap(node), compression);
  }

  /** Starts a streaming session: the full map goes first, deltas follow. */
  openSession(node: TailnetNode, sink: FrameSink, compression: Compression): MapSession {
    // Built first: if it throws, no session (and no keep-alive timer) exists yet.
    const first = this.fullMapFrame(node, compression);
    const session = new MapSession(node, sink, {
      compression,
      keepAliveMs: this.#options.keepAliveMs,
      keepAliveJitterMs: this.#options.keepAliveJitterMs,
      maxQueuedBytes: this.#options.maxQueuedBytes,
      fullMap: () => this.#resyncFrame(session),
      onClose: (closed) => this.#forget(closed),
    });
    session.send(first);
    const sessions = this.#sessions.get(node.id) ?? new Set<MapSession>();
    this.#sessions.set(node.id, sessions);
    sessions.add(session);
    return session;
  }

  /**
   * A full map for a client that fell behind. A full map cannot say "you have no peers any more" (an
   * empty Peers list means "unchanged"), so in that one case the session ends and the client's
   * reconnect starts from a clean slate.
   */
  #resyncFrame(session: MapSession): Buffer | Promise<Buffer> | undefined {
    const node = this.#tailnet.node(session.node.id);
    if (node === undefined || this.#builder.peers(node).length === 0) return undefined;
    return this.fullMapFrame(node, session.compression);
  }

  #forget(session: MapSession): void {
    const sessions = this.#sessions.get(session.node.id);
    sessions?.delete(session);
    if (sessions?.size === 0) this.#sessions.delete(session.node.id);
  }

  #onChange(change: NodeChange): void {
    if (change.kind === 'removed') {
      this.#builder.forget(change.node.id);
      // A deleted node's own long poll ends at once; its next request finds no node.
      for (const session of [...(this.#sessions.get(change.node.id) ?? [])]) session.close();
    }
    this.#pending.record(change);
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), this.#options.batchDelayMs);
      this.#timer.unref();
    }
  }

  /** Sends everything pending now (normally the batch timer does this). */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    this.#pending = new PendingChanges();
    if (pending.empty) return;
    try {
      this.#deliver(pending);
    } catch (err) {
      this.#options.log.error({ err }, 'could not deliver map updates');
    }
  }

  #deliver(pending: PendingChanges): void {
    const tailnet = this.#tailnet;
    const whole = [...pending.whole]
      .map((id) => tailnet.node(id))
      .filter((n): n is TailnetNode => n !== undefined)
      .sort((a, b) => a.id - b.id);
    const patches: Array<[TailnetNode, PeerChange]> = [];
    for (const [id, patch] of pending.patches) {
      const node = tailnet.node(id);
      if (node !== undefined) patches.push([node, peerChange(id, patch)]);
    }
    patches.sort(([a], [b]) => a.id - b.id);
    const removed = [...pending.removed].sort((a, b) => a - b);
    const controlTime = tailnet.now();
    const shared = new Map<string, Buffer | Promise<Buffer> | null>();

    for (const [nodeId, sessions] of this.#sessions) {
      const viewer = tailnet.node(nodeId);
      if (viewer === undefined) continue;
      const changed = whole.filter((peer) => this.#builder.canSee(viewer, peer));
      const visiblePatches = patches.filter(([peer]) => this.#builder.canSee(viewer, peer)).map(([, p]) => p);
      const gone = removed.filter((id) => id !== nodeId);
      const self = pending.self.has(nodeId) ? viewer : undefined;
      const delta = { self, changed, removed: gone, patches: visiblePatches, controlTime };
      for (const session of sessions) {
        if (self !== undefined) {
          const json = this.#builder.delta(delta);
          if (json !== undefined) session.send(frame(json, session.compression));
          continue;
        }
        const key = `${session.compression}|${changed.map((n) => n.id)}|${visiblePatches.map((p) => p.NodeID)}|${gone}`;
        let bytes = shared.get(key);
        if (bytes === undefined) {
          const json = this.#builder.delta(delta);
          bytes = json === undefined ? null : frame(json, session.compression);
          shared.set(key, bytes);
        }
        if (bytes !== null) session.send(bytes);
      }
    }
  }

  /** Ends every session (server shutdown). */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe();
    for (const sessions of [...this.#sessions.values()]) for (const session of [...sessions]) session.close();
  }
}
