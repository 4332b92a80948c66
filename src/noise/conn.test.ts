import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import { Duplex, duplexPair, Transform } from 'node:stream';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { generateX25519KeyPair } from '../types/keys.ts';
import { NoiseConn } from './conn.ts';
import { NoiseError } from './errors.ts';
import { initiate, respond, type TransportKeys } from './handshake.ts';
import { MAX_RECORD_SIZE, RecordReader, RecordSealer } from './records.ts';

function handshakeKeys(): { client: TransportKeys; server: TransportKeys } {
  const c = generateX25519KeyPair();
  const s = generateX25519KeyPair();
  const hello = initiate({
    version: 145,
    clientStaticPrivate: c.privateKey,
    serverStaticPublic: s.publicKey,
  });
  const server = respond(hello.message, s.privateKey);
  return { client: hello.finish(server.response).keys, server: server.keys };
}

/**
 * Re-emits every chunk cut into pieces of the given sizes (cycling), to test arbitrary read boundaries,
 * one event-loop turn later. The delay matters: duplexPair delivers a write to the other side inside
 * the write() call, and node:http2 aborts the process (a native CHECK in OnDataChunkReceived) if peer
 * bytes re-enter a session while it is in the middle of its own write. Real sockets never do that.
 */
function hop(sizes: number[] = []): Transform {
  let next = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      setImmediate(() => {
        let offset = 0;
        while (offset < chunk.length) {
          const size = sizes.length === 0 ? chunk.length : (sizes[next++ % sizes.length] as number);
          this.push(chunk.subarray(offset, offset + size));
          offset += size;
        }
        callback();
      });
    },
  });
}

/**
 * Two NoiseConns over in-memory transports. Client→server bytes are recut by `hop(cuts)`; both
 * directions cross an event-loop turn like a real socket.
 */
function connectedPair(cuts: number[] = []) {
  const keys = handshakeKeys();
  const [clientTransport, clientWire] = duplexPair();
  const [serverWire, serverTransport] = duplexPair();
  clientWire.pipe(hop(cuts)).pipe(serverWire);
  serverWire.pipe(hop()).pipe(clientWire);
  return {
    client: new NoiseConn(clientTransport, keys.client),
    server: new NoiseConn(serverTransport, keys.server),
    serverTransport,
    clientTransport,
    keys,
  };
}

/** A transport that records every write (one entry per transport.write) and lets tests push input. */
class RecordingTransport extends Duplex {
  writes: Buffer[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.writes.push(chunk);
    callback();
  }
}

function readAll(stream: NodeJS.ReadableStream, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= length) {
        stream.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    stream.on('data', onData);
    stream.once('error', reject);
    if (length === 0) resolve(Buffer.alloc(0));
  });
}

function recordSizes(wire: Buffer): number[] {
  const sizes: number[] = [];
  for (let offset = 0; offset < wire.length; ) {
    const size = 3 + wire.readUInt16BE(offset + 1);
    sizes.push(size);
    offset += size;
  }
  return sizes;
}

/** Resolves once `stream` has emitted 'close' (at once if it already has). */
async function closed(stream: Duplex): Promise<void> {
  if (!stream.closed) await once(stream, 'close');
}

async function expectConnError(conn: NoiseConn, code: string): Promise<void> {
  const [error] = await once(conn, 'error');
  assert.ok(error instanceof NoiseError, `expected a NoiseError, got ${error}`);
  assert.equal(error.code, code);
}

