import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { cutAt, expectCodedError } from '../util/testing.ts';
import { DerpError } from './errors.ts';
import { FrameReader } from './reader.ts';

/** Types the reader under test knows; every other type is skipped unread. */
const KNOWN = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x10, 0x11, 0x12, 0x13]);
const LIMIT = 70_000;
const limits = (type: number) => (KNOWN.has(type) ? LIMIT : undefined);

interface RawFrame {
  type: number;
  payload: Uint8Array;
}

/** Builds a frame by hand, so unknown types are possible too. */
function frame(type: number, payload: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + payload.length);
  out[0] = type;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

function header(type: number, length: number): Buffer {
  const out = Buffer.alloc(5);
  out[0] = type;
  out.writeUInt32BE(length, 1);
  return out;
}

function bytes(data: Buffer): Buffer[] {
  return Array.from({ length: data.length }, (_, i) => data.subarray(i, i + 1));
}

/** A reader that records copies of its frames, then scribbles over what it was handed (it may). */
function recorder(limitsFn = limits) {
  const out: RawFrame[] = [];
  const reader = new FrameReader(limitsFn, (type, f) => {
    assert.equal(f[0], type);
    assert.equal(f.readUInt32BE(1), f.length - 5);
    out.push({ type, payload: Buffer.from(f.subarray(5)) });
    f.fill(0xee);
  });
  return { reader, out };
}

const frameArb = fc.record({
  type: fc.oneof(fc.constantFrom(...KNOWN), fc.integer({ min: 0, max: 255 })),
  payload: fc.oneof(
    { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 300 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1000, maxLength: 5000 }) },
  ),
});

const splitArb: fc.Arbitrary<Split> = fc.oneof(
  fc.record({
    kind: fc.constant('points' as const),
    points: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }),
  }),
  fc.record({ kind: fc.constant('bytes' as const) }),
  fc.record({ kind: fc.constant('whole' as const) }),
  fc.record({ kind: fc.constant('per-frame' as const) }),
);

type Split = { kind: 'points'; points: number[] } | { kind: 'bytes' | 'whole' | 'per-frame' };

function split(wire: Buffer, frames: Buffer[], how: Split): Buffer[] {
  switch (how.kind) {
    case 'points':
      return cutAt(wire, how.points);
    case 'bytes':
      return bytes(wire);
    case 'per-frame':
      return frames;
    default:
      return [wire];
  }
}

