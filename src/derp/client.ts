/**
 * A DERP client: weft's mesh links to the other servers of its region use it, and so do the tests and
 * the relay benchmark. It speaks what tailscaled's `derphttp` client speaks: `GET /derp` with
 * `Upgrade: DERP` over HTTP or HTTPS (or a WebSocket with subprotocol "derp"), then the handshake.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { createWebSocketStream, WebSocket } from 'ws';
import { NodePublic, type PrivateKey } from '../types/keys.ts';
import { DerpError } from './errors.ts';
import { clientInfoFrame, openServerInfo, parseServerKey } from './handshake.ts';
import { FrameReader } from './reader.ts';
import {
  encodeFrame,
  FRAME_HEADER_LENGTH,
  FrameType,
  KEY_LENGTH,
  MAX_FRAME_LENGTH,
  PING_DATA_LENGTH,
} from './wire.ts';

export interface DerpClientOptions {
  /** 64 hex digits: connect as a mesh peer of the server's region. */
  meshKey?: string;
  /** Handshake deadline (tailscaled allows 10 s for the whole connect). */
  timeoutMs?: number;
  /** Extra TLS options for https:// URLs (a test CA, or `rejectUnauthorized: false`). */
  tls?: ConnectionOptions;
  /** Connect over a WebSocket instead of a raw upgrade. */
  websocket?: boolean;
}

export interface DerpClientEvents {
  packet?(src: Buffer, data: Buffer): void;
  peerGone?(key: Buffer, reason: number): void;
  peerPresent?(key: Buffer, ip16: Buffer, port: number, flags: number): void;
  health?(problem: string): void;
  keepAlive?(): void;
  /** The connection ended; `error` says why when it was not a clean close. */
  close?(error?: Error): void;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export class DerpClient {
  readonly serverKey: Buffer;
  readonly #stream: Duplex;
  readonly #pings = new Map<string, () => void>();
  events: DerpClientEvents = {};
  /** performance.now() of the last frame received (the server sends a keep-alive at least every ~65 s). */
  lastFrameAt = performance.now();
  #closed = false;

  private constructor(stream: Duplex, serverKey: Buffer) {
    this.#stream = stream;
    this.serverKey = serverKey;
  }

  /** Connects and completes the handshake; rejects with the reason if the server refuses. */
  static async connect(
    url: string,
    key: PrivateKey<'nodekey'>,
    options: DerpClientOptions = {},
  ): Promise<DerpClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const { stream, head } = await openStream(url, options, timeoutMs);
    return handshake(stream, head, key, options, timeoutMs);
  }

