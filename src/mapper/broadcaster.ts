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
import type { Policy } from '../policy/index.ts';
import type { NodeChange, PeerPatch, TailnetNode } from '../state/model.ts';
import type { Tailnet } from '../state/tailnet.ts';
import type { DNSConfig, PeerChange } from '../tailcfg/index.ts';
import type { Delta, MapBuilder, PeerEntry, ViewerState } from './builder.ts';
import { type Compression, frame } from './frame.ts';
import { peerChange } from './node-view.ts';
import { PeerSet } from './peer-set.ts';
import type { PolicyImpact } from './policy-view.ts';
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

/**
 * The widest batch window. A change reaches peers within window + fan-out ≈ 3× the fan-out's cost, so
 * while one fan-out costs under ~0.6 s (churn at 10 000 nodes costs about 0.5 s) this cap never
 * binds and changes arrive within 2 s. Only fan-outs heavier than that (a join storm into thousands
 * of sessions) reach it; a lower cap would then let fan-out take most of the server and starve the
 * registrations it is reporting (a 10 000-node storm with a 1 s cap slowed to 4 joins/s).
 */
const MAX_BATCH_DELAY_MS = 5_000;

/** Changes waiting for the next flush, coalesced per node. */
class PendingChanges {
  /** Nodes peers need whole (added or updated). */
  readonly whole = new Set<number>();
  /** Nodes whose own view changed. */
  readonly self = new Set<number>();
  readonly patches = new Map<number, PeerPatch>();
  readonly removed = new Set<number>();
  /** How far the batch can change who sees whom (docs in policy-view.ts). */
  impact: PolicyImpact = 'none';
  /** The DNS settings changed: every session gets the builder's current DNSConfig. */
  dns = false;

  get empty(): boolean {
    return (
      this.whole.size === 0 &&
      this.patches.size === 0 &&
      this.removed.size === 0 &&
      this.self.size === 0 &&
      this.impact === 'none' &&
      !this.dns
    );
  }

