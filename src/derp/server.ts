/**
 * The DERP relay: handshake, admission, and routing packets between connected clients by node key
 * (tailscale `derp/derpserver`). The HTTP upgrade that leads here is in http.ts.
 *
 *   accept(stream) ── ServerKey ──▶ ClientInfo ◀── (mesh key? else admit(key)) ── ServerInfo ──▶ relay
 *
 * Routing a SendPacket from C to key D:
 *   1. D has an active local connection          → queue RecvPacket(C, data) to it
 *   2. D has no local connection, a mesh peer
 *      of this region reported D                 → ForwardPacket(C, D, data) to that peer
 *   3. otherwise drop; if the packet is disco and D is unknown, tell C "peer not here" (rate-limited)
 *
 * Several connections may hold one key (a reconnect racing the old TCP connection, or a cloned node):
 * all stay open, the newest is active, and whichever last sent a frame becomes active again. Closing the
 * older ones would make cloned clients knock each other off in a loop.
 *
 * When a key's last connection goes, every client that received packets from it gets PeerGone, so it
 * stops routing replies through this server; mesh watchers get PeerPresent/PeerGone for every change.
 */

import { timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { DerpCounters } from '../observe/metrics.ts';
import type { NodePublic, PrivateKey } from '../types/keys.ts';
import { NodePublic as NodeKey } from '../types/keys.ts';
import {
  ClientConn,
  type ConnIdentity,
  type ConnTimings,
  DEFAULT_CONN_TIMINGS,
  MESH_WRITE_TIMEOUT_MS,
} from './conn.ts';
import { DerpError } from './errors.ts';
import { openClientInfo, serverInfoFrame } from './handshake.ts';
import { FrameReader } from './reader.ts';
import {
  FRAME_HEADER_LENGTH,
  FrameType,
  ip16,
  KEY_LENGTH,
  looksLikeDisco,
  MAX_CLIENT_INFO_LENGTH,
  MAX_PACKET_SIZE,
  MAX_PING_LENGTH,
  MIN_PING_LENGTH,
  PeerGoneReason,
  PeerPresentFlag,
  peerGoneFrame,
  peerPresentFrame,
  pongFrame,
  serverKeyFrame,
} from './wire.ts';

/** Where a packet for a key that is connected to another server of this region goes. */
export interface MeshForwarder {
  readonly name: string;
  /** Hands a packet to the peer; false when it had to be dropped (the peer is not keeping up). */
  forward(srcRaw: Buffer, dstRaw: Buffer, data: Buffer): boolean;
}

/** Decides whether a (non-mesh) client may connect; any error counts as a refusal. */
export type AdmitClient = (key: NodePublic, remoteAddress: string) => boolean | Promise<boolean>;

export interface DerpServerOptions {
  privateKey: PrivateKey<'nodekey'>;
  /** 32 bytes shared by the servers of one region; clients presenting it may mesh. */
  meshKey?: Buffer;
  admit?: AdmitClient;
  /** Time for the client to send ClientInfo after ServerKey (derper: 10 s). */
  handshakeTimeoutMs?: number;
  timings?: Partial<ConnTimings>;
  log?: DerpLog;
}

export interface DerpLog {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface AcceptOptions {
  remoteAddress: string;
  remotePort: number;
  /** Bytes already read past the HTTP request (Node's upgrade `head`). */
  head?: Buffer;
}

/** Connection gauges and packet counters, as the metrics endpoint reports them. */
export type DerpStats = DerpCounters;

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** PeerGone(NotHere) replies: one per second per connection, burst 3 (derper's limiter). */
const NOT_HERE_PER_SECOND = 1;
const NOT_HERE_BURST = 3;
/** Frames a client may send while its admission is being decided. */
const MAX_HELD_BYTES = MAX_PACKET_SIZE * 4;

/**
 * Keys a sender delivered packets to, so they hear when it leaves. Keys that left meanwhile are swept out
 * whenever the set doubles, so a long-lived sender talking to churning peers does not grow it forever.
 */
class Receivers {
  readonly ids = new Set<string>();
  #sweepAt = MIN_RECEIVER_SWEEP;

  add(id: string, isConnected: (id: string) => boolean): void {
    this.ids.add(id);
    if (this.ids.size < this.#sweepAt) return;
    for (const receiver of this.ids) if (!isConnected(receiver)) this.ids.delete(receiver);
    this.#sweepAt = Math.max(MIN_RECEIVER_SWEEP, this.ids.size * 2);
  }

  addAll(other: Receivers | undefined): void {
    for (const id of other?.ids ?? []) this.ids.add(id);
  }
}

const MIN_RECEIVER_SWEEP = 1024;

/** All connections of one key; `active` receives its traffic. */
interface ClientSet {
  conns: ClientConn[];
  active: ClientConn | undefined;
  /** Keys this key sent packets to, told when it leaves. */
  sentTo: Receivers;
}

/** A connection's budget of PeerGone(NotHere) replies. */
interface NotHereBudget {
  tokens: number;
  at: number;
}

function payloadLimit(type: number): number | undefined {
  switch (type) {
    case FrameType.SendPacket:
      return KEY_LENGTH + MAX_PACKET_SIZE;
    case FrameType.ForwardPacket:
      return 2 * KEY_LENGTH + MAX_PACKET_SIZE;
    case FrameType.NotePreferred:
      return 1;
    case FrameType.WatchConns:
      return 0;
    case FrameType.ClosePeer:
      return KEY_LENGTH;
    case FrameType.Ping:
    case FrameType.Pong:
      return MAX_PING_LENGTH;
    default:
      return undefined; // unknown or server-to-client types: skipped unread
  }
}

const handshakeLimit = (type: number) => (type === FrameType.ClientInfo ? MAX_CLIENT_INFO_LENGTH : 0);

export class DerpServer {
  readonly publicKey: NodePublic;
  readonly #options: DerpServerOptions;
  readonly #timings: ConnTimings;
  readonly #serverKeyFrame: Buffer;
  readonly #clients = new Map<string, ClientSet>();
  /** Every admitted connection. */
  readonly #states = new Map<ClientConn, NotHereBudget>();
  readonly #watchers = new Set<ClientConn>();
  readonly #forwarders = new Map<string, MeshForwarder[]>();
  /**
   * Keys with no connection here (forwarded senders, or local ones still connected to another server of the
   * region) → local keys they sent to, told when the sender leaves the region.
   */
  readonly #forwardedSentTo = new Map<string, Receivers>();
  readonly #isConnected = (id: string) => this.#clients.has(id);
  readonly #handshaking = new Set<Duplex>();
  #closed = false;
  readonly #stats: Omit<DerpStats, 'connections' | 'keys'> = {
    accepted: 0,
    refused: 0,
    packetsRelayed: 0,
    bytesRelayed: 0,
    packetsForwarded: 0,
    dropUnknownDestination: 0,
    dropDuplicateClient: 0,
    dropQueueFull: 0,
    closedForError: 0,
  };

  constructor(options: DerpServerOptions) {
    this.#options = options;
    this.#timings = { ...DEFAULT_CONN_TIMINGS, ...options.timings };
    this.publicKey = options.privateKey.publicKey;
    this.#serverKeyFrame = serverKeyFrame(NodeKey.toRaw(this.publicKey));
  }

  get stats(): DerpStats {
    return { ...this.#stats, connections: this.#states.size, keys: this.#clients.size };
  }

  /** True if `key` has a connection here (the admission tests and the mesh use it). */
  isConnected(key: NodePublic): boolean {
    return this.#clients.has(NodeKey.toRaw(key).toString('latin1'));
  }

  /** Runs the DERP protocol on an upgraded stream (TCP, TLS or WebSocket). */
  accept(stream: Duplex, options: AcceptOptions): void {
    if (this.#closed) {
      stream.destroy();
      return;
    }
    this.#handshaking.add(stream);
    const timer = setTimeout(
      () => fail(new DerpError('timeout', 'no ClientInfo within the handshake timeout')),
      this.#options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    );
    // Only bounds the handshake: the stream itself keeps the process alive, the deadline must not.
    timer.unref();
    let conn: ClientConn | undefined;
    const fail = (err: Error) => {
      clearTimeout(timer);
      this.#handshaking.delete(stream);
      if (conn !== undefined) {
        conn.close(err.message, true);
        return;
      }
      this.#options.log?.debug(
        { remote: options.remoteAddress, code: (err as DerpError).code, err: err.message },
        'DERP handshake failed',
      );
      stream.destroy();
    };
    const reader = new FrameReader(
      (type) => (conn === undefined ? handshakeLimit(type) : payloadLimit(type)),
      (type, frame) => {
        if (conn !== undefined) {
          this.#onFrame(conn, type, frame);
          return;
        }
        if (type !== FrameType.ClientInfo) {
          throw new DerpError('bad-type', `expected ClientInfo first, got frame type 0x${type.toString(16)}`);
        }
        reader.pause();
        stream.pause();
        this.#admit(stream, frame, options).then(
          (admitted) => {
            clearTimeout(timer);
            this.#handshaking.delete(stream);
            if (admitted === undefined || stream.destroyed) {
              admitted?.close('closed during admission');
              stream.destroy();
              return;
            }
            conn = admitted;
            try {
              reader.resume();
            } catch (err) {
              fail(err as Error);
              return;
            }
            stream.resume();
          },
          (err: Error) => fail(err),
        );
      },
    );
    const onData = (chunk: Buffer) => {
      try {
        reader.push(chunk);
        if (reader.heldBytes > MAX_HELD_BYTES) {
          throw new DerpError('bad-type', 'too much data before the handshake completed');
        }
      } catch (err) {
        fail(err as Error);
      }
    };
    stream.on('data', onData);
    stream.on('error', () => stream.destroy());
    // The HTTP server's sockets allow half-open connections: a client's FIN only ends the readable side,
    // and without this the connection (and the client's registration) would outlive the client.
    stream.on('end', () => stream.destroy());
    stream.on('close', () => {
      clearTimeout(timer);
      this.#handshaking.delete(stream);
      conn?.close('closed by the client');
    });
    stream.write(this.#serverKeyFrame);
    // A client may send ClientInfo together with its HTTP request (always, with fast start).
    if (options.head !== undefined && options.head.length > 0) onData(options.head);
  }

  /** Opens ClientInfo, checks the mesh key or admission, answers ServerInfo and registers the client. */
  async #admit(stream: Duplex, frame: Buffer, options: AcceptOptions): Promise<ClientConn | undefined> {
    const { key, rawKey, info } = openClientInfo(
      frame.subarray(FRAME_HEADER_LENGTH),
      this.#options.privateKey,
    );
    const mesh = this.#isMeshKey(info.meshKey);
    if (info.meshKey !== undefined && !mesh) {
      this.#stats.refused += 1;
      throw new DerpError('refused', `${key} presented a wrong mesh key`);
    }
    if (!mesh && this.#options.admit !== undefined) {
      let allowed = false;
      try {
        allowed = await this.#options.admit(key, options.remoteAddress);
      } catch {
        allowed = false;
      }
      if (!allowed) {
        this.#stats.refused += 1;
        this.#options.log?.info({ node_key: key, remote: options.remoteAddress }, 'DERP client refused');
        return undefined;
      }
    }
    if (this.#closed || stream.destroyed) return undefined;
    stream.write(serverInfoFrame(rawKey, this.#options.privateKey));
    const identity: ConnIdentity = {
      key,
      rawKey,
      id: rawKey.toString('latin1'),
      remoteAddress: options.remoteAddress,
      remotePort: options.remotePort,
      mesh,
      prober: info.isProber,
    };
    const timings = mesh ? { ...this.#timings, writeTimeoutMs: MESH_WRITE_TIMEOUT_MS } : this.#timings;
    const conn = new ClientConn(stream, identity, timings, {
      onClose: (closed, reason, failed) => {
        if (failed) this.#stats.closedForError += 1;
        this.#unregister(closed, reason);
      },
      onQueueDrop: () => {
        this.#stats.dropQueueFull += 1;
      },
    });
    this.#register(conn);
    return conn;
  }

  #isMeshKey(presented: string | undefined): boolean {
    const ours = this.#options.meshKey;
    if (presented === undefined || ours === undefined || !/^[0-9a-fA-F]{64}$/.test(presented)) return false;
    return timingSafeEqual(Buffer.from(presented, 'hex'), ours);
  }

  #register(conn: ClientConn): void {
    const id = conn.identity.id;
    this.#stats.accepted += 1;
    this.#states.set(conn, { tokens: NOT_HERE_BURST, at: Date.now() });
    const set = this.#clients.get(id);
    if (set === undefined) {
      this.#clients.set(id, { conns: [conn], active: conn, sentTo: new Receivers() });
    } else {
      set.conns.push(conn);
      set.active = conn;
      this.#options.log?.debug(
        { node_key: conn.identity.key, count: set.conns.length },
        'duplicate DERP connection',
      );
    }
    const present = this.#presentFrame(conn);
    for (const watcher of this.#watchers) watcher.sendControl(present);
  }

  #presentFrame(conn: ClientConn): Buffer {
    const { rawKey, remoteAddress, remotePort, mesh, prober } = conn.identity;
    // As derper: "regular" only when no other flag applies.
    let flags = 0;
    if (mesh) flags |= PeerPresentFlag.MeshPeer;
    if (prober) flags |= PeerPresentFlag.Prober;
    if (flags === 0) flags = PeerPresentFlag.Regular;
    return peerPresentFrame(rawKey, ip16(remoteAddress), remotePort, flags);
  }

  #unregister(conn: ClientConn, reason: string): void {
    if (!this.#states.delete(conn)) return;
    this.#watchers.delete(conn);
    const id = conn.identity.id;
    const set = this.#clients.get(id);
    this.#options.log?.debug({ node_key: conn.identity.key, reason }, 'DERP client disconnected');
    if (set === undefined) return;
    set.conns = set.conns.filter((c) => c !== conn);
    if (set.conns.length > 0) {
      if (set.active === conn) set.active = this.#mostRecentSender(set.conns);
      return;
    }
    this.#clients.delete(id);
    const gone = peerGoneFrame(conn.identity.rawKey, PeerGoneReason.Disconnected);
    for (const watcher of this.#watchers) watcher.sendControl(gone);
    // Everyone who received from this key, here or through the mesh, is told once it has left the region.
    const receivers = set.sentTo;
    receivers.addAll(this.#forwardedSentTo.get(id));
    if (this.#forwarders.has(id)) {
      // Still on another server of the region: told when its last forwarder goes.
      if (receivers.ids.size > 0) this.#forwardedSentTo.set(id, receivers);
      return;
    }
    this.#forwardedSentTo.delete(id);
    this.#tellReceiversGone(conn.identity.rawKey, receivers);
  }

  /** The remaining connection that sent last; if none has sent yet, the newest (it has the freshest TCP). */
  #mostRecentSender(conns: ClientConn[]): ClientConn | undefined {
    let best: ClientConn | undefined;
    for (const c of conns)
      if (c.lastFrameAt > 0 && (best === undefined || c.lastFrameAt > best.lastFrameAt)) best = c;
    return best ?? conns.at(-1);
  }

  #tellReceiversGone(rawKey: Buffer, receivers: Receivers): void {
    if (receivers.ids.size === 0) return;
    const gone = peerGoneFrame(rawKey, PeerGoneReason.Disconnected);
    for (const receiver of receivers.ids) this.#clients.get(receiver)?.active?.sendControl(gone);
  }

  #onFrame(conn: ClientConn, type: number, frame: Buffer): void {
    const length = frame.length - FRAME_HEADER_LENGTH;
    const set = this.#clients.get(conn.identity.id);
    conn.lastFrameAt = Date.now();
    // "Last writer is active" among duplicates.
    if (set !== undefined && set.conns.length > 1) set.active = conn;
    switch (type) {
      case FrameType.SendPacket:
        if (length < KEY_LENGTH)
          throw new DerpError('bad-length', `SendPacket of ${length} bytes has no key`);
        this.#routeSend(conn, set, frame);
        return;
      case FrameType.NotePreferred:
        if (length !== 1) throw new DerpError('bad-length', `NotePreferred must be 1 byte, got ${length}`);
        // Whether this is the client's home region: derper keeps it for statistics only, and so far
        // weft has no use for it.
        return;
      case FrameType.Ping:
        if (length < MIN_PING_LENGTH)
          throw new DerpError('bad-length', `Ping of ${length} bytes is too short`);
        conn.sendPong(pongFrame(frame.subarray(FRAME_HEADER_LENGTH)));
        return;
      case FrameType.Pong:
        return;
      default:
        this.#onMeshFrame(conn, type, frame, length);
    }
  }

  #onMeshFrame(conn: ClientConn, type: number, frame: Buffer, length: number): void {
    if (!conn.identity.mesh) {
      throw new DerpError('not-mesh', `frame type 0x${type.toString(16)} needs the mesh key`);
    }
    switch (type) {
      case FrameType.WatchConns:
        if (length !== 0) throw new DerpError('bad-length', 'WatchConns must be empty');
        this.#watch(conn);
        return;
      case FrameType.ClosePeer: {
        if (length !== KEY_LENGTH) throw new DerpError('bad-length', 'ClosePeer must carry one key');
        const target = this.#clients.get(
          frame.toString('latin1', FRAME_HEADER_LENGTH, FRAME_HEADER_LENGTH + KEY_LENGTH),
        );
        for (const c of target?.conns.slice() ?? []) c.close('closed by a mesh peer (ClosePeer)');
        return;
      }
      case FrameType.ForwardPacket:
        if (length < 2 * KEY_LENGTH) throw new DerpError('bad-length', 'ForwardPacket needs two keys');
        this.#deliverForwarded(frame);
        return;
    }
  }

  /** A mesh peer watches who is connected here: everyone now, then every change. */
  #watch(conn: ClientConn): void {
    this.#watchers.add(conn);
    // The initial dump may be as large as the region: it is exempt from the control-queue cap.
    for (const set of this.#clients.values()) {
      if (set.active !== undefined) conn.sendControl(this.#presentFrame(set.active), true);
    }
  }

  #routeSend(src: ClientConn, srcSet: ClientSet | undefined, frame: Buffer): void {
    const dstId = frame.toString('latin1', FRAME_HEADER_LENGTH, FRAME_HEADER_LENGTH + KEY_LENGTH);
    const dst = this.#clients.get(dstId);
    if (dst?.active !== undefined) {
      // SendPacket(dst, data) and RecvPacket(src, data) have the same layout: rewrite in place.
      frame[0] = FrameType.RecvPacket;
      src.identity.rawKey.copy(frame, FRAME_HEADER_LENGTH);
      this.#queue(dst.active, frame);
      srcSet?.sentTo.add(dstId, this.#isConnected);
      return;
    }
    const dataOffset = FRAME_HEADER_LENGTH + KEY_LENGTH;
    if (dst === undefined) {
      const forwarder = this.#forwarders.get(dstId)?.[0];
      if (forwarder !== undefined) {
        const dstRaw = frame.subarray(FRAME_HEADER_LENGTH, dataOffset);
        if (forwarder.forward(src.identity.rawKey, Buffer.from(dstRaw), frame.subarray(dataOffset))) {
          this.#stats.packetsForwarded += 1;
        } else {
          this.#stats.dropQueueFull += 1;
        }
        return;
      }
      this.#stats.dropUnknownDestination += 1;
      if (looksLikeDisco(frame, dataOffset))
        this.#tellNotHere(src, frame.subarray(FRAME_HEADER_LENGTH, dataOffset));
      return;
    }
    this.#stats.dropDuplicateClient += 1;
  }

  /** ForwardPacket(src, dst, data) from a mesh peer: deliver locally or drop, never forward again. */
  #deliverForwarded(frame: Buffer): void {
    const dstStart = FRAME_HEADER_LENGTH + KEY_LENGTH;
    const dstId = frame.toString('latin1', dstStart, dstStart + KEY_LENGTH);
    const dst = this.#clients.get(dstId)?.active;
    if (dst === undefined) {
      this.#stats.dropUnknownDestination += 1;
      return;
    }
    const srcId = frame.toString('latin1', FRAME_HEADER_LENGTH, dstStart);
    // Turn [hdr][src][dst][data] into [..32 unused..][hdr'][src][data] without copying the data.
    frame.copy(frame, dstStart, FRAME_HEADER_LENGTH, dstStart);
    const recv = frame.subarray(KEY_LENGTH);
    recv[0] = FrameType.RecvPacket;
    recv.writeUInt32BE(recv.length - FRAME_HEADER_LENGTH, 1);
    this.#queue(dst, recv);
    // Only a source some mesh peer reported can later be reported gone; anything else would never be read.
    if (!this.#forwarders.has(srcId)) return;
    let receivers = this.#forwardedSentTo.get(srcId);
    if (receivers === undefined) {
      receivers = new Receivers();
      this.#forwardedSentTo.set(srcId, receivers);
    }
    receivers.add(dstId, this.#isConnected);
  }

  #queue(dst: ClientConn, recv: Buffer): void {
    this.#stats.packetsRelayed += 1;
    this.#stats.bytesRelayed += recv.length - FRAME_HEADER_LENGTH - KEY_LENGTH;
    dst.sendPacket(recv, looksLikeDisco(recv, FRAME_HEADER_LENGTH + KEY_LENGTH));
  }

  #tellNotHere(src: ClientConn, dstRaw: Buffer): void {
    const budget = this.#states.get(src);
    if (budget === undefined) return;
    const now = Date.now();
    budget.tokens = Math.min(
      NOT_HERE_BURST,
      budget.tokens + ((now - budget.at) / 1000) * NOT_HERE_PER_SECOND,
    );
    budget.at = now;
    if (budget.tokens < 1) return;
    budget.tokens -= 1;
    src.sendControl(peerGoneFrame(dstRaw, PeerGoneReason.NotHere));
  }

  /** A mesh peer reports `key` connected to it: packets for the key go there while it is not local. */
  addForwarder(rawKey: Buffer, forwarder: MeshForwarder): void {
    const id = rawKey.toString('latin1');
    const list = this.#forwarders.get(id);
    if (list === undefined) this.#forwarders.set(id, [forwarder]);
    else if (!list.includes(forwarder)) list.push(forwarder); // the earliest stays preferred
  }

  removeForwarder(rawKey: Buffer, forwarder: MeshForwarder): void {
    const id = rawKey.toString('latin1');
    const list = this.#forwarders.get(id)?.filter((f) => f !== forwarder);
    if (list === undefined) return;
    if (list.length > 0) {
      this.#forwarders.set(id, list);
      return;
    }
    this.#forwarders.delete(id);
    if (this.#clients.has(id)) return;
    const receivers = this.#forwardedSentTo.get(id);
    this.#forwardedSentTo.delete(id);
    if (receivers !== undefined) this.#tellReceiversGone(rawKey, receivers);
  }

  /** Drops every key a broken mesh link had reported. */
  removeForwarderEverywhere(forwarder: MeshForwarder): void {
    for (const [id, list] of [...this.#forwarders]) {
      if (list.includes(forwarder)) this.removeForwarder(Buffer.from(id, 'latin1'), forwarder);
    }
  }

  /** Closes every connection of `key` (e.g. its node was deleted). */
  closeClient(key: NodePublic, reason: string): void {
    const set = this.#clients.get(NodeKey.toRaw(key).toString('latin1'));
    for (const conn of set?.conns.slice() ?? []) conn.close(reason);
  }

  close(): void {
    this.#closed = true;
    for (const stream of this.#handshaking) stream.destroy();
    this.#handshaking.clear();
    for (const conn of [...this.#states.keys()]) conn.close('server stopping');
  }
}
