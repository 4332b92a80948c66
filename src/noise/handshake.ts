/**
 * The ts2021 Noise handshake: Noise_IK_25519_ChaChaPoly_BLAKE2s with a Tailscale prologue and framing.
 * The client knows the server's static key from `GET /key`; the server learns the client's static
 * (machine) key from message 1, which makes it the connection's authenticated identity.
 *
 *   Initiation, client -> server (101 bytes; sent base64 in X-Tailscale-Handshake):
 *     +---------+------+----------+----------------+-------------------------+-----------+
 *     | version | 0x01 | len = 96 | ephemeral pub  | enc(static pub) + tag   | tag (empty|
 *     | u16 BE  |      | u16 BE   | 32             | 48                      | payload)16|
 *     +---------+------+----------+----------------+-------------------------+-----------+
 *      0         2      3          5                37                        85        101
 *
 *   Response, server -> client (51 bytes, raw right after the HTTP 101 header):
 *     +------+----------+----------------+-----------------+
 *     | 0x02 | len = 48 | ephemeral pub  | tag (empty      |
 *     |      | u16 BE   | 32             | payload) 16     |
 *     +------+----------+----------------+-----------------+
 *      0      1          3                35               51
 *
 *   Error, server -> client instead of a response (cleartext, unauthenticated):
 *     | 0x03 | len u16 BE | len bytes of text |
 *
 * Only the initiation has the 2-byte version in front; every later header is type + length. The
 * prologue is "Tailscale Control Protocol v<version>" with the version taken from the initiation, so
 * the version is authenticated without either side having to agree on a constant.
 *
 *   h = HASH(name); ck = h; h = HASH(h || prologue); h = HASH(h || s_server)
 *   -> e, es, s, ss     <- e, ee, se       then (k1, k2) = HKDF(ck, empty)
 *   client sends with k1, server sends with k2.
 */

import type { KeyObject } from 'node:crypto';
import { open, seal } from '../crypto/aead.ts';
import { blake2s, hkdf2 } from '../crypto/blake2s.ts';
import { generateX25519KeyPair, x25519, x25519PrivateKey, x25519PublicKey } from '../types/keys.ts';
import { NoiseError } from './errors.ts';

export { NoiseError, type NoiseErrorCode } from './errors.ts';

export const PROTOCOL_NAME = 'Noise_IK_25519_ChaChaPoly_BLAKE2s';
export const INITIATION_SIZE = 101;
export const RESPONSE_SIZE = 51;
/** Bytes of a server message's header (type + length), enough to learn how long the message is. */
export const SERVER_HEADER_SIZE = 3;

export const MSG_INITIATION = 0x01;
export const MSG_RESPONSE = 0x02;
export const MSG_ERROR = 0x03;

const KEY_SIZE = 32;
const INITIATION_HEADER_SIZE = 5;
const INITIATION_PAYLOAD = INITIATION_SIZE - INITIATION_HEADER_SIZE; // 96
const RESPONSE_PAYLOAD = RESPONSE_SIZE - SERVER_HEADER_SIZE; // 48
const MAX_VERSION = 0xffff;
const MAX_ERROR_TEXT = 0xffff;

/** Keys for the transport phase, named from the holder's point of view. */
export interface TransportKeys {
  send: Buffer;
  receive: Buffer;
}

/** "Tailscale Control Protocol v<version>", the prologue both sides mix in before any key. */
export function tailscalePrologue(version: number): Buffer {
  if (!Number.isInteger(version) || version < 0 || version > MAX_VERSION) {
    throw new RangeError(`protocol version must be an integer in 0..65535, got ${version}`);
  }
  return Buffer.from(`Tailscale Control Protocol v${version}`, 'ascii');
}

const ZERO_NONCE = Buffer.alloc(12);
const EMPTY = Buffer.alloc(0);
const INITIAL_HASH = blake2s(Buffer.from(PROTOCOL_NAME, 'ascii'));
const BASE_POINT = Buffer.concat([Buffer.of(9), Buffer.alloc(31)]);

function checkKey(name: string, key: Uint8Array): void {
  if (key.length !== KEY_SIZE) throw new NoiseError('bad-key', `${name} must be 32 bytes, got ${key.length}`);
}

