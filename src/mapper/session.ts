/**
 * One streaming map session: the ordered queue of frames to one client's long poll, its keep-alive
 * timer, and what happens when the client reads too slowly.
 *
 * A client that cannot keep up must not make the server buffer without bound. When the bytes waiting
 * for it pass a limit, further deltas are dropped and the session remembers that it is behind; once
 * the client has drained, it gets one fresh full map, which supersedes every delta it missed.
 */
import type { TailnetNode } from '../state/model.ts';
import { type Compression, keepAliveFrame } from './frame.ts';

/** Where frames go: the HTTP/2 response stream, or anything shaped like it in tests. */
export interface FrameSink {
  write(chunk: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
  readonly writableLength: number;
  readonly destroyed: boolean;
  end(): void;
  /** Resets the stream (HTTP/2 RST_STREAM); used when queued bytes should be dropped, not delivered. */
  close?(code?: number): void;
}

/** HTTP/2 CANCEL: "the stream is no longer needed". */
const CANCEL = 0x8;

export interface SessionOptions {
  compression: Compression;
  /** Keep-alive after this much silence, plus up to `keepAliveJitterMs` (the client's watchdog is 120 s). */
  keepAliveMs: number;
  keepAliveJitterMs: number;
  /** Bytes queued for the client above which deltas are dropped in favour of a later full map. */
  maxQueuedBytes: number;
  /** Builds a fresh full map for this node (framed); undefined ends the session instead. */
  fullMap: () => Buffer | Promise<Buffer> | undefined;
  onClose: (session: MapSession) => void;
}

export class MapSession {
  readonly node: TailnetNode;
  readonly #sink: FrameSink;
  readonly #options: SessionOptions;
  #chain: Promise<void> = Promise.resolve();
  /** Frames waiting in the chain (still compressing, or behind one that is). */
  #queued = 0;
  #behind = false;
  #closed = false;
  #keepAlive: NodeJS.Timeout;

  constructor(node: TailnetNode, sink: FrameSink, options: SessionOptions) {
    this.node = node;
    this.#sink = sink;
    this.#options = options;
    this.#keepAlive = setTimeout(() => this.#sendKeepAlive(), this.#keepAliveDelay());
    this.#keepAlive.unref();
  }

  get compression(): Compression {
    return this.#options.compression;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a frame (possibly still being compressed); frames go out in the order they were queued. */
  send(frame: Buffer | Promise<Buffer>): void {
    // A frame shared with other sessions may be dropped here; its failure must still count as handled.
    if (frame instanceof Promise) frame.catch(() => undefined);
    if (this.#closed) return;
    if (this.#behind) return; // the full map that follows the drain covers it
    if (this.#sink.writableLength > this.#options.maxQueuedBytes) {
      this.#fallBehind();
      return;
    }
    // A ready frame with nothing queued before it goes out at once: no promise per session per
    // message, which adds up when one change fans out to every client of a large tailnet.
    if (!(frame instanceof Promise) && this.#queued === 0) {
      this.#write(frame);
      return;
    }
    // Otherwise through the chain: an earlier frame may still be compressing, and order must hold.
    // The chain never rejects: a frame that cannot be built ends the session (the client reconnects
    // and gets a fresh map) instead of surfacing as an unhandled rejection.
    this.#queued += 1;
    this.#chain = this.#chain
      .then(() => frame)
      .then(
        (bytes) => {
          this.#queued -= 1;
          this.#write(bytes);
        },
        () => {
          this.#queued -= 1;
          this.close();
        },
      );
  }

  #write(frame: Buffer): void {
    if (this.#closed || this.#sink.destroyed) return;
    this.#sink.write(frame);
    this.#keepAlive.refresh();
  }

  #fallBehind(): void {
    this.#behind = true;
    this.#sink.once('drain', () => {
      if (this.#closed) return;
      this.#behind = false;
      const full = this.#options.fullMap();
      if (full === undefined) this.close();
      else this.send(full);
    });
  }

  #sendKeepAlive(): void {
    if (this.#closed) return;
    if (!this.#behind) this.send(keepAliveFrame(this.#options.compression));
    this.#keepAlive = setTimeout(() => this.#sendKeepAlive(), this.#keepAliveDelay());
    this.#keepAlive.unref();
  }

  #keepAliveDelay(): number {
    return this.#options.keepAliveMs + Math.floor(Math.random() * this.#options.keepAliveJitterMs);
  }

  /** Ends the stream (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#keepAlive);
    // A client that has not read what is queued (a superseded or stuck poll) gets a reset, so the
    // queued map is freed now instead of when its connection finally dies.
    if (!this.#sink.destroyed) {
      if (this.#sink.writableLength > 0 && this.#sink.close !== undefined) this.#sink.close(CANCEL);
      else this.#sink.end();
    }
    this.#options.onClose(this);
  }
}
