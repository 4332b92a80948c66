/**
 * Noise transport records of the ts2021 protocol.
 *
 *   +------+-----------------+-------------------------------------------+
 *   | 0x04 | N (u16 BE)      | ChaCha20-Poly1305(plaintext) || tag (N B)  |
 *   +------+-----------------+-------------------------------------------+
 *    0      1                 3                                      3 + N
 *
 *   3 + N <= 4096, so a record carries at most 4096 - 3 - 16 = 4077 plaintext bytes.
 *   Associated data: empty.
 *   Nonce (12 bytes): 00 00 00 00 || counter (u64 BIG-endian).
 *
 * The big-endian counter deviates from the Noise spec (little-endian); a spec-following library agrees
 * for record 0 only and fails on the second record in each direction. Each direction has its own
 * counter starting at 0, one per record, never reset (there is no rekeying). Zero-length records are
 * legal and carry nothing. Any bad type, oversize header or authentication failure poisons the stream:
 * the counter can no longer be trusted, so the connection must be dropped.
 */
import type { KeyObject } from 'node:crypto';
import { AEAD_NONCE_SIZE, AEAD_TAG_SIZE, aeadKey, open, sealInto } from '../crypto/aead.ts';
import { NoiseError } from './errors.ts';

export const MSG_RECORD = 0x04;
export const RECORD_HEADER_SIZE = 3;
export const MAX_RECORD_SIZE = 4096;
export const MAX_PLAINTEXT_SIZE = MAX_RECORD_SIZE - RECORD_HEADER_SIZE - AEAD_TAG_SIZE; // 4077

// Counters stay below 2^53 so they fit a JS number exactly; at one record per microsecond that is
// 285 years, so "exhausted" is unreachable in practice but still checked.
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;
const TWO_32 = 0x1_0000_0000;

/** The key imported once: every record of the connection reuses it. */
function checkKey(key: Uint8Array): KeyObject {
  if (key.length !== 32) throw new NoiseError('bad-key', `transport key must be 32 bytes, got ${key.length}`);
  return aeadKey(key);
}

/** Writes the nonce for `counter` into `nonce` (whose first 4 bytes stay zero). */
function setNonce(nonce: Buffer, counter: number): void {
  nonce.writeUInt32BE(Math.floor(counter / TWO_32), 4);
  nonce.writeUInt32BE(counter >>> 0, 8);
}

/** Encrypts outgoing plaintext into records with one direction's key and counter. */
export class RecordSealer {
  readonly #key: KeyObject;
  readonly #nonce = Buffer.alloc(AEAD_NONCE_SIZE);
  #counter = 0;

  constructor(key: Uint8Array) {
    this.#key = checkKey(key);
  }

  /** One record carrying `plaintext` (at most 4077 bytes; zero is allowed). */
  seal(plaintext: Uint8Array): Buffer {
    if (plaintext.length > MAX_PLAINTEXT_SIZE) {
      throw new NoiseError(
        'oversize',
        `record plaintext is ${plaintext.length} bytes, limit is ${MAX_PLAINTEXT_SIZE}`,
      );
    }
    const out = Buffer.allocUnsafe(RECORD_HEADER_SIZE + plaintext.length + AEAD_TAG_SIZE);
    this.#sealAt(out, 0, plaintext);
    return out;
  }

  /**
   * Any amount of plaintext cut into records of at most 4077 bytes, concatenated in one buffer so it
   * reaches the transport in one write. Empty input gives an empty buffer (no record).
   */
  sealAll(plaintext: Uint8Array): Buffer {
    const records = Math.ceil(plaintext.length / MAX_PLAINTEXT_SIZE);
    const out = Buffer.allocUnsafe(plaintext.length + records * (RECORD_HEADER_SIZE + AEAD_TAG_SIZE));
    let offset = 0;
    for (let start = 0; start < plaintext.length; start += MAX_PLAINTEXT_SIZE) {
      const chunk = plaintext.subarray(start, Math.min(start + MAX_PLAINTEXT_SIZE, plaintext.length));
      offset += this.#sealAt(out, offset, chunk);
    }
    return out;
  }

