/**
 * A fake Tailscale control client for protocol tests (and a load generator): it speaks the real ts2021
 * wire protocol to a server URL such as `http://127.0.0.1:8080`, byte for byte like tailscaled would.
 *
 *   GET /key?v=<capver>                                   -> {"legacyPublicKey","publicKey"}
 *   POST /ts2021 HTTP/1.1 (Upgrade: tailscale-control-protocol, X-Tailscale-Handshake: <base64 101 B>)
 *                                                         <- HTTP/1.1 101 + 51-byte Noise response
 *     or GET ws://…/ts2021?X-Tailscale-Handshake=<urlencoded base64>  (subprotocol as above)
 *   Noise records  <- optional early payload  FF FF FF 'T' 'S' | u32 BE length | JSON
 *                  <> HTTP/2 with prior knowledge (:scheme https)
 *   POST /machine/map response body: [u32 LITTLE-endian length][zstd frame of JSON], repeated
 *
 * Per connection it holds one socket, one NoiseConn and one HTTP/2 session, and no timers once
 * connected, so thousands of them fit in one test process.
 */
import { once } from 'node:events';
import http2, {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { createWebSocketStream } from 'ws';
import { decodeMapBody } from '../../src/mapper/frame.ts';
import {
  decodeEarlyPayloadBody,
  decodeEarlyPayloadHeader,
  EARLY_PAYLOAD_HEADER_SIZE,
  type EarlyNoise,
  initiate,
  NoiseConn,
  SERVER_HEADER_SIZE,
  serverMessageLength,
} from '../../src/noise/index.ts';
import { MachinePublic, PrivateKey } from '../../src/types/keys.ts';

export const DEFAULT_CAP_VERSION = 142;
const UPGRADE_PROTOCOL = 'tailscale-control-protocol';
const HANDSHAKE_HEADER = 'X-Tailscale-Handshake';
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const MAX_HTTP_HEADER = 64 * 1024;
const MAX_ERROR_BODY = 4096;
const ERROR_BODY_GRACE_MS = 500;
const MAX_MAP_MESSAGE = 64 * 1024 * 1024;
const ZSTD_MAGIC = 0xfd2fb528;

/** `GET /key?v=N` on the plain HTTP router: the server's Noise public key. */
export async function fetchServerKey(
  serverUrl: string,
  capVersion: number = DEFAULT_CAP_VERSION,
): Promise<MachinePublic> {
  const url = new URL(`/key?v=${capVersion}`, serverUrl);
  let response: Response;
  try {
    response = await fetch(url);
  } catch (err) {
    // fetch() says only "fetch failed"; the reason (ECONNREFUSED, …) is in the cause.
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new Error(`GET ${url}: ${cause ?? (err as Error).message}`, { cause: err });
  }
  const text = await response.text();
  if (response.status !== 200)
    throw new Error(`GET ${url}: status ${response.status}: ${text.slice(0, 200)}`);
  let parsed: { publicKey?: unknown };
  try {
    parsed = JSON.parse(text) as { publicKey?: unknown };
  } catch {
    throw new Error(`GET ${url}: body is not JSON: ${text.slice(0, 200)}`);
  }
  if (typeof parsed.publicKey !== 'string')
    throw new Error(`GET ${url}: no publicKey in ${text.slice(0, 200)}`);
  const key = MachinePublic.parse(parsed.publicKey);
  if (MachinePublic.isZero(key)) throw new Error(`GET ${url}: publicKey is zero (control server too old)`);
  return key;
}

export interface ConnectOptions {
  /** The client's machine key (its Noise static key); a fresh one by default. */
  machineKey?: PrivateKey<'mkey'>;
  /** Capability version, which is also the Noise protocol version; default 142. */
  capVersion?: number;
  /** The server's Noise key; fetched from /key when absent. */
  serverKey?: MachinePublic;
  transport?: 'http' | 'websocket';
  /** Budget for dial + upgrade + handshake + first plaintext bytes; default 10 s. */
  timeoutMs?: number;
}

export interface ControlResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  // biome-ignore lint/suspicious/noExplicitAny: test code reads arbitrary JSON shapes
  json(): any;
}

export interface RequestOptions {
  /** Extra HTTP/2 headers, e.g. `{ 'ts-lb': 'nodekey:…' }`. */
  headers?: Record<string, string | string[]>;
  timeoutMs?: number;
}

