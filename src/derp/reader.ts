/**
 * Reassembles DERP frames from a byte stream cut at arbitrary places (TCP, TLS, or WebSocket messages,
 * which do not line up with frames).
 *
 * The length in a frame header is checked against the limit for its type before a single payload byte
 * is buffered, so a peer cannot make us allocate more than the protocol allows. Frames of types the
 * caller does not know are skipped as they stream past, without buffering at all, as the protocol asks
 * for forward compatibility. A frame that arrives whole inside one chunk is handed out as a view of that
 * chunk (no copy); only frames split across chunks are copied, once, into a buffer of their exact size.
 */
import { DerpError } from './errors.ts';
import { FRAME_HEADER_LENGTH } from './wire.ts';

/**
 * Called with each frame, header included (`frame[0]` is the type, the payload starts at offset 5). The
 * frame is the receiver's to keep or modify: nothing else refers to those bytes afterwards.
 */
export type FrameHandler = (type: number, frame: Buffer) => void;

/** The largest payload accepted for a frame type, or undefined to skip frames of that type unread. */
export type FrameLimits = (type: number) => number | undefined;

export class FrameReader {
  readonly #limits: FrameLimits;
  #onFrame: FrameHandler;
  /** Header bytes of a frame whose header was split across chunks. */
  readonly #header = Buffer.alloc(FRAME_HEADER_LENGTH);
  #headerFilled = 0;
  /** A frame being assembled from several chunks, and how much of it is filled. */
  #partial: Buffer | undefined;
  #partialFilled = 0;
  /** Bytes of an unknown frame still to be discarded. */
  #skip = 0;
  #paused = false;
  #held: Buffer[] = [];

  constructor(limits: FrameLimits, onFrame: FrameHandler) {
    this.#limits = limits;
    this.#onFrame = onFrame;
  }

  /** Sends the following frames to `onFrame` instead (a client switching from handshake to relay). */
  setHandler(onFrame: FrameHandler): void {
    this.#onFrame = onFrame;
  }

  /** Stops handing out frames; bytes pushed meanwhile are kept until `resume`. */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    const held = this.#held;
    this.#held = [];
    for (const chunk of held) {
      if (this.#paused) {
        this.#held.push(chunk);
        continue;
      }
      this.push(chunk);
    }
  }

  /** Bytes pushed while paused and not yet handed out. */
  get heldBytes(): number {
    let total = 0;
    for (const chunk of this.#held) total += chunk.length;
    return total;
  }

  /** Feeds the next bytes of the stream. Throws DerpError when a frame breaks its length limit. */
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#paused) {
        this.#held.push(chunk.subarray(offset));
        return;
      }
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - offset);
        this.#skip -= n;
        offset += n;
      } else if (this.#partial !== undefined) {
        offset = this.#fillPartial(chunk, offset);
      } else {
        offset = this.#startFrame(chunk, offset);
      }
    }
  }

  #fillPartial(chunk: Buffer, offset: number): number {
    const partial = this.#partial as Buffer;
    const n = Math.min(partial.length - this.#partialFilled, chunk.length - offset);
    chunk.copy(partial, this.#partialFilled, offset, offset + n);
    this.#partialFilled += n;
    if (this.#partialFilled === partial.length) {
      this.#partial = undefined;
      this.#onFrame(partial[0] as number, partial);
    }
    return offset + n;
  }

  /** Reads a header (possibly completing one split earlier) and starts on the frame it announces. */
  #startFrame(chunk: Buffer, offset: number): number {
    let header: Buffer;
    let frameStart: number | undefined;
    if (this.#headerFilled === 0 && chunk.length - offset >= FRAME_HEADER_LENGTH) {
      header = chunk;
      frameStart = offset;
      offset += FRAME_HEADER_LENGTH;
    } else {
      const n = Math.min(FRAME_HEADER_LENGTH - this.#headerFilled, chunk.length - offset);
      chunk.copy(this.#header, this.#headerFilled, offset, offset + n);
      this.#headerFilled += n;
      offset += n;
      if (this.#headerFilled < FRAME_HEADER_LENGTH) return offset;
      this.#headerFilled = 0;
      header = this.#header;
    }
    const headerAt = frameStart ?? 0;
    const type = header[headerAt] as number;
    const length = header.readUInt32BE(headerAt + 1);
    const limit = this.#limits(type);
    if (limit === undefined) {
      this.#skip = length;
      return offset;
    }
    if (length > limit) {
      throw new DerpError(
        'oversize',
        `frame type 0x${type.toString(16).padStart(2, '0')} announces ${length} bytes, more than the ${limit} allowed`,
      );
    }
    if (frameStart !== undefined && chunk.length - offset >= length) {
      this.#onFrame(type, chunk.subarray(frameStart, offset + length));
      return offset + length;
    }
    const partial = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + length);
    header.copy(partial, 0, headerAt, headerAt + FRAME_HEADER_LENGTH);
    this.#partial = partial;
    this.#partialFilled = FRAME_HEADER_LENGTH;
    if (length === 0) return this.#fillPartial(chunk, offset);
    return offset;
  }
}
