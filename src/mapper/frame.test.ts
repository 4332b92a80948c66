import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import {
  decodeMapBody,
  frame,
  frameFromZstdFrames,
  frameSync,
  keepAliveFrame,
  zstdFrame,
  zstdFrameLength,
} from './frame.ts';

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** The body of one frame, after checking that the little-endian length prefix covers exactly the rest. */
function body(bytes: Buffer): Buffer {
  assert.ok(bytes.length >= 4);
  assert.equal(bytes.readUInt32LE(0), bytes.length - 4);
  return bytes.subarray(4);
}

function decode(bytes: Buffer): Buffer {
  const compressed = body(bytes);
  assert.deepEqual(compressed.subarray(0, 4), ZSTD_MAGIC);
  return zstdDecompressSync(compressed);
}

describe('map frames', () => {
  test('a zstd frame is a little-endian length and one zstd frame of the JSON', () => {
    const json = Buffer.from(JSON.stringify({ Node: { ID: 1 }, ControlTime: '2026-01-01T00:00:00Z' }));
    const bytes = frameSync(json, 'zstd');
    assert.deepEqual(decode(bytes), json);
    // Little-endian, not big-endian: the low byte comes first.
    const length = bytes.length - 4;
    assert.ok(length < 256);
    assert.deepEqual([...bytes.subarray(0, 4)], [length, 0, 0, 0]);
  });

  test('uncompressed frames carry the JSON as is', () => {
    const json = Buffer.from('{"KeepAlive":true}');
    assert.deepEqual(frameSync(json, 'none'), Buffer.concat([Buffer.from([18, 0, 0, 0]), json]));
    const big = Buffer.from(JSON.stringify({ pad: 'x'.repeat(300_000) }));
    const framed = frame(big, 'none');
    assert.ok(Buffer.isBuffer(framed), 'no compression: no reason to go async');
    assert.deepEqual(body(framed), big);
  });

  test('small messages are framed synchronously', () => {
    const json = Buffer.from('{"PeersRemoved":[3]}');
    const framed = frame(json, 'zstd');
    assert.ok(Buffer.isBuffer(framed));
    assert.deepEqual(framed, frameSync(json, 'zstd'));
  });

  test('messages over 128 KiB are compressed asynchronously and decode the same', async () => {
    // Half random (incompressible) so the frame is big enough for a multi-byte length too.
    const peers = Array.from({ length: 400 }, (_, i) => ({ ID: i, Key: randomBytes(200).toString('hex') }));
    const json = Buffer.from(JSON.stringify({ Peers: peers }));
    assert.ok(json.length > 128 * 1024);
    const pending = frame(json, 'zstd');
    assert.ok(pending instanceof Promise);
    const bytes = await pending;
    assert.ok(bytes.length - 4 > 0xffff, 'length uses more than the low bytes');
    assert.deepEqual(decode(bytes), json);
    assert.deepEqual(decode(frameSync(json, 'zstd')), json);
  });

  test('a message of several zstd frames decodes to their contents in order', () => {
    const parts = ['{"Peers":[', '{"ID":1}', ',{"ID":2}', ']}'].map((t) => zstdFrame(Buffer.from(t)));
    const bytes = frameFromZstdFrames(parts);
    assert.equal(bytes.readUInt32LE(0), bytes.length - 4);
    assert.deepEqual(JSON.parse(decodeMapBody(body(bytes)).toString()), { Peers: [{ ID: 1 }, { ID: 2 }] });
    // Node's own decoder would have stopped after the first frame: that is why decodeMapBody exists.
    assert.equal(zstdDecompressSync(body(bytes)).toString(), '{"Peers":[');
  });

  test('zstd frame lengths are read off the headers, with checksums, big blocks and skippable frames', () => {
    const big = Buffer.from(
      JSON.stringify(Array.from({ length: 3000 }, (_, i) => randomBytes(40).toString('hex') + i)),
    );
    const checksummed = zstdCompressSync(big, { params: { [constants.ZSTD_c_checksumFlag]: 1 } });
    const tiny = zstdFrame(Buffer.from('{}'));
    const empty = zstdFrame(Buffer.alloc(0));
    const skippable = Buffer.concat([Buffer.from([0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0]), Buffer.from('abc')]);
    for (const one of [checksummed, tiny, empty, skippable]) assert.equal(zstdFrameLength(one), one.length);
    const all = Buffer.concat([tiny, skippable, checksummed, empty]);
    assert.equal(zstdFrameLength(all, tiny.length + skippable.length), checksummed.length);
    assert.deepEqual(decodeMapBody(all), Buffer.concat([Buffer.from('{}'), big]));
    assert.throws(() => zstdFrameLength(Buffer.from('not zstd at all')), /not a zstd frame/);
    assert.throws(
      () => zstdFrameLength(checksummed.subarray(0, checksummed.length - 1)),
      /past the end|out of range/,
    );
  });

  test('the keep-alive is the same bytes every time and decodes to {"KeepAlive":true}', () => {
    const first = keepAliveFrame('zstd');
    const second = keepAliveFrame('zstd');
    assert.equal(first, second);
    assert.deepEqual(Buffer.from(first), Buffer.from(second));
    assert.deepEqual(JSON.parse(decode(first).toString()), { KeepAlive: true });
    assert.deepEqual(body(keepAliveFrame('none')).toString(), '{"KeepAlive":true}');
  });
});
