/**
 * The sending half of one admitted DERP client connection: bounded queues, one writer, keep-alives.
 *
 * A slow receiver must never slow down the senders or make the server buffer without bound, so (as in
 * derper) packets for a connection wait in two small queues, one for disco and one for data, of 32
 * frames each; when a queue is full its oldest frame is dropped. Control frames (pong, peer gone/present,
 * keep-alive) have their own short list. The writer hands everything queued to the socket in one corked
 * batch per event-loop turn; when the socket's buffer is full it waits for 'drain', and a connection that
 * does not drain within the write timeout is closed (derper: 2 s, 30 s for mesh peers).
 */
import type { Duplex } from 'node:stream';
import type { NodePublic } from '../types/keys.ts';
import { KEEP_ALIVE_FRAME } from './wire.ts';

export interface ConnTimings {
  /** Frames per queue (disco, data) before the oldest is dropped. */
  queueDepth: number;
  writeTimeoutMs: number;
  keepAliveMs: number;
  /** Keep-alives go out every keepAliveMs plus a random share of this, so they don't all align. */
  keepAliveJitterMs: number;
}

export const DEFAULT_CONN_TIMINGS: ConnTimings = {
  queueDepth: 32,
  writeTimeoutMs: 2_000,
  keepAliveMs: 60_000,
  keepAliveJitterMs: 5_000,
};

/** Mesh peers carry a whole region's forwarded traffic, so derper gives them longer to drain. */
export const MESH_WRITE_TIMEOUT_MS = 30_000;

/** More queued control frames than this means a watcher that cannot keep up: close it to resync. */
const MAX_CONTROL_FRAMES = 100_000;

/** A fixed-size ring of frames that drops its oldest entry when full. */
export class DropOldestQueue {
  readonly #ring: Array<Buffer | undefined>;
  #head = 0;
  #size = 0;

  constructor(depth: number) {
    this.#ring = new Array<Buffer | undefined>(depth);
  }

  /** Queues `frame`; returns true if the oldest frame had to be dropped to make room. */
  push(frame: Buffer): boolean {
    const depth = this.#ring.length;
    let dropped = false;
    if (this.#size === depth) {
      this.#head = (this.#head + 1) % depth;
      this.#size -= 1;
      dropped = true;
    }
    this.#ring[(this.#head + this.#size) % depth] = frame;
    this.#size += 1;
    return dropped;
  }

  /** Moves every queued frame, oldest first, into `out`. */
  drainInto(out: Buffer[]): void {
    const depth = this.#ring.length;
    for (let i = 0; i < this.#size; i += 1) {
      const at = (this.#head + i) % depth;
      out.push(this.#ring[at] as Buffer);
      this.#ring[at] = undefined;
    }
    this.#head = 0;
    this.#size = 0;
  }

  get size(): number {
    return this.#size;
  }
}

export interface ConnIdentity {
  key: NodePublic;
  rawKey: Buffer;
  /** The raw key as a latin1 string: a cheap Map key for the per-packet lookup. */
  id: string;
  remoteAddress: string;
  remotePort: number;
  /** Holds the region's mesh key: may watch, forward and close peers. */
  mesh: boolean;
  prober: boolean;
}

export interface ConnEvents {
  /** The connection is gone (closed by either side); called once. `failed`: a write timeout or overflow. */
  onClose(conn: ClientConn, reason: string, failed: boolean): void;
  /** A queue was full and its oldest frame was dropped. */
  onQueueDrop(conn: ClientConn): void;
}

export class ClientConn {
  readonly identity: ConnIdentity;
  /** When the client last sent a frame (ms): among duplicate connections the latest sender is active. */
  lastFrameAt = 0;
  /** Pongs owed: only one may be pending, further pings are ignored until it is written (as derper). */
  #pong: Buffer | undefined;
  readonly #stream: Duplex;
  readonly #timings: ConnTimings;
  readonly #events: ConnEvents;
  readonly #disco: DropOldestQueue;
  readonly #data: DropOldestQueue;
  #control: Buffer[] = [];
  #scheduled = false;
  #blocked = false;
  #closed = false;
  #writeTimer: NodeJS.Timeout | undefined;
  #keepAliveTimer: NodeJS.Timeout | undefined;

  constructor(stream: Duplex, identity: ConnIdentity, timings: ConnTimings, events: ConnEvents) {
    this.#stream = stream;
    this.identity = identity;
    this.#timings = timings;
    this.#events = events;
    this.#disco = new DropOldestQueue(timings.queueDepth);
    this.#data = new DropOldestQueue(timings.queueDepth);
    this.#armKeepAlive();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a RecvPacket frame. */
  sendPacket(frame: Buffer, disco: boolean): void {
    if (this.#closed) return;
    if ((disco ? this.#disco : this.#data).push(frame)) this.#events.onQueueDrop(this);
    this.#schedule();
  }

  /** Queues a control frame (peer gone/present, health, restarting); `uncapped` for a bounded burst. */
  sendControl(frame: Buffer, uncapped = false): void {
    if (this.#closed) return;
    if (!uncapped && this.#control.length >= MAX_CONTROL_FRAMES) {
      this.close('control queue overflow: the client does not read', true);
      return;
    }
    this.#control.push(frame);
    this.#schedule();
  }

  /** Queues a pong unless one is already waiting (a ping flood costs at most one pending pong). */
  sendPong(frame: Buffer): void {
    if (this.#closed || this.#pong !== undefined) return;
    this.#pong = frame;
    this.#schedule();
  }

  /** Closes the connection; `failed` when it is closed for the client's fault (counted by the server). */
  close(reason: string, failed = false): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#writeTimer);
    clearTimeout(this.#keepAliveTimer);
    this.#stream.destroy();
    this.#events.onClose(this, reason, failed);
  }

  #armKeepAlive(): void {
    const { keepAliveMs, keepAliveJitterMs } = this.#timings;
    this.#keepAliveTimer = setTimeout(
      () => {
        this.sendControl(KEEP_ALIVE_FRAME);
        this.#armKeepAlive();
      },
      keepAliveMs + Math.random() * keepAliveJitterMs,
    );
    this.#keepAliveTimer.unref();
  }

  #schedule(): void {
    if (this.#scheduled || this.#blocked) return;
    this.#scheduled = true;
    // One batch per event-loop turn: every packet routed to us while handling this turn's reads goes
    // out in a single corked write.
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#closed || this.#blocked) return;
    const frames: Buffer[] = this.#control;
    this.#control = [];
    if (this.#pong !== undefined) {
      frames.push(this.#pong);
      this.#pong = undefined;
    }
    this.#disco.drainInto(frames);
    this.#data.drainInto(frames);
    if (frames.length === 0) return;
    const stream = this.#stream;
    stream.cork();
    let room = true;
    for (const frame of frames) room = stream.write(frame);
    stream.uncork();
    if (!room) this.#waitForDrain();
  }

  #waitForDrain(): void {
    this.#blocked = true;
    this.#writeTimer = setTimeout(
      () => this.close(`write timeout: nothing drained for ${this.#timings.writeTimeoutMs} ms`, true),
      this.#timings.writeTimeoutMs,
    );
    this.#stream.once('drain', () => {
      clearTimeout(this.#writeTimer);
      this.#blocked = false;
      if (this.#control.length > 0 || this.#pong !== undefined || this.#disco.size + this.#data.size > 0) {
        this.#schedule();
      }
    });
  }
}