/** X25519 that refuses low-order peer keys (an all-zero shared secret) with a NoiseError. */
function dh(privateKey: Uint8Array | KeyObject, publicKey: Uint8Array | KeyObject, what: string): Buffer {
  let shared: Buffer;
  try {
    shared = x25519(privateKey, publicKey);
  } catch {
    // OpenSSL refuses to derive an all-zero secret; that is the only way X25519 on 32 bytes fails.
    throw new NoiseError('low-order', `${what}: peer public key is a low-order point`);
  }
  if (shared.every((byte) => byte === 0)) {
    throw new NoiseError('low-order', `${what}: peer public key is a low-order point`);
  }
  return shared;
}

function publicOf(privateKey: Uint8Array): Buffer {
  return x25519(privateKey, BASE_POINT);
}

// One-entry cache: a server uses one static key for every handshake, and deriving its public half is a
// scalar multiplication per connection otherwise.
// The imported key object is kept too: each handshake uses the static key twice.
let cachedStatic: { privateKey: Buffer; publicKey: Buffer; object: KeyObject } | undefined;
function staticKeyOf(privateKey: Uint8Array): { publicKey: Buffer; object: KeyObject } {
  if (cachedStatic === undefined || !cachedStatic.privateKey.equals(privateKey)) {
    cachedStatic = {
      privateKey: Buffer.from(privateKey),
      publicKey: publicOf(privateKey),
      object: x25519PrivateKey(privateKey),
    };
  }
  return cachedStatic;
}

function ephemeral(privateKey: Uint8Array | undefined): { object: KeyObject; publicKey: Buffer } {
  if (privateKey === undefined) return generateX25519KeyPair();
  checkKey('ephemeral private key', privateKey);
  return { object: x25519PrivateKey(privateKey), publicKey: publicOf(privateKey) };
}

/** A peer's public key imported once for its two uses; a malformed point is a low-order refusal. */
function peerKey(raw: Uint8Array, what: string): KeyObject {
  try {
    return x25519PublicKey(raw);
  } catch {
    throw new NoiseError('low-order', `${what}: peer public key is a low-order point`);
  }
}

/**
 * Noise SymmetricState. Each handshake key is used exactly once, so the cipher nonce is always zero
 * (the spec's n counter never leaves 0 between two MixKey calls in IK).
 */
class SymmetricState {
  ck: Buffer;
  h: Buffer;
  #k: Buffer | undefined;

  constructor(prologue: Uint8Array, responderStatic: Uint8Array) {
    this.ck = INITIAL_HASH;
    this.h = INITIAL_HASH;
    this.mixHash(prologue);
    this.mixHash(responderStatic);
  }

  mixHash(data: Uint8Array): void {
    this.h = blake2s(this.h, data);
  }

  mixKey(sharedSecret: Uint8Array): void {
    const [ck, k] = hkdf2(this.ck, sharedSecret);
    this.ck = ck;
    this.#k = k;
  }

