import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TailnetNode } from '../state/model.ts';
import { keepAliveFrame } from './frame.ts';
import { type FrameSink, MapSession, type SessionOptions } from './session.ts';

/** Stands in for the HTTP/2 response stream: records what is written and when. */
class FakeSink extends EventEmitter implements FrameSink {
  readonly chunks: Buffer[] = [];
  readonly times: number[] = [];
  writableLength = 0;
  destroyed = false;
  ended = 0;

  write(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    this.times.push(performance.now());
    return true;
  }

  end(): void {
    this.ended += 1;
  }

  text(): string[] {
    return this.chunks.map((c) => c.toString());
  }
}

const NODE = { id: 7 } as TailnetNode;

function open(t: TestContext, options: Partial<SessionOptions> = {}) {
  const sink = new FakeSink();
  const closed: MapSession[] = [];
  let fullMaps = 0;
  const session = new MapSession(NODE, sink, {
    compression: 'none',
    keepAliveMs: 60_000,
    keepAliveJitterMs: 0,
    maxQueuedBytes: 100,
    fullMap: () => {
      fullMaps += 1;
      return Buffer.from('full');
    },
    onClose: (s) => closed.push(s),
    ...options,
  });
  t.after(() => session.close());
  return { sink, session, closed, fullMaps: () => fullMaps };
}

/** Lets queued microtasks and already-resolved promises run. */
const settle = () => sleep(0);

async function until(predicate: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail('condition not reached in time');
    await sleep(2);
  }
}

describe('MapSession', () => {
  test('frames go out in the order they were queued, even when an earlier one is still compressing', async (t) => {
    const { sink, session } = open(t);
    let release: (bytes: Buffer) => void = () => {};
    const slow = new Promise<Buffer>((resolve) => {
      release = resolve;
    });
    session.send(slow);
    session.send(Buffer.from('second'));
    session.send(Promise.resolve(Buffer.from('third')));
    session.send(Buffer.from('fourth'));
    await settle();
    assert.deepEqual(sink.text(), [], 'nothing may overtake the first frame');
    release(Buffer.from('first'));
    await until(() => sink.chunks.length === 4);
    assert.deepEqual(sink.text(), ['first', 'second', 'third', 'fourth']);
  });

  test('a keep-alive follows a quiet period, and every message restarts the quiet period', async (t) => {
    const keepAliveMs = 80;
    const { sink, session } = open(t, { keepAliveMs, compression: 'zstd' });
    await sleep(20);
    session.send(Buffer.from('data'));
    await until(() => sink.chunks.length - sink.text().indexOf('data') >= 3);
    const at = sink.text().indexOf('data');
    const [first, second] = sink.chunks.slice(at + 1);
    // The very same bytes each time (clients skip decoding a keep-alive they have seen).
    assert.equal(first, keepAliveFrame('zstd'));
    assert.equal(second, keepAliveFrame('zstd'));
    const [dataAt = 0, firstAt = 0, secondAt = 0] = sink.times.slice(at);
    // Timers may fire a millisecond early; without the restart the first would come ~60 ms after the data.
    assert.ok(firstAt - dataAt >= keepAliveMs - 2, `keep-alive ${firstAt - dataAt} ms after data`);
    assert.ok(secondAt - firstAt >= keepAliveMs - 2, `keep-alive ${secondAt - firstAt} ms after the last`);
  });

  test('a slow client loses deltas and gets one full map after it drained', async (t) => {
    const { sink, session, fullMaps } = open(t, { maxQueuedBytes: 100 });
    session.send(Buffer.from('delta-1'));
    await settle();
    sink.writableLength = 101; // over the limit
    session.send(Buffer.from('delta-2'));
    session.send(Buffer.from('delta-3'));
    session.send(Promise.resolve(Buffer.from('delta-4')));
    await settle();
    assert.deepEqual(sink.text(), ['delta-1']);
    assert.equal(sink.listenerCount('drain'), 1, 'one resync, however many deltas were dropped');
    assert.equal(fullMaps(), 0, 'the full map is built when the client can take it');
    sink.writableLength = 0;
    sink.emit('drain');
    await settle();
    assert.equal(fullMaps(), 1);
    assert.deepEqual(sink.text(), ['delta-1', 'full']);
    session.send(Buffer.from('delta-5'));
    await settle();
    assert.deepEqual(sink.text(), ['delta-1', 'full', 'delta-5']);
    assert.equal(session.closed, false);
  });

  test('exactly at the limit still sends', async (t) => {
    const { sink, session } = open(t, { maxQueuedBytes: 100 });
    sink.writableLength = 100;
    session.send(Buffer.from('ok'));
    await settle();
    assert.deepEqual(sink.text(), ['ok']);
  });

  test('no full map to give (undefined) ends the session', async (t) => {
    const { sink, session, closed } = open(t, { fullMap: () => undefined });
    sink.writableLength = 1000;
    session.send(Buffer.from('dropped'));
    sink.writableLength = 0;
    sink.emit('drain');
    await settle();
    assert.equal(session.closed, true);
    assert.deepEqual(closed, [session]);
    assert.equal(sink.ended, 1);
    assert.deepEqual(sink.text(), []);
  });

  test('a frame that fails to compress ends the session', async (t) => {
    const { sink, session, closed } = open(t);
    session.send(Promise.reject(new Error('compression failed')));
    await until(() => session.closed);
    assert.deepEqual(closed, [session]);
    assert.equal(sink.ended, 1);
  });

  test('close() is idempotent, calls onClose once and silences the session', async (t) => {
    const { sink, session, closed } = open(t, { keepAliveMs: 10 });
    session.close();
    session.close();
    assert.equal(session.closed, true);
    assert.deepEqual(closed, [session]);
    assert.equal(sink.ended, 1);
    session.send(Buffer.from('late'));
    await sleep(40);
    assert.deepEqual(sink.text(), [], 'neither sends nor keep-alives after close');
  });

  test('a destroyed stream is neither written nor ended', async (t) => {
    const { sink, session, closed } = open(t);
    session.send(Promise.resolve(Buffer.from('x')));
    sink.destroyed = true;
    await settle();
    assert.deepEqual(sink.text(), []);
    session.close();
    assert.equal(sink.ended, 0);
    assert.deepEqual(closed, [session]);
  });
});
