/**
 * NaCl `crypto_box` (X25519 + XSalsa20-Poly1305), as DERP uses it for ClientInfo and ServerInfo.
 *
 *   sealed = nonce (24 B, random) || secretbox(message, nonce, HSalsa20(X25519(my private, peer public)))
 *                                    └ 16 B Poly1305 tag followed by the ciphertext
 *
 * node:crypto has X25519 but no Salsa20, so the Diffie-Hellman runs in OpenSSL (through the caller's
 * cached PrivateKey, ~40 µs) and only HSalsa20 and the secretbox run in tweetnacl. That is byte for byte
 * `nacl.box`, at a fifteenth of the cost of tweetnacl's pure-JS scalar multiplication, which matters
 * when thousands of clients reconnect to DERP at once.
 */
import { randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import type { PrivateKey } from '../types/keys.ts';

export const BOX_NONCE_LENGTH = 24;
export const BOX_OVERHEAD = 16;

// "expand 32-byte k": Salsa20's constant, which NaCl's box uses to derive the secretbox key.
const SIGMA = new Uint8Array(Buffer.from('expand 32-byte k', 'latin1'));
const ZERO_16 = new Uint8Array(16);

// tweetnacl exports its low-level primitives at run time but leaves them out of its type declarations.
const hsalsa20 = (
  nacl as unknown as {
    lowlevel: {
      crypto_core_hsalsa20(out: Uint8Array, input: Uint8Array, key: Uint8Array, c: Uint8Array): void;
    };
  }
).lowlevel.crypto_core_hsalsa20;

/** The secretbox key two parties share: HSalsa20(X25519(priv, pub)), i.e. NaCl's `box.before`. */
export function boxSharedKey(myPrivate: PrivateKey<string>, peerPublic: Uint8Array): Uint8Array {
  const shared = new Uint8Array(myPrivate.sharedSecret(peerPublic));
  const key = new Uint8Array(32);
  hsalsa20(key, ZERO_16, shared, SIGMA);
  return key;
}

/** Seals `message` for `peerPublic`; the result starts with the nonce. */
export function boxSeal(
  message: Uint8Array,
  peerPublic: Uint8Array,
  myPrivate: PrivateKey<string>,
  nonce: Uint8Array = randomBytes(BOX_NONCE_LENGTH),
): Buffer {
  const sealed = nacl.secretbox(message, nonce, boxSharedKey(myPrivate, peerPublic));
  return Buffer.concat([nonce, sealed]);
}

/** Opens a box sealed by `peerPublic` (nonce first); undefined when it does not authenticate. */
export function boxOpen(
  sealed: Uint8Array,
  peerPublic: Uint8Array,
  myPrivate: PrivateKey<string>,
): Buffer | undefined {
  if (sealed.length < BOX_NONCE_LENGTH + BOX_OVERHEAD) return undefined;
  const nonce = sealed.subarray(0, BOX_NONCE_LENGTH);
  const opened = nacl.secretbox.open(
    sealed.subarray(BOX_NONCE_LENGTH),
    nonce,
    boxSharedKey(myPrivate, peerPublic),
  );
  return opened === null ? undefined : Buffer.from(opened);
}