  raise(impact: PolicyImpact): void {
    if (impact === 'structural' || (impact === 'incremental' && this.impact === 'none')) this.impact = impact;
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

interface PeerParts {
  changed: PeerEntry[];
  removed: number[];
  patches: PeerChange[];
}

/** One flush: the coalesced changes and the frames already encoded for identical deltas. */
interface Batch {
  pending: PendingChanges;
  whole: TailnetNode[];
  patches: Map<number, PeerChange>;
  controlTime: Date;
  shared: Map<string, Buffer | Promise<Buffer> | null>;
}

/** Sessions whose deltas would be byte-identical share one encoded, compressed frame. */
function shareKey(session: MapSession, delta: Delta, builder: MapBuilder): string {
  const peers = delta.changed.map((p) => `${p.node.id}:${p.routes.join(',')}`).join(';');
  const ssh = delta.sshPolicy === null ? 'none' : builder.jsonText(delta.sshPolicy);
  const policy = `${builder.jsonText(delta.packetFilter)}|${ssh}`;
  const dns = builder.jsonText(delta.dnsConfig);
  return `${session.compression}|${peers}|${delta.patches.map((p) => p.NodeID)}|${delta.removed}|${policy}|${dns}`;
}

export class MapBroadcaster {
  readonly #tailnet: Tailnet;
  readonly #builder: MapBuilder;
  readonly #options: BroadcasterOptions;
  readonly #sessions = new Map<number, Set<MapSession>>();
  /** What each session was last told, to send only what changed for it. */
  readonly #states = new WeakMap<MapSession, ViewerState>();
  #pending = new PendingChanges();
  #timer: NodeJS.Timeout | undefined;
  /** The current batch window: the configured delay, widened while deliveries are expensive. */
  #delayMs: number;
  /** When the last fan-out's writes were done (performance.now()); none is quiet while one runs. */
  #lastFanOutEnd = 0;
  #fanOutRunning = false;
  readonly #unsubscribe: () => void;

  constructor(tailnet: Tailnet, builder: MapBuilder, options: BroadcasterOptions) {
    this.#tailnet = tailnet;
    this.#builder = builder;
    this.#options = options;
    this.#delayMs = options.batchDelayMs;
    this.#unsubscribe = tailnet.subscribe((change) => this.#onChange(change));
  }

  get sessionCount(): number {
    let count = 0;
    for (const sessions of this.#sessions.values()) count += sessions.size;
    return count;
  }

  /** A full map for a one-shot (non-streaming) map request. */
  fullMapFrame(node: TailnetNode, compression: Compression): Buffer | Promise<Buffer> {
    return this.#builder.fullMapFrame(node, compression).frame;
  }

  /** Starts a streaming session: the full map goes first, deltas follow. */
  openSession(node: TailnetNode, sink: FrameSink, compression: Compression): MapSession {
    // Built first: if it throws, no session (and no keep-alive timer) exists yet.
    const first = this.#builder.fullMapFrame(node, compression);
    const session = new MapSession(node, sink, {
      compression,
      keepAliveMs: this.#options.keepAliveMs,
      keepAliveJitterMs: this.#options.keepAliveJitterMs,
      maxQueuedBytes: this.#options.maxQueuedBytes,
      fullMap: () => this.#resyncFrame(session),
      onClose: (closed) => this.#forget(closed),
    });
    this.#states.set(session, first.state);
    session.send(first.frame);
    const sessions = this.#sessions.get(node.id) ?? new Set<MapSession>();
    this.#sessions.set(node.id, sessions);
    sessions.add(session);
    return session;
  }

  /** A new policy is in force: every session gets what changed for it, in the next batch. */
  policyChanged(policy: Policy): void {
    this.#builder.policy.setPolicy(policy);
    this.#pending.raise('structural');
    this.#schedule();
  }

  /**
   * New DNS settings for the whole tailnet: every session gets them in the next batch (the same for
   * all, so sessions with nothing else to hear share one frame), and later full maps carry them.
   */
  dnsChanged(dnsConfig: DNSConfig): void {
    this.#builder.setDnsConfig(dnsConfig);
    this.#pending.dns = true;
    this.#schedule();
  }

  /**
   * A full map for a client that fell behind. A full map cannot say "you have no peers any more" (an
   * empty Peers list means "unchanged"), so in that one case the session ends and the client's
   * reconnect starts from a clean slate.
   */
  #resyncFrame(session: MapSession): Buffer | Promise<Buffer> | undefined {
    const node = this.#tailnet.node(session.node.id);
    if (node === undefined) return undefined;
    const full = this.#builder.fullMapFrame(node, session.compression);
    if (full.state.peers.size === 0) return undefined;
    this.#states.set(session, full.state);
    return full.frame;
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
    this.#pending.raise(this.#builder.policy.noteChange(change));
    this.#pending.record(change);
    this.#schedule();
  }

  /**
   * The window runs from the end of the last fan-out, not from the first change: time spent quiet since
   * then already spaces the fan-outs out, so the first change after a lull (after a join storm, say)
   * waits only the configured delay instead of the storm's wide window.
   */
  #schedule(): void {
    if (this.#timer !== undefined) return;
    const quiet = this.#fanOutRunning ? 0 : performance.now() - this.#lastFanOutEnd;
    const delay = Math.max(this.#options.batchDelayMs, this.#delayMs - quiet);
    this.#timer = setTimeout(() => this.flush(), delay);
    this.#timer.unref();
  }

  /** Sends everything pending now (normally the batch timer does this). */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    this.#pending = new PendingChanges();
    if (pending.empty) return;
    const cpu = process.cpuUsage();
    this.#fanOutRunning = true;
    try {
      this.#deliver(pending);
    } catch (err) {
      this.#options.log.error({ err }, 'could not deliver map updates');
    }
    // The delivery only queues the writes: HTTP/2 sends them from a native immediate, through Noise to
    // the sockets, and that costs several times the delivery itself (measured: 4–5× at 1 000 sessions).
    // An immediate queued now runs after them, so the window adapts to the whole cost of the fan-out.
    // The cost is this process's CPU time, not wall time: on a busy machine (clients on the same
    // cores, as in the scale benchmark) wall time counts other processes' work and would widen the
    // window for no saving here.
    setImmediate(() => {
      const used = process.cpuUsage(cpu);
      this.#adapt((used.user + used.system) / 1000);
    });
  }

  /**
   * Keeps fan-out from eating the server: a fan-out that cost d ms of CPU, writes included, makes the next
   * window at least 2·d long (up to MAX_BATCH_DELAY_MS), so it takes at most about a third of the
   * server's time. Under a join storm each client then gets fewer, larger deltas instead of one per
   * 100 ms, and the per-message cost (encryption, syscalls, the client's decoding) stays bounded.
   * Quiet and small tailnets keep the configured window, which is always the least.
   */
  #adapt(deliveryMs: number): void {
    this.#fanOutRunning = false;
    this.#lastFanOutEnd = performance.now();
    this.#delayMs = Math.max(this.#options.batchDelayMs, Math.min(MAX_BATCH_DELAY_MS, deliveryMs * 2));
  }

  #deliver(pending: PendingChanges): void {
    const tailnet = this.#tailnet;
    const whole = [...pending.whole]
      .map((id) => tailnet.node(id))
      .filter((n): n is TailnetNode => n !== undefined)
      .sort((a, b) => a.id - b.id);
    const patches = new Map<number, PeerChange>();
    for (const [id, patch] of [...pending.patches].sort(([a], [b]) => a - b))
      if (tailnet.node(id) !== undefined) patches.set(id, peerChange(id, patch));
    const batch: Batch = { pending, whole, patches, controlTime: tailnet.now(), shared: new Map() };
    for (const [nodeId, sessions] of this.#sessions) {
      const viewer = tailnet.node(nodeId);
      if (viewer === undefined) continue;
      for (const session of sessions) this.#deliverTo(session, viewer, batch);
    }
  }