/** Dials the server and returns a connection ready for requests over Noise + HTTP/2. */
export async function connectControl(
  serverUrl: string,
  options: ConnectOptions = {},
): Promise<ControlConnection> {
  const url = new URL(serverUrl);
  const capVersion = options.capVersion ?? DEFAULT_CAP_VERSION;
  const machineKey = options.machineKey ?? PrivateKey.generate(MachinePublic);
  const serverKey = options.serverKey ?? (await fetchServerKey(serverUrl, capVersion));
  const handshake = initiate({
    version: capVersion,
    clientStaticPrivate: machineKey.raw(),
    serverStaticPublic: MachinePublic.toRaw(serverKey),
  });
  const initiation = handshake.message.toString('base64');

  const deadline = new Deadline(options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, serverUrl);
  let transport: Duplex | undefined;
  try {
    const dialed =
      options.transport === 'websocket'
        ? await dialWebSocket(url, initiation, deadline)
        : await dialHttp(url, initiation, deadline);
    transport = dialed.transport;

    // The server's handshake reply: a 51-byte response, or a type-3 error with a reason.
    const reader = dialed.reader;
    await reader.wait(SERVER_HEADER_SIZE, 'the Noise handshake response');
    const length = serverMessageLength(reader.peek(SERVER_HEADER_SIZE));
    await reader.wait(length, 'the Noise handshake response');
    const { keys } = handshake.finish(reader.take(length));
    const conn = new NoiseConn(transport, keys, { leftover: reader.detach() });

    // The first 9 plaintext bytes are either an early payload header or the server's first HTTP/2
    // frame header (SETTINGS); in the latter case they go back to the stream for HTTP/2 to read.
    const plain = new StreamReader(conn, deadline);
    await plain.wait(
      EARLY_PAYLOAD_HEADER_SIZE,
      'the first bytes after the handshake (early payload or SETTINGS)',
    );
    const payloadLength = decodeEarlyPayloadHeader(plain.peek(EARLY_PAYLOAD_HEADER_SIZE));
    let earlyPayload: EarlyNoise | undefined;
    if (payloadLength !== undefined) {
      plain.take(EARLY_PAYLOAD_HEADER_SIZE);
      await plain.wait(payloadLength, 'the early payload');
      earlyPayload = decodeEarlyPayloadBody(plain.take(payloadLength));
    }
    // unshift is safe here: NoiseConn is our own Readable (not a net.Socket with a native handle),
    // and nothing else reads it until HTTP/2 attaches below.
    const rest = plain.detach();
    if (rest.length > 0) conn.unshift(rest);
    return new ControlConnection({ url, conn, machineKey, serverKey, capVersion, earlyPayload });
  } catch (err) {
    transport?.destroy();
    throw err;
  } finally {
    deadline.clear();
  }
}

/** Rejects whatever is waiting when the connect budget runs out, and tears the transport down. */
class Deadline {
  readonly #timer: NodeJS.Timeout;
  readonly #listeners = new Set<(error: Error) => void>();
  #error: Error | undefined;

  constructor(timeoutMs: number, target: string) {
    this.#timer = setTimeout(() => {
      this.#error = new Error(`connecting to ${target} timed out after ${timeoutMs} ms`);
      for (const listener of this.#listeners) listener(this.#error);
    }, timeoutMs);
  }

  /** Calls `listener` on expiry (at once if already expired); returns an unsubscribe function. */
  onExpire(listener: (error: Error) => void): () => void {
    if (this.#error !== undefined) listener(this.#error);
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#listeners.clear();
  }
}

/**
 * Collects a stream's bytes until the caller has what it needs, then hands the stream (and the unread
 * remainder) on. Used for the HTTP/1.1 upgrade header, the handshake reply and the early payload.
 */
class StreamReader {
  readonly #stream: Duplex;
  readonly #deadline: Deadline;
  #chunks: Buffer[] = [];
  #length = 0;
  #failure: Error | undefined;
  #ended = false;
  #wake: (() => void) | undefined;

  constructor(stream: Duplex, deadline: Deadline) {
    this.#stream = stream;
    this.#deadline = deadline;
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('error', this.#onError);
    stream.on('close', this.#onEnd);
  }

  get length(): number {
    return this.#length;
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#wake?.();
  };

  readonly #onEnd = (): void => {
    this.#ended = true;
    this.#wake?.();
  };

  readonly #onError = (err: Error): void => {
    this.#failure ??= err;
    this.#wake?.();
  };

