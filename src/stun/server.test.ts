import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../observe/logger.ts';
import { encodeBindingRequest, newTransactionId, parseBindingResponse } from './codec.ts';
import { SourceLimiter, StunListenError, type StunServer, startStunServer } from './server.ts';

const log = createLogger({ level: 'silent', format: 'json' });

/** A client socket bound to `host` that collects every datagram it receives. */
async function client(type: 'udp4' | 'udp6', host: string): Promise<{ socket: Socket; received: Buffer[] }> {
  const socket = createSocket(type);
  const received: Buffer[] = [];
  socket.on('message', (msg) => received.push(msg));
  socket.bind(0, host);
  await once(socket, 'listening');
  return { socket, received };
}

async function send(socket: Socket, packet: Buffer, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) =>
    socket.send(packet, port, host, (err) => (err ? reject(err) : resolve())),
  );
}

/** Polls `check` until it holds or two seconds pass. */
async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function ipv6Loopback(): Promise<boolean> {
  const socket = createSocket('udp6');
  try {
    socket.bind(0, '::1');
    await once(socket, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    socket.close();
  }
}

const hasIPv6 = await ipv6Loopback();

describe('STUN server on 127.0.0.1', () => {
  let server: StunServer;
  before(async () => {
    server = await startStunServer({ address: '127.0.0.1', port: 0, log });
  });
  after(() => server.close());

  test('binds a real port when asked for 0', () => {
    assert.equal(server.address, '127.0.0.1');
    assert.ok(server.port > 0);
  });

  test("answers with the client's real source address and port, from the port it was sent to", async () => {
    const { socket, received } = await client('udp4', '127.0.0.1');
    const txid = newTransactionId();
    const from: { address?: string; port?: number } = {};
    socket.once('message', (_msg, rinfo) => Object.assign(from, rinfo));
    await send(socket, encodeBindingRequest(txid), server.port, '127.0.0.1');
    await eventually(() => received.length === 1, 'the answer');
    assert.deepEqual(parseBindingResponse(received[0] ?? Buffer.alloc(0), txid), {
      ip: '127.0.0.1',
      port: socket.address().port,
    });
    assert.equal(from.port, server.port);
    assert.equal(from.address, '127.0.0.1');
    socket.close();
  });

  test('answers a generic client without SOFTWARE or FINGERPRINT', async () => {
    const { socket, received } = await client('udp4', '127.0.0.1');
    const txid = newTransactionId();
    const bare = encodeBindingRequest(txid).subarray(0, 20);
    bare.writeUInt16BE(0, 2);
    await send(socket, bare, server.port, '127.0.0.1');
    await eventually(() => received.length === 1, 'the answer');
    assert.equal(parseBindingResponse(received[0] ?? Buffer.alloc(0), txid)?.port, socket.address().port);
    socket.close();
  });

  test('drops garbage silently and keeps answering', async () => {
    const { socket, received } = await client('udp4', '127.0.0.1');
    const before = { ...server.stats };
    const broken = encodeBindingRequest(newTransactionId());
    broken[39] = (broken[39] ?? 0) ^ 1;
    const garbage = [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(1200, 0xff), broken];
    for (const packet of garbage) await send(socket, packet, server.port, '127.0.0.1');
    const txid = newTransactionId();
    await send(socket, encodeBindingRequest(txid), server.port, '127.0.0.1');
    await eventually(() => received.length >= 1, 'the answer after the garbage');
    await sleep(20);
    assert.equal(received.length, 1, 'only the valid request is answered');
    assert.ok(parseBindingResponse(received[0] ?? Buffer.alloc(0), txid));
    assert.equal(server.stats.dropped - before.dropped, garbage.length);
    assert.equal(server.stats.answered - before.answered, 1);
    socket.close();
  });
});

describe('STUN server rate limit', () => {
  test('a source gets its burst, then is limited; another source is unaffected', async () => {
    const server = await startStunServer({
      address: '127.0.0.1',
      port: 0,
      log,
      perSourceRate: 1,
      perSourceBurst: 5,
    });
    const flooder = await client('udp4', '127.0.0.1');
    const total = 30;
    for (let i = 0; i < total; i++) {
      await send(flooder.socket, encodeBindingRequest(newTransactionId()), server.port, '127.0.0.1');
    }
    await eventually(() => server.stats.answered + server.stats.rateLimited === total, 'all requests');
    // The burst, plus at most one token refilled while the requests were being sent.
    assert.ok(server.stats.answered >= 5 && server.stats.answered <= 6, `answered ${server.stats.answered}`);
    assert.equal(server.stats.rateLimited, total - server.stats.answered);
    await sleep(20);
    assert.equal(flooder.received.length, server.stats.answered);

    // The limit is per source address; 127.0.0.2 is loopback on Linux, so it stands in for another host.
    const other = await client('udp4', '127.0.0.2').catch(() => client('udp4', '127.0.0.1'));
    const sameHost = other.socket.address().address === '127.0.0.1';
    await send(other.socket, encodeBindingRequest(newTransactionId()), server.port, '127.0.0.1');
    if (!sameHost) await eventually(() => other.received.length === 1, 'an answer to another source');
    flooder.socket.close();
    other.socket.close();
    await server.close();
  });

  test('the limiter refills at the rate and never holds more than the burst', () => {
    const limiter = new SourceLimiter(10, 3, 100);
    const take = (now: number) => limiter.allow('192.0.2.1', now);
    assert.deepEqual([take(0), take(0), take(0), take(0)], [true, true, true, false]);
    assert.equal(take(50), false, 'half a token after 50 ms');
    assert.equal(take(100), true, 'one token after 100 ms');
    assert.deepEqual([take(10_000), take(10_000), take(10_000), take(10_000)], [true, true, true, false]);
  });

  test('the source table stays bounded under a flood of spoofed sources', () => {
    const limiter = new SourceLimiter(20, 40, 1000);
    for (let i = 0; i < 50_000; i++)
      limiter.allow(`10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`, i / 10);
    assert.equal(limiter.size, 1000);
    // Sources idle long enough to refill carry no state; the sweep forgets them.
    limiter.sweep(50_000 / 10 + 2_000);
    assert.equal(limiter.size, 0);
  });

  test('the sweep keeps sources that still owe tokens', () => {
    const limiter = new SourceLimiter(20, 40, 1000);
    for (let i = 0; i < 40; i++) limiter.allow('192.0.2.1', 0);
    limiter.allow('192.0.2.2', 0);
    // After 1 s: 192.0.2.1 has 20 of 40 tokens and is kept; 192.0.2.2 is full again and forgotten.
    limiter.sweep(1000);
    assert.equal(limiter.size, 1);
    assert.equal(limiter.allow('192.0.2.1', 1000), true);
    limiter.sweep(3000);
    assert.equal(limiter.size, 0);
  });
});

describe('STUN server lifecycle', () => {
  test('close() releases the port and is idempotent', async () => {
    const first = await startStunServer({ address: '127.0.0.1', port: 0, log });
    const { port } = first;
    await Promise.all([first.close(), first.close()]);
    await first.close();
    const second = await startStunServer({ address: '127.0.0.1', port, log });
    assert.equal(second.port, port);
    await second.close();
  });

  test('a port in use is refused with a message naming the address and the setting', async () => {
    const holder = await startStunServer({ address: '127.0.0.1', port: 0, log });
    await assert.rejects(startStunServer({ address: '127.0.0.1', port: holder.port, log }), (err: Error) => {
      assert.ok(err instanceof StunListenError);
      assert.equal(
        err.message,
        `cannot listen for STUN on 127.0.0.1:${holder.port} (derp.server.stun_listen_addr): address already in use`,
      );
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'EADDRINUSE');
      return true;
    });
    await holder.close();
  });

  test('an address this host does not have is refused clearly', async () => {
    await assert.rejects(
      startStunServer({ address: '192.0.2.1', port: 0, log, setting: 'test.addr' }),
      /^StunListenError: cannot listen for STUN on 192\.0\.2\.1:0 \(test\.addr\): /,
    );
  });

  test('bad limits are refused', async () => {
    await assert.rejects(
      startStunServer({ address: '127.0.0.1', port: 0, log, perSourceRate: 0 }),
      RangeError,
    );
  });
});