  /** The part of the batch that concerns one session, against what it was told before. */
  #deliverTo(session: MapSession, viewer: TailnetNode, batch: Batch): void {
    const state = this.#states.get(session);
    if (state === undefined) return;
    const { pending } = batch;
    const peers =
      pending.impact === 'structural'
        ? this.#rediff(viewer, state, batch)
        : this.#incremental(viewer, state, batch);
    const delta: Delta = { ...peers, controlTime: batch.controlTime };
    if (pending.self.has(viewer.id)) delta.self = viewer;
    if (pending.impact !== 'none') this.#policyParts(viewer, state, delta);
    if (pending.dns) delta.dnsConfig = this.#builder.settings.dnsConfig;
    const shareable = delta.self === undefined;
    const key = shareable ? shareKey(session, delta, this.#builder) : '';
    let bytes = shareable ? batch.shared.get(key) : undefined;
    if (bytes === undefined) {
      const json = this.#builder.delta(delta);
      bytes = json === undefined ? null : frame(json, session.compression);
      if (shareable) batch.shared.set(key, bytes);
    }
    if (bytes !== null) session.send(bytes);
  }

  /**
   * Peer changes when visibility itself may have moved: the viewer's whole peer set, compared with what
   * it holds a word at a time. Only peers that appeared, changed in this batch, or carry routes that
   * now look different are looked at one by one.
   */
  #rediff(viewer: TailnetNode, state: ViewerState, batch: Batch): PeerParts {
    const builder = this.#builder;
    const before = state.peers;
    const visible = builder.visiblePeers(viewer);
    const now = new PeerSet(visible);
    const fresh = visible.minus(before.ids);
    for (const id of batch.pending.whole) if (visible.has(id)) fresh.add(id);
    // Routes can only differ for peers that carry some now, or were shown with some before.
    for (const id of new Set([...builder.routeCarriers(), ...before.routed()])) {
      const node = visible.has(id) ? this.#tailnet.node(id) : undefined;
      if (node === undefined) continue;
      const routes = builder.routes(viewer, node).join(',');
      now.set(id, routes);
      if (before.get(id) !== routes) fresh.add(id);
    }
    const changed: PeerEntry[] = [];
    for (const id of fresh) {
      const node = this.#tailnet.node(id);
      if (node !== undefined) changed.push(builder.entry(viewer, node));
    }
    const removed = [...before.ids.minus(visible)];
    state.peers = now;
    const patches = [...batch.patches.values()].filter((p) => visible.has(p.NodeID) && !fresh.has(p.NodeID));
    return { changed, removed, patches };
  }

  /** Peer changes when only the batch's own nodes can have moved. */
  #incremental(viewer: TailnetNode, state: ViewerState, batch: Batch): PeerParts {
    const changed: PeerEntry[] = [];
    const removed: number[] = [];
    for (const node of batch.whole) {
      if (this.#builder.canSee(viewer, node)) {
        const entry = this.#builder.entry(viewer, node);
        state.peers.set(node.id, entry.routes.join(','));
        changed.push(entry);
      } else if (state.peers.delete(node.id)) removed.push(node.id);
    }
    for (const id of batch.pending.removed) if (state.peers.delete(id)) removed.push(id);
    removed.sort((a, b) => a - b);
    const patches = [...batch.patches.values()].filter((p) => state.peers.has(p.NodeID));
    return { changed, removed, patches };
  }

  /** Filter, SSH policy and capabilities, sent only when they differ from what the session holds. */
  #policyParts(viewer: TailnetNode, state: ViewerState, delta: Delta): void {
    const now = this.#builder.viewerState(viewer, []);
    const nodePolicy = this.#builder.policy.compiled.forNode(viewer.id);
    if (now.filter !== state.filter) delta.packetFilter = nodePolicy.packetFilter;
    if (now.ssh !== state.ssh) delta.sshPolicy = nodePolicy.sshPolicy ?? null;
    if (now.caps !== state.caps) delta.self = viewer;
    state.filter = now.filter;
    state.ssh = now.ssh;
    state.caps = now.caps;
  }

  /** Ends every session (server shutdown). */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe();
    for (const sessions of [...this.#sessions.values()]) for (const session of [...sessions]) session.close();
  }
}
