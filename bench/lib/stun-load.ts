/**
 * STUN load: UDP client sockets, each bound to its own loopback source address (127.0.0.2, 127.0.0.3,
 * …; all of 127/8 is loopback on Linux) and each keeping `window` Binding Requests outstanding. A request
 * is replaced as soon as its answer arrives, or after `timeoutMs` without one (the server dropped or
 * refused it, e.g. weft's per-source rate limit). A response counts as valid when it parses as a Binding
 * Success for a transaction still outstanding and its XOR-MAPPED-ADDRESS is the socket's own address.
 */
import { createSocket, type Socket } from 'node:dgram';
import { encodeBindingRequest, parseBindingResponse, TRANSACTION_ID_SIZE } from '../../src/stun/index.ts';

export interface StunLoadOptions {
  port: number;
  /** Source IPs, one socket each. */
  sources: string[];
  /**
   * Outstanding requests: per socket, or in all when `roundRobin` (then each request, first and
   * replacement alike, goes out of the next socket in turn, spreading the load evenly over the sources).
   */
  window: number;
  roundRobin?: boolean;
  timeoutMs: number;
}

export interface StunCounters {
  sent: number;
  valid: number;
  invalid: number;
  timedOut: number;
  sendErrors: number;
}

interface Client {
  socket: Socket;
  ip: string;
  port: number;
  id: number;
  seq: number;
  /** seq → performance.now() when sent; insertion order is send order. */
  outstanding: Map<number, number>;
}

const SWEEP_INTERVAL_MS = 20;

/** The i-th source address: 127.0.0.2 … 127.0.0.254, then 127.0.1.2 … 127.0.1.254, and so on. */
export function loopbackSource(i: number): string {
  const net = Math.floor(i / 253);
  return `127.${(net >> 8) & 0xff}.${net & 0xff}.${(i % 253) + 2}`;
}

export class StunLoad {
  readonly counters: StunCounters = { sent: 0, valid: 0, invalid: 0, timedOut: 0, sendErrors: 0 };
  readonly #options: StunLoadOptions;
  #clients: Client[] = [];
  #running = false;
  #cursor = 0;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(options: StunLoadOptions) {
    this.#options = options;
  }

  async open(): Promise<void> {
    const { port, sources } = this.#options;
    this.#clients = await Promise.all(
      sources.map(async (ip, id): Promise<Client> => {
        const socket = createSocket('udp4');
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.bind(0, ip, () => {
            socket.off('error', reject);
            resolve();
          });
        });
        await new Promise<void>((resolve) => socket.connect(port, '127.0.0.1', resolve));
        const client: Client = {
          socket,
          ip,
          port: socket.address().port,
          id,
          seq: 0,
          outstanding: new Map(),
        };
        socket.on('message', (msg) => this.#onMessage(client, msg));
        socket.on('error', () => {
          this.counters.sendErrors += 1;
        });
        return client;
      }),
    );
  }

  start(): void {
    this.#running = true;
    if (this.#options.roundRobin === true) {
      for (let i = 0; i < this.#options.window; i += 1) this.#sendNext(undefined);
    } else {
      for (const client of this.#clients)
        for (let i = 0; i < this.#options.window; i += 1) this.#send(client);
    }
    this.#sweeper = setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS);
  }

  stop(): void {
    this.#running = false;
    clearInterval(this.#sweeper);
  }

  async close(): Promise<void> {
    this.stop();
    await Promise.all(
      this.#clients.map((c) => new Promise<void>((resolve) => c.socket.close(() => resolve()))),
    );
    this.#clients = [];
  }

  readonly #onSent = (err: Error | null) => {
    if (err !== null) this.counters.sendErrors += 1;
  };

  /** The replacement for a request of `client` that was answered or timed out. */
  #sendNext(client: Client | undefined): void {
    if (!this.#running) return;
    if (client !== undefined && this.#options.roundRobin !== true) {
      this.#send(client);
      return;
    }
    const next = this.#clients[this.#cursor] as Client;
    this.#cursor = (this.#cursor + 1) % this.#clients.length;
    this.#send(next);
  }

  #send(client: Client): void {
    client.seq = (client.seq + 1) >>> 0;
    const seq = client.seq;
    const txid = Buffer.alloc(TRANSACTION_ID_SIZE);
    txid.writeUInt32BE(client.id, 0);
    txid.writeUInt32BE(seq, 8);
    client.outstanding.set(seq, performance.now());
    this.counters.sent += 1;
    client.socket.send(encodeBindingRequest(txid), this.#onSent);
  }

  #onMessage(client: Client, msg: Buffer): void {
    const mapped = parseBindingResponse(msg);
    const seq = msg.length >= 20 ? msg.readUInt32BE(16) : -1;
    if (
      mapped === undefined ||
      mapped.ip !== client.ip ||
      mapped.port !== client.port ||
      msg.readUInt32BE(8) !== client.id ||
      !client.outstanding.delete(seq)
    ) {
      this.counters.invalid += 1;
      return;
    }
    this.counters.valid += 1;
    this.#sendNext(client);
  }

  #sweep(): void {
    const expired = performance.now() - this.#options.timeoutMs;
    for (const client of this.#clients) {
      for (const [seq, sentAt] of client.outstanding) {
        if (sentAt > expired) break;
        client.outstanding.delete(seq);
        this.counters.timedOut += 1;
        this.#sendNext(client);
      }
    }
  }
}

/** Sends Binding Requests until one is answered (the server is up), or throws after `timeoutMs`. */
export async function probeStun(port: number, timeoutMs = 10_000): Promise<void> {
  const load = new StunLoad({ port, sources: ['127.0.0.1'], window: 1, timeoutMs: 200 });
  await load.open();
  try {
    load.start();
    const deadline = performance.now() + timeoutMs;
    while (load.counters.valid === 0) {
      if (performance.now() > deadline) throw new Error(`no STUN answer on 127.0.0.1:${port}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await load.close();
  }
}
