import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { NodePublic, PrivateKey } from '../types/keys.ts';
import { BOX_NONCE_LENGTH, boxOpen, boxSeal } from './nacl-box.ts';

const alice = PrivateKey.generate(NodePublic);
const bob = PrivateKey.generate(NodePublic);
const raw = (key: PrivateKey<'nodekey'>) => NodePublic.toRaw(key.publicKey);

describe('NaCl box', () => {
  test('is byte for byte tweetnacl box (the reference implementation)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ minLength: 24, maxLength: 24 }),
        (m, n) => {
          const ours = boxSeal(m, raw(bob), alice, n);
          const reference = nacl.box(m, n, raw(bob), alice.raw());
          assert.deepEqual(ours.subarray(BOX_NONCE_LENGTH), Buffer.from(reference));
          assert.deepEqual(ours.subarray(0, BOX_NONCE_LENGTH), Buffer.from(n));
        },
      ),
      { numRuns: 40 },
    );
  });

  test('opens what the peer sealed, and nothing tampered or misaddressed', () => {
    const sealed = boxSeal(Buffer.from('{"version":2}'), raw(bob), alice);
    assert.equal(boxOpen(sealed, raw(alice), bob)?.toString(), '{"version":2}');
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    assert.equal(boxOpen(tampered, raw(alice), bob), undefined);
    assert.equal(boxOpen(sealed, raw(bob), bob), undefined);
    assert.equal(boxOpen(sealed.subarray(0, 30), raw(alice), bob), undefined);
  });
});