  encryptAndHash(plaintext: Uint8Array): Buffer {
    if (this.#k === undefined) throw new Error('noise: encrypt before any key was mixed in');
    const sealed = seal(this.#k, ZERO_NONCE, plaintext, this.h);
    this.mixHash(sealed);
    return sealed;
  }

  decryptAndHash(sealed: Uint8Array, what: string): Buffer {
    if (this.#k === undefined) throw new Error('noise: decrypt before any key was mixed in');
    const plaintext = open(this.#k, ZERO_NONCE, sealed, this.h);
    if (plaintext === undefined) throw new NoiseError('decrypt', `${what}: authentication failed`);
    this.mixHash(sealed);
    return plaintext;
  }

  split(): [Buffer, Buffer] {
    return hkdf2(this.ck, EMPTY);
  }
}

export interface RespondOptions {
  /** Fixed server ephemeral key, for known-answer tests only. */
  ephemeralPrivate?: Uint8Array;
  /** Prologue override, for known-answer tests only; default is tailscalePrologue(version). */
  prologue?: Uint8Array;
}

export interface RespondResult {
  /** Protocol version from the initiation header: the client's capability version. */
  version: number;
  /** The client's raw 32-byte machine public key, authenticated by the handshake. */
  peerStatic: Buffer;
  /** The 51-byte response to send to the client. */
  response: Buffer;
  /** Server side: receives with k1, sends with k2. */
  keys: TransportKeys;
  handshakeHash: Buffer;
}

/** The protocol version of an initiation, after checking its 5-byte header and size. */
export function initiationVersion(initiation: Uint8Array): number {
  if (initiation.length < INITIATION_HEADER_SIZE) {
    throw new NoiseError(
      'short',
      `handshake initiation is ${initiation.length} bytes, need ${INITIATION_SIZE}`,
    );
  }
  const view = Buffer.from(initiation.buffer, initiation.byteOffset, initiation.length);
  const type = view.readUInt8(2);
  if (type !== MSG_INITIATION) {
    throw new NoiseError('bad-type', `handshake initiation has message type ${type}, want ${MSG_INITIATION}`);
  }
  const length = view.readUInt16BE(3);
  if (length !== INITIATION_PAYLOAD) {
    throw new NoiseError(
      'bad-length',
      `handshake initiation announces ${length} payload bytes, want ${INITIATION_PAYLOAD}`,
    );
  }
  if (initiation.length !== INITIATION_SIZE) {
    throw new NoiseError(
      initiation.length < INITIATION_SIZE ? 'short' : 'bad-length',
      `handshake initiation is ${initiation.length} bytes, want ${INITIATION_SIZE}`,
    );
  }
  return view.readUInt16BE(0);
}

/**
 * Server side: checks the client's initiation and produces the response and transport keys. Never
 * rejects on version: the caller decides which capability versions it serves.
 */
export function respond(
  initiation: Uint8Array,
  serverStaticPrivate: Uint8Array,
  options: RespondOptions = {},
): RespondResult {
  checkKey('server static private key', serverStaticPrivate);
  const version = initiationVersion(initiation);
  const message = Buffer.from(initiation.buffer, initiation.byteOffset, initiation.length);
  const serverKey = staticKeyOf(serverStaticPrivate);
  const state = new SymmetricState(options.prologue ?? tailscalePrologue(version), serverKey.publicKey);

  // -> e
  const clientEphemeral = message.subarray(5, 37);
  state.mixHash(clientEphemeral);
  const clientEphemeralKey = peerKey(clientEphemeral, 'es');
  // -> es
  state.mixKey(dh(serverKey.object, clientEphemeralKey, 'es'));
  // -> s (the ciphertext, not the plaintext, is what gets hashed)
  const peerStatic = state.decryptAndHash(message.subarray(37, 85), 'initiation static key');
  const peerStaticKey = peerKey(peerStatic, 'ss');
  // -> ss
  state.mixKey(dh(serverKey.object, peerStaticKey, 'ss'));
  state.decryptAndHash(message.subarray(85, 101), 'initiation payload');

  const e = ephemeral(options.ephemeralPrivate);
  const response = Buffer.allocUnsafe(RESPONSE_SIZE);
  response.writeUInt8(MSG_RESPONSE, 0);
  response.writeUInt16BE(RESPONSE_PAYLOAD, 1);
  // <- e
  response.set(e.publicKey, 3);
  state.mixHash(e.publicKey);
  // <- ee, se
  state.mixKey(dh(e.object, clientEphemeralKey, 'ee'));
  state.mixKey(dh(e.object, peerStaticKey, 'se'));
  response.set(state.encryptAndHash(EMPTY), 35);

  const [k1, k2] = state.split();
  return { version, peerStatic, response, keys: { send: k2, receive: k1 }, handshakeHash: state.h };
}

export interface InitiateOptions {
  /** Protocol version for the header and prologue: the client's capability version. */
  version: number;
  clientStaticPrivate: Uint8Array;
  /** The server's raw 32-byte Noise public key (from `GET /key`). */
  serverStaticPublic: Uint8Array;
  /** Fixed client ephemeral key, for known-answer tests only. */
  ephemeralPrivate?: Uint8Array;
  /** Prologue override, for known-answer tests only. */
  prologue?: Uint8Array;
}

export interface Initiation {
  /** The 101-byte initiation. */
  message: Buffer;
  /**
   * Completes the handshake with the server's reply (exactly one whole message: see
   * serverMessageLength). Throws NoiseError 'server-error' with the server's text for a type-3 reply.
   */
  finish(response: Uint8Array): { keys: TransportKeys; handshakeHash: Buffer };
}

/** Client side: builds the initiation; `finish` consumes the server's response. */
export function initiate(options: InitiateOptions): Initiation {
  checkKey('client static private key', options.clientStaticPrivate);
  checkKey('server static public key', options.serverStaticPublic);
  const prologue = options.prologue ?? tailscalePrologue(options.version);
  const state = new SymmetricState(prologue, options.serverStaticPublic);
  const e = ephemeral(options.ephemeralPrivate);
  const clientStatic = publicOf(options.clientStaticPrivate);

  const message = Buffer.allocUnsafe(INITIATION_SIZE);
  message.writeUInt16BE(options.version, 0);
  message.writeUInt8(MSG_INITIATION, 2);
  message.writeUInt16BE(INITIATION_PAYLOAD, 3);
  // -> e
  message.set(e.publicKey, 5);
  state.mixHash(e.publicKey);
  // -> es
  state.mixKey(dh(e.object, options.serverStaticPublic, 'es'));
  // -> s
  message.set(state.encryptAndHash(clientStatic), 37);
  // -> ss
  state.mixKey(dh(options.clientStaticPrivate, options.serverStaticPublic, 'ss'));
  message.set(state.encryptAndHash(EMPTY), 85);

  let finished = false;
  return {
    message,
    finish(response) {
      if (finished) throw new Error('noise: handshake already finished');
      finished = true;
      const expected = serverMessageLength(response);
      if (response.length !== expected) {
        throw new NoiseError(
          response.length < expected ? 'short' : 'bad-length',
          `handshake reply is ${response.length} bytes, want ${expected}`,
        );
      }
      const reply = Buffer.from(response.buffer, response.byteOffset, response.length);
      if (reply[0] === MSG_ERROR) {
        throw new NoiseError('server-error', `server error: ${JSON.stringify(reply.toString('utf8', 3))}`);
      }
      // <- e
      const serverEphemeral = reply.subarray(3, 35);
      state.mixHash(serverEphemeral);
      // <- ee, se
      state.mixKey(dh(e.object, serverEphemeral, 'ee'));
      state.mixKey(dh(options.clientStaticPrivate, serverEphemeral, 'se'));
      state.decryptAndHash(reply.subarray(35, 51), 'response payload');
      const [k1, k2] = state.split();
      return { keys: { send: k1, receive: k2 }, handshakeHash: state.h };
    },
  };
}

/**
 * Total length of the server's handshake message given at least its 3-byte header: RESPONSE_SIZE for a
 * response, 3 + n for an error. Lets a client reading a byte stream know how much to wait for.
 */
export function serverMessageLength(header: Uint8Array): number {
  if (header.length < SERVER_HEADER_SIZE) {
    throw new NoiseError(
      'short',
      `handshake reply header is ${header.length} bytes, need ${SERVER_HEADER_SIZE}`,
    );
  }
  const type = header[0] as number;
  const length = ((header[1] as number) << 8) | (header[2] as number);
  if (type === MSG_RESPONSE) {
    if (length !== RESPONSE_PAYLOAD) {
      throw new NoiseError(
        'bad-length',
        `handshake response announces ${length} payload bytes, want ${RESPONSE_PAYLOAD}`,
      );
    }
    return RESPONSE_SIZE;
  }
  if (type === MSG_ERROR) return SERVER_HEADER_SIZE + length;
  throw new NoiseError('bad-type', `handshake reply has message type ${type}, want ${MSG_RESPONSE}`);
}

/**
 * A type-3 message telling the client why the handshake was refused. Cleartext and unauthenticated:
 * never put anything in it that an on-path observer must not see. Longer texts are cut to 65535 bytes.
 */
export function encodeHandshakeError(text: string): Buffer {
  let body = Buffer.from(text, 'utf8');
  if (body.length > MAX_ERROR_TEXT) body = body.subarray(0, MAX_ERROR_TEXT);
  const out = Buffer.allocUnsafe(SERVER_HEADER_SIZE + body.length);
  out.writeUInt8(MSG_ERROR, 0);
  out.writeUInt16BE(body.length, 1);
  out.set(body, SERVER_HEADER_SIZE);
  return out;
}
