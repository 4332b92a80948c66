/**
 * The optional early payload: the first plaintext the server sends inside Noise, before HTTP/2.
 *
 *   +----------------+-------------------+------------------------------------------+
 *   | FF FF FF 'T' 'S'| length (u32 BE)   | JSON tailcfg.EarlyNoise, `length` bytes  |
 *   +----------------+-------------------+------------------------------------------+
 *    0                5                   9
 *
 *   e.g. {"nodeKeyChallenge":"chalpub:<64 hex>"}
 *
 * A client reads the first 9 plaintext bytes. An HTTP/2 frame header is also 9 bytes and the server's
 * first frame is SETTINGS (type 4, never starting with FF FF FF), so if the magic is absent the client
 * hands those 9 bytes back to its HTTP/2 framer.
 */
import { NoiseError } from './errors.ts';

export const EARLY_PAYLOAD_MAGIC = Buffer.from([0xff, 0xff, 0xff, 0x54, 0x53]);
export const EARLY_PAYLOAD_HEADER_SIZE = 9;
export const MAX_EARLY_PAYLOAD_SIZE = 10 * 1024 * 1024;

/** tailcfg.EarlyNoise. */
export interface EarlyNoise {
  nodeKeyChallenge?: string;
}

export function encodeEarlyPayload(value: object): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const out = Buffer.allocUnsafe(EARLY_PAYLOAD_HEADER_SIZE + json.length);
  EARLY_PAYLOAD_MAGIC.copy(out, 0);
  out.writeUInt32BE(json.length, EARLY_PAYLOAD_MAGIC.length);
  json.copy(out, EARLY_PAYLOAD_HEADER_SIZE);
  return out;
}

/**
 * Given the first 9 plaintext bytes: the JSON length that follows if they start an early payload, or
 * undefined if they do not (then they belong to HTTP/2). Throws NoiseError for an oversize payload.
 */
export function decodeEarlyPayloadHeader(header: Uint8Array): number | undefined {
  if (header.length < EARLY_PAYLOAD_HEADER_SIZE) {
    throw new NoiseError(
      'short',
      `early payload header is ${header.length} bytes, need ${EARLY_PAYLOAD_HEADER_SIZE}`,
    );
  }
  for (let i = 0; i < EARLY_PAYLOAD_MAGIC.length; i++) {
    if (header[i] !== EARLY_PAYLOAD_MAGIC[i]) return undefined;
  }
  const view = Buffer.from(header.buffer, header.byteOffset, header.length);
  const length = view.readUInt32BE(EARLY_PAYLOAD_MAGIC.length);
  if (length > MAX_EARLY_PAYLOAD_SIZE) {
    throw new NoiseError(
      'oversize',
      `early payload announces ${length} bytes, limit is ${MAX_EARLY_PAYLOAD_SIZE}`,
    );
  }
  return length;
}

/** Parses the JSON body of an early payload. */
export function decodeEarlyPayloadBody(json: Uint8Array): EarlyNoise {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(json.buffer, json.byteOffset, json.length).toString('utf8'));
  } catch {
    throw new NoiseError('bad-payload', 'early payload is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new NoiseError('bad-payload', 'early payload is not a JSON object');
  }
  return value as EarlyNoise;
}
