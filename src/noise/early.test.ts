import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeEarlyPayloadBody,
  decodeEarlyPayloadHeader,
  EARLY_PAYLOAD_HEADER_SIZE,
  encodeEarlyPayload,
  MAX_EARLY_PAYLOAD_SIZE,
} from './early.ts';
import { expectNoiseError } from './testing.ts';

describe('early payload', () => {
  test('encodes magic, big-endian length and JSON', () => {
    const challenge = `chalpub:${'ab'.repeat(32)}`;
    const encoded = encodeEarlyPayload({ nodeKeyChallenge: challenge });
    const json = `{"nodeKeyChallenge":"${challenge}"}`;
    assert.equal(encoded.subarray(0, 5).toString('hex'), 'ffffff5453');
    assert.equal(encoded.readUInt32BE(5), json.length);
    assert.equal(encoded.subarray(EARLY_PAYLOAD_HEADER_SIZE).toString(), json);
    const length = decodeEarlyPayloadHeader(encoded.subarray(0, EARLY_PAYLOAD_HEADER_SIZE));
    assert.equal(length, json.length);
    assert.deepEqual(decodeEarlyPayloadBody(encoded.subarray(EARLY_PAYLOAD_HEADER_SIZE)), {
      nodeKeyChallenge: challenge,
    });
  });

  test('an HTTP/2 SETTINGS frame header is not an early payload', () => {
    assert.equal(decodeEarlyPayloadHeader(Buffer.from('000006040000000000', 'hex')), undefined);
  });

  test('refuses short headers, oversize lengths and bad JSON', () => {
    expectNoiseError('short', () => decodeEarlyPayloadHeader(Buffer.from('ffffff5453', 'hex')));
    const header = Buffer.from('ffffff545300000000', 'hex');
    header.writeUInt32BE(MAX_EARLY_PAYLOAD_SIZE + 1, 5);
    expectNoiseError('oversize', () => decodeEarlyPayloadHeader(header));
    header.writeUInt32BE(MAX_EARLY_PAYLOAD_SIZE, 5);
    assert.equal(decodeEarlyPayloadHeader(header), MAX_EARLY_PAYLOAD_SIZE);
    expectNoiseError('bad-payload', () => decodeEarlyPayloadBody(Buffer.from('{nope')));
    expectNoiseError('bad-payload', () => decodeEarlyPayloadBody(Buffer.from('[1]')));
  });
});