  #sealAt(out: Buffer, offset: number, plaintext: Uint8Array): number {
    if (this.#counter >= MAX_COUNTER) throw new NoiseError('exhausted', 'record counter exhausted');
    setNonce(this.#nonce, this.#counter++);
    out.writeUInt8(MSG_RECORD, offset);
    out.writeUInt16BE(plaintext.length + AEAD_TAG_SIZE, offset + 1);
    return RECORD_HEADER_SIZE + sealInto(out, offset + RECORD_HEADER_SIZE, this.#key, this.#nonce, plaintext);
  }
}

/**
 * Decrypts incoming records from arbitrarily cut chunks of the byte stream. Incomplete records are
 * kept until the rest arrives; the header is checked as soon as its 3 bytes are there, so an oversize
 * announcement is refused before any of its body is buffered. After an error every call throws.
 */
export class RecordReader {
  readonly #key: KeyObject;
  readonly #nonce = Buffer.alloc(AEAD_NONCE_SIZE);
  #counter = 0;
  /** Bytes of an incomplete record; held as chunks so trickling input is not re-copied per chunk. */
  #pending: Buffer[] = [];
  #pendingLength = 0;
  /** How many bytes the pending record needs in total before it can be parsed further. */
  #needed = RECORD_HEADER_SIZE;
  #failure: NoiseError | undefined;

  constructor(key: Uint8Array) {
    this.#key = checkKey(key);
  }

  /** Bytes held back waiting for the rest of a record. */
  get buffered(): number {
    return this.#pendingLength;
  }

  /** Feeds bytes from the transport; returns the plaintexts of all records now complete, in order. */
  push(bytes: Uint8Array): Buffer[] {
    if (this.#failure !== undefined) throw this.#failure;
    const chunk = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const out: Buffer[] = [];
    if (chunk.length === 0) return out;
    let data: Buffer;
    if (this.#pendingLength === 0) {
      data = chunk;
    } else {
      this.#pending.push(chunk);
      this.#pendingLength += chunk.length;
      if (this.#pendingLength < this.#needed) return out;
      data = Buffer.concat(this.#pending, this.#pendingLength);
      this.#pending = [];
      this.#pendingLength = 0;
    }
    try {
      this.#parse(data, out);
    } catch (err) {
      if (err instanceof NoiseError) this.#failure = err;
      this.#pending = [];
      this.#pendingLength = 0;
      throw err;
    }
    return out;
  }

  #parse(data: Buffer, out: Buffer[]): void {
    let offset = 0;
    for (;;) {
      const available = data.length - offset;
      if (available < RECORD_HEADER_SIZE) {
        this.#needed = RECORD_HEADER_SIZE;
        break;
      }
      const type = data.readUInt8(offset);
      if (type !== MSG_RECORD) {
        throw new NoiseError('bad-type', `transport message has type ${type}, want ${MSG_RECORD}`);
      }
      const length = data.readUInt16BE(offset + 1);
      if (RECORD_HEADER_SIZE + length > MAX_RECORD_SIZE) {
        throw new NoiseError(
          'oversize',
          `transport record announces ${RECORD_HEADER_SIZE + length} bytes, limit is ${MAX_RECORD_SIZE}`,
        );
      }
      if (length < AEAD_TAG_SIZE) {
        throw new NoiseError('bad-length', `transport record of ${length} bytes is shorter than its tag`);
      }
      if (available < RECORD_HEADER_SIZE + length) {
        this.#needed = RECORD_HEADER_SIZE + length;
        break;
      }
      const body = data.subarray(offset + RECORD_HEADER_SIZE, offset + RECORD_HEADER_SIZE + length);
      if (this.#counter >= MAX_COUNTER) throw new NoiseError('exhausted', 'record counter exhausted');
      setNonce(this.#nonce, this.#counter++);
      const plaintext = open(this.#key, this.#nonce, body);
      if (plaintext === undefined) {
        throw new NoiseError('decrypt', `transport record ${this.#counter - 1} failed authentication`);
      }
      if (plaintext.length > 0) out.push(plaintext);
      offset += RECORD_HEADER_SIZE + length;
    }
    if (offset < data.length) {
      // Copy the tail (< 4096 bytes) so a large transport chunk is not kept alive by it.
      const rest = Buffer.from(data.subarray(offset));
      this.#pending.push(rest);
      this.#pendingLength = rest.length;
    }
  }
}
