import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AEAD_TAG_SIZE, open, seal, sealInto } from './aead.ts';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

describe('ChaCha20-Poly1305', () => {
  test('matches the RFC 8439 §2.8.2 test vector', () => {
    const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
    const nonce = hex('070000004041424344454647');
    const ad = hex('50515253c0c1c2c3c4c5c6c7');
    const plaintext = Buffer.from(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
    );
    const sealed = seal(key, nonce, plaintext, ad);
    assert.equal(sealed.length, plaintext.length + AEAD_TAG_SIZE);
    assert.equal(sealed.subarray(0, 16).toString('hex'), 'd31a8d34648e60db7b86afbc53ef7ec2');
    assert.equal(sealed.subarray(-16).toString('hex'), '1ae10b594f09e26a7e902ecbd0600691');
    assert.deepEqual(open(key, nonce, sealed, ad), plaintext);
  });

  test('round-trips, and rejects any flipped bit, wrong AD or truncation', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.nat(),
        (key, nonce, plaintext, ad, position) => {
          const sealed = seal(key, nonce, plaintext, ad);
          assert.deepEqual(open(key, nonce, sealed, ad), Buffer.from(plaintext));
          const flipped = Buffer.from(sealed);
          const at = position % flipped.length;
          flipped[at] = (flipped[at] as number) ^ 0x01;
          assert.equal(open(key, nonce, flipped, ad), undefined);
          assert.equal(open(key, nonce, sealed, Buffer.concat([ad, Buffer.of(1)])), undefined);
          assert.equal(open(key, nonce, sealed.subarray(0, sealed.length - 1), ad), undefined);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('sealInto writes ciphertext and tag at an offset', () => {
    const key = Buffer.alloc(32, 7);
    const nonce = Buffer.alloc(12);
    const target = Buffer.alloc(3 + 5 + AEAD_TAG_SIZE, 0xee);
    const written = sealInto(target, 3, key, nonce, Buffer.from('hello'));
    assert.equal(written, 5 + AEAD_TAG_SIZE);
    assert.deepEqual(target.subarray(0, 3), Buffer.from([0xee, 0xee, 0xee]));
    assert.deepEqual(open(key, nonce, target.subarray(3)), Buffer.from('hello'));
  });

  test('open refuses inputs shorter than a tag', () => {
    assert.equal(open(Buffer.alloc(32), Buffer.alloc(12), Buffer.alloc(15)), undefined);
  });
});
