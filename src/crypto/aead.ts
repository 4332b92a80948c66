/**
 * ChaCha20-Poly1305 (RFC 8439, IETF variant: 96-bit nonce, 16-byte tag) as Noise's AEAD.
 *
 *   seal(key, nonce, plaintext, ad) = ciphertext (len(plaintext) bytes) || tag (16 bytes)
 *   open(key, nonce, ciphertext || tag, ad) = plaintext, or undefined when authentication fails
 *
 * Nonce construction is the caller's business: the Noise handshake uses 12 zero bytes, Tailscale's
 * transport records use 4 zero bytes + a big-endian counter (see src/noise/records.ts).
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';

export const AEAD_KEY_SIZE = 32;
export const AEAD_NONCE_SIZE = 12;
export const AEAD_TAG_SIZE = 16;

const ALGORITHM = 'chacha20-poly1305';

/** Raw key bytes, or a key prepared once with `aeadKey` (2–3× cheaper per record: no key import). */
export type AeadKey = Uint8Array | KeyObject;

/** Imports a 32-byte key once, for a connection's many records. */
export function aeadKey(raw: Uint8Array): KeyObject {
  return createSecretKey(raw);
}
const OPTIONS = { authTagLength: AEAD_TAG_SIZE } as const;

/**
 * Encrypts `plaintext` into `target` at `offset` (ciphertext then tag) and returns the bytes written,
 * `plaintext.length + 16`. Lets record framing write header and ciphertext into one allocation.
 */
export function sealInto(
  target: Uint8Array,
  offset: number,
  key: AeadKey,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad?: Uint8Array,
): number {
  const cipher = createCipheriv(ALGORITHM, key, nonce, OPTIONS);
  if (ad !== undefined && ad.length > 0) cipher.setAAD(ad, { plaintextLength: plaintext.length });
  let written = 0;
  if (plaintext.length > 0) {
    const body = cipher.update(plaintext);
    target.set(body, offset);
    written = body.length;
  }
  const rest = cipher.final();
  target.set(rest, offset + written);
  written += rest.length;
  target.set(cipher.getAuthTag(), offset + written);
  return written + AEAD_TAG_SIZE;
}

/** ciphertext || tag of `plaintext` under (key, nonce, ad). */
export function seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad?: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(plaintext.length + AEAD_TAG_SIZE);
  sealInto(out, 0, key, nonce, plaintext, ad);
  return out;
}

/** The plaintext of `sealed` (ciphertext || tag), or undefined if it is too short or fails authentication. */
export function open(
  key: AeadKey,
  nonce: Uint8Array,
  sealed: Uint8Array,
  ad?: Uint8Array,
): Buffer | undefined {
  if (sealed.length < AEAD_TAG_SIZE) return undefined;
  const split = sealed.length - AEAD_TAG_SIZE;
  const decipher = createDecipheriv(ALGORITHM, key, nonce, OPTIONS);
  decipher.setAuthTag(sealed.subarray(split));
  if (ad !== undefined && ad.length > 0) decipher.setAAD(ad, { plaintextLength: split });
  try {
    const body = split > 0 ? decipher.update(sealed.subarray(0, split)) : undefined;
    const rest = decipher.final();
    if (body === undefined) return rest;
    return rest.length === 0 ? body : Buffer.concat([body, rest]);
  } catch {
    // OpenSSL reports a bad tag as a generic "Unsupported state or unable to authenticate data".
    return undefined;
  }
}
