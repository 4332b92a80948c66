import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  DISCO_MAGIC,
  encodeFrame,
  FRAME_HEADER_LENGTH,
  FrameType,
  healthFrame,
  ip16,
  KEEP_ALIVE_FRAME,
  looksLikeDisco,
  MAGIC,
  MAX_CLIENT_INFO_LENGTH,
  MAX_FRAME_LENGTH,
  MAX_PACKET_SIZE,
  PeerGoneReason,
  PeerPresentFlag,
  PROTOCOL_VERSION,
  peerGoneFrame,
  peerPresentFrame,
  pongFrame,
  restartingFrame,
  serverKeyFrame,
} from './wire.ts';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
/** 32 bytes 0x00, 0x01, …, 0x1f: easy to spot in a dump. */
const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

describe('DERP wire constants', () => {
  test('protocol version 2, DERP magic is "DERP" + U+1F511 as 8 bytes', () => {
    assert.equal(PROTOCOL_VERSION, 2);
    assert.deepEqual(MAGIC, hex('44 45 52 50 F0 9F 94 91'));
    assert.deepEqual(MAGIC, Buffer.from('DERP\u{1F511}', 'utf8'));
    assert.deepEqual(DISCO_MAGIC, hex('54 53 F0 9F 92 AC'));
  });

  test('frame type codes and limits match the catalogue', () => {
    assert.deepEqual(FrameType, {
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
    });
    assert.deepEqual(PeerGoneReason, { Disconnected: 0, NotHere: 1 });
    assert.deepEqual(PeerPresentFlag, { Regular: 1, MeshPeer: 2, Prober: 4, NotIdeal: 8 });
    assert.equal(FRAME_HEADER_LENGTH, 5);
    assert.equal(MAX_PACKET_SIZE, 65_536);
    assert.equal(MAX_CLIENT_INFO_LENGTH, 256 * 1024);
    assert.equal(MAX_FRAME_LENGTH, 1024 * 1024);
  });
});

describe('DERP frame layouts', () => {
  test('header is type then big-endian u32 payload length; parts are concatenated', () => {
    const frame = encodeFrame(FrameType.SendPacket, Buffer.from([1, 2]), Buffer.alloc(0), Buffer.from([3]));
    assert.deepEqual(frame, hex('04 00000003 010203'));
    const big = encodeFrame(FrameType.RecvPacket, Buffer.alloc(0x010203));
    assert.deepEqual(big.subarray(0, 5), hex('05 00010203'));
    assert.equal(big.length, 5 + 0x010203);
  });

  test('header length always equals the sum of the parts', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.values(FrameType)),
        fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 5 }),
        (type, parts) => {
          const frame = encodeFrame(type, ...parts);
          const payload = Buffer.concat(parts);
          assert.equal(frame[0], type);
          assert.equal(frame.readUInt32BE(1), payload.length);
          assert.deepEqual(frame.subarray(5), payload);
        },
      ),
      { numRuns: 100 },
    );
  });

  test('ServerKey is 5 + 40 bytes: header, magic, server key', () => {
    const frame = serverKeyFrame(key);
    assert.equal(frame.length, 45);
    assert.deepEqual(frame.subarray(0, 5), hex('01 00000028'));
    assert.deepEqual(frame.subarray(5, 13), hex('44 45 52 50 F0 9F 94 91'));
    assert.deepEqual(frame.subarray(13), key);
  });

  test('KeepAlive is an empty frame of type 6', () => {
    assert.deepEqual(KEEP_ALIVE_FRAME, hex('06 00000000'));
  });

  test('PeerGone carries the key and the reason byte', () => {
    assert.deepEqual(
      peerGoneFrame(key, PeerGoneReason.Disconnected),
      Buffer.concat([hex('08 00000021'), key, hex('00')]),
    );
    assert.deepEqual(
      peerGoneFrame(key, PeerGoneReason.NotHere),
      Buffer.concat([hex('08 00000021'), key, hex('01')]),
    );
  });

  test('PeerPresent is 51 bytes of payload: key, v4-mapped IP, port, flags', () => {
    const frame = peerPresentFrame(
      key,
      ip16('192.0.2.7'),
      41641,
      PeerPresentFlag.Regular | PeerPresentFlag.Prober,
    );
    assert.equal(frame.length, 5 + 51);
    assert.deepEqual(frame.subarray(0, 5), hex('09 00000033'));
    assert.deepEqual(frame.subarray(5, 37), key);
    assert.deepEqual(frame.subarray(37, 53), hex('00000000 00000000 0000ffff c0000207'));
    assert.deepEqual(frame.subarray(53, 55), hex('a2a9'));
    assert.equal(frame[55], 0x05);
  });

  test('Pong echoes the first 8 bytes of the ping, however long the ping', () => {
    assert.deepEqual(pongFrame(hex('0102030405060708')), hex('13 00000008 0102030405060708'));
    assert.deepEqual(
      pongFrame(Buffer.alloc(1000, 0xab)),
      Buffer.concat([hex('13 00000008'), Buffer.alloc(8, 0xab)]),
    );
  });

  test('Health is UTF-8 text (empty = healthy), Restarting two big-endian u32 ms', () => {
    assert.deepEqual(healthFrame('ünhealthy'), Buffer.concat([hex('14 0000000a'), Buffer.from('ünhealthy')]));
    assert.deepEqual(healthFrame(''), hex('14 00000000'));
    assert.deepEqual(restartingFrame(1500, 0x01020304), hex('15 00000008 000005dc 01020304'));
  });
});