  /** All buffered bytes as one Buffer (and keeps them buffered). */
  all(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks, this.#length)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  peek(n: number): Buffer {
    return this.all().subarray(0, n);
  }

  take(n: number): Buffer {
    const all = this.all();
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#length = rest.length;
    return taken;
  }

  /** Resolves once `n` bytes are buffered (or `ready()` is true); rejects on end, error or the deadline. */
  async wait(n: number, what: string, ready: () => boolean = () => this.#length >= n): Promise<void> {
    while (!ready()) {
      if (this.#failure !== undefined) throw new Error(`reading ${what}: ${this.#failure.message}`);
      if (this.#ended)
        throw new Error(`connection closed while waiting for ${what} (got ${this.#length} bytes)`);
      const expired = await new Promise<Error | undefined>((resolve) => {
        const unsubscribe = this.#deadline.onExpire(resolve);
        this.#wake = () => {
          unsubscribe();
          resolve(undefined);
        };
      });
      this.#wake = undefined;
      if (expired !== undefined) throw new Error(`${expired.message} waiting for ${what}`);
    }
  }

  /** Stops reading: removes listeners, pauses the stream and returns the unread bytes. */
  detach(): Buffer {
    this.#stream.off('data', this.#onData);
    this.#stream.off('end', this.#onEnd);
    this.#stream.off('error', this.#onError);
    this.#stream.off('close', this.#onEnd);
    this.#stream.pause();
    return this.all();
  }
}

interface Dialed {
  transport: Duplex;
  /** Reader positioned at the first byte after the HTTP upgrade. */
  reader: StreamReader;
}

/** Native path: HTTP/1.1 POST /ts2021 with Upgrade, then raw bytes on the same TCP connection. */
async function dialHttp(url: URL, initiation: string, deadline: Deadline): Promise<Dialed> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const socket = net.connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port });
  socket.setNoDelay(true);
  deadline.onExpire(() => socket.destroy());
  const reader = new StreamReader(socket, deadline);
  try {
    await upgrade(socket, reader, url, initiation);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return { transport: socket, reader };
}

