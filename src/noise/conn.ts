/**
 * A Noise transport connection as a byte stream: plaintext in, records out, over any Duplex transport
 * (a net.Socket after the HTTP upgrade, or a WebSocket stream).
 *
 *   writes:   plaintext ──cut at 4077──> [04 len ciphertext+tag] [04 len ...] ──one write──> transport
 *   reads:    transport chunks (any cut) ──RecordReader──> plaintexts (empty records dropped) ──> push
 *
 *   (record layout: see records.ts)
 *
 * Writes that pile up while the transport is busy reach `_writev` together and leave as one transport
 * write, so HTTP/2's habit of writing a frame header and its payload separately (JSStreamSocket corks
 * them) costs one record, not two. The write callback is the transport's, so backpressure propagates.
 * Reading pauses the transport whenever our readable buffer is full and resumes it on `_read`.
 *
 * Handing this stream to node:http2 (server.emit('connection', conn), performServerHandshake, or
 * connect's createConnection) works: Node wraps non-socket streams in a JSStreamSocket that reads via
 * 'data' + pause/resume and ends/destroys this stream when the session goes away. That wrapper hides
 * socket properties, so the session's socket has no remoteAddress; ask this object instead.
 */
import { Duplex } from 'node:stream';
import { NoiseError } from './errors.ts';
import type { TransportKeys } from './handshake.ts';
import { RecordReader, RecordSealer } from './records.ts';

export interface NoiseConnOptions {
  /** Bytes already read from the transport after the handshake; they are decrypted first. */
  leftover?: Uint8Array;
}

interface SocketLike {
  remoteAddress?: string;
  remotePort?: number;
  remoteFamily?: string;
  localAddress?: string;
  localPort?: number;
}

export class NoiseConn extends Duplex {
  readonly #transport: Duplex;
  readonly #sealer: RecordSealer;
  readonly #reader: RecordReader;
  /** True while we paused the transport because our readable side was full. */
  #throttled = false;

  constructor(transport: Duplex, keys: TransportKeys, options: NoiseConnOptions = {}) {
    // A peer that stops writing is done with the connection: Noise has no half-close.
    super({ allowHalfOpen: false });
    this.#transport = transport;
    this.#sealer = new RecordSealer(keys.send);
    this.#reader = new RecordReader(keys.receive);

    transport.on('data', this.#onData);
    transport.on('end', this.#onEnd);
    transport.on('error', this.#onError);
    transport.on('close', this.#onClose);
    if (options.leftover !== undefined && options.leftover.length > 0) this.#onData(options.leftover);
    // A socket taken over from an HTTP server may have been paused explicitly; 'data' alone would not
    // start it again.
    if (!this.#throttled && !this.destroyed) transport.resume();
  }

  /** The underlying transport (net.Socket or WebSocket stream). */
  get transport(): Duplex {
    return this.#transport;
  }

  get remoteAddress(): string | undefined {
    return (this.#transport as SocketLike).remoteAddress;
  }

  get remotePort(): number | undefined {
    return (this.#transport as SocketLike).remotePort;
  }

  get remoteFamily(): string | undefined {
    return (this.#transport as SocketLike).remoteFamily;
  }

  get localAddress(): string | undefined {
    return (this.#transport as SocketLike).localAddress;
  }

  get localPort(): number | undefined {
    return (this.#transport as SocketLike).localPort;
  }

  readonly #onData = (chunk: Uint8Array | string): void => {
    if (this.destroyed) return;
    if (typeof chunk === 'string') {
      this.destroy(new TypeError('noise transport produced a string chunk; it must carry bytes'));
      return;
    }
    let plaintexts: Buffer[];
    try {
      plaintexts = this.#reader.push(chunk);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    for (const plaintext of plaintexts) {
      if (!this.push(plaintext) && !this.#throttled) {
        this.#throttled = true;
        this.#transport.pause();
      }
    }
  };

  readonly #onEnd = (): void => {
    if (this.#reader.buffered > 0) {
      this.destroy(
        new NoiseError('short', `transport ended inside a record (${this.#reader.buffered} bytes pending)`),
      );
      return;
    }
    this.push(null);
  };

  readonly #onError = (err: Error): void => {
    this.destroy(err);
  };

  readonly #onClose = (): void => {
    // The transport emits 'error' before 'close' when it failed, so a plain destroy loses nothing.
    if (!this.destroyed) this.destroy();
  };

  override _read(): void {
    if (this.#throttled) {
      this.#throttled = false;
      this.#transport.resume();
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#send(chunk, callback);
  }

  override _writev(
    chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>,
    callback: (error?: Error | null) => void,
  ): void {
    const data =
      chunks.length === 1
        ? (chunks[0] as { chunk: Buffer }).chunk
        : Buffer.concat(chunks.map((c) => c.chunk));
    this.#send(data, callback);
  }

  #send(plaintext: Buffer, callback: (error?: Error | null) => void): void {
    if (plaintext.length === 0) {
      callback();
      return;
    }
    let records: Buffer;
    try {
      records = this.#sealer.sealAll(plaintext);
    } catch (err) {
      callback(err as Error);
      return;
    }
    this.#transport.write(records, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#transport.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const transport = this.#transport;
    transport.off('data', this.#onData);
    transport.off('end', this.#onEnd);
    transport.off('close', this.#onClose);
    // Keep an error listener: a transport that fails while being torn down must not crash the process.
    transport.off('error', this.#onError);
    transport.on('error', ignore);
    transport.destroy();
    callback(error);
  }
}

function ignore(): void {}
