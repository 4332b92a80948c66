/**
 * One simulated Tailscale client for the scale benchmark: the real protocol (Noise, HTTP/2, register
 * with a pre-auth key, a streaming zstd map request, lite endpoint updates), but lean enough that
 * thousands share one process. Messages are never kept, and big ones (full maps) are never
 * JSON-parsed: the peer set is tracked by scanning node IDs out of the text, which both servers write
 * as `{"ID":<n>,"StableID":…` (Go's field order of tailcfg.Node).
 *
 *   [u32 little-endian length][zstd frames of one MapResponse]   repeated on the map stream
 */

import type { ClientHttp2Stream } from 'node:http2';
import { decodeMapBody } from '../../src/mapper/frame.ts';
import { DiscoPublic, type MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { IdSet } from '../../src/util/id-set.ts';
import { type ControlConnection, connectControl } from '../../test/harness/control-client.ts';

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

const RECONNECT_DELAY_MS = 1_000;
const GO_STREAM_WINDOW = 4 << 20;
const GO_CONNECTION_WINDOW = 1 << 30;
const NODE_ID = /"ID":(\d+),"StableID"/g;
const SELF_ID = /"Node":\{"ID":(\d+)/;
const REMOVED = /"PeersRemoved":\[([0-9,]*)\]/;

export interface ClientOptions {
  /** Position in the worker's list (cheap bookkeeping per client). */
  slot: number;
  url: string;
  serverKey: MachinePublic;
  capVersion: number;
  hostname: string;
  /** Called with every decoded message's text and its arrival time. */
  onMessage: (client: SimClient, text: string, at: number) => void;
}

export class SimClient {
  readonly options: ClientOptions;
  readonly nodeKey = PrivateKey.generate(NodePublic);
  readonly discoKey = PrivateKey.generate(DiscoPublic);
  conn: ControlConnection | undefined;
  stream: ClientHttp2Stream | undefined;
  selfId = 0;
  readonly peers = new IdSet();
  messages = 0;
  bytes = 0;
  /** The last reason a stream ended (the client then reconnects, as tailscaled does). */
  error: string | undefined;
  /** How often the map stream had to be re-opened. */
  reconnects = 0;
  #closing = false;
  #endpoints: string[] = [];
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(options: ClientOptions) {
    this.options = options;
  }

  async connect(): Promise<void> {
    this.conn = await connectControl(this.options.url, {
      serverKey: this.options.serverKey,
      capVersion: this.options.capVersion,
      timeoutMs: 120_000,
    });
    // Go's HTTP/2 client (tailscaled's) opens 4 MiB per stream and 1 GiB per connection; Node's
    // 64 KiB default would throttle a server pushing a big map to a busy generator.
    this.conn.session.settings({ initialWindowSize: GO_STREAM_WINDOW });
    this.conn.session.setLocalWindowSize(GO_CONNECTION_WINDOW);
  }

  /** POST /machine/register with the pre-auth key; throws with the server's Error text. */
  async register(authKey: string): Promise<void> {
    const response = await this.#connection().request(
      'POST',
      '/machine/register',
      {
        Version: this.options.capVersion,
        NodeKey: this.nodeKey.publicKey,
        Hostinfo: this.#hostinfo(),
        Auth: { AuthKey: authKey },
      },
      { timeoutMs: 300_000 },
    );
    const body = response.json();
    if (response.status !== 200 || body.Error || body.MachineAuthorized !== true)
      throw new Error(`register ${this.options.hostname}: ${response.status} ${body.Error ?? ''}`);
  }

  /**
   * Opens the streaming map request; messages go to `onMessage` as they arrive. A stream the server
   * ends is opened again after a second (on a new connection if the old one died), like tailscaled.
   */
  openStream(endpoints: string[]): void {
    this.#endpoints = endpoints;
    this.#pending = [];
    this.#pendingBytes = 0;
    const body = Buffer.from(
      JSON.stringify({
        Version: this.options.capVersion,
        NodeKey: this.nodeKey.publicKey,
        DiscoKey: this.discoKey.publicKey,
        Endpoints: endpoints,
        Hostinfo: this.#hostinfo(),
        Compress: 'zstd',
        KeepAlive: true,
        Stream: true,
      }),
    );
    const stream = this.#connection().session.request({
      ':method': 'POST',
      ':path': '/machine/map',
      'content-length': body.length,
    });
    stream.end(body);
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('error', (err) => {
      this.error = `map stream: ${err.message}`;
    });
    stream.on('close', () => {
      if (this.#closing) return;
      this.error ??= 'map stream closed by the server';
      this.reconnects += 1;
      setTimeout(() => this.#reopen(), RECONNECT_DELAY_MS + Math.random() * RECONNECT_DELAY_MS).unref();
    });
    this.stream = stream;
  }

  async #reopen(): Promise<void> {
    if (this.#closing) return;
    try {
      if (this.conn === undefined || this.conn.session.destroyed || this.conn.session.closed)
        await this.connect();
      this.openStream(this.#endpoints);
    } catch (err) {
      this.error = `reconnect: ${(err as Error).message}`;
      setTimeout(() => this.#reopen(), RECONNECT_DELAY_MS * 2).unref();
    }
  }

  /** A lite map update (no stream, no peers): how tailscaled reports new endpoints. */
  async lite(endpoints: string[]): Promise<void> {
    const response = await this.#connection().request('POST', '/machine/map', {
      Version: this.options.capVersion,
      NodeKey: this.nodeKey.publicKey,
      DiscoKey: this.discoKey.publicKey,
      Endpoints: endpoints,
      Stream: false,
      OmitPeers: true,
    });
    if (response.status !== 200) throw new Error(`lite update: HTTP ${response.status}`);
  }

  close(): void {
    this.#closing = true;
    if (this.conn !== undefined && !this.conn.session.destroyed) this.conn.session.destroy();
    this.conn?.noise.destroy();
  }

  #connection(): ControlConnection {
    if (this.conn === undefined) throw new Error('not connected');
    return this.conn;
  }

  #hostinfo() {
    return { Hostname: this.options.hostname, OS: 'linux', IPNVersion: '1.80.3', GoArch: 'amd64' };
  }

  #onData(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    // A big map arrives in many HTTP/2 chunks: join them once it is complete, not at every chunk
    // (that would copy a 1 MB map about fifty times).
    const first = this.#pending[0] as Buffer;
    if (this.#pending.length > 1 && first.length >= 4 && this.#pendingBytes < 4 + first.readUInt32LE(0))
      return;
    let buffer = this.#pending.length === 1 ? chunk : Buffer.concat(this.#pending, this.#pendingBytes);
    let offset = 0;
    while (buffer.length - offset >= 4) {
      const length = buffer.readUInt32LE(offset);
      if (buffer.length - offset - 4 < length) break;
      const frame = buffer.subarray(offset + 4, offset + 4 + length);
      offset += 4 + length;
      this.#onFrame(frame);
    }
    buffer = buffer.subarray(offset);
    this.#pending = buffer.length > 0 ? [buffer] : [];
    this.#pendingBytes = buffer.length;
  }

  #onFrame(frame: Buffer): void {
    const at = now();
    const text = decodeMapBody(frame).toString('latin1');
    this.messages += 1;
    this.bytes += frame.length;
    this.#trackPeers(text);
    this.options.onMessage(this, text, at);
  }

  /** Keeps `peers` equal to the client's netmap: full lists replace it, deltas add and remove. */
  #trackPeers(text: string): void {
    if (this.selfId === 0) {
      const self = SELF_ID.exec(text);
      if (self?.[1] !== undefined) this.selfId = Number(self[1]);
    }
    if (text.includes('"Peers":[')) this.peers.clear();
    if (text.includes('"StableID"')) {
      for (const match of text.matchAll(NODE_ID)) {
        const id = Number(match[1]);
        if (id !== this.selfId) this.peers.add(id);
      }
    }
    const removed = REMOVED.exec(text)?.[1];
    if (removed) for (const id of removed.split(',')) this.peers.delete(Number(id));
  }
}