async function upgrade(
  socket: net.Socket,
  reader: StreamReader,
  url: URL,
  initiation: string,
): Promise<void> {
  socket.write(
    'POST /ts2021 HTTP/1.1\r\n' +
      `Host: ${url.host}\r\n` +
      'User-Agent: weft-test-control-client\r\n' +
      `Upgrade: ${UPGRADE_PROTOCOL}\r\n` +
      'Connection: upgrade\r\n' +
      `${HANDSHAKE_HEADER}: ${initiation}\r\n` +
      'Content-Length: 0\r\n' +
      '\r\n',
  );
  const headerEnd = () => reader.all().indexOf('\r\n\r\n');
  await reader.wait(0, 'the HTTP upgrade response', () => {
    if (headerEnd() >= 0) return true;
    if (reader.length > MAX_HTTP_HEADER) throw new Error('HTTP upgrade response header exceeds 64 KiB');
    return false;
  });
  const head = reader.take(headerEnd() + 4).toString('latin1');
  const [statusLine = '', ...lines] = head.slice(0, -4).split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  if (Number(statusLine.split(' ')[1]) !== 101) {
    // Give the server a moment to explain itself (bounded), then fail with its words.
    const declared = Number(headers.get('content-length'));
    const want = Number.isFinite(declared) ? Math.min(declared, MAX_ERROR_BODY) : MAX_ERROR_BODY;
    await Promise.race([reader.wait(want, 'the error body'), sleep(ERROR_BODY_GRACE_MS)]).catch(() => {});
    const body = reader.all().subarray(0, want).toString('utf8').trim();
    throw new Error(`unexpected HTTP response: ${statusLine}${body ? `: ${body}` : ''}`);
  }
  // Go's client compares Upgrade byte for byte and needs Connection to contain the token "upgrade".
  if (headers.get('upgrade') !== UPGRADE_PROTOCOL) {
    throw new Error(
      `101 response has Upgrade ${JSON.stringify(headers.get('upgrade'))}, want ${UPGRADE_PROTOCOL}`,
    );
  }
  const connection = (headers.get('connection') ?? '').toLowerCase().split(',');
  if (!connection.some((token) => token.trim() === 'upgrade')) {
    throw new Error(
      `101 response has Connection ${JSON.stringify(headers.get('connection'))}, want "upgrade"`,
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Browser (js/wasm) path: a WebSocket whose binary messages carry the same byte stream. */
async function dialWebSocket(url: URL, initiation: string, deadline: Deadline): Promise<Dialed> {
  const scheme = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const target = `${scheme}//${url.host}/ts2021?${HANDSHAKE_HEADER}=${encodeURIComponent(initiation)}`;
  const ws = new WebSocket(target, UPGRADE_PROTOCOL, { perMessageDeflate: false });
  // Wrap at once: the server's first message can arrive right behind the 101, before an 'open'
  // listener's continuation runs, and ws drops messages nobody listens for.
  const transport = createWebSocketStream(ws);
  const reader = new StreamReader(transport, deadline);
  deadline.onExpire(() => transport.destroy());
  const refused = new Promise<never>((_, reject) => {
    ws.once('unexpected-response', (request, response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        if (size < MAX_ERROR_BODY) chunks.push(chunk);
        size += chunk.length;
      });
      response.on('end', () => {
        const body = Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY).toString('utf8').trim();
        reject(new Error(`unexpected HTTP response: ${response.statusCode}${body ? `: ${body}` : ''}`));
        request.destroy();
      });
    });
    ws.once('error', reject);
    ws.once('close', () => reject(new Error('WebSocket closed before it opened')));
  });
  const opened = once(ws, 'open');
  let stop = (): void => {};
  const expired = new Promise<never>((_, reject) => {
    stop = deadline.onExpire(reject);
  });
  for (const promise of [refused, opened, expired]) promise.catch(() => {});
  try {
    await Promise.race([opened, refused, expired]);
    if (ws.protocol !== UPGRADE_PROTOCOL) {
      throw new Error(`WebSocket subprotocol is ${JSON.stringify(ws.protocol)}, want ${UPGRADE_PROTOCOL}`);
    }
  } catch (err) {
    transport.destroy();
    throw err;
  } finally {
    stop();
  }
  return { transport, reader };
}

interface ConnectionParts {
  url: URL;
  conn: NoiseConn;
  machineKey: PrivateKey<'mkey'>;
  serverKey: MachinePublic;
  capVersion: number;
  earlyPayload: EarlyNoise | undefined;
}

/** One Noise connection with an HTTP/2 session on top, like tailscaled's single control connection. */
export class ControlConnection {
  readonly machineKey: PrivateKey<'mkey'>;
  readonly serverKey: MachinePublic;
  readonly capVersion: number;
  /** The early payload the server sent before HTTP/2, if any. */
  readonly earlyPayload: EarlyNoise | undefined;
  readonly noise: NoiseConn;
  readonly session: ClientHttp2Session;
  /** Settles when the connection is gone; resolves with the error that ended it, if any. */
  readonly closed: Promise<Error | undefined>;
  #error: Error | undefined;

