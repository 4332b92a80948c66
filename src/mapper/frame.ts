/**
 * Map-stream framing. Every message on a streaming `POST /machine/map` response is
 *
 *   +---------------------------+------------------------------------------------+
 *   | uint32 LITTLE-endian len  | len bytes: one complete zstd frame of the JSON |
 *   +---------------------------+------------------------------------------------+
 *
 * (The Noise layer below uses big-endian lengths; this one is little-endian.) Each frame is independent:
 * the client decodes every message on its own. Level 1 is what Tailscale's own test server uses; the
 * maps are repetitive JSON, so even level 1 shrinks them about eight times.
 */
import { constants, zstdCompress, zstdCompressSync, zstdDecompressSync } from 'node:zlib';

const ZSTD_OPTIONS = { params: { [constants.ZSTD_c_compressionLevel]: 1 } };

/** Above this size compression runs on the libuv thread pool so the event loop stays free. */
const ASYNC_COMPRESSION_BYTES = 128 * 1024;

export type Compression = 'zstd' | 'none';

function withLength(body: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32LE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/** One zstd frame of `data`, at the level every map frame uses. */
export function zstdFrame(data: Buffer): Buffer {
  return zstdCompressSync(data, ZSTD_OPTIONS);
}

/**
 * A map message from zstd frames compressed separately: the body is their concatenation, which a zstd
 * decoder reads as the concatenation of their contents (RFC 8878 §3.1; tailscaled's DecodeAll loops
 * over frames). Full maps use it to splice in peer blocks that were compressed once for many maps.
 */
export function frameFromZstdFrames(frames: readonly Buffer[]): Buffer {
  return withLength(Buffer.concat(frames));
}

/** Frames `json` synchronously (for small messages: deltas, keep-alives). */
export function frameSync(json: Buffer, compression: Compression): Buffer {
  return withLength(compression === 'zstd' ? zstdFrame(json) : json);
}

/** Frames `json`, compressing big messages off the event loop. */
export function frame(json: Buffer, compression: Compression): Buffer | Promise<Buffer> {
  if (compression === 'none' || json.length < ASYNC_COMPRESSION_BYTES) return frameSync(json, compression);
  return new Promise((resolve, reject) => {
    zstdCompress(json, ZSTD_OPTIONS, (err, compressed) =>
      err ? reject(err) : resolve(withLength(compressed)),
    );
  });
}

/**
 * The keep-alive, compressed once. Clients remember the bytes of a keep-alive they have seen and skip
 * decoding identical ones, so sending exactly the same bytes every time keeps that fast path working.
 */
const KEEP_ALIVE_JSON = Buffer.from('{"KeepAlive":true}');
const KEEP_ALIVE_FRAMES: Record<Compression, Buffer> = {
  zstd: frameSync(KEEP_ALIVE_JSON, 'zstd'),
  none: frameSync(KEEP_ALIVE_JSON, 'none'),
};

export function keepAliveFrame(compression: Compression): Buffer {
  return KEEP_ALIVE_FRAMES[compression];
}

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames have magics 0x184D2A50–0x184D2A5F. */
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/**
 * The length of the zstd frame at `offset` (RFC 8878 §3.1.1), read off its header and block headers.
 * Node's zstd decoder stops after the first frame of a buffer, so readers of multi-frame messages
 * (our test client and load generator) cut them with this first.
 */
export function zstdFrameLength(data: Buffer, offset = 0): number {
  const magic = data.readUInt32LE(offset);
  if ((magic & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC) return 8 + data.readUInt32LE(offset + 4);
  if (magic !== ZSTD_MAGIC) throw new Error(`not a zstd frame at byte ${offset}`);
  const descriptor = data.readUInt8(offset + 4);
  const singleSegment = (descriptor & 0x20) !== 0;
  const checksum = (descriptor & 0x04) !== 0 ? 4 : 0;
  const dictionaryId = [0, 1, 2, 4][descriptor & 0x03] as number;
  const contentSizeFlag = descriptor >>> 6;
  const contentSize = contentSizeFlag === 0 ? (singleSegment ? 1 : 0) : 1 << contentSizeFlag;
  let at = offset + 5 + (singleSegment ? 0 : 1) + dictionaryId + contentSize;
  for (;;) {
    const header = data.readUIntLE(at, 3);
    const type = (header >>> 1) & 0x03;
    const size = header >>> 3;
    if (type === 3) throw new Error(`reserved zstd block type at byte ${at}`);
    at += 3 + (type === 1 ? 1 : size);
    if ((header & 1) !== 0) break;
  }
  if (at + checksum > data.length) throw new Error('zstd frame runs past the end of the data');
  return at + checksum - offset;
}

/** A map message body decoded: every zstd frame in it, concatenated (or the body itself if not zstd). */
export function decodeMapBody(body: Buffer): Buffer {
  if (body.length < 4 || body.readUInt32LE(0) !== ZSTD_MAGIC) return body;
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    const length = zstdFrameLength(body, at);
    const frame = body.subarray(at, at + length);
    if (frame.readUInt32LE(0) === ZSTD_MAGIC) parts.push(zstdDecompressSync(frame));
    at += length;
  }
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}
