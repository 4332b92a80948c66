import assert from 'node:assert/strict';
import { createHmac, hkdfSync } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { blake2s, hkdf2, hmacBlake2s } from './blake2s.ts';

describe('blake2s', () => {
  test('matches the RFC 7693 test vector for "abc"', () => {
    assert.equal(
      blake2s(Buffer.from('abc')).toString('hex'),
      '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982',
    );
  });

  test('hashes the concatenation of its parts', () => {
    assert.deepEqual(blake2s(Buffer.from('a'), Buffer.from('bc')), blake2s(Buffer.from('abc')));
    assert.deepEqual(blake2s(), blake2s(Buffer.alloc(0)));
  });
});

describe('hmacBlake2s', () => {
  test('agrees with node:crypto HMAC for keys shorter and longer than the block', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 200 }), (key, data) => {
        const expected = createHmac('blake2s256', key).update(data).digest();
        assert.deepEqual(hmacBlake2s(key, data), expected);
      }),
    );
  });
});

describe('hkdf2', () => {
  test('equals RFC 5869 HKDF (salt = ck, info empty) split in two halves', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 64 }),
        (ck, ikm) => {
          const okm = Buffer.from(hkdfSync('blake2s256', ikm, ck, Buffer.alloc(0), 64));
          const [first, second] = hkdf2(ck, ikm);
          assert.deepEqual(first, okm.subarray(0, 32));
          assert.deepEqual(second, okm.subarray(32));
        },
      ),
    );
  });
});
