/**
 * STUN Binding messages (RFC 5389), the subset tailscaled's netcheck uses. Pure: no sockets here.
 *
 * Message (every field big-endian):
 *
 *    0                   1                   2                   3
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |0 0|   type (0x0001 request,   |  length of the attributes     |
 *   |   |   0x0101 success)         |  (excludes this 20-byte header)|
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                  magic cookie 0x2112A442                      |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                  transaction ID (12 bytes)                    |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   | attribute type                | attribute value length V      |  repeated; the value is
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  padded with 0-3 bytes to a
 *   | value (V bytes) + padding to a multiple of 4                  |  multiple of 4, and the padding
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  counts in the header length
 *
 * What tailscaled sends (40 bytes, always this shape):
 *
 *   00 01 | 00 14 | 21 12 a4 42 | txid (12) | 80 22 00 08 "tailnode" | 80 28 00 04 crc (4)
 *
 *   FINGERPRINT (0x8028) = CRC-32/IEEE of every byte before the attribute, XOR 0x5354554E. The header
 *   length it covers is already the final one (including the fingerprint itself).
 *
 * What the server answers (one attribute, like derper; no SOFTWARE, no FINGERPRINT):
 *
 *   01 01 | 00 0c or 00 18 | 21 12 a4 42 | txid (12) | 00 20 | 00 08 or 00 14 |
 *   00 | family (01 IPv4, 02 IPv6) | port XOR 0x2112 | address XOR cookie (IPv4, 4 bytes)
 *                                                   | address XOR cookie‖txid (IPv6, 16 bytes)
 *
 * The parser is lenient like a generic STUN server: any well-formed Binding Request is answered,
 * SOFTWARE=tailnode is not required (derper requires it, so generic tools get nothing from derper; the
 * extra leniency costs nothing since the answer only tells the sender its own address). What must hold
 * is the framing: a malformed datagram is not STUN and gets no answer.
 */
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { formatIp, type IpFamily, parseIp } from '../util/ip.ts';

export const HEADER_SIZE = 20;
export const TRANSACTION_ID_SIZE = 12;
export const MAGIC_COOKIE = 0x2112a442;

export const BINDING_REQUEST = 0x0001;
export const BINDING_SUCCESS = 0x0101;

export const ATTR_MAPPED_ADDRESS = 0x0001;
export const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
/** A pre-RFC number for XOR-MAPPED-ADDRESS that some servers still send; tailscaled accepts it too. */
export const ATTR_XOR_MAPPED_ADDRESS_ALT = 0x8020;
export const ATTR_SOFTWARE = 0x8022;
export const ATTR_FINGERPRINT = 0x8028;

const FINGERPRINT_XOR = 0x5354554e;
const FAMILY_IPV4 = 0x01;
const FAMILY_IPV6 = 0x02;
/** tailscaled's SOFTWARE value; 8 bytes, so the attribute needs no padding. */
const SOFTWARE = Buffer.from('tailnode', 'ascii');

/** Size of the request tailscaled sends: header + SOFTWARE (4 + 8) + FINGERPRINT (4 + 4). */
export const BINDING_REQUEST_SIZE = HEADER_SIZE + 4 + SOFTWARE.length + 8;

export interface MappedAddress {
  /** Canonical text: dotted quad, or RFC 5952 IPv6 (IPv4-mapped addresses are unmapped). */
  readonly ip: string;
  readonly port: number;
}

const padded = (length: number): number => (length + 3) & ~3;

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

function fingerprint(covered: Uint8Array): number {
  return (crc32(covered) ^ FINGERPRINT_XOR) >>> 0;
}

function checkTransactionId(transactionId: Uint8Array): void {
  if (transactionId.length !== TRANSACTION_ID_SIZE) {
    throw new RangeError(
      `STUN transaction ID must be ${TRANSACTION_ID_SIZE} bytes, got ${transactionId.length}`,
    );
  }
}

/** A fresh random transaction ID, as a client needs one per request. */
export function newTransactionId(): Buffer {
  return randomBytes(TRANSACTION_ID_SIZE);
}

