/**
 * DERP relay load: sender/receiver pairs of DERP clients. Each sender writes SendPacket frames to its
 * receiver's key as fast as its socket takes them (a `false` from the write means "buffer full": it
 * waits for 'drain'); each receiver counts RecvPacket frames and payload bytes.
 *
 * The frames are encoded once and the same bytes written again and again (`framesPerWrite` frames per
 * socket write), so the generator spends its CPU on the socket rather than on building frames; on the
 * wire it is exactly what `DerpClient.send()` writes.
 *
 * Counters live in a Float64Array (see COUNTER_*), which is backed by a SharedArrayBuffer when the load
 * runs in worker threads (relay-worker.ts): one writer per slot, read by the main thread at any time.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DerpClient } from '../../src/derp/client.ts';
import { encodeFrame, FrameType } from '../../src/derp/wire.ts';
import { NodePublic, PrivateKey } from '../../src/types/keys.ts';

export const COUNTER_SENT = 0;
export const COUNTER_RECEIVED = 1;
export const COUNTER_BYTES = 2;
export const COUNTER_ERRORS = 3;
export const COUNTER_SLOTS = 4;

export interface RelayLoadOptions {
  url: string;
  pairs: number;
  packetSize: number;
  /** Frames per socket write (1 = one write per packet, as tailscaled's client roughly does under load). */
  framesPerWrite: number;
  /**
   * 0: flood — send whenever the socket takes more. N: at most N packets in flight per pair (sent and
   * not yet received), like an inner transport's congestion window; packets presumed lost after a
   * stall are written off so the window cannot leak shut.
   */
  window: number;
}

/** Writes per sender per event-loop turn before yielding, so receivers and timers get their turn. */
const WRITES_PER_TURN = 16;

/** With a window: how long a full window may make no progress before its packets count as lost. */
const STALL_MS = 50;

interface Pair {
  sender: DerpClient;
  receiver: DerpClient;
  burst: Buffer;
  sent: number;
  /** Received, plus packets written off as lost after a stall. */
  settled: number;
  /** Wakes the sender when the window opens again. */
  wake: (() => void) | undefined;
}

export class RelayLoad {
  readonly #counters: Float64Array;
  readonly #options: RelayLoadOptions;
  #pairs: Pair[] = [];
  #running = false;
  #pumps: Promise<void>[] = [];

  constructor(options: RelayLoadOptions, counters: Float64Array = new Float64Array(COUNTER_SLOTS)) {
    this.#options = options;
    this.#counters = counters;
  }

  get counters(): Float64Array {
    return this.#counters;
  }

  /** Connects every pair (handshakes in parallel, a few at a time). */
  async connect(): Promise<void> {
    const { url, pairs, packetSize, framesPerWrite } = this.#options;
    const payload = Buffer.alloc(packetSize, 0x5a); // not disco: goes to the data queue
    const counters = this.#counters;
    const connectPair = async (): Promise<Pair> => {
      const senderKey = PrivateKey.generate(NodePublic);
      const receiverKey = PrivateKey.generate(NodePublic);
      const receiver = await DerpClient.connect(url, receiverKey);
      const sender = await DerpClient.connect(url, senderKey);
      const window = this.#options.window;
      receiver.events.packet = (_src, data) => {
        counters[COUNTER_RECEIVED] = (counters[COUNTER_RECEIVED] as number) + 1;
        counters[COUNTER_BYTES] = (counters[COUNTER_BYTES] as number) + data.length;
        pair.settled += 1;
        if (pair.wake !== undefined && pair.sent - pair.settled <= window / 2) {
          const wake = pair.wake;
          pair.wake = undefined;
          wake();
        }
      };
      const onClose = (error?: Error) => {
        if (this.#running || error !== undefined)
          counters[COUNTER_ERRORS] = (counters[COUNTER_ERRORS] as number) + 1;
      };
      receiver.events.close = onClose;
      sender.events.close = onClose;
      const frame = encodeFrame(FrameType.SendPacket, NodePublic.toRaw(receiverKey.publicKey), payload);
      const burst = Buffer.concat(Array.from({ length: framesPerWrite }, () => frame));
      const pair: Pair = { sender, receiver, burst, sent: 0, settled: 0, wake: undefined };
      return pair;
    };
    const CONCURRENCY = 10;
    for (let i = 0; i < pairs; i += CONCURRENCY) {
      const batch = Math.min(CONCURRENCY, pairs - i);
      this.#pairs.push(...(await Promise.all(Array.from({ length: batch }, connectPair))));
    }
  }

  start(): void {
    this.#running = true;
    this.#pumps = this.#pairs.map((pair) => this.#pump(pair));
  }

  /** Stops the senders and waits until every one has returned. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#pumps);
  }

  close(): void {
    this.#running = false;
    for (const { sender, receiver } of this.#pairs) {
      sender.close();
      receiver.close();
    }
    this.#pairs = [];
  }

  async #pump(pair: Pair): Promise<void> {
    const { sender, burst } = pair;
    const counters = this.#counters;
    const frames = this.#options.framesPerWrite;
    const window = this.#options.window;
    while (this.#running && !sender.closed) {
      for (let i = 0; i < WRITES_PER_TURN; i += 1) {
        if (window > 0 && pair.sent - pair.settled + frames > window) await this.#windowOpen(pair);
        if (!this.#running || sender.closed) return;
        counters[COUNTER_SENT] = (counters[COUNTER_SENT] as number) + frames;
        pair.sent += frames;
        if (!sender.writeRaw(burst)) await sender.drained();
      }
      await nextTurn();
    }
  }

  /** Resolves when half the window has been received, or writes the in-flight packets off after a stall. */
  async #windowOpen(pair: Pair): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      pair.wake = resolve;
      timer = setTimeout(() => {
        pair.wake = undefined;
        pair.settled = pair.sent;
        resolve();
      }, STALL_MS);
    });
    clearTimeout(timer);
  }
}