describe('NoiseConn', () => {
  test('arbitrary write chunking and read chunking round-trip', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 10_000 }), { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 5000 }), { maxLength: 8 }),
        fc.boolean(),
        async (writes, cuts, cork) => {
          const { client, server } = connectedPair(cuts);
          const expected = Buffer.concat(writes);
          const received = readAll(server, expected.length);
          if (cork) client.cork();
          for (const write of writes) client.write(write);
          if (cork) client.uncork();
          assert.deepEqual(await received, expected);
          // And back the other way, through the uncut direction.
          const echoed = readAll(client, expected.length);
          server.write(expected);
          assert.deepEqual(await echoed, expected);
          client.destroy();
          server.destroy();
        },
      ),
      { numRuns: 40 },
    );
  });

  test('a 100 KiB write leaves as one transport write of records ≤ 4096 bytes', () => {
    const transport = new RecordingTransport();
    const keys = handshakeKeys();
    const conn = new NoiseConn(transport, keys.client);
    const data = Buffer.alloc(100 * 1024, 1);
    conn.write(data);
    assert.equal(transport.writes.length, 1);
    const wire = transport.writes[0] as Buffer;
    assert.ok(recordSizes(wire).every((size) => size <= MAX_RECORD_SIZE));
    assert.equal(recordSizes(wire).length, 26);
    assert.deepEqual(Buffer.concat(new RecordReader(keys.server.receive).push(wire)), data);
    conn.destroy();
  });

  test('corked small writes are coalesced by _writev into one record', () => {
    const transport = new RecordingTransport();
    const keys = handshakeKeys();
    const conn = new NoiseConn(transport, keys.client);
    conn.cork();
    conn.write(Buffer.from('frame header '));
    conn.write(Buffer.from('and payload'));
    conn.uncork();
    assert.equal(transport.writes.length, 1);
    assert.deepEqual(recordSizes(transport.writes[0] as Buffer), [3 + 24 + 16]);
    assert.deepEqual(new RecordReader(keys.server.receive).push(transport.writes[0] as Buffer), [
      Buffer.from('frame header and payload'),
    ]);
    conn.destroy();
  });

  test('zero-length records are skipped and leftover bytes are decrypted first', async () => {
    const transport = new RecordingTransport();
    const keys = handshakeKeys();
    const sealer = new RecordSealer(keys.client.send);
    const leftover = Buffer.concat([sealer.seal(Buffer.from('left')), sealer.seal(Buffer.alloc(0))]);
    const conn = new NoiseConn(transport, keys.server, { leftover });
    const chunks: Buffer[] = [];
    conn.on('data', (chunk: Buffer) => chunks.push(chunk));
    transport.push(Buffer.concat([sealer.seal(Buffer.alloc(0)), sealer.seal(Buffer.from('over'))]));
    transport.push(null);
    await once(conn, 'end');
    assert.deepEqual(chunks.map(String), ['left', 'over']);
  });

  test('a transport that ends inside a record is an error, not a clean end', async () => {
    const transport = new RecordingTransport();
    const keys = handshakeKeys();
    const conn = new NoiseConn(transport, keys.server);
    transport.push(new RecordSealer(keys.client.send).seal(Buffer.from('cut')).subarray(0, 10));
    transport.push(null);
    conn.resume();
    await expectConnError(conn, 'short');
  });

  test('an oversize record header destroys the connection and the transport', async () => {
    const transport = new RecordingTransport();
    const conn = new NoiseConn(transport, handshakeKeys().server);
    transport.push(Buffer.from([0x04, 0xff, 0xff]));
    await expectConnError(conn, 'oversize');
    assert.ok(transport.destroyed);
  });

  test('garbage (type ≠ 4) and undecryptable records destroy the connection', async () => {
    const garbage = new RecordingTransport();
    const conn = new NoiseConn(garbage, handshakeKeys().server);
    garbage.push(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await expectConnError(conn, 'bad-type');
    assert.ok(garbage.destroyed);

    const wrongKey = new RecordingTransport();
    const conn2 = new NoiseConn(wrongKey, handshakeKeys().server);
    wrongKey.push(new RecordSealer(Buffer.alloc(32)).seal(Buffer.from('hi')));
    await expectConnError(conn2, 'decrypt');
    assert.ok(wrongKey.destroyed);
  });

  test('a full readable side pauses the transport until the reader catches up', async () => {
    const { client, server, serverTransport } = connectedPair([4096]);
    // Many separate writes: a transport chunk is decrypted as a whole, so backpressure works per chunk.
    const data = Buffer.alloc(1024 * 1024, 3);
    for (let offset = 0; offset < data.length; offset += 8192)
      client.write(data.subarray(offset, offset + 8192));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(serverTransport.isPaused(), 'transport should be paused while nobody reads');
    assert.ok(server.readableLength < data.length / 2, `buffered ${server.readableLength}`);
    assert.deepEqual(await readAll(server, data.length), data);
    client.destroy();
  });

  test('transport end ends the connection; destroy tears down the transport', async () => {
    const ended = connectedPair();
    ended.server.resume();
    ended.client.resume();
    ended.client.end();
    await once(ended.server, 'end');
    // No half-close in Noise: the server side ends too, and both sides then close.
    await closed(ended.server);
    await closed(ended.client);
    assert.ok(ended.serverTransport.destroyed && ended.clientTransport.destroyed);

    const destroyed = connectedPair();
    destroyed.client.resume();
    destroyed.server.destroy();
    await closed(destroyed.server);
    assert.ok(destroyed.serverTransport.destroyed);
    await closed(destroyed.client);
    assert.ok(destroyed.clientTransport.destroyed);
  });

  test('carries HTTP/2 with prior knowledge: POST with a body and a streamed response', async () => {
    const { client, server } = connectedPair([7, 4096, 1]);
    const h2server = http2.createServer();
    h2server.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
        const body = Buffer.concat(chunks);
        stream.write(`${headers[':method']} ${headers[':path']} ${body.length}\n`);
        let sent = 0;
        const timer = setInterval(() => {
          stream.write(`tick ${sent}\n`);
          if (++sent === 3) {
            clearInterval(timer);
            stream.end(Buffer.alloc(200_000, 0x61));
          }
        }, 5);
      });
    });
    h2server.emit('connection', server);

    const session = http2.connect('https://unused', { createConnection: () => client });
    const request = session.request({ ':method': 'POST', ':path': '/machine/map' });
    request.end(Buffer.alloc(50_000, 0x62));
    // Listen for data before awaiting headers: a fast response can end (and close the stream) before
    // a later async iterator would attach, which then reports a premature close.
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    const ended = once(request, 'end');
    const [headers] = await once(request, 'response');
    assert.equal(headers[':status'], 200);
    await ended;
    const body = Buffer.concat(chunks).toString();
    assert.ok(body.startsWith('POST /machine/map 50000\ntick 0\ntick 1\ntick 2\n'));
    assert.equal(body.length, 'POST /machine/map 50000\ntick 0\ntick 1\ntick 2\n'.length + 200_000);

    session.close();
    await closed(client);
    await closed(server);
    h2server.close();
  });
});