describe('STUN server over IPv6', { skip: hasIPv6 ? false : 'no IPv6 loopback' }, () => {
  test('answers on ::1 with an IPv6 mapped address', async () => {
    const server = await startStunServer({ address: '::1', port: 0, log });
    assert.equal(server.address, '::1');
    const { socket, received } = await client('udp6', '::1');
    const txid = newTransactionId();
    await send(socket, encodeBindingRequest(txid), server.port, '::1');
    await eventually(() => received.length === 1, 'the answer');
    const answer = received[0] ?? Buffer.alloc(0);
    assert.equal(answer.length, 44, 'family 2, 20-byte attribute');
    assert.deepEqual(parseBindingResponse(answer, txid), { ip: '::1', port: socket.address().port });
    socket.close();
    await server.close();
  });

  test('a dual-stack socket on :: answers IPv4 clients as IPv4', async () => {
    const server = await startStunServer({ address: '::', port: 0, log });
    assert.equal(server.address, '::');
    const { socket, received } = await client('udp4', '127.0.0.1');
    const txid = newTransactionId();
    await send(socket, encodeBindingRequest(txid), server.port, '127.0.0.1');
    await eventually(() => received.length === 1, 'the answer');
    const answer = received[0] ?? Buffer.alloc(0);
    assert.equal(answer.length, 32, 'family 1, 8-byte attribute');
    assert.deepEqual(parseBindingResponse(answer, txid), { ip: '127.0.0.1', port: socket.address().port });
    socket.close();
    await server.close();
  });
});
