/**
 * The STUN server: one UDP socket answering Binding Requests with the sender's address as seen here.
 *
 * Each answer goes out of the socket the request arrived on, so it carries the source address the
 * client sent to (docs/derp-stun-nat.md §8.7); a multi-homed host runs one server per address. A
 * dual-stack socket (bound to `::`) sees IPv4 peers as `::ffff:a.b.c.d`; the codec unmaps them so they
 * are answered as IPv4.
 *
 * Anything that is not a well-formed Binding Request is dropped without a word. Valid requests are
 * rate-limited per source IP: UDP source addresses can be spoofed, so without a limit anyone could make
 * this server send a stream of packets at a victim. An answer is at most 44 bytes (32 for IPv4), so the
 * gain over a bare 20-byte request is small; the limit keeps the server from being a free, anonymous
 * packet cannon.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from '../observe/logger.ts';
import { encodeBindingResponse, parseBindingRequest } from './codec.ts';

/**
 * Defaults for the per-source limit. A netcheck sends at most 3 probes per family to each region
 * (usually 1: the first answer cancels the rest), every 20–26 s or on a link change, so one node needs
 * well under 1 request/s. 20/s with a burst of 40 still covers a few hundred nodes sharing one public
 * IPv4 address behind a NAT (they share a bucket), yet caps what a spoofed source can make us send at
 * about a kilobyte per second.
 */
export const DEFAULT_PER_SOURCE_RATE = 20;
export const DEFAULT_PER_SOURCE_BURST = 40;
/**
 * Upper bound on tracked sources. An entry costs ~150 bytes, so this is ~10 MiB at worst; a flood
 * of spoofed sources churns the table instead of growing it.
 */
export const DEFAULT_MAX_TRACKED_SOURCES = 65_536;
/** Socket receive buffer: a burst of netchecks (or a benchmark) should queue, not drop. */
const RECV_BUFFER_SIZE = 4 * 1024 * 1024;
const SWEEP_INTERVAL_MS = 10_000;
/** At most one warning per interval about failed sends; a flood must not become a log flood. */
const SEND_WARNING_INTERVAL_MS = 60_000;

export interface StunServerOptions {
  /** IP address (or host name) to bind; `::` is dual-stack and answers IPv4 as well. */
  address: string;
  /** UDP port; 0 picks a free one (see `StunServer.port`). */
  port: number;
  log: Logger;
  /** Answers per second per source IP, sustained. */
  perSourceRate?: number;
  /** Answers a source IP may get in a burst before the rate applies. */
  perSourceBurst?: number;
  /** How many source IPs the rate limiter tracks at most (oldest evicted first). */
  maxTrackedSources?: number;
  /** Names the setting in bind errors; defaults to the config key. */
  setting?: string;
}

export interface StunStats {
  /** Binding responses handed to the socket. */
  answered: number;
  /** Datagrams that were not a well-formed Binding Request (or could not be answered). */
  dropped: number;
  /** Valid requests refused by the per-source limit. */
  rateLimited: number;
}

export interface StunServer {
  /** The bound address, e.g. `0.0.0.0` or `::`. */
  readonly address: string;
  /** The bound port: the real one when 0 was asked for. */
  readonly port: number;
  /** Live counters since the start. */
  readonly stats: Readonly<StunStats>;
  /** Stops answering and releases the port. Safe to call more than once. */
  close(): Promise<void>;
}

/** A bind failure, with a message an admin can act on; the system error is the `cause`. */
export class StunListenError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StunListenError';
  }
}

const BIND_REASONS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'no interface on this host has that address',
  EACCES: 'permission denied',
  EAFNOSUPPORT: 'this host has no support for the address family',
  ENOTFOUND: 'the host name does not resolve',
};

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  last: number;
}

/**
 * Token buckets keyed by source IP. An entry idle long enough to refill completely is the same as no
 * entry, so the periodic sweep deletes exactly those and changes no decision; the size cap evicts the
 * oldest entry only when a flood of distinct sources outpaces the sweep.
 */
export class SourceLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #max: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(rate: number, burst: number, max: number) {
    this.#rate = rate / 1000;
    this.#burst = burst;
    this.#max = max;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes a token for `source`; false when it has none left. */
  allow(source: string, now: number): boolean {
    const bucket = this.#buckets.get(source);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#max) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
      this.#buckets.set(source, { tokens: this.#burst - 1, last: now });
      return true;
    }
    bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.last) * this.#rate);
    bucket.last = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Forgets sources whose bucket has refilled completely. */
  sweep(now: number): void {
    for (const [source, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.last) * this.#rate >= this.#burst) this.#buckets.delete(source);
    }
  }
}