/**
 * Whether `msg` is a STUN message of `type` whose header length matches the datagram exactly. Bytes
 * past the announced length are not tolerated: a UDP datagram is the whole message.
 */
function hasHeader(msg: Buffer, type: number): boolean {
  if (msg.length < HEADER_SIZE) return false;
  // The top two bits are zero in STUN and set in most protocols sharing the port (RFC 7983 demux).
  if ((msg[0] ?? 0) & 0xc0) return false;
  if (msg.readUInt16BE(0) !== type) return false;
  if (msg.readUInt32BE(4) !== MAGIC_COOKIE) return false;
  const length = msg.readUInt16BE(2);
  return length % 4 === 0 && HEADER_SIZE + length === msg.length;
}

type AttributeVisitor = (type: number, valueOffset: number, valueLength: number) => void;

/**
 * Walks the attributes after the header, calling `visit` for each. False when an attribute (with its
 * padding) overruns the message, or a FINGERPRINT is not the last attribute or does not match.
 */
function walkAttributes(msg: Buffer, visit?: AttributeVisitor): boolean {
  let offset = HEADER_SIZE;
  while (offset < msg.length) {
    if (msg.length - offset < 4) return false;
    const type = msg.readUInt16BE(offset);
    const length = msg.readUInt16BE(offset + 2);
    const next = offset + 4 + padded(length);
    if (next > msg.length) return false;
    if (type === ATTR_FINGERPRINT) {
      if (length !== 4 || next !== msg.length) return false;
      if (msg.readUInt32BE(offset + 4) !== fingerprint(msg.subarray(0, offset))) return false;
    }
    visit?.(type, offset + 4, length);
    offset = next;
  }
  return true;
}

/**
 * The transaction ID of a well-formed Binding Request, or undefined for anything else (which a server
 * drops silently). The ID is copied, so it does not keep the receive buffer alive.
 */
export function parseBindingRequest(packet: Uint8Array): { transactionId: Buffer } | undefined {
  const msg = asBuffer(packet);
  if (!hasHeader(msg, BINDING_REQUEST) || !walkAttributes(msg)) return undefined;
  return { transactionId: Buffer.from(msg.subarray(8, HEADER_SIZE)) };
}

/** Exactly the 40-byte request tailscaled sends: SOFTWARE "tailnode" and a FINGERPRINT. */
export function encodeBindingRequest(transactionId: Uint8Array): Buffer {
  checkTransactionId(transactionId);
  const out = Buffer.allocUnsafe(BINDING_REQUEST_SIZE);
  out.writeUInt16BE(BINDING_REQUEST, 0);
  out.writeUInt16BE(BINDING_REQUEST_SIZE - HEADER_SIZE, 2);
  out.writeUInt32BE(MAGIC_COOKIE, 4);
  out.set(transactionId, 8);
  out.writeUInt16BE(ATTR_SOFTWARE, 20);
  out.writeUInt16BE(SOFTWARE.length, 22);
  out.set(SOFTWARE, 24);
  out.writeUInt16BE(ATTR_FINGERPRINT, 32);
  out.writeUInt16BE(4, 34);
  out.writeUInt32BE(fingerprint(out.subarray(0, 32)), 36);
  return out;
}

/**
 * The address to report, IPv4-mapped IPv6 (`::ffff:1.2.3.4`, how a dual-stack socket shows IPv4 peers)
 * unmapped to IPv4. A zone (`fe80::1%eth0`) means nothing to the peer and is dropped.
 */
