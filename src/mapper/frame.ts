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
import { constants, zstdCompress, zstdCompressSync } from 'node:zlib';

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

/** Frames `json` synchronously (for small messages: deltas, keep-alives). */
export function frameSync(json: Buffer, compression: Compression): Buffer {
  return withLength(compression === 'zstd' ? zstdCompressSync(json, ZSTD_OPTIONS) : json);
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