function checkLimit(name: string, value: number, min: number): number {
  if (!(Number.isFinite(value) && value >= min)) {
    throw new RangeError(`STUN ${name} must be a number of at least ${min}, got ${value}`);
  }
  return value;
}

/** Picks the socket type for `address`, resolving a host name to its first address. */
async function resolveBind(address: string): Promise<{ host: string; family: 4 | 6 }> {
  const family = isIP(address);
  if (family === 4 || family === 6) return { host: address, family };
  const resolved = await lookup(address);
  return { host: resolved.address, family: resolved.family === 6 ? 6 : 4 };
}

function bind(socket: Socket, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      socket.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      socket.off('error', onError);
      resolve();
    };
    socket.once('error', onError);
    socket.once('listening', onListening);
    socket.bind(port, host);
  });
}

/** Binds the STUN socket and starts answering; rejects with a StunListenError if it cannot bind. */
export async function startStunServer(options: StunServerOptions): Promise<StunServer> {
  const { address, port, log } = options;
  const rate = checkLimit('per-source rate', options.perSourceRate ?? DEFAULT_PER_SOURCE_RATE, 0.001);
  const burst = checkLimit('per-source burst', options.perSourceBurst ?? DEFAULT_PER_SOURCE_BURST, 1);
  const limiter = new SourceLimiter(rate, burst, options.maxTrackedSources ?? DEFAULT_MAX_TRACKED_SOURCES);
  const where = `${hostPort(address, port)} (${options.setting ?? 'derp.server.stun_listen_addr'})`;

  let socket: Socket;
  try {
    const { host, family } = await resolveBind(address);
    socket =
      host === '::'
        ? createSocket({ type: 'udp6', ipv6Only: false })
        : createSocket(family === 6 ? 'udp6' : 'udp4');
    try {
      await bind(socket, host, port);
    } catch (err) {
      try {
        socket.close();
      } catch {
        // Never bound: nothing to release.
      }
      throw err;
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = (code !== undefined && BIND_REASONS[code]) || (err as Error).message;
    throw new StunListenError(`cannot listen for STUN on ${where}: ${reason}`, { cause: err });
  }

  try {
    socket.setRecvBufferSize(RECV_BUFFER_SIZE);
  } catch (err) {
    // The kernel caps (or refuses) large buffers for unprivileged processes; the default still works.
    log.debug({ err }, 'STUN: could not enlarge the receive buffer');
  }

  const stats: StunStats = { answered: 0, dropped: 0, rateLimited: 0 };
  let sendFailures = 0;
  let lastSendWarning = Number.NEGATIVE_INFINITY;
  // One callback for every send, not a closure per packet.
  const onSent = (err: Error | null) => {
    if (err === null) return;
    sendFailures++;
    const now = performance.now();
    if (now - lastSendWarning < SEND_WARNING_INTERVAL_MS) return;
    lastSendWarning = now;
    log.warn({ err, failures: sendFailures }, 'STUN: sending a response failed');
  };

  const onMessage = (msg: Buffer, peer: RemoteInfo) => {
    try {
      const request = parseBindingRequest(msg);
      if (request === undefined) {
        stats.dropped++;
        return;
      }
      if (!limiter.allow(peer.address, performance.now())) {
        stats.rateLimited++;
        return;
      }
      socket.send(
        encodeBindingResponse(request.transactionId, peer.address, peer.port),
        peer.port,
        peer.address,
        onSent,
      );
      stats.answered++;
    } catch (err) {
      // Nothing a sender puts in a datagram may take the process down.
      stats.dropped++;
      log.warn({ err, peer: hostPort(peer.address, peer.port) }, 'STUN: could not answer a request');
    }
  };
  socket.on('message', onMessage);
  socket.on('error', (err) => log.error({ err }, 'STUN socket error'));

  const sweeper = setInterval(() => limiter.sweep(performance.now()), SWEEP_INTERVAL_MS);
  sweeper.unref();

  const bound = socket.address();
  log.info({ address: bound.address, port: bound.port }, 'STUN listening');

  let closing: Promise<void> | undefined;
  return {
    address: bound.address,
    port: bound.port,
    stats,
    close() {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(sweeper);
        socket.off('message', onMessage);
        socket.close(() => resolve());
      });
      return closing;
    },
  };
}