describe('ip16', () => {
  test('IPv4 as v4-mapped IPv6', () => {
    assert.deepEqual(ip16('1.2.3.4'), hex('00000000 00000000 0000ffff 01020304'));
    assert.deepEqual(ip16('127.0.0.1'), hex('00000000 00000000 0000ffff 7f000001'));
    assert.deepEqual(ip16('255.255.255.255'), hex('00000000 00000000 0000ffff ffffffff'));
    // A dual-stack socket's view of an IPv4 peer gives the same bytes.
    assert.deepEqual(ip16('::ffff:1.2.3.4'), ip16('1.2.3.4'));
  });

  test('IPv6 as its 16 bytes', () => {
    assert.deepEqual(ip16('::1'), hex('00000000 00000000 00000000 00000001'));
    assert.deepEqual(ip16('2001:db8::a:b'), hex('20010db8 00000000 00000000 000a000b'));
    assert.deepEqual(ip16('fd7a:115c:a1e0::1'), hex('fd7a115c a1e00000 00000000 00000001'));
    assert.deepEqual(ip16('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), Buffer.alloc(16, 0xff));
  });

  test('anything that is not an IP gives 16 zero bytes', () => {
    for (const text of ['', 'localhost', '1.2.3', '1.2.3.256', 'fe80::1%eth0', ':::']) {
      assert.deepEqual(ip16(text), Buffer.alloc(16), text);
    }
  });
});

describe('looksLikeDisco', () => {
  const disco = (length: number) => {
    const data = Buffer.alloc(length, 0x55);
    DISCO_MAGIC.copy(data);
    return data;
  };

  test('needs 62 bytes (magic 6 + disco key 32 + nonce 24) starting with the magic', () => {
    assert.equal(looksLikeDisco(disco(62)), true);
    assert.equal(looksLikeDisco(disco(1000)), true);
    assert.equal(looksLikeDisco(disco(61)), false);
    assert.equal(looksLikeDisco(disco(6)), false);
    assert.equal(looksLikeDisco(Buffer.alloc(0)), false);
    const wrong = disco(62);
    wrong[5] = 0xad;
    assert.equal(looksLikeDisco(wrong), false);
    const wrongFirst = disco(62);
    wrongFirst[0] = 0x55;
    assert.equal(looksLikeDisco(wrongFirst), false);
  });

  test('at an offset (inside a frame), the length counts from the offset', () => {
    const prefix = Buffer.alloc(FRAME_HEADER_LENGTH + 32, 0x54);
    assert.equal(looksLikeDisco(Buffer.concat([prefix, disco(62)]), prefix.length), true);
    assert.equal(looksLikeDisco(Buffer.concat([prefix, disco(61)]), prefix.length), false);
    // The magic must be at the offset, not before it.
    assert.equal(looksLikeDisco(Buffer.concat([disco(62), Buffer.alloc(40)]), 1), false);
  });
});
