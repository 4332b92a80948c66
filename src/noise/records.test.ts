import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { cutAt } from '../util/testing.ts';
import { MAX_PLAINTEXT_SIZE, MAX_RECORD_SIZE, RecordReader, RecordSealer } from './records.ts';
import { expectNoiseError } from './testing.ts';

const key = Buffer.alloc(32, 0x42);

describe('transport records', () => {
  test('4077 plaintext bytes make a 4096-byte record; 4078 are refused', () => {
    const sealer = new RecordSealer(key);
    const record = sealer.seal(Buffer.alloc(MAX_PLAINTEXT_SIZE));
    assert.equal(MAX_PLAINTEXT_SIZE, 4077);
    assert.equal(record.length, MAX_RECORD_SIZE);
    assert.equal(record.readUInt16BE(1), 4093);
    expectNoiseError('oversize', () => sealer.seal(Buffer.alloc(MAX_PLAINTEXT_SIZE + 1)));
  });

  test('sealAll cuts large plaintext into full records, each ≤ 4096 bytes', () => {
    const data = Buffer.alloc(100 * 1024, 7);
    const wire = new RecordSealer(key).sealAll(data);
    let offset = 0;
    let records = 0;
    while (offset < wire.length) {
      const size = 3 + wire.readUInt16BE(offset + 1);
      assert.ok(size <= MAX_RECORD_SIZE);
      offset += size;
      records++;
    }
    assert.equal(records, Math.ceil(data.length / MAX_PLAINTEXT_SIZE));
    assert.deepEqual(Buffer.concat(new RecordReader(key).push(wire)), data);
    assert.equal(new RecordSealer(key).sealAll(Buffer.alloc(0)).length, 0);
  });

  test('arbitrarily split record streams decrypt to the same bytes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 9000 }), { maxLength: 6 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 30 }),
        (writes, points) => {
          const sealer = new RecordSealer(key);
          const wire = Buffer.concat(writes.map((w) => sealer.sealAll(w)));
          const reader = new RecordReader(key);
          const out: Buffer[] = [];
          for (const piece of cutAt(wire, points)) out.push(...reader.push(piece));
          assert.deepEqual(Buffer.concat(out), Buffer.concat(writes));
          assert.ok(out.every((p) => p.length > 0));
          assert.equal(reader.buffered, 0);
        },
      ),
      { numRuns: 100 },
    );
  });

  test('zero-length records are skipped', () => {
    const sealer = new RecordSealer(key);
    const wire = Buffer.concat([
      sealer.seal(Buffer.alloc(0)),
      sealer.seal(Buffer.from('x')),
      sealer.seal(Buffer.alloc(0)),
    ]);
    assert.deepEqual(new RecordReader(key).push(wire), [Buffer.from('x')]);
  });

  test('the counter is big-endian in the last 8 nonce bytes: records must arrive in order', () => {
    const sealer = new RecordSealer(key);
    const first = sealer.seal(Buffer.from('one'));
    const second = sealer.seal(Buffer.from('two'));
    expectNoiseError('decrypt', () => new RecordReader(key).push(second));
    const reader = new RecordReader(key);
    assert.deepEqual(reader.push(first), [Buffer.from('one')]);
    assert.deepEqual(reader.push(second), [Buffer.from('two')]);
  });

  test('an oversize header is refused as soon as the 3 header bytes arrive', () => {
    const reader = new RecordReader(key);
    assert.deepEqual(reader.push(Buffer.from([0x04, 0x0f])), []);
    const error = expectNoiseError('oversize', () => reader.push(Buffer.from([0xfe])));
    assert.match(error.message, /4097 bytes, limit is 4096/);
    // Poisoned: later input is refused with the same error.
    expectNoiseError('oversize', () => reader.push(Buffer.from([1, 2, 3])));
  });

  test('a wrong type, a too-short record or garbage is refused', () => {
    expectNoiseError('bad-type', () => new RecordReader(key).push(Buffer.from('GET / HTTP/1.1\r\n')));
    expectNoiseError('bad-length', () =>
      new RecordReader(key).push(Buffer.from([4, 0, 15, ...Buffer.alloc(15)])),
    );
    expectNoiseError('decrypt', () =>
      new RecordReader(key).push(Buffer.from([4, 0, 16, ...Buffer.alloc(16)])),
    );
    const record = new RecordSealer(key).seal(Buffer.from('abc'));
    expectNoiseError('decrypt', () => new RecordReader(Buffer.alloc(32, 1)).push(record));
  });
});
