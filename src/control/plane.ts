/**
 * The protocol plane: `GET /key`, the `/ts2021` upgrade (native HTTP upgrade and WebSocket), the Noise
 * handshake, and HTTP/2 served over the Noise stream with the `/machine/*` routes.
 *
 *   client                                   weft
 *   POST /ts2021  Upgrade: tailscale-control-protocol
 *                 X-Tailscale-Handshake: base64(101-byte Noise IK initiation)
 *                 ────────────────────────▶  respond(): client machine key authenticated
 *                 ◀──  101 Switching Protocols + 51-byte response + early payload (one write)
 *   HTTP/2 prior knowledge, inside Noise records, many concurrent streams:
 *                 POST /machine/register, POST /machine/map (long poll, lite updates), …
 *
 * The Noise peer's machine key is the only identity a request has; every handler checks the node key
 * it names against it.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  constants as h2,
  type IncomingHttpHeaders,
  performServerHandshake,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { MapBroadcaster } from '../mapper/broadcaster.ts';
import type { MapSession } from '../mapper/session.ts';
import { encodeEarlyPayload, encodeHandshakeError, NoiseConn, NoiseError, respond } from '../noise/index.ts';
import type { Logger } from '../observe/logger.ts';
import type { Metrics } from '../observe/metrics.ts';
import type { PendingLogins } from '../state/logins.ts';
import type { Tailnet } from '../state/tailnet.ts';
import {
  MIN_SUPPORTED_CAPABILITY_VERSION,
  parseMapRequest,
  parseRegisterRequest,
  type RegisterRequest,
  unsupportedVersionMessage,
} from '../tailcfg/index.ts';
import { WeftError } from '../types/errors.ts';
import { MachinePublic, type PrivateKey } from '../types/keys.ts';
import type { TrustedProxies } from '../util/forwarded.ts';
import { addressKey, type RateLimit, RateLimiter, retryAfterSeconds } from '../util/rate-limit.ts';
import { BodyBudget, BodyError, readJson } from './body.ts';
import { handleMap } from './map.ts';
import { handleRegister, loginIdOf } from './register.ts';

export const UPGRADE_PROTOCOL = 'tailscale-control-protocol';

/** 101 bytes of initiation in standard base64 with padding: 135 characters and one '='. */
const HANDSHAKE_HEADER = /^[A-Za-z0-9+/]{135}=$/;

/** HTTP/2 settings for the Noise plane: long polls hold streams for hours, so the stream limit is not tiny. */
const H2_SETTINGS = { maxConcurrentStreams: 100, enablePush: false };

/** A control connection with no traffic at all for this long is closed (clients redial when needed). */
const IDLE_SESSION_MS = 3 * 60_000;

/** How often the TCP stack probes an idle control connection, so vanished clients are noticed. */
const TCP_KEEPALIVE_MS = 30_000;

export interface ControlPlaneOptions {
  tailnet: Tailnet;
  broadcaster: MapBroadcaster;
  serverKey: PrivateKey<'mkey'>;
  log: Logger;
  metrics?: Metrics;
  /** Interactive logins waiting to be completed (AuthURLs and their follow-up long polls). */
  logins: PendingLogins;
  /** What clients use as --login-server: AuthURLs are built on it. */
  serverUrl: string;
  /** Failed auth-key attempts and new interactive logins per remote address (defaults otherwise). */
  registerLimit?: RateLimit;
  /** Reverse proxies whose X-Forwarded-For names the client (`trusted_proxies`). */
  trustedProxies?: TrustedProxies;
}

/**
 * Per remote address: 30 failed auth keys or new logins at once (an office behind one NAT
 * onboarding), then one per 5 s, so one address holds at most ~200 of the 1024 pending logins. A
 * registration that succeeds costs nothing and a valid key is never refused, so a join storm through
 * one NAT is never slowed; guessing keys or flooding logins is, and an address past the limit starts
 * no new logins until it has earned a token back.
 */
