import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { boxSeal } from '../crypto/nacl-box.ts';
import { NodePublic, PrivateKey } from '../types/keys.ts';
import { expectCodedError } from '../util/testing.ts';
import { DerpError } from './errors.ts';
import {
  clientInfoFrame,
  openClientInfo,
  openServerInfo,
  parseClientInfoJson,
  parseServerKey,
  serverInfoFrame,
} from './handshake.ts';
import { FrameType, MAGIC, serverKeyFrame } from './wire.ts';

const server = PrivateKey.generate(NodePublic);
const client = PrivateKey.generate(NodePublic);
const raw = (key: PrivateKey<'nodekey'>) => NodePublic.toRaw(key.publicKey);

/** A ClientInfo payload claiming `claimed`'s key, with `json` sealed by `sealer` to the server. */
function clientInfoPayload(json: string, sealer = client, claimed = sealer): Buffer {
  return Buffer.concat([raw(claimed), boxSeal(Buffer.from(json), raw(server), sealer)]);
}

describe('ClientInfo', () => {
  test('what clientInfoFrame seals, openClientInfo opens: the key and the fields', () => {
    const frame = clientInfoFrame(raw(server), client);
    assert.equal(frame[0], FrameType.ClientInfo);
    assert.equal(frame.readUInt32BE(1), frame.length - 5);
    const opened = openClientInfo(frame.subarray(5), server);
    assert.equal(opened.key, client.publicKey);
    assert.deepEqual(opened.rawKey, raw(client));
    assert.deepEqual(opened.info, { version: 2, canAckPings: true, isProber: false });

    const meshKey = randomBytes(32).toString('hex');
    const mesh = openClientInfo(
      clientInfoFrame(raw(server), client, { meshKey, isProber: true }).subarray(5),
      server,
    );
    assert.deepEqual(mesh.info, { version: 2, canAckPings: true, isProber: true, meshKey });
  });

  test('the sealed JSON is spelled as Go emits it', () => {
    const meshKey = 'ab'.repeat(32);
    for (const [info, json] of [
      [{}, '{"version":2,"CanAckPings":true}'],
      [{ meshKey }, `{"version":2,"meshKey":"${meshKey}","CanAckPings":true}`],
      [{ isProber: true }, '{"version":2,"CanAckPings":true,"IsProber":true}'],
    ] as const) {
      const payload = clientInfoFrame(raw(server), client, info).subarray(5);
      const opened = nacl.box.open(payload.subarray(56), payload.subarray(32, 56), raw(client), server.raw());
      assert.ok(opened !== null);
      assert.equal(Buffer.from(opened).toString(), json);
    }
  });

  test('a ClientInfo built with tweetnacl nacl.box opens', () => {
    const pair = nacl.box.keyPair();
    const nonce = nacl.randomBytes(24);
    const json = Buffer.from('{"version":2,"CanAckPings":true}');
    const box = nacl.box(json, nonce, raw(server), pair.secretKey);
    const opened = openClientInfo(Buffer.concat([pair.publicKey, nonce, box]), server);
    assert.deepEqual(opened.rawKey, Buffer.from(pair.publicKey));
    assert.equal(opened.key, NodePublic.fromRaw(pair.publicKey));
    assert.deepEqual(opened.info, { version: 2, canAckPings: true, isProber: false });
  });

  test('a ClientInfo sealed by a different key than the one it claims is refused', () => {
    const impostor = PrivateKey.generate(NodePublic);
    expectCodedError(DerpError, 'bad-info', () =>
      openClientInfo(clientInfoPayload('{"version":2}', impostor, client), server),
    );
    // Sealed to another server.
    const other = PrivateKey.generate(NodePublic);
    expectCodedError(DerpError, 'bad-info', () =>
      openClientInfo(clientInfoFrame(raw(other), client).subarray(5), server),
    );
  });

  test('any flipped bit in nonce or box is refused', () => {
    const payload = clientInfoFrame(raw(server), client).subarray(5);
    fc.assert(
      fc.property(fc.integer({ min: 32 * 8, max: payload.length * 8 - 1 }), (bit) => {
        const tampered = Buffer.from(payload);
        tampered[bit >> 3] = (tampered[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        expectCodedError(DerpError, 'bad-info', () => openClientInfo(tampered, server));
      }),
      { numRuns: 50 },
    );
  });

  test('too short to hold key, nonce and tag: bad-length', () => {
    expectCodedError(DerpError, 'bad-length', () => openClientInfo(Buffer.alloc(0), server));
    expectCodedError(DerpError, 'bad-length', () => openClientInfo(Buffer.alloc(32 + 24 + 15), server));
    // 72 bytes holds an empty box; it just does not open.
    expectCodedError(DerpError, 'bad-info', () =>
      openClientInfo(Buffer.concat([raw(client), Buffer.alloc(24 + 16)]), server),
    );
  });

  test('a low-order client key (X25519 gives all zeros) is bad-info, not an OpenSSL error', () => {
    for (const lowOrder of [
      Buffer.alloc(32),
      Buffer.from('0100000000000000000000000000000000000000000000000000000000000000', 'hex'),
      Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex'),
    ]) {
      expectCodedError(DerpError, 'bad-info', () =>
        openClientInfo(Buffer.concat([lowOrder, Buffer.alloc(24 + 40)]), server),
      );
      expectCodedError(DerpError, 'bad-info', () => openServerInfo(Buffer.alloc(24 + 40), lowOrder, client));
    }
  });

  test('JSON keys match in any case, as Go decodes', () => {
    const meshKey = 'cd'.repeat(32);
    const opened = openClientInfo(
      clientInfoPayload(
        `{"Version":2,"MESHKEY":"${meshKey}","canackpings":true,"ISPROBER":true,"appNAME":"x"}`,
      ),
      server,
    );
    assert.deepEqual(opened.info, { version: 2, meshKey, canAckPings: true, isProber: true, appName: 'x' });
    // Go assigns each matching key in turn: the last one wins.
    assert.equal(parseClientInfoJson('{"version":1,"VERSION":3}').version, 3);
  });

  test('missing, null, empty and unknown fields fall back to defaults', () => {
    assert.deepEqual(parseClientInfoJson('{}'), { version: 0, canAckPings: false, isProber: false });
    assert.deepEqual(
      parseClientInfoJson('{"version":null,"meshKey":"","AppName":"","Future":[1,2],"CanAckPings":null}'),
      { version: 0, canAckPings: false, isProber: false },
    );
  });

  test('fields of the wrong type, or not a JSON object, are bad-info', () => {
    for (const json of [
      '{"version":"2"}',
      '{"meshKey":12}',
      '{"CanAckPings":"true"}',
      '{"CanAckPings":1}',
      '{"IsProber":"yes"}',
      '{"AppName":false}',
      '{"version":{}}',
      '[]',
      'null',
      '2',
      '"version"',
      '',
      '{"version":2',
      '{version:2}',
    ]) {
      expectCodedError(DerpError, 'bad-info', () => parseClientInfoJson(json));
      expectCodedError(DerpError, 'bad-info', () => openClientInfo(clientInfoPayload(json), server));
    }
  });

  test('arbitrary text inside a valid box never throws anything but a DerpError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        try {
          openClientInfo(clientInfoPayload(text), server);
        } catch (err) {
          assert.ok(err instanceof DerpError, String(err));
          assert.equal(err.code, 'bad-info');
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe('ServerKey', () => {
  test('parses the key after the magic and tolerates future bytes', () => {
    const frame = serverKeyFrame(raw(server));
    assert.deepEqual(parseServerKey(frame.subarray(5)), raw(server));
    assert.deepEqual(parseServerKey(Buffer.concat([frame.subarray(5), Buffer.alloc(100, 9)])), raw(server));
  });

  test('a wrong magic is bad-magic; a short payload bad-length', () => {
    const payload = Buffer.concat([MAGIC, raw(server)]);
    for (let i = 0; i < MAGIC.length; i += 1) {
      const wrong = Buffer.from(payload);
      wrong[i] = (wrong[i] ?? 0) ^ 0x20;
      expectCodedError(DerpError, 'bad-magic', () => parseServerKey(wrong));
    }
    expectCodedError(DerpError, 'bad-length', () => parseServerKey(payload.subarray(0, 39)));
    expectCodedError(DerpError, 'bad-length', () => parseServerKey(Buffer.alloc(0)));
  });
});

describe('ServerInfo', () => {
  test('round trip: {"version":2} and nothing else (no token bucket)', () => {
    const frame = serverInfoFrame(raw(client), server);
    assert.equal(frame[0], FrameType.ServerInfo);
    assert.equal(frame.readUInt32BE(1), frame.length - 5);
    assert.deepEqual(openServerInfo(frame.subarray(5), raw(server), client), { version: 2 });
    // The payload is nonce · box, and tweetnacl opens it.
    const payload = frame.subarray(5);
    const opened = nacl.box.open(payload.subarray(24), payload.subarray(0, 24), raw(server), client.raw());
    assert.equal(Buffer.from(opened ?? []).toString(), '{"version":2}');
  });

  test('from another server, for another client, or tampered: bad-info', () => {
    const frame = serverInfoFrame(raw(client), server);
    const other = PrivateKey.generate(NodePublic);
    expectCodedError(DerpError, 'bad-info', () => openServerInfo(frame.subarray(5), raw(other), client));
    expectCodedError(DerpError, 'bad-info', () => openServerInfo(frame.subarray(5), raw(server), other));
    const tampered = Buffer.from(frame.subarray(5));
    tampered[30] = (tampered[30] ?? 0) ^ 1;
    expectCodedError(DerpError, 'bad-info', () => openServerInfo(tampered, raw(server), client));
    expectCodedError(DerpError, 'bad-info', () => openServerInfo(Buffer.alloc(10), raw(server), client));
  });

  test('a box that opens but holds no JSON is bad-info', () => {
    const sealed = boxSeal(Buffer.from('not json'), raw(client), server);
    expectCodedError(DerpError, 'bad-info', () => openServerInfo(sealed, raw(server), client));
  });
});