  /** @internal used by handshake() once ServerInfo has arrived. */
  static attach(stream: Duplex, serverKey: Buffer, reader: FrameReader): DerpClient {
    const client = new DerpClient(stream, serverKey);
    reader.setHandler((type, frame) => client.#onFrame(type, frame));
    stream.on('close', () => client.#onClose());
    return client;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True when the socket buffer is full; wait for `drained()` before sending more. */
  get needsDrain(): boolean {
    return this.#stream.writableNeedDrain;
  }

  drained(): Promise<void> {
    if (!this.#stream.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#stream.off('drain', done);
        this.#stream.off('close', done);
        resolve();
      };
      this.#stream.once('drain', done);
      this.#stream.once('close', done);
    });
  }

  /** Sends `data` to the client holding `dst`; returns false when the socket buffer is full. */
  send(dst: NodePublic | Buffer, data: Uint8Array): boolean {
    const dstRaw = typeof dst === 'string' ? NodePublic.toRaw(dst) : dst;
    return this.#write(encodeFrame(FrameType.SendPacket, dstRaw, data));
  }

  /** Mesh only: hands a packet from `src` to `dst` on this (peer) server. */
  forward(src: Buffer, dst: Buffer, data: Uint8Array): boolean {
    return this.#write(encodeFrame(FrameType.ForwardPacket, src, dst, data));
  }

  notePreferred(preferred: boolean): void {
    this.#write(encodeFrame(FrameType.NotePreferred, Uint8Array.of(preferred ? 1 : 0)));
  }

  /** Mesh only: asks for PeerPresent/PeerGone about every client of this server. */
  watchConns(): void {
    this.#write(encodeFrame(FrameType.WatchConns));
  }

  closePeer(key: NodePublic): void {
    this.#write(encodeFrame(FrameType.ClosePeer, NodePublic.toRaw(key)));
  }

  /** Sends a raw frame (tests use it to send what a well-behaved client never would). */
  writeRaw(frame: Uint8Array): boolean {
    return this.#write(frame);
  }

  /** Round trip of a Ping; rejects after `timeoutMs`. */
  ping(timeoutMs = 5_000): Promise<number> {
    const data = Buffer.allocUnsafe(PING_DATA_LENGTH);
    for (let i = 0; i < data.length; i += 1) data[i] = Math.floor(Math.random() * 256);
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pings.delete(data.toString('hex'));
        reject(new DerpError('timeout', `no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pings.set(data.toString('hex'), () => {
        clearTimeout(timer);
        resolve(performance.now() - started);
      });
      this.#write(encodeFrame(FrameType.Ping, data));
    });
  }

  close(): void {
    this.#stream.destroy();
  }

  #write(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    return this.#stream.write(frame);
  }

  #onFrame(type: number, frame: Buffer): void {
    this.lastFrameAt = performance.now();
    const payload = frame.subarray(FRAME_HEADER_LENGTH);
    const events = this.events;
    switch (type) {
      case FrameType.RecvPacket:
        if (payload.length >= KEY_LENGTH)
          events.packet?.(payload.subarray(0, KEY_LENGTH), payload.subarray(KEY_LENGTH));
        return;
      case FrameType.PeerGone:
        if (payload.length >= KEY_LENGTH)
          events.peerGone?.(payload.subarray(0, KEY_LENGTH), payload[KEY_LENGTH] ?? 0);
        return;
      case FrameType.PeerPresent:
        if (payload.length >= KEY_LENGTH + 18) {
          events.peerPresent?.(
            payload.subarray(0, KEY_LENGTH),
            payload.subarray(KEY_LENGTH, KEY_LENGTH + 16),
            payload.readUInt16BE(KEY_LENGTH + 16),
            payload[KEY_LENGTH + 18] ?? 0,
          );
        }
        return;
      case FrameType.Pong:
        this.#pings.get(payload.subarray(0, PING_DATA_LENGTH).toString('hex'))?.();
        return;
      case FrameType.Ping:
        this.#write(encodeFrame(FrameType.Pong, payload.subarray(0, PING_DATA_LENGTH)));
        return;
      case FrameType.KeepAlive:
        events.keepAlive?.();
        return;
      case FrameType.Health:
        events.health?.(payload.toString('utf8'));
        return;
    }
  }

  #onClose(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.events.close?.(error);
  }
}

async function openStream(
  url: string,
  options: DerpClientOptions,
  timeoutMs: number,
): Promise<{ stream: Duplex; head: Buffer }> {
  const target = new URL(url);
  if (target.pathname === '/' || target.pathname === '') target.pathname = '/derp';
  if (options.websocket === true) return openWebSocket(target, options, timeoutMs);
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(target, {
      method: 'GET',
      headers: { Upgrade: 'DERP', Connection: 'Upgrade' },
      agent: false,
      timeout: timeoutMs,
      ...options.tls,
    });
    req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 60_000);
      resolve({ stream: socket, head });
    });
    req.on('response', (res) => {
      res.resume();
      reject(new DerpError('refused', `DERP upgrade refused: HTTP ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy(new DerpError('timeout', `no DERP upgrade within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

function openWebSocket(
  target: URL,
  options: DerpClientOptions,
  timeoutMs: number,
): Promise<{ stream: Duplex; head: Buffer }> {
  target.protocol = target.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(target, 'derp', {
    perMessageDeflate: false,
    handshakeTimeout: timeoutMs,
    ...options.tls,
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ stream: createWebSocketStream(ws), head: Buffer.alloc(0) }));
    ws.once('error', reject);
  });
}

/** ServerKey → ClientInfo → ServerInfo, then hands the stream to a DerpClient. */
function handshake(
  stream: Duplex,
  head: Buffer,
  key: PrivateKey<'nodekey'>,
  options: DerpClientOptions,
  timeoutMs: number,
): Promise<DerpClient> {
  return new Promise((resolve, reject) => {
    let serverKey: Buffer | undefined;
    const fail = (err: Error) => {
      clearTimeout(timer);
      stream.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new DerpError('timeout', `DERP handshake took over ${timeoutMs} ms`)),
      timeoutMs,
    );
    const reader = new FrameReader(
      () => MAX_FRAME_LENGTH,
      (type, frame) => {
        const payload = frame.subarray(FRAME_HEADER_LENGTH);
        if (serverKey === undefined) {
          if (type !== FrameType.ServerKey)
            throw new DerpError('bad-type', `expected ServerKey, got 0x${type.toString(16)}`);
          serverKey = parseServerKey(payload);
          stream.write(clientInfoFrame(serverKey, key, options));
          return;
        }
        if (type !== FrameType.ServerInfo)
          throw new DerpError('bad-type', `expected ServerInfo, got 0x${type.toString(16)}`);
        openServerInfo(payload, serverKey, key);
        clearTimeout(timer);
        stream.off('close', onEarlyClose);
        resolve(DerpClient.attach(stream, serverKey, reader));
      },
    );
    const onEarlyClose = () =>
      fail(new DerpError('refused', 'the server closed the connection during the handshake'));
    const onData = (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        fail(err as Error);
      }
    };
    stream.on('data', onData);
    stream.on('error', () => stream.destroy());
    stream.on('close', onEarlyClose);
    if (head.length > 0) onData(head);
  });
}
