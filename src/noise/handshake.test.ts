import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { generateX25519KeyPair } from '../types/keys.ts';
import {
  encodeHandshakeError,
  INITIATION_SIZE,
  initiate,
  initiationVersion,
  RESPONSE_SIZE,
  respond,
  serverMessageLength,
  tailscalePrologue,
} from './handshake.ts';
import { RecordReader, RecordSealer } from './records.ts';
import { expectNoiseError, hex, sequentialKey } from './testing.ts';

// §3.10 of the protocol brief: keys 00..1f (client static), 20..3f (client ephemeral),
// 40..5f (server static), 60..7f (server ephemeral).
const clientStatic = sequentialKey(0x00);
const clientEphemeral = sequentialKey(0x20);
const serverStatic = sequentialKey(0x40);
const serverEphemeral = sequentialKey(0x60);
const serverStaticPublic = hex('79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a');
const clientStaticPublic = hex('8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f');
const k1 = '1ffa520b7b784b83355f4ca5754d333f51f53ff31d9d98f697c22e8f79b66e22';
const k2 = '1657d025486888648386e46e37e6722a42c605d3f1b0ec24454190a645355089';

function knownAnswer(version: number, prologue?: Buffer) {
  const client = initiate({
    version,
    clientStaticPrivate: clientStatic,
    serverStaticPublic,
    ephemeralPrivate: clientEphemeral,
    ...(prologue ? { prologue } : {}),
  });
  const server = respond(client.message, serverStatic, {
    ephemeralPrivate: serverEphemeral,
    ...(prologue ? { prologue } : {}),
  });
  const finished = client.finish(server.response);
  return { client, server, finished };
}