  constructor(parts: ConnectionParts) {
    this.machineKey = parts.machineKey;
    this.serverKey = parts.serverKey;
    this.capVersion = parts.capVersion;
    this.earlyPayload = parts.earlyPayload;
    this.noise = parts.conn;
    // :scheme https and the control host as :authority, as the Go client sends them.
    this.session = http2.connect(`https://${parts.url.host}`, { createConnection: () => parts.conn });
    this.session.on('error', (err) => {
      this.#error ??= err;
    });
    this.noise.on('error', (err) => {
      this.#error ??= err;
    });
    this.closed = new Promise((resolve) => {
      let pending = 2;
      const done = () => {
        if (--pending === 0) resolve(this.#error);
      };
      if (this.session.closed) done();
      else this.session.once('close', done);
      if (this.noise.closed) done();
      else this.noise.once('close', done);
    });
  }

  /** One request with an optional JSON body (a Buffer is sent as is); collects the whole response. */
  request(
    method: string,
    path: string,
    body?: unknown,
    options: RequestOptions = {},
  ): Promise<ControlResponse> {
    const stream = this.#open(method, path, body, options.headers);
    return new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new Error(`${method} ${path}: no complete response within ${timeoutMs} ms`));
      }, timeoutMs);
      let headers: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        headers = h;
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        clearTimeout(timer);
        const data = Buffer.concat(chunks);
        resolve({
          status: Number(headers[':status']),
          headers,
          body: data,
          json: () => parseJson(data, method, path),
        });
      });
      stream.on('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`${method} ${path}: ${err.message}`, { cause: err }));
      });
      stream.on('close', () => {
        clearTimeout(timer);
        reject(
          new Error(`${method} ${path}: stream closed before the response ended (code ${stream.rstCode})`),
        );
      });
    });
  }

  /**
   * Starts `POST /machine/map` and resolves once the response headers are in. Frames are decoded as
   * zstd when the request body says `"Compress":"zstd"`, else as plain JSON.
   */
  async openMapStream(body: unknown, options: RequestOptions = {}): Promise<MapStream> {
    const stream = this.#open('POST', '/machine/map', body, options.headers);
    const compressed = (body as { Compress?: unknown } | null)?.Compress === 'zstd';
    const map = new MapStream(stream, compressed);
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        map.ready,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`POST /machine/map: no response headers within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      map.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return map;
  }

  #open(
    method: string,
    path: string,
    body: unknown,
    extraHeaders: Record<string, string | string[]> = {},
  ): ClientHttp2Stream {
    const data =
      body === undefined
        ? undefined
        : body instanceof Uint8Array
          ? body
          : Buffer.from(JSON.stringify(body), 'utf8');
    const headers: OutgoingHttpHeaders = { ':method': method, ':path': path, ...extraHeaders };
    if (data !== undefined) headers['content-length'] = data.length;
    // endStream must be explicit: Node ends GET requests by default, but TKA uses GET with a body.
    const stream = this.session.request(headers, { endStream: data === undefined });
    if (data !== undefined) stream.end(data);
    return stream;
  }

  /** Tears the connection down at once (open map streams included) and waits until it is closed. */
  async close(): Promise<void> {
    if (!this.session.destroyed) this.session.destroy();
    this.noise.destroy();
    await this.closed;
  }
}

function parseJson(data: Buffer, method: string, path: string): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    throw new Error(`${method} ${path}: response is not JSON: ${data.toString('utf8', 0, 200)}`);
  }
}

export interface MapMessage {
  /** The frame body as received: the zstd frame (or plain JSON when uncompressed). */
  raw: Buffer;
  /** The whole frame as received: the u32 little-endian length, then `raw`. */
  frame: Buffer;
  // biome-ignore lint/suspicious/noExplicitAny: test code reads arbitrary MapResponse shapes
  message: any;
}

interface Waiter {
  resolve(message: MapMessage): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * The response of a streaming map request: `[u32 LE length][frame]` messages, each decoded on its own
 * (every frame is an independent zstd frame). Messages are queued until `next()` takes them.
 */
export class MapStream {
  readonly stream: ClientHttp2Stream;
  /** Resolves when the response headers arrived. */
  readonly ready: Promise<void>;
  status = 0;
  headers: IncomingHttpHeaders = {};
  /** Every message received so far, in order (including ones `next()` already returned). */
  readonly messages: MapMessage[] = [];
  readonly #compressed: boolean;
  #taken = 0;
  #waiters: Waiter[] = [];
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Set once no more messages can come; later `next()` calls reject with it. */
  #finished: Error | undefined;

  constructor(stream: ClientHttp2Stream, compressed: boolean) {
    this.stream = stream;
    this.#compressed = compressed;
    this.ready = new Promise((resolve, reject) => {
      stream.once('response', (headers) => {
        this.headers = headers;
        this.status = Number(headers[':status']);
        resolve();
        // Node can emit the first DATA frame's 'data' before 'response' when headers and data
        // arrive in one read; that chunk waited in the buffer for the status.
        this.#parseBuffered();
      });
      stream.once('close', () =>
        reject(new Error('POST /machine/map: stream closed before response headers')),
      );
    });
    this.ready.catch(() => {});
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('end', () => this.#finish(this.#endError()));
    stream.on('error', (err) => this.#finish(new Error(`map stream failed: ${err.message}`, { cause: err })));
    stream.on('close', () => this.#finish(this.#endError()));
  }

  /** True once the stream ended and every received message has been taken. */
  get done(): boolean {
    return this.#finished !== undefined && this.#taken >= this.messages.length;
  }

  /** The next message not yet returned; rejects after `timeoutMs` or when the stream has ended. */
  next(timeoutMs = 5000): Promise<MapMessage> {
    const queued = this.messages[this.#taken];
    if (queued !== undefined) {
      this.#taken++;
      return Promise.resolve(queued);
    }
    if (this.#finished !== undefined) return Promise.reject(this.#finished);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(
            new Error(`no map message within ${timeoutMs} ms (${this.messages.length} received so far)`),
          );
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /**
   * Takes messages until one satisfies `match` and returns it (the ones before it are consumed too);
   * rejects when none does within `timeoutMs` overall, or the stream ends first.
   */
  // biome-ignore lint/suspicious/noExplicitAny: test code reads arbitrary MapResponse shapes
  async nextMatching(match: (message: any) => boolean, timeoutMs = 5000): Promise<MapMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching map message within ${timeoutMs} ms`);
      let next: MapMessage;
      try {
        next = await this.next(left);
      } catch (err) {
        throw new Error(`no matching map message: ${(err as Error).message}`, { cause: err });
      }
      if (match(next.message)) return next;
    }
  }

  /** Cancels the request (RST_STREAM CANCEL), like a client dropping its long poll. */
  close(): void {
    if (!this.stream.closed) this.stream.close(http2.constants.NGHTTP2_CANCEL);
    this.#finish(new Error('map stream closed by the client'));
  }

  #endError(): Error {
    const count = `${this.messages.length} message(s) received`;
    if (this.status !== 200) {
      const body = Buffer.concat(this.#chunks).toString('utf8', 0, Math.min(this.#buffered, MAX_ERROR_BODY));
      return new Error(`map request failed with status ${this.status}: ${body.trim()} (${count})`);
    }
    if (this.#buffered > 0)
      return new Error(`map stream ended inside a message (${this.#buffered} bytes left, ${count})`);
    return new Error(`map stream ended (${count})`);
  }

  #onData(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    this.#parseBuffered();
  }

  #parseBuffered(): void {
    // Before the headers (status 0) nothing is parsed; error bodies are kept whole for #endError.
    if (this.status !== 200 || this.#finished !== undefined) return;
    try {
      this.#parse();
    } catch (err) {
      this.stream.close(http2.constants.NGHTTP2_CANCEL);
      this.#finish(err as Error);
    }
  }

  #parse(): void {
    while (this.#buffered >= 4) {
      const first = this.#chunks[0] as Buffer;
      const head = first.length >= 4 ? first : this.#flatten();
      const length = head.readUInt32LE(0);
      if (length > MAX_MAP_MESSAGE) {
        throw new Error(
          `map message announces ${length} bytes (limit ${MAX_MAP_MESSAGE}); framing is broken`,
        );
      }
      if (this.#buffered < 4 + length) return;
      const all = this.#flatten();
      const frame = Buffer.from(all.subarray(0, 4 + length));
      const raw = frame.subarray(4);
      const rest = all.subarray(4 + length);
      this.#chunks = rest.length > 0 ? [rest] : [];
      this.#buffered = rest.length;
      this.#deliver({ raw, frame, message: this.#decode(raw) });
    }
  }

  #flatten(): Buffer {
    if (this.#chunks.length !== 1) this.#chunks = [Buffer.concat(this.#chunks, this.#buffered)];
    return this.#chunks[0] as Buffer;
  }

  #decode(raw: Buffer): unknown {
    let json: Buffer = raw;
    if (this.#compressed) {
      if (raw.length < 4 || raw.readUInt32LE(0) !== ZSTD_MAGIC) {
        throw new Error(
          `map message ${this.messages.length} is not a zstd frame (starts ${raw.subarray(0, 8).toString('hex')})`,
        );
      }
      json = decodeMapBody(raw);
    }
    try {
      return JSON.parse(json.toString('utf8'));
    } catch {
      throw new Error(`map message ${this.messages.length} is not JSON: ${json.toString('utf8', 0, 200)}`);
    }
  }

  #deliver(message: MapMessage): void {
    this.messages.push(message);
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      clearTimeout(waiter.timer);
      this.#taken++;
      waiter.resolve(message);
    }
  }

  #finish(error: Error): void {
    if (this.#finished !== undefined) return;
    this.#finished = error;
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.#waiters = [];
  }
}