describe('FrameReader', () => {
  test('any split of a random frame sequence gives the known frames in order and skips the rest', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 25 }), splitArb, (frames, how) => {
        const encoded = frames.map((f) => frame(f.type, f.payload));
        const wire = Buffer.concat(encoded);
        const { reader, out } = recorder();
        for (const piece of split(wire, encoded, how)) reader.push(piece);
        const expected = frames
          .filter((f) => KNOWN.has(f.type))
          .map((f) => ({ type: f.type, payload: Buffer.from(f.payload) }));
        assert.deepEqual(out, expected);
        assert.equal(reader.heldBytes, 0);
      }),
      { numRuns: 300 },
    );
  });

  test('a stream cut short yields the whole frames before the cut and nothing partial', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 10 }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }),
        (frames, at, points) => {
          const encoded = frames.map((f) => frame(f.type, f.payload));
          const wire = Buffer.concat(encoded);
          const length = Math.floor(at * wire.length);
          const { reader, out } = recorder();
          for (const piece of cutAt(wire.subarray(0, length), points)) reader.push(piece);
          // The frames that end at or before the cut.
          const expected: RawFrame[] = [];
          let end = 0;
          for (const f of frames) {
            end += 5 + f.payload.length;
            if (end > length) break;
            if (KNOWN.has(f.type)) expected.push({ type: f.type, payload: Buffer.from(f.payload) });
          }
          assert.deepEqual(out, expected);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('zero-length frames come out as bare 5-byte headers, whole or byte by byte', () => {
    const wire = Buffer.concat([
      frame(0x06, new Uint8Array(0)),
      frame(0x10, new Uint8Array(0)),
      frame(0xfe, new Uint8Array(0)), // unknown, skipped
      frame(0x06, new Uint8Array(0)),
      frame(0x12, Buffer.from('12345678')),
      frame(0x06, new Uint8Array(0)),
    ]);
    for (const pieces of [[wire], bytes(wire)]) {
      const seen: Buffer[] = [];
      const reader = new FrameReader(limits, (_type, f) => seen.push(Buffer.from(f)));
      for (const piece of pieces) reader.push(piece);
      assert.deepEqual(seen, [
        Buffer.from([0x06, 0, 0, 0, 0]),
        Buffer.from([0x10, 0, 0, 0, 0]),
        Buffer.from([0x06, 0, 0, 0, 0]),
        frame(0x12, Buffer.from('12345678')),
        Buffer.from([0x06, 0, 0, 0, 0]),
      ]);
    }
  });

  test('a frame at exactly its limit is accepted; one byte more is oversize', () => {
    const byType = (type: number) => (type === 0x04 ? 100 : undefined);
    const seen: number[] = [];
    const reader = new FrameReader(byType, (_type, f) => seen.push(f.length));
    reader.push(frame(0x04, new Uint8Array(100)));
    assert.deepEqual(seen, [105]);
    expectCodedError(DerpError, 'oversize', () => reader.push(header(0x04, 101)));
  });

  test('an oversize length throws on its 5-byte header, before any payload arrives', () => {
    let calls = 0;
    const reader = new FrameReader(limits, () => {
      calls += 1;
    });
    const err = expectCodedError(DerpError, 'oversize', () => reader.push(header(0x04, 100 * 1024 * 1024)));
    assert.match(err.message, /0x04/);
    assert.equal(calls, 0);
    assert.equal(reader.heldBytes, 0);

    // Header dribbled in byte by byte: nothing before the fifth byte, then the error.
    const slow = new FrameReader(limits, () => {
      calls += 1;
    });
    const bigHeader = header(0x02, 0xffff_ffff);
    for (let i = 0; i < 4; i += 1) slow.push(bigHeader.subarray(i, i + 1));
    expectCodedError(DerpError, 'oversize', () => slow.push(bigHeader.subarray(4, 5)));

    // Header that follows a complete frame in the same chunk.
    const third = new FrameReader(limits, () => {
      calls += 1;
    });
    expectCodedError(DerpError, 'oversize', () =>
      third.push(Buffer.concat([frame(0x12, new Uint8Array(8)), header(0x04, LIMIT + 1)])),
    );
    assert.equal(calls, 1);
  });

  test('unknown frames of any size are skipped as they stream past, without buffering', () => {
    const seen: Buffer[] = [];
    const reader = new FrameReader(limits, (_type, f) => seen.push(Buffer.from(f)));
    // A 100 MiB frame of an unknown type, streamed through in 1 MiB pieces (the same buffer each time).
    const chunk = Buffer.alloc(1 << 20, 0x77);
    reader.push(Buffer.concat([frame(0x12, Buffer.from('abcdefgh')), header(0x20, 100 << 20)]));
    for (let i = 0; i < 100; i += 1) reader.push(chunk);
    reader.push(frame(0x13, Buffer.from('ijklmnop')));
    assert.deepEqual(seen, [frame(0x12, Buffer.from('abcdefgh')), frame(0x13, Buffer.from('ijklmnop'))]);
  });

  test('a frame whole inside one chunk is a view of that chunk; a split one is a copy of its own', () => {
    const wire = Buffer.concat([frame(0x04, Buffer.alloc(40, 1)), frame(0x04, Buffer.alloc(40, 2))]);
    const handed: Buffer[] = [];
    const reader = new FrameReader(limits, (_type, f) => handed.push(f));
    reader.push(wire.subarray(0, 60));
    reader.push(wire.subarray(60));
    assert.equal(handed.length, 2);
    assert.equal(handed[0]?.buffer, wire.buffer);
    assert.equal(handed[0]?.byteOffset, wire.byteOffset);
    // Writing to the split frame's copy leaves the stream's bytes alone.
    assert.equal(handed[1]?.length, 45);
    handed[1]?.fill(0);
    assert.deepEqual(wire.subarray(45), frame(0x04, Buffer.alloc(40, 2)));
  });

  test('pause holds pushed bytes, resume hands them out in order', () => {
    const { reader, out } = recorder();
    const wire = Buffer.concat([
      frame(0x04, Buffer.from('one')),
      frame(0x04, Buffer.from('two')),
      frame(0x30, Buffer.from('skip')),
      frame(0x04, Buffer.from('three')),
    ]);
    reader.push(wire.subarray(0, 3)); // half a header before the pause
    reader.pause();
    reader.push(wire.subarray(3, 20));
    reader.push(wire.subarray(20));
    assert.equal(out.length, 0);
    assert.equal(reader.heldBytes, wire.length - 3);
    reader.resume();
    assert.equal(reader.heldBytes, 0);
    assert.deepEqual(
      out.map((f) => Buffer.from(f.payload).toString()),
      ['one', 'two', 'three'],
    );
    // Not paused any more: bytes flow straight through.
    reader.push(frame(0x05, Buffer.from('four')));
    assert.equal(out.length, 4);
  });

  test('a handler that pauses stops the rest of the chunk until resume (as the handshake does)', () => {
    const seen: string[] = [];
    let reader: FrameReader;
    reader = new FrameReader(limits, (type, f) => {
      seen.push(f.toString('latin1', 5));
      if (type === 0x02) reader.pause();
    });
    const wire = Buffer.concat([
      frame(0x02, Buffer.from('hello')),
      frame(0x04, Buffer.from('a')),
      frame(0x02, Buffer.from('again')),
      frame(0x04, Buffer.from('b')),
    ]);
    reader.push(wire);
    assert.deepEqual(seen, ['hello']);
    assert.equal(reader.heldBytes, wire.length - 10);
    reader.resume(); // hands out 'a' and 'again', which pauses again
    assert.deepEqual(seen, ['hello', 'a', 'again']);
    assert.equal(reader.heldBytes, 6);
    reader.push(frame(0x04, Buffer.from('c')));
    assert.deepEqual(seen, ['hello', 'a', 'again']);
    reader.resume();
    assert.deepEqual(seen, ['hello', 'a', 'again', 'b', 'c']);
  });

  test('pause and resume at random points never lose, repeat or reorder frames', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 15 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 50 }),
        (frames, points, toggles) => {
          const wire = Buffer.concat(frames.map((f) => frame(f.type, f.payload)));
          const { reader, out } = recorder();
          let i = 0;
          for (const piece of cutAt(wire, points)) {
            if (toggles[i++ % toggles.length]) reader.pause();
            else reader.resume();
            reader.push(piece);
          }
          reader.resume();
          assert.deepEqual(
            out,
            frames
              .filter((f) => KNOWN.has(f.type))
              .map((f) => ({ type: f.type, payload: Buffer.from(f.payload) })),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  test('setHandler sends the following frames of the same chunk to the new handler', () => {
    const first: number[] = [];
    const second: number[] = [];
    let reader: FrameReader;
    reader = new FrameReader(limits, (type) => {
      first.push(type);
      if (type === 0x03) reader.setHandler((t) => second.push(t));
    });
    reader.push(
      Buffer.concat([
        frame(0x01, new Uint8Array(40)),
        frame(0x03, new Uint8Array(30)),
        frame(0x05, new Uint8Array(33)),
      ]),
    );
    assert.deepEqual(first, [0x01, 0x03]);
    assert.deepEqual(second, [0x05]);
  });

  test('limits are asked per frame, so they can change as the connection moves on', () => {
    let handshaking = true;
    const seen: number[] = [];
    const reader = new FrameReader(
      (type) => (handshaking ? (type === 0x02 ? 1000 : 0) : LIMIT),
      (type) => {
        seen.push(type);
        handshaking = false;
      },
    );
    reader.push(frame(0x02, new Uint8Array(100)));
    reader.push(frame(0x04, new Uint8Array(2000)));
    assert.deepEqual(seen, [0x02, 0x04]);
    const strict = new FrameReader(
      (type) => (type === 0x02 ? 1000 : 0),
      () => {},
    );
    expectCodedError(DerpError, 'oversize', () => strict.push(frame(0x04, new Uint8Array(40))));
  });
});