/** The relay load as the benchmark drives it: in this thread, or split over worker threads. */
export interface RelayGenerator {
  connect(): Promise<void>;
  start(): void;
  stop(): Promise<void>;
  /** Sum of all counters so far (see COUNTER_*). */
  read(): Float64Array;
  close(): Promise<void>;
}

export function inProcessGenerator(options: RelayLoadOptions): RelayGenerator {
  const load = new RelayLoad(options);
  return {
    connect: () => load.connect(),
    start: () => load.start(),
    stop: () => load.stop(),
    read: () => Float64Array.from(load.counters),
    close: async () => load.close(),
  };
}

export type WorkerCommand = 'connect' | 'start' | 'stop' | 'close';

export interface WorkerInit {
  options: RelayLoadOptions;
  counters: SharedArrayBuffer;
}

/** Splits the pairs over `workers` worker threads (relay-worker.ts), each with its own event loop. */
export async function workerGenerator(options: RelayLoadOptions, workers: number): Promise<RelayGenerator> {
  const { Worker } = await import('node:worker_threads');
  const count = Math.max(1, Math.min(workers, options.pairs));
  const shared = new SharedArrayBuffer(count * COUNTER_SLOTS * Float64Array.BYTES_PER_ELEMENT);
  const all = new Float64Array(shared);
  const threads = Array.from({ length: count }, (_, i) => {
    const pairs = Math.floor(options.pairs / count) + (i < options.pairs % count ? 1 : 0);
    const init: WorkerInit = { options: { ...options, pairs }, counters: shared };
    const worker = new Worker(new URL('./relay-worker.ts', import.meta.url), {
      workerData: { ...init, slot: i * COUNTER_SLOTS },
    });
    return worker;
  });
  let failure: Error | undefined;
  for (const worker of threads) {
    worker.on('error', (err) => {
      failure ??= err;
    });
  }
  const ask = (command: WorkerCommand) =>
    Promise.all(
      threads.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            const onMessage = (reply: { done?: WorkerCommand; error?: string }) => {
              if (reply.done !== command && reply.error === undefined) return;
              worker.off('message', onMessage);
              worker.off('exit', onExit);
              if (reply.error !== undefined) reject(new Error(`relay worker: ${reply.error}`));
              else resolve();
            };
            const onExit = () => reject(failure ?? new Error('relay worker exited'));
            worker.on('message', onMessage);
            worker.once('exit', onExit);
            worker.postMessage(command);
          }),
      ),
    ).then(() => undefined);
  return {
    connect: () => ask('connect'),
    start: () => {
      for (const worker of threads) worker.postMessage('start');
    },
    stop: () => ask('stop'),
    read: () => {
      const sum = new Float64Array(COUNTER_SLOTS);
      for (let i = 0; i < all.length; i += 1)
        sum[i % COUNTER_SLOTS] = (sum[i % COUNTER_SLOTS] as number) + (all[i] as number);
      return sum;
    },
    close: async () => {
      await Promise.race([ask('close').catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
      await Promise.all(threads.map((worker) => worker.terminate()));
    },
  };
}
