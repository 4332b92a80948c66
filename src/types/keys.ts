/**
 * Curve25519 key types of the Tailscale control protocol.
 *
 * Every key is 32 raw bytes. On the wire (JSON) and in the database a public key is its text form:
 * a type prefix followed by exactly 64 hex digits. The generator emits lowercase; the parser accepts
 * either case and the prefix must match the key's type (a `nodekey:` never parses as an `mkey:`).
 *
 *   machine public   mkey:<64 hex>       the client's Noise static key, and the server's own
 *   node public      nodekey:<64 hex>    the WireGuard key
 *   disco public     discokey:<64 hex>   peer-to-peer discovery (disco) key
 *   any private      privkey:<64 hex>    only in state files (e.g. the server's Noise key file)
 *
 * Public keys are branded strings holding the canonical lowercase text, so they can be Map keys, JSON
 * values and DB columns without conversion while the compiler keeps the three kinds apart. Private keys
 * are objects whose text form must be asked for explicitly: they print as "[redacted]" in logs and JSON,
 * and have no public equality, so nobody compares them with `===` by accident.
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
  timingSafeEqual,
} from 'node:crypto';

declare const keyKind: unique symbol;

/** A public key of one kind in canonical text form (`<prefix><64 lowercase hex>`). */
export type PublicKey<K extends string> = string & { readonly [keyKind]: K };
export type MachinePublic = PublicKey<'mkey'>;
export type NodePublic = PublicKey<'nodekey'>;
export type DiscoPublic = PublicKey<'discokey'>;

export const KEY_LENGTH = 32;
const HEX_LENGTH = KEY_LENGTH * 2;
const HEX = /^[0-9a-fA-F]{64}$/;

/** Bad key text or bytes; `expectedPrefix` names the form that was wanted (e.g. "nodekey:"). */
export class KeyParseError extends Error {
  readonly code = 'KEY_PARSE';
  readonly expectedPrefix: string;
  constructor(expectedPrefix: string, reason: string) {
    super(`expected a key of the form "${expectedPrefix}" followed by 64 hex digits: ${reason}`);
    this.name = 'KeyParseError';
    this.expectedPrefix = expectedPrefix;
  }
}

/** Shows a bounded, printable excerpt of untrusted input for error messages. */
function excerpt(text: string): string {
  const shown = text.length > 24 ? `${text.slice(0, 24)}…` : text;
  return JSON.stringify(shown);
}

function parseHexWithPrefix(text: string, prefix: string): Buffer {
  if (typeof text !== 'string') throw new KeyParseError(prefix, `got ${typeof text}`);
  if (!text.startsWith(prefix)) throw new KeyParseError(prefix, `got ${excerpt(text)}`);
  const hex = text.slice(prefix.length);
  if (hex.length !== HEX_LENGTH) {
    throw new KeyParseError(prefix, `got ${hex.length} characters after the prefix`);
  }
  if (!HEX.test(hex)) throw new KeyParseError(prefix, `got non-hex characters in ${excerpt(text)}`);
  return Buffer.from(hex, 'hex');
}

/** Operations for one public key kind; `MachinePublic`, `NodePublic`, `DiscoPublic` below are instances. */
export interface PublicKeyKind<K extends string> {
  readonly prefix: `${K}:`;
  /** The all-zero key, which the protocol uses to mean "absent" (e.g. `OldNodeKey`). */
  readonly zero: PublicKey<K>;
  parse(text: string): PublicKey<K>;
  /** Like `parse` but returns undefined instead of throwing. */
  tryParse(text: string): PublicKey<K> | undefined;
  fromRaw(raw: Uint8Array): PublicKey<K>;
  toRaw(key: PublicKey<K>): Buffer;
  isZero(key: PublicKey<K>): boolean;
}

function publicKeyKind<K extends string>(kind: K): PublicKeyKind<K> {
  const prefix = `${kind}:` as const;
  const fromRaw = (raw: Uint8Array): PublicKey<K> => {
    if (raw.length !== KEY_LENGTH) throw new KeyParseError(prefix, `got ${raw.length} raw bytes, not 32`);
    return (prefix + Buffer.from(raw).toString('hex')) as PublicKey<K>;
  };
  const parse = (text: string): PublicKey<K> => fromRaw(parseHexWithPrefix(text, prefix));
  const zero = fromRaw(Buffer.alloc(KEY_LENGTH));
  return {
    prefix,
    zero,
    parse,
    tryParse(text) {
      try {
        return parse(text);
      } catch {
        return undefined;
      }
    },
    fromRaw,
    toRaw: (key) => Buffer.from(key.slice(prefix.length), 'hex'),
    isZero: (key) => key === zero,
  };
}

