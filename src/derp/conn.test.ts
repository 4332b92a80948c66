import assert from 'node:assert/strict';
import { type Duplex, duplexPair } from 'node:stream';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { NodePublic, PrivateKey } from '../types/keys.ts';
import { ClientConn, type ConnTimings, DEFAULT_CONN_TIMINGS, DropOldestQueue } from './conn.ts';
import { FrameReader } from './reader.ts';
import { encodeFrame, FrameType, KEEP_ALIVE_FRAME, MAX_FRAME_LENGTH } from './wire.ts';

const tag = (n: number) => Buffer.from([n]);

describe('DropOldestQueue', () => {
  test('keeps the newest `depth` frames in order and reports each drop', () => {
    const queue = new DropOldestQueue(3);
    assert.equal(queue.push(tag(1)), false);
    assert.equal(queue.push(tag(2)), false);
    assert.equal(queue.push(tag(3)), false);
    assert.equal(queue.size, 3);
    assert.equal(queue.push(tag(4)), true);
    assert.equal(queue.push(tag(5)), true);
    assert.equal(queue.size, 3);
    const out: Buffer[] = [tag(0)];
    queue.drainInto(out);
    assert.deepEqual(out, [tag(0), tag(3), tag(4), tag(5)]);
    assert.equal(queue.size, 0);
    const empty: Buffer[] = [];
    queue.drainInto(empty);
    assert.deepEqual(empty, []);
  });

  test('behaves like a bounded array under any sequence of pushes and drains', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.oneof(fc.constant('drain' as const), fc.integer({ min: 0, max: 255 })), {
          maxLength: 200,
        }),
        (depth, ops) => {
          const queue = new DropOldestQueue(depth);
          let model: number[] = [];
          for (const op of ops) {
            if (op === 'drain') {
              const out: Buffer[] = [];
              queue.drainInto(out);
              assert.deepEqual(
                out.map((b) => b[0]),
                model,
              );
              model = [];
            } else {
              const full = model.length === depth;
              assert.equal(queue.push(tag(op)), full);
              if (full) model.shift();
              model.push(op);
            }
            assert.equal(queue.size, model.length);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

interface Harness {
  conn: ClientConn;
  /** The peer's end: what the connection writes arrives here. */
  peer: Duplex;
  frames: Buffer[];
  closes: string[];
  drops: number;
}

function harness(timings: Partial<ConnTimings> = {}, read = true): Harness {
  const [peer, local] = duplexPair();
  const key = PrivateKey.generate(NodePublic).publicKey;
  const rawKey = NodePublic.toRaw(key);
  const h: Harness = { conn: undefined as unknown as ClientConn, peer, frames: [], closes: [], drops: 0 };
  h.conn = new ClientConn(
    local,
    {
      key,
      rawKey,
      id: rawKey.toString('latin1'),
      remoteAddress: '127.0.0.1',
      remotePort: 1,
      mesh: false,
      prober: false,
    },
    { ...DEFAULT_CONN_TIMINGS, ...timings },
    {
      onClose: (_conn, reason, failed) => h.closes.push(`${failed ? 'failed' : 'ok'}: ${reason}`),
      onQueueDrop: () => {
        h.drops += 1;
      },
    },
  );
  if (read) {
    const reader = new FrameReader(
      () => MAX_FRAME_LENGTH,
      (_type, f) => h.frames.push(Buffer.from(f)),
    );
    peer.on('data', (chunk: Buffer) => reader.push(chunk));
  }
  return h;
}

const packet = (n: number, size = 40) => encodeFrame(FrameType.RecvPacket, Buffer.alloc(size, n));
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('ClientConn', () => {
  test('one batch per turn: control frames, then the pong, then disco, then data', async () => {
    const h = harness();
    h.conn.sendPacket(packet(1), false);
    h.conn.sendPacket(packet(2), true);
    h.conn.sendPong(encodeFrame(FrameType.Pong, Buffer.alloc(8, 3)));
    h.conn.sendControl(encodeFrame(FrameType.PeerGone, Buffer.alloc(33, 4)));
    assert.equal(h.frames.length, 0, 'nothing is written synchronously');
    await turn();
    await turn();
    assert.deepEqual(
      h.frames.map((f) => [f[0], f[5]]),
      [
        [FrameType.PeerGone, 4],
        [FrameType.Pong, 3],
        [FrameType.RecvPacket, 2],
        [FrameType.RecvPacket, 1],
      ],
    );
    h.conn.close('test over');
  });

  test('only one pong may be pending: a ping flood costs one pong per flush', async () => {
    const h = harness();
    for (let i = 0; i < 1000; i += 1) h.conn.sendPong(encodeFrame(FrameType.Pong, Buffer.alloc(8, i & 0xff)));
    await turn();
    await turn();
    assert.equal(h.frames.length, 1);
    assert.equal(h.frames[0]?.[5], 0, 'the first pong is kept');
    h.conn.sendPong(encodeFrame(FrameType.Pong, Buffer.alloc(8, 7)));
    await turn();
    await turn();
    assert.equal(h.frames.length, 2);
    h.conn.close('test over');
  });

  test('a full queue drops its oldest packets and says so; disco and data queues are separate', async () => {
    const h = harness({ queueDepth: 2 });
    for (let i = 1; i <= 5; i += 1) h.conn.sendPacket(packet(i), false);
    h.conn.sendPacket(packet(9), true);
    assert.equal(h.drops, 3);
    await turn();
    await turn();
    assert.deepEqual(
      h.frames.map((f) => f[5]),
      [9, 4, 5],
    );
    h.conn.close('test over');
  });

  test('close is idempotent, reports once, destroys the stream and ignores later sends', async () => {
    const h = harness();
    h.conn.close('first');
    h.conn.close('second');
    assert.deepEqual(h.closes, ['ok: first']);
    assert.equal(h.conn.closed, true);
    h.conn.sendPacket(packet(1), false);
    h.conn.sendControl(KEEP_ALIVE_FRAME);
    h.conn.sendPong(encodeFrame(FrameType.Pong, Buffer.alloc(8)));
    await sleep(10);
    assert.deepEqual(h.frames, []);
  });

  test('keep-alives every keepAliveMs', async () => {
    const h = harness({ keepAliveMs: 15, keepAliveJitterMs: 0 });
    await sleep(200);
    h.conn.close('test over');
    const keepAlives = h.frames.filter((f) => f.equals(KEEP_ALIVE_FRAME)).length;
    assert.ok(keepAlives >= 3, `${keepAlives} keep-alives in 200 ms`);
    assert.equal(keepAlives, h.frames.length);
  });

  test('a peer that does not read: writes stop at the first full buffer, queues stay bounded, then a write timeout', async () => {
    const h = harness({ queueDepth: 4, writeTimeoutMs: 150 }, false);
    const started = Date.now();
    for (let i = 0; i < 200; i += 1) {
      h.conn.sendPacket(packet(i & 0xff, 4000), false);
      if (i % 8 === 7) await turn();
    }
    assert.ok(h.drops > 150, `${h.drops} drops`);
    assert.deepEqual(h.closes, []);
    // Everything the peer may ever get: its readable buffer plus what our side still holds.
    await sleep(400);
    assert.equal(h.closes.length, 1);
    assert.match(h.closes[0] ?? '', /^failed: write timeout/);
    assert.ok(Date.now() - started >= 150);
    let buffered = 0;
    for (let chunk = h.peer.read() as Buffer | null; chunk !== null; chunk = h.peer.read() as Buffer | null) {
      buffered += chunk.length;
    }
    assert.ok(buffered < 100_000, `${buffered} bytes reached the peer`);
  });

  test('after a drain, queued packets go out', async () => {
    const h = harness({ queueDepth: 4, writeTimeoutMs: 5_000 }, false);
    for (let i = 0; i < 12; i += 1) {
      h.conn.sendPacket(packet(i, 8000), false);
      await turn();
    }
    // Read everything: the connection must drain and then deliver what waited in its queue.
    const reader = new FrameReader(
      () => MAX_FRAME_LENGTH,
      (_type, f) => h.frames.push(Buffer.from(f)),
    );
    h.peer.on('data', (chunk: Buffer) => reader.push(chunk));
    await sleep(50);
    h.conn.sendPacket(packet(99, 10), false);
    await sleep(50);
    assert.deepEqual(h.closes, []);
    const tags = h.frames.map((f) => f[5]);
    assert.equal(tags.at(-1), 99);
    // In order, with the oldest possibly dropped while blocked.
    const sent = tags.slice(0, -1);
    assert.deepEqual(
      sent,
      [...sent].sort((a, b) => (a ?? 0) - (b ?? 0)),
    );
    assert.equal(sent.at(-1), 11);
    assert.equal(sent.length + h.drops, 12);
    h.conn.close('test over');
  });

  test('a watcher that lets 100 000 control frames pile up is closed', () => {
    const h = harness({}, false);
    const frame = encodeFrame(FrameType.PeerPresent, Buffer.alloc(51));
    for (let i = 0; i < 100_000; i += 1) h.conn.sendControl(frame);
    assert.deepEqual(h.closes, []);
    h.conn.sendControl(frame);
    assert.equal(h.closes.length, 1);
    assert.match(h.closes[0] ?? '', /^failed: control queue/);
  });
});