export const DEFAULT_REGISTER_LIMIT: RateLimit = { burst: 30, perSecond: 0.2 };

/** Where a control connection comes from: the client's address (behind trusted proxies) and port. */
interface Origin {
  /** `address:port`, for the log. */
  remote: string;
  /** The client's rate-limit bucket (its address; IPv6 by /64). */
  rateKey: string;
}

interface Peer extends Origin {
  machineKey: MachinePublic;
  bodies: BodyBudget;
  /** Register requests held open on this connection (login follow-ups): it is not idle meanwhile. */
  heldRegisters: number;
}

export class ControlPlane {
  readonly #options: ControlPlaneOptions;
  readonly #log: Logger;
  readonly #webSockets = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: 1 << 20,
  });
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #streams = new Map<number, MapSession>();
  #closing = false;
  readonly #registerLimit: RateLimiter;

  constructor(options: ControlPlaneOptions) {
    this.#options = options;
    this.#log = options.log.child({ component: 'control' });
    this.#registerLimit = new RateLimiter(options.registerLimit ?? DEFAULT_REGISTER_LIMIT);
  }

  /** The body of `GET /key?v=N`, or undefined when `v` is not a version number. */
  keyResponse(query: { v?: unknown }): { legacyPublicKey: string; publicKey: string } | undefined {
    if (typeof query.v !== 'string' || !/^[0-9]+$/.test(query.v)) return undefined;
    // The legacy (pre-Noise) key is only used for Windows device certificates; zero says "none".
    return { legacyPublicKey: MachinePublic.zero, publicKey: this.#options.serverKey.publicKey };
  }

  /** A `/ts2021` request without an Upgrade header: logged and counted; returns the reason to answer with. */
  refuseWithoutUpgrade(remote: string): string {
    const reason = `missing Upgrade header: /ts2021 expects "Upgrade: ${UPGRADE_PROTOCOL}" or a WebSocket`;
    this.#refused('bad-upgrade', { remote, reason });
    return reason;
  }

  /**
   * Handles an HTTP upgrade if it is for `/ts2021`; returns false for any other path so the caller can
   * try the next protocol (DERP) or refuse it.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    // `//` and other odd request targets are not URLs at all; they are simply not ours.
    const url = URL.parse(req.url ?? '/', 'http://weft.invalid');
    if (url === null || url.pathname !== '/ts2021') return false;
    if (this.#closing) {
      socket.destroy(); // shutting down: the client will find the next server (or this one, restarted)
      return true;
    }
    // Behind a trusted proxy, the client's own address (rate limits and logs are per client).
    const socketAddress = req.socket.remoteAddress ?? '';
    const client = this.#options.trustedProxies?.clientOf(socketAddress, req.headers['x-forwarded-for']);
    const remote = `${client ?? socketAddress}:${req.socket.remotePort}`;
    const from: Origin = { remote, rateKey: addressKey(client ?? socketAddress) };
    const upgrade = (req.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') {
      this.#webSockets.handleUpgrade(req, socket, head, (ws) => {
        // A protocol error from the peer (e.g. an unmasked frame) must end this socket, not the process.
        ws.on('error', () => ws.terminate());
        if (ws.protocol !== UPGRADE_PROTOCOL) {
          ws.close(1008, `subprotocol must be ${UPGRADE_PROTOCOL}`);
          return;
        }
        // URLSearchParams turns a literal '+' into a space; the value is standard base64, so undo that.
        const initiation = (url.searchParams.get('X-Tailscale-Handshake') ?? '').replaceAll(' ', '+');
        const transport = createWebSocketStream(ws);
        transport.on('error', () => transport.destroy());
        this.#accept(transport, initiation, from, { upgradeHeader: false, head: Buffer.alloc(0) });
      });
      return true;
    }
    if (upgrade !== UPGRADE_PROTOCOL) {
      this.#refuseHttp(
        socket,
        remote,
        upgrade === '' ? 'missing Upgrade header' : `unknown protocol "${upgrade}"`,
      );
      return true;
    }
    this.#accept(socket, String(req.headers['x-tailscale-handshake'] ?? ''), from, {
      upgradeHeader: true,
      head,
    });
    return true;
  }

  /** Logs and counts a refusal; `kind` is a short fixed label for the metric. */
  #refused(kind: string, fields: Record<string, unknown>, message = 'control connection refused'): void {
    this.#options.metrics?.controlRefused.inc({ reason: kind });
    this.#log.warn(fields, message);
  }

  #refuseHttp(socket: Duplex, remote: string, reason: string, kind = 'bad-upgrade'): void {
    this.#refused(kind, { remote, reason });
    socket.end(
      `HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${reason}\n`,
    );
  }

  #accept(
    transport: Duplex,
    headerValue: string,
    { remote, rateKey }: Origin,
    mode: { upgradeHeader: boolean; head: Buffer },
  ): void {
    const refuse = (reason: string, kind: string) => {
      if (mode.upgradeHeader) this.#refuseHttp(transport, remote, reason, kind);
      else {
        this.#refused(kind, { remote, reason });
        transport.destroy();
      }
    };
    if (!HANDSHAKE_HEADER.test(headerValue)) {
      refuse('X-Tailscale-Handshake must be the base64 of a 101-byte Noise initiation', 'bad-handshake');
      return;
    }
    let handshake: ReturnType<typeof respond>;
    try {
      handshake = respond(Buffer.from(headerValue, 'base64'), this.#options.serverKey.raw());
    } catch (err) {
      if (!(err instanceof NoiseError)) throw err;
      refuse(`Noise handshake failed: ${err.message}`, 'bad-handshake');
      return;
    }
    const peer: Peer = {
      machineKey: MachinePublic.fromRaw(handshake.peerStatic),
      remote,
      rateKey,
      bodies: new BodyBudget(),
      heldRegisters: 0,
    };
    if (
      transport instanceof Object &&
      'setKeepAlive' in transport &&
      typeof transport.setKeepAlive === 'function'
    ) {
      transport.setKeepAlive(true, TCP_KEEPALIVE_MS);
    }

    const switching = mode.upgradeHeader
      ? `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${UPGRADE_PROTOCOL}\r\nConnection: upgrade\r\n\r\n`
      : '';
    if (handshake.version < MIN_SUPPORTED_CAPABILITY_VERSION) {
      // The client logs a handshake error message as `server error: "<text>"`.
      const message = unsupportedVersionMessage(handshake.version);
      this.#refused(
        'client-too-old',
        { remote, machine_key: peer.machineKey, cap: handshake.version },
        'control connection refused: client too old',
      );
      transport.end(Buffer.concat([Buffer.from(switching), encodeHandshakeError(message)]));
      return;
    }

    // One write for the 101, the Noise response and the early payload, like Tailscale's server.
    const cork = 'cork' in transport && typeof transport.cork === 'function';
    if (cork) transport.cork();
    transport.write(Buffer.concat([Buffer.from(switching), handshake.response]));
    // Bytes after the upgrade request (normally none: the client waits for our response first).
    const conn = new NoiseConn(transport, handshake.keys, { leftover: mode.head });
    conn.write(encodeEarlyPayload({ nodeKeyChallenge: `chalpub:${randomBytes(32).toString('hex')}` }));
    if (cork) process.nextTick(() => transport.uncork());
    conn.on('error', (err: Error) => {
      // A broken record (garbage, oversize, failed decryption) ends the connection; say why.
      if (err instanceof NoiseError) {
        this.#refused(
          `record-${err.code}`,
          { remote, machine_key: peer.machineKey, reason: err.message },
          'control connection closed: bad Noise record',
        );
      } else
        this.#log.info(
          { remote, machine_key: peer.machineKey, err: err.message },
          'control connection error',
        );
    });
    this.#serveHttp2(conn, peer);
  }

  #serveHttp2(conn: NoiseConn, peer: Peer): void {
    const session = performServerHandshake(conn, { settings: H2_SETTINGS });
    this.#sessions.add(session);
    // A connection with nothing going on is closed; a map long poll is never idle (keep-alives < 60 s),
    // and a login follow-up waits silently for minutes, so the connection stays while one is held.
    session.setTimeout(IDLE_SESSION_MS, () => {
      if (peer.heldRegisters === 0) session.close();
    });
    session.on('stream', (stream, headers) => this.#route(stream, headers, peer));
    session.on('error', (err) => {
      if (err instanceof NoiseError) return; // a bad record: the Noise connection's handler counted it
      this.#refused(
        'http2-error',
        { remote: peer.remote, reason: err.message },
        'control connection closed: HTTP/2 error',
      );
    });
    session.once('close', () => {
      this.#sessions.delete(session);
      conn.destroy();
    });
    conn.once('close', () => {
      // After the turn in which Node's stream wrapper cancels its pending write: destroying the session
      // sooner resets open streams into a write still in flight (ERR_INTERNAL_ASSERTION, uncaught).
      setImmediate(() => {
        if (!session.destroyed) session.destroy();
      });
    });
  }

  #route(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: Peer): void {
    stream.on('error', () => undefined); // a reset stream is normal; the close handlers clean up
    const method = headers[':method'];
    const path = String(headers[':path'] ?? '').split('?')[0];
    const route = `${method} ${path}`;
    const run = async () => {
      switch (route) {
        case 'POST /machine/register':
          return this.#register(stream, headers, peer);
        case 'POST /machine/map':
          return this.#map(stream, headers, peer);
        case 'POST /machine/update-health':
          // Only clients up to v1.88 send it; best-effort on their side, nothing to do on ours.
          stream.resume();
          return respondText(stream, 204, '');
        default:
          stream.resume();
          if (path?.startsWith(SSH_ACTION_PREFIX)) return respondJson(stream, 200, SSH_CHECK_REJECTED);
          return respondText(stream, 404, `${route} is not served by weft`);
      }
    };
    run().catch((err: unknown) => this.#fail(stream, err, peer, route));
  }

  async #register(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: Peer): Promise<void> {
    const request = parseRegisterRequest(await readJson(stream, headers, peer.bodies));
    const cost = this.#costOf(request, peer);
    // A new login takes a slot among the pending ones: past the limit it is not created at all.
    if (cost === 'new-login') {
      const decision = this.#registerLimit.check(peer.rateKey);
      if (!decision.ok) {
        this.#refused('rate-limited', { remote: peer.remote, reason: 'too many failed or new logins' });
        return respondRateLimited(stream, decision);
      }
    }
    // A login follow-up can wait for minutes; when the client goes away, the wait must end with it.
    const gone = new AbortController();
    const abort = () => gone.abort();
    stream.once('close', abort);
    if (stream.destroyed) abort();
    peer.heldRegisters += 1;
    try {
      const response = await handleRegister(request, {
        tailnet: this.#options.tailnet,
        log: this.#log.child({ remote: peer.remote }),
        machineKey: peer.machineKey,
        logins: this.#options.logins,
        serverUrl: this.#options.serverUrl,
        signal: gone.signal,
      });
      // A login is charged when it hands out a new AuthURL; an auth key when it is refused. A refusal
      // past the limit is answered 429 instead, which clients from capability version 137 wait out.
      if (cost !== 'free' && response.AuthURL !== undefined) this.#registerLimit.charge(peer.rateKey);
      if (cost === 'auth-key' && response.Error !== undefined) {
        const decision = this.#registerLimit.countFailure(peer.rateKey);
        if (!decision.ok) {
          this.#refused('rate-limited', { remote: peer.remote, reason: 'too many failed auth keys' });
          return respondRateLimited(stream, decision);
        }
      }
      respondJson(stream, 200, response);
    } finally {
      peer.heldRegisters -= 1;
      stream.off('close', abort);
    }
  }

  /**
   * What a register request can cost its address: trying an auth key (charged if refused), starting an
   * interactive login (limited, charged when it yields an AuthURL), or nothing — a known node, a logout,
   * or the follow-up of a login this very device is waiting on (an office onboarding must not lock out
   * devices already in the middle of their login).
   */
  #costOf(request: RegisterRequest, peer: Peer): 'free' | 'auth-key' | 'new-login' {
    const { tailnet, logins, serverUrl } = this.#options;
    if (request.NodeKey === undefined || tailnet.nodeByKey(request.NodeKey) !== undefined) return 'free';
    if (request.Expiry !== undefined && request.Expiry.getTime() <= tailnet.now().getTime()) return 'free';
    const authKey = request.Auth?.AuthKey;
    if (authKey !== undefined && authKey !== '') return 'auth-key';
    const id = request.Followup === '' ? undefined : loginIdOf(request.Followup, serverUrl);
    const waiting = id === undefined ? undefined : logins.get(id);
    return waiting?.machineKey === peer.machineKey && waiting.nodeKey === request.NodeKey
      ? 'free'
      : 'new-login';
  }

  async #map(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: Peer): Promise<void> {
    const request = parseMapRequest(await readJson(stream, headers, peer.bodies));
    handleMap(stream, request, {
      tailnet: this.#options.tailnet,
      broadcaster: this.#options.broadcaster,
      log: this.#log.child({ remote: peer.remote }),
      machineKey: peer.machineKey,
      streams: this.#streams,
    });
  }

  #fail(stream: ServerHttp2Stream, err: unknown, peer: Peer, route: string): void {
    const known = err instanceof BodyError || err instanceof WeftError;
    if (!known) this.#log.error({ err, route, remote: peer.remote }, 'control request failed');
    // WireError is a WeftError (BAD_REQUEST); both carry the status that fits.
    respondText(stream, known ? err.status : 500, known ? err.message : 'internal error');
  }

  /** Closes every control connection (shutdown); clients reconnect to the next server. */
  close(): void {
    // Clients redial at once; a connection accepted after this point would keep the process alive.
    this.#closing = true;
    for (const session of this.#sessions) session.close();
    for (const session of this.#sessions) session.destroy();
    this.#webSockets.close();
  }
}

/**
 * Where a destination node asks what to do with an SSH session in check mode (the policy's
 * holdAndDelegate URL). Checking needs the user to re-authenticate in a browser, which weft's login
 * flows do not offer yet, so every check is refused: safe, and tailscaled tells the user why.
 */
const SSH_ACTION_PREFIX = '/machine/ssh/action/';
const SSH_CHECK_REJECTED = {
  reject: true,
  message: 'weft cannot re-authenticate SSH check-mode sessions yet; use "action": "accept" in the policy\n',
};

function respondText(stream: ServerHttp2Stream, status: number, text: string): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' });
  stream.end(text === '' ? undefined : `${text}\n`);
}

/** Clients with capability version 137 and newer wait Retry-After and say so; older ones back off. */
function respondRateLimited(stream: ServerHttp2Stream, decision: { retryAfterMs: number }): void {
  if (stream.destroyed || stream.closed) return;
  const seconds = retryAfterSeconds(decision);
  stream.respond({
    ':status': 429,
    'content-type': 'text/plain; charset=utf-8',
    'retry-after': String(seconds),
  });
  stream.end(`too many failed or new logins from this address; retry in ${seconds} s\n`);
}

function respondJson(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ':status': status, 'content-type': 'application/json' });
  stream.end(JSON.stringify(body));
}
