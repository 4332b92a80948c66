/**
 * DERP wire format, protocol version 2 (tailscale `derp/derp.go`).
 *
 *   frame     +------+----------------+------------------------+
 *             | type | length (u32 BE)| payload (length bytes) |
 *             +------+----------------+------------------------+
 *              0      1                5
 *
 *   0x01 ServerKey      S→C  magic (8) · server public key (32) · [future bytes]
 *   0x02 ClientInfo     C→S  client public key (32) · nonce (24) · box(JSON)   first client frame
 *   0x03 ServerInfo     S→C  nonce (24) · box({"version":2})                    first frame after ServerKey
 *   0x04 SendPacket     C→S  destination key (32) · data (≤ 64 KiB)
 *   0x05 RecvPacket     S→C  source key (32) · data
 *   0x06 KeepAlive      S→C  empty
 *   0x07 NotePreferred  C→S  1 byte: 1 = this is my home region
 *   0x08 PeerGone       S→C  key (32) · reason (1): 0 disconnected, 1 not here
 *   0x09 PeerPresent    S→W  key (32) · IP (16, v4-mapped) · port (u16 BE) · flags (1)
 *   0x0a ForwardPacket  M→S  source key (32) · destination key (32) · data
 *   0x10 WatchConns     M→S  empty
 *   0x11 ClosePeer      M→S  key (32)
 *   0x12 Ping           both 8 opaque bytes (a client may send up to 1000; only 8 are echoed)
 *   0x13 Pong           both the 8 bytes of the ping
 *   0x14 Health         S→C  UTF-8 problem text, empty = healthy
 *   0x15 Restarting     S→C  reconnect in (u32 ms) · try for (u32 ms)
 *
 *   (S server, C client, W mesh watcher, M mesh peer holding the mesh key)
 *
 * All integers are big-endian; keys are raw 32-byte Curve25519 public keys (a client's key is its node
 * key). SendPacket and RecvPacket have the same layout and length, which lets the relay turn one into the
 * other in place. Unknown frame types are skipped, not fatal, so either side can add frames later.
 */
import { parseIp } from '../util/ip.ts';

export const PROTOCOL_VERSION = 2;

/** "DERP" followed by U+1F511 (key) in UTF-8. */
export const MAGIC = Buffer.from([0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91]);

export const FRAME_HEADER_LENGTH = 5;
export const KEY_LENGTH = 32;
export const NONCE_LENGTH = 24;

/** Largest packet a Send/Recv/ForwardPacket may carry, not counting keys. */
export const MAX_PACKET_SIZE = 64 << 10;
/** Largest ClientInfo the server reads. */
export const MAX_CLIENT_INFO_LENGTH = 256 << 10;
/** Clients treat any longer frame as fatal, so the server never sends one (and refuses to read one). */
export const MAX_FRAME_LENGTH = 1 << 20;
export const MIN_PING_LENGTH = 8;
export const MAX_PING_LENGTH = 1000;
export const PING_DATA_LENGTH = 8;

export const FrameType = {
  ServerKey: 0x01,
  ClientInfo: 0x02,
  ServerInfo: 0x03,
  SendPacket: 0x04,
  RecvPacket: 0x05,
  KeepAlive: 0x06,
  NotePreferred: 0x07,
  PeerGone: 0x08,
  PeerPresent: 0x09,
  ForwardPacket: 0x0a,
  WatchConns: 0x10,
  ClosePeer: 0x11,
  Ping: 0x12,
  Pong: 0x13,
  Health: 0x14,
  Restarting: 0x15,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const PeerGoneReason = { Disconnected: 0x00, NotHere: 0x01 } as const;
export type PeerGoneReason = (typeof PeerGoneReason)[keyof typeof PeerGoneReason];

/** PeerPresent flags: why a key is connected here. */
export const PeerPresentFlag = { Regular: 0x01, MeshPeer: 0x02, Prober: 0x04, NotIdeal: 0x08 } as const;

/** Disco packets start with "TS" followed by U+1F4AC (speech balloon) in UTF-8. */
export const DISCO_MAGIC = Buffer.from([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac]);
/** magic (6) · sender disco key (32) · nonce (24): anything shorter cannot be disco. */
const MIN_DISCO_LENGTH = DISCO_MAGIC.length + KEY_LENGTH + NONCE_LENGTH;

/** True if `data[offset..]` looks like a disco message (which gets its own queue and a PeerGone hint). */
export function looksLikeDisco(data: Buffer, offset = 0): boolean {
  // The first-byte test keeps the native compare off the path of WireGuard packets (most of the traffic).
  return (
    data[offset] === DISCO_MAGIC[0] &&
    data.length - offset >= MIN_DISCO_LENGTH &&
    data.compare(DISCO_MAGIC, 0, 6, offset, offset + 6) === 0
  );
}

/** A whole frame: header and payload parts copied into one buffer. */
export function encodeFrame(type: FrameType, ...parts: Uint8Array[]): Buffer {
  let length = 0;
  for (const part of parts) length += part.length;
  const frame = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + length);
  frame[0] = type;
  frame.writeUInt32BE(length, 1);
  let offset = FRAME_HEADER_LENGTH;
  for (const part of parts) {
    frame.set(part, offset);
    offset += part.length;
  }
  return frame;
}

/** KeepAlive never changes, so every connection shares one buffer. */
export const KEEP_ALIVE_FRAME = encodeFrame(FrameType.KeepAlive);

export function serverKeyFrame(serverPublic: Uint8Array): Buffer {
  return encodeFrame(FrameType.ServerKey, MAGIC, serverPublic);
}

export function peerGoneFrame(key: Uint8Array, reason: PeerGoneReason): Buffer {
  return encodeFrame(FrameType.PeerGone, key, Uint8Array.of(reason));
}

/** PeerPresent in the 51-byte form derper sends (its source comment says 41; clients read 51). */
export function peerPresentFrame(key: Uint8Array, ip16: Uint8Array, port: number, flags: number): Buffer {
  const tail = Buffer.allocUnsafe(3);
  tail.writeUInt16BE(port, 0);
  tail[2] = flags;
  return encodeFrame(FrameType.PeerPresent, key, ip16, tail);
}

export function pongFrame(data: Uint8Array): Buffer {
  return encodeFrame(FrameType.Pong, data.subarray(0, PING_DATA_LENGTH));
}

export function healthFrame(problem: string): Buffer {
  return encodeFrame(FrameType.Health, Buffer.from(problem, 'utf8'));
}

export function restartingFrame(reconnectInMs: number, tryForMs: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeUInt32BE(reconnectInMs, 0);
  body.writeUInt32BE(tryForMs, 4);
  return encodeFrame(FrameType.Restarting, body);
}

/** An address as the 16 bytes PeerPresent carries (IPv4 v4-mapped); all zeros if it is not an IP. */
export function ip16(address: string): Buffer {
  const out = Buffer.alloc(16);
  const ip = parseIp(address);
  if (ip === undefined) return out;
  const value = ip.family === 4 ? 0xffff_0000_0000n | ip.value : ip.value;
  out.writeBigUInt64BE(value >> 64n, 0);
  out.writeBigUInt64BE(value & 0xffff_ffff_ffff_ffffn, 8);
  return out;
}
