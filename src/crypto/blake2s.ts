/**
 * BLAKE2s-256 and the HMAC/HKDF built on it, as Noise uses them (Noise spec §4.3, §5.1).
 *
 *   HASH(data)            = BLAKE2s-256(data)                      32 bytes
 *   HMAC(key, data)       = RFC 2104 over BLAKE2s, block size 64     32 bytes
 *   HKDF(ck, ikm) -> (o1, o2):
 *     t  = HMAC(ck, ikm)
 *     o1 = HMAC(t, 0x01)
 *     o2 = HMAC(t, o1 || 0x02)
 *
 * HMAC is assembled by hand over the one-shot `crypto.hash`: a handshake runs a dozen HMACs on
 * inputs of at most ~100 bytes, where creating an Hmac object per call costs more than the hashing.
 */
import { hash } from 'node:crypto';

export const BLAKE2S_SIZE = 32;
const BLOCK_SIZE = 64;
const IPAD = 0x36;
const OPAD = 0x5c;

/** BLAKE2s-256 of the concatenation of `parts`. */
export function blake2s(...parts: Uint8Array[]): Buffer {
  const data = parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts);
  return hash('blake2s256', data, 'buffer');
}

/** HMAC-BLAKE2s(key, concatenation of `parts`). */
export function hmacBlake2s(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const k = key.length > BLOCK_SIZE ? blake2s(key) : key;
  let dataLength = 0;
  for (const part of parts) dataLength += part.length;

  // inner = HASH((K ^ ipad) || data); one buffer, no intermediate concatenations.
  const inner = Buffer.alloc(BLOCK_SIZE + dataLength);
  for (let i = 0; i < BLOCK_SIZE; i++) inner[i] = (k[i] ?? 0) ^ IPAD;
  let offset = BLOCK_SIZE;
  for (const part of parts) {
    inner.set(part, offset);
    offset += part.length;
  }
  const innerHash = blake2s(inner);

  // outer = HASH((K ^ opad) || inner)
  const outer = Buffer.alloc(BLOCK_SIZE + BLAKE2S_SIZE);
  for (let i = 0; i < BLOCK_SIZE; i++) outer[i] = (k[i] ?? 0) ^ OPAD;
  outer.set(innerHash, BLOCK_SIZE);
  return blake2s(outer);
}

const ONE = Uint8Array.of(0x01);
const TWO = Uint8Array.of(0x02);

/**
 * Noise's HKDF with two outputs: chaining key `ck` as salt, `ikm` as input key material (a DH result,
 * or empty for the final split), empty info. Equal to RFC 5869 HKDF producing 64 bytes, split in two.
 */
export function hkdf2(ck: Uint8Array, ikm: Uint8Array): [Buffer, Buffer] {
  const temp = hmacBlake2s(ck, ikm);
  const first = hmacBlake2s(temp, ONE);
  const second = hmacBlake2s(temp, first, TWO);
  return [first, second];
}
