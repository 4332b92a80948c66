import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import {
  DiscoPublic,
  generateX25519KeyPair,
  KeyParseError,
  MachinePublic,
  NodePublic,
  PrivateKey,
  type PublicKeyKind,
  publicKeysEqual,
  x25519,
} from './keys.ts';

const HEX64 = 'a'.repeat(64);

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected an exception');
}

describe('public key text forms', () => {
  test('parse and format round-trip for every kind', () => {
    for (const kind of [MachinePublic, NodePublic, DiscoPublic] as PublicKeyKind<string>[]) {
      const key = kind.parse(`${kind.prefix}${HEX64}`);
      assert.equal(key, `${kind.prefix}${HEX64}`);
      assert.deepEqual(kind.toRaw(key), Buffer.alloc(32, 0xaa));
      assert.equal(kind.fromRaw(kind.toRaw(key)), key);
    }
  });

  test('uppercase hex is accepted and canonicalised to lowercase', () => {
    assert.equal(NodePublic.parse(`nodekey:${'AB'.repeat(32)}`), `nodekey:${'ab'.repeat(32)}`);
  });

  test('raw bytes round-trip through text (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const key = DiscoPublic.fromRaw(bytes);
        assert.match(key, /^discokey:[0-9a-f]{64}$/);
        assert.deepEqual(new Uint8Array(DiscoPublic.toRaw(key)), bytes);
        assert.equal(DiscoPublic.parse(key.toUpperCase().replace('DISCOKEY:', 'discokey:')), key);
      }),
    );
  });

  test('a key of another kind is rejected with an error naming the expected prefix', () => {
    const err = thrown(() => MachinePublic.parse(`nodekey:${HEX64}`));
    assert.ok(err instanceof KeyParseError);
    assert.equal(err.expectedPrefix, 'mkey:');
    assert.throws(() => NodePublic.parse(`mkey:${HEX64}`), /"nodekey:"/);
    assert.throws(() => DiscoPublic.parse(`nodekey:${HEX64}`), /"discokey:"/);
  });

  test('bad lengths, non-hex and missing prefix are rejected', () => {
    for (const bad of [
      '',
      HEX64,
      'nodekey:',
      `nodekey:${HEX64}0`,
      `nodekey:${HEX64.slice(1)}`,
      `nodekey:${'g'.repeat(64)}`,
      ` nodekey:${HEX64}`,
    ]) {
      assert.throws(() => NodePublic.parse(bad), KeyParseError, bad);
      assert.equal(NodePublic.tryParse(bad), undefined);
    }
    assert.throws(() => NodePublic.fromRaw(new Uint8Array(31)), KeyParseError);
  });

  test('long garbage is shown only as an excerpt in the message', () => {
    const err = thrown(() => NodePublic.parse(`x${'y'.repeat(10_000)}`));
    assert.ok(err instanceof KeyParseError);
    assert.ok(err.message.length < 200, err.message);
  });

  test('zero key', () => {
    assert.equal(NodePublic.zero, `nodekey:${'0'.repeat(64)}`);
    assert.ok(NodePublic.isZero(NodePublic.parse(`nodekey:${'0'.repeat(64)}`)));
    assert.ok(!NodePublic.isZero(NodePublic.parse(`nodekey:${HEX64}`)));
  });

  test('constant-time equality', () => {
    const a = NodePublic.parse(`nodekey:${HEX64}`);
    const b = NodePublic.parse(`nodekey:${HEX64.toUpperCase()}`);
    const c = NodePublic.parse(`nodekey:${'b'.repeat(64)}`);
    assert.ok(publicKeysEqual(a, b));
    assert.ok(!publicKeysEqual(a, c));
  });
});

describe('X25519', () => {
  test('RFC 7748 §6.1 test vector', () => {
    const alicePriv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
    const alicePub = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
    const bobPriv = Buffer.from('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb', 'hex');
    const bobPub = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

    const alice = PrivateKey.fromRaw(MachinePublic, alicePriv);
    assert.equal(alice.publicKey, `mkey:${alicePub}`);
    assert.equal(alice.sharedSecret(Buffer.from(bobPub, 'hex')).toString('hex'), shared);
    assert.equal(x25519(bobPriv, Buffer.from(alicePub, 'hex')).toString('hex'), shared);
  });

  test('generated pairs agree on a shared secret', () => {
    const a = generateX25519KeyPair();
    const b = generateX25519KeyPair();
    assert.equal(a.privateKey.length, 32);
    assert.equal(a.publicKey.length, 32);
    assert.deepEqual(x25519(a.privateKey, b.publicKey), x25519(b.privateKey, a.publicKey));
  });
});

describe('private keys', () => {
  test('privkey: text round-trip keeps the public half', () => {
    const key = PrivateKey.generate(MachinePublic);
    const again = PrivateKey.parse(MachinePublic, `${key.toSecretText()}\n`);
    assert.equal(again.publicKey, key.publicKey);
    assert.match(key.publicKey, /^mkey:[0-9a-f]{64}$/);
  });

  test('never prints its secret by accident', () => {
    const key = PrivateKey.generate(NodePublic);
    const secretHex = key.raw().toString('hex');
    for (const shown of [String(key), JSON.stringify({ key }), inspect(key), `${key}`]) {
      assert.ok(!shown.includes(secretHex), shown);
    }
  });

  test('bad private key text names the expected prefix', () => {
    assert.throws(() => PrivateKey.parse(MachinePublic, `mkey:${HEX64}`), /"privkey:"/);
  });
});