export const MachinePublic = publicKeyKind('mkey');
export const NodePublic = publicKeyKind('nodekey');
export const DiscoPublic = publicKeyKind('discokey');

/**
 * Constant-time equality of two public keys of the same kind. Canonical text forms make `===` correct,
 * but a comparison whose timing leaks how many leading characters match is the wrong habit near secrets.
 */
export function publicKeysEqual<K extends string>(a: PublicKey<K>, b: PublicKey<K>): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

// DER wrappers that let node:crypto import raw 32-byte X25519 keys (RFC 8410): PKCS#8 for private
// keys, SubjectPublicKeyInfo for public keys. Cheaper than JWK, which needs base64url round trips.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function privateKeyObject(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

function rawPublicOf(privateKey: KeyObject): Buffer {
  const der = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - KEY_LENGTH);
}

/**
 * A fresh X25519 key pair as raw 32-byte values, plus the private key as a KeyObject for callers that
 * use it in several Diffie-Hellman operations (importing a raw key costs about as much as the DH).
 */
export function generateX25519KeyPair(): { privateKey: Buffer; publicKey: Buffer; object: KeyObject } {
  const { privateKey } = generateKeyPairSync('x25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  return {
    privateKey: Buffer.from(der.subarray(der.length - KEY_LENGTH)),
    publicKey: rawPublicOf(privateKey),
    object: privateKey,
  };
}

/** Raw X25519 keys imported once, for repeated use with `x25519`. */
export function x25519PrivateKey(raw: Uint8Array): KeyObject {
  return privateKeyObject(raw);
}

export function x25519PublicKey(raw: Uint8Array): KeyObject {
  return publicKeyObject(raw);
}

/** X25519(privateKey, publicKey): the 32-byte shared secret. Either key may be pre-imported. */
export function x25519(privateKey: Uint8Array | KeyObject, publicKey: Uint8Array | KeyObject): Buffer {
  return diffieHellman({
    privateKey: privateKey instanceof Uint8Array ? privateKeyObject(privateKey) : privateKey,
    publicKey: publicKey instanceof Uint8Array ? publicKeyObject(publicKey) : publicKey,
  });
}

const PRIVATE_PREFIX = 'privkey:';
const REDACTED = '[redacted]';

/**
 * A private X25519 key whose public half is of kind K. Holds the node:crypto KeyObject so repeated
 * Diffie-Hellman operations don't re-import it.
 */
export class PrivateKey<K extends string> {
  readonly #raw: Buffer;
  readonly #object: KeyObject;
  readonly #public: PublicKey<K>;

  private constructor(kind: PublicKeyKind<K>, raw: Uint8Array) {
    if (raw.length !== KEY_LENGTH)
      throw new KeyParseError(PRIVATE_PREFIX, `got ${raw.length} raw bytes, not 32`);
    this.#raw = Buffer.from(raw);
    this.#object = privateKeyObject(this.#raw);
    this.#public = kind.fromRaw(rawPublicOf(this.#object));
  }

  static generate<K extends string>(kind: PublicKeyKind<K>): PrivateKey<K> {
    return new PrivateKey(kind, generateX25519KeyPair().privateKey);
  }

  static fromRaw<K extends string>(kind: PublicKeyKind<K>, raw: Uint8Array): PrivateKey<K> {
    return new PrivateKey(kind, raw);
  }

  /** Parses the `privkey:<64 hex>` form used in key files. */
  static parse<K extends string>(kind: PublicKeyKind<K>, text: string): PrivateKey<K> {
    return new PrivateKey(kind, parseHexWithPrefix(text.trim(), PRIVATE_PREFIX));
  }

  get publicKey(): PublicKey<K> {
    return this.#public;
  }

  /** The 32 raw bytes; callers must not log or persist them except deliberately. */
  raw(): Buffer {
    return Buffer.from(this.#raw);
  }

  /** The `privkey:` text form for key files. Named so that writing a secret is always explicit. */
  toSecretText(): string {
    return PRIVATE_PREFIX + this.#raw.toString('hex');
  }

  /** X25519 with a peer's public key. */
  sharedSecret(peer: Uint8Array): Buffer {
    return diffieHellman({ privateKey: this.#object, publicKey: publicKeyObject(peer) });
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `PrivateKey(${this.#public})`;
  }
}

export type MachinePrivate = PrivateKey<'mkey'>;
export type NodePrivate = PrivateKey<'nodekey'>;
export type DiscoPrivate = PrivateKey<'discokey'>;