describe('Noise IK handshake', () => {
  test('known answer (a): tailscale-rs test_handshake with prologue "TEST HANDSHAKE"', () => {
    const { client, server, finished } = knownAnswer(145, Buffer.from('TEST HANDSHAKE'));
    assert.equal(
      client.message.subarray(5).toString('hex'),
      '358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254' +
        'ad5b8febedeb97415be53612205e6bfab385e34cb127dd8854c4f9afb10f9b0e' +
        '49075a6f14f9d5bc61412f096ae4950589aef8286944be93ca02ab76a5483b51',
    );
    assert.equal(
      server.response.subarray(3).toString('hex'),
      '675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f5ef5508032efff8066fc858410f411e8',
    );
    assert.equal(finished.keys.send.toString('hex'), k1);
    assert.equal(finished.keys.receive.toString('hex'), k2);
    assert.equal(server.keys.receive.toString('hex'), k1);
    assert.equal(server.keys.send.toString('hex'), k2);
  });

  test('known answer (b): version 145 with the Tailscale prologue and framing', () => {
    const { client, server, finished } = knownAnswer(145);
    assert.equal(
      client.message.toString('hex'),
      '0091010060358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254' +
        'ad5b8febedeb97415be53612205e6bfab385e34cb127dd8854c4f9afb10f9b0e' +
        'acef4c3b928b370f94f285b6976dfe679ecba5c448ee81b48854de351340c599',
    );
    assert.equal(
      client.message.toString('base64'),
      'AJEBAGA1gHLWNliA0a7qMprfkSE4OFHtIaKOO3XpZdDSzRZiVK1bj+vt65dBW+U2EiBea/qzheNMsSfdiFTE+a+xD5sOrO9MO5KLNw+U8oW2l23+Z57LpcRI7oG0iFTeNRNAxZk=',
    );
    assert.equal(
      server.response.toString('hex'),
      '020030675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f75865d7f4720afaf7ee19199abb14b28',
    );
    assert.equal(server.version, 145);
    assert.deepEqual(server.peerStatic, clientStaticPublic);
    assert.equal(server.keys.receive.toString('hex'), k1);
    assert.equal(server.keys.send.toString('hex'), k2);
    assert.equal(finished.keys.send.toString('hex'), k1);
    const hash = '2227aa90cf06044d78a6681737f0be48fac6a2e13f12086e076cb5bbbef55f20';
    assert.equal(server.handshakeHash.toString('hex'), hash);
    assert.equal(finished.handshakeHash.toString('hex'), hash);

    const serverSealer = new RecordSealer(server.keys.send);
    assert.equal(
      serverSealer.seal(Buffer.from('abc')).toString('hex'),
      '040013099788baf0142bdcddc747bea618782c472564',
    );
    assert.equal(
      serverSealer.seal(Buffer.from('abc')).toString('hex'),
      '0400138019e909b1d6885e2dc197e3c50f1b56c67b03',
    );
    const clientSealer = new RecordSealer(finished.keys.send);
    const record = clientSealer.seal(Buffer.from('abc'));
    assert.equal(record.toString('hex'), '040013d51e2bec8f62033366da4ebc871ccf94a62034');
    assert.deepEqual(new RecordReader(server.keys.receive).push(record), [Buffer.from('abc')]);
  });

  test('random keys round-trip and both sides agree', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (version) => {
        const c = generateX25519KeyPair();
        const s = generateX25519KeyPair();
        const client = initiate({
          version,
          clientStaticPrivate: c.privateKey,
          serverStaticPublic: s.publicKey,
        });
        assert.equal(client.message.length, INITIATION_SIZE);
        assert.equal(initiationVersion(client.message), version);
        const server = respond(client.message, s.privateKey);
        assert.equal(server.response.length, RESPONSE_SIZE);
        assert.equal(server.version, version);
        assert.deepEqual(server.peerStatic, c.publicKey);
        const done = client.finish(server.response);
        assert.deepEqual(done.keys.send, server.keys.receive);
        assert.deepEqual(done.keys.receive, server.keys.send);
        assert.deepEqual(done.handshakeHash, server.handshakeHash);
      }),
      { numRuns: 20 },
    );
  });

  test('prologue is "Tailscale Control Protocol v" + decimal version', () => {
    assert.equal(tailscalePrologue(145).toString(), 'Tailscale Control Protocol v145');
    assert.throws(() => tailscalePrologue(65536), RangeError);
  });

  test('a server with a different static key cannot open the initiation', () => {
    const client = initiate({ version: 145, clientStaticPrivate: clientStatic, serverStaticPublic });
    const error = expectNoiseError('decrypt', () =>
      respond(client.message, generateX25519KeyPair().privateKey),
    );
    assert.match(error.message, /initiation static key: authentication failed/);
  });

  test('the server uses the version from the header for the prologue', () => {
    const client = initiate({ version: 145, clientStaticPrivate: clientStatic, serverStaticPublic });
    const tampered = Buffer.from(client.message);
    tampered.writeUInt16BE(144, 0);
    expectNoiseError('decrypt', () => respond(tampered, serverStatic));
  });

  test('any flipped byte after the header fails authentication', () => {
    const { client } = knownAnswer(145);
    for (let i = 5; i < INITIATION_SIZE; i++) {
      const tampered = Buffer.from(client.message);
      tampered[i] = (tampered[i] as number) ^ 0x80;
      assert.throws(() => respond(tampered, serverStatic), { name: 'NoiseError' });
    }
  });

  test('a flipped byte in the response fails on the client', () => {
    const { server } = knownAnswer(145);
    const client = initiate({
      version: 145,
      clientStaticPrivate: clientStatic,
      serverStaticPublic,
      ephemeralPrivate: clientEphemeral,
    });
    const tampered = Buffer.from(server.response);
    tampered[40] = (tampered[40] as number) ^ 1;
    expectNoiseError('decrypt', () => client.finish(tampered));
  });

  test('malformed initiations are refused with stable codes', () => {
    const { client } = knownAnswer(145);
    expectNoiseError('short', () => respond(client.message.subarray(0, 4), serverStatic));
    expectNoiseError('short', () => respond(client.message.subarray(0, 100), serverStatic));
    expectNoiseError('bad-length', () =>
      respond(Buffer.concat([client.message, Buffer.of(0)]), serverStatic),
    );
    const wrongType = Buffer.from(client.message);
    wrongType[2] = 2;
    expectNoiseError('bad-type', () => respond(wrongType, serverStatic));
    const wrongLength = Buffer.from(client.message);
    wrongLength.writeUInt16BE(95, 3);
    expectNoiseError('bad-length', () => respond(wrongLength, serverStatic));
    expectNoiseError('bad-key', () => respond(client.message, Buffer.alloc(31)));
  });

  test('malformed responses are refused with stable codes', () => {
    const { server } = knownAnswer(145);
    const fresh = () => initiate({ version: 145, clientStaticPrivate: clientStatic, serverStaticPublic });
    expectNoiseError('short', () => fresh().finish(server.response.subarray(0, 2)));
    expectNoiseError('short', () => fresh().finish(server.response.subarray(0, 50)));
    expectNoiseError('bad-length', () => fresh().finish(Buffer.concat([server.response, Buffer.of(0)])));
    const wrongType = Buffer.from(server.response);
    wrongType[0] = 4;
    expectNoiseError('bad-type', () => fresh().finish(wrongType));
  });

  test('an all-zero (low-order) ephemeral key is rejected', () => {
    const { client } = knownAnswer(145);
    const zeroEphemeral = Buffer.from(client.message);
    zeroEphemeral.fill(0, 5, 37);
    expectNoiseError('low-order', () => respond(zeroEphemeral, serverStatic));
    expectNoiseError('low-order', () =>
      initiate({ version: 145, clientStaticPrivate: clientStatic, serverStaticPublic: Buffer.alloc(32) }),
    );
    const { server } = knownAnswer(145);
    const zeroReply = Buffer.from(server.response);
    zeroReply.fill(0, 3, 35);
    const fresh = initiate({ version: 145, clientStaticPrivate: clientStatic, serverStaticPublic });
    expectNoiseError('low-order', () => fresh.finish(zeroReply));
  });

  test('a type-3 error reply surfaces the server text on the client', () => {
    const reply = encodeHandshakeError('client too old');
    assert.equal(reply.toString('hex'), `03000e${Buffer.from('client too old').toString('hex')}`);
    assert.equal(serverMessageLength(reply), reply.length);
    const fresh = initiate({ version: 145, clientStaticPrivate: clientStatic, serverStaticPublic });
    const error = expectNoiseError('server-error', () => fresh.finish(reply));
    assert.equal(error.message, 'server error: "client too old"');
    assert.equal(encodeHandshakeError('x'.repeat(70_000)).length, 3 + 0xffff);
  });

  test('serverMessageLength reads the 3-byte header', () => {
    assert.equal(serverMessageLength(Buffer.from('020030', 'hex')), RESPONSE_SIZE);
    expectNoiseError('bad-length', () => serverMessageLength(Buffer.from('020031', 'hex')));
    expectNoiseError('bad-type', () => serverMessageLength(Buffer.from('010030', 'hex')));
    expectNoiseError('short', () => serverMessageLength(Buffer.from('02', 'hex')));
  });
});