function reportedAddress(ip: string): { family: IpFamily; value: bigint } {
  const zone = ip.indexOf('%');
  const text = zone < 0 ? ip : ip.slice(0, zone);
  // Fast path for the common dual-stack case; the general one below handles every other spelling.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text);
  const parsed = parseIp(mapped?.[1] ?? text);
  if (parsed === undefined) throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`);
  if (parsed.family === 6 && parsed.value >> 32n === 0xffffn) {
    return { family: 4, value: parsed.value & 0xffffffffn };
  }
  return parsed;
}

/** A Binding Success response telling the requester its address as the server saw it. */
export function encodeBindingResponse(transactionId: Uint8Array, ip: string, port: number): Buffer {
  checkTransactionId(transactionId);
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`not a UDP port: ${port}`);
  const address = reportedAddress(ip);
  const valueLength = address.family === 4 ? 8 : 20;
  const out = Buffer.allocUnsafe(HEADER_SIZE + 4 + valueLength);
  out.writeUInt16BE(BINDING_SUCCESS, 0);
  out.writeUInt16BE(4 + valueLength, 2);
  out.writeUInt32BE(MAGIC_COOKIE, 4);
  out.set(transactionId, 8);
  out.writeUInt16BE(ATTR_XOR_MAPPED_ADDRESS, 20);
  out.writeUInt16BE(valueLength, 22);
  out.writeUInt8(0, 24);
  out.writeUInt8(address.family === 4 ? FAMILY_IPV4 : FAMILY_IPV6, 25);
  out.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 26);
  if (address.family === 4) {
    out.writeUInt32BE((Number(address.value) ^ MAGIC_COOKIE) >>> 0, 28);
  } else {
    out.writeBigUInt64BE(address.value >> 64n, 28);
    out.writeBigUInt64BE(address.value & 0xffff_ffff_ffff_ffffn, 36);
    // The XOR key is the 16 bytes starting at the cookie: cookie ‖ transaction ID.
    for (let i = 0; i < 16; i++) out[28 + i] = (out[28 + i] ?? 0) ^ (out[4 + i] ?? 0);
  }
  return out;
}

/** Decodes a (XOR-)MAPPED-ADDRESS value; `xor` undoes the masking with cookie ‖ transaction ID. */
function decodeAddress(msg: Buffer, offset: number, length: number, xor: boolean): MappedAddress | undefined {
  const family = msg[offset + 1];
  if (!((family === FAMILY_IPV4 && length === 8) || (family === FAMILY_IPV6 && length === 20))) {
    return undefined;
  }
  const bytes = Buffer.from(msg.subarray(offset + 4, offset + length));
  if (xor) for (let i = 0; i < bytes.length; i++) bytes[i] = (bytes[i] ?? 0) ^ (msg[4 + i] ?? 0);
  const port = msg.readUInt16BE(offset + 2) ^ (xor ? MAGIC_COOKIE >>> 16 : 0);
  if (family === FAMILY_IPV4) return { ip: formatIp(4, BigInt(bytes.readUInt32BE(0))), port };
  const value = (bytes.readBigUInt64BE(0) << 64n) | bytes.readBigUInt64BE(8);
  if (value >> 32n === 0xffffn) return { ip: formatIp(4, value & 0xffffffffn), port };
  return { ip: formatIp(6, value), port };
}

/**
 * The mapped address in a Binding Success response, or undefined if `packet` is not one (or answers
 * another transaction than `expectedTxId`). Tolerant like tailscaled: XOR-MAPPED-ADDRESS under 0x0020 or
 * 0x8020, falling back to plain MAPPED-ADDRESS; IPv4-mapped IPv6 is unmapped.
 */
export function parseBindingResponse(
  packet: Uint8Array,
  expectedTxId?: Uint8Array,
): MappedAddress | undefined {
  const msg = asBuffer(packet);
  if (!hasHeader(msg, BINDING_SUCCESS)) return undefined;
  if (expectedTxId !== undefined && !msg.subarray(8, HEADER_SIZE).equals(expectedTxId)) return undefined;
  let xorMapped: MappedAddress | undefined;
  let mapped: MappedAddress | undefined;
  const wellFormed = walkAttributes(msg, (type, offset, length) => {
    if (type === ATTR_XOR_MAPPED_ADDRESS || type === ATTR_XOR_MAPPED_ADDRESS_ALT) {
      xorMapped ??= decodeAddress(msg, offset, length, true);
    } else if (type === ATTR_MAPPED_ADDRESS) {
      mapped ??= decodeAddress(msg, offset, length, false);
    }
  });
  return wellFormed ? (xorMapped ?? mapped) : undefined;
}
