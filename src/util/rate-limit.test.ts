import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { addressKey, RateLimiter, retryAfterSeconds } from './rate-limit.ts';

function clock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('RateLimiter', () => {
  test('a key spends its burst, then waits for tokens at the refill rate', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 3, perSecond: 0.5 }, { now: time.now });
    for (let i = 0; i < 3; i++) assert.deepEqual(limiter.take('a'), { ok: true });
    assert.deepEqual(limiter.take('a'), { ok: false, retryAfterMs: 2000 });
    time.advance(1000);
    assert.deepEqual(limiter.take('a'), { ok: false, retryAfterMs: 1000 });
    time.advance(1000);
    assert.deepEqual(limiter.take('a'), { ok: true });
    assert.equal(limiter.check('b').ok, true, 'other keys are not affected');
  });

  test('check does not spend; charge spends even past zero, down to -burst', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 2, perSecond: 1 }, { now: time.now });
    assert.equal(limiter.check('a').ok, true);
    assert.equal(limiter.check('a').ok, true);
    for (let i = 0; i < 10; i++) limiter.charge('a');
    // -2 tokens: 3 s until one token is back.
    assert.deepEqual(limiter.check('a'), { ok: false, retryAfterMs: 3000 });
    time.advance(3000);
    assert.equal(limiter.check('a').ok, true);
  });

  test('countFailure counts every failure and says when the key had no tokens left', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 2, perSecond: 1 }, { now: time.now });
    assert.deepEqual(limiter.countFailure('a'), { ok: true });
    assert.deepEqual(limiter.countFailure('a'), { ok: true });
    assert.deepEqual(limiter.countFailure('a'), { ok: false, retryAfterMs: 1000 });
    // That refused failure counted too: -1 token, 2 s until one is back; at most -burst.
    assert.deepEqual(limiter.check('a'), { ok: false, retryAfterMs: 2000 });
    for (let i = 0; i < 10; i++) limiter.countFailure('a');
    assert.deepEqual(limiter.check('a'), { ok: false, retryAfterMs: 3000 });
  });

  test('full buckets are forgotten and the table never grows past maxKeys', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 1, perSecond: 1 }, { now: time.now, maxKeys: 100 });
    for (let i = 0; i < 1000; i++) limiter.take(`k${i}`);
    assert.equal(limiter.size, 100);
    assert.equal(limiter.check('k999').ok, false, 'the newest keys are kept');
    time.advance(1000);
    limiter.take('k999');
    limiter.check('k998');
    assert.equal(limiter.size, 100, 'a check does not add keys');
  });

  test('never allows more than burst + elapsed × rate (model check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.double({ min: 0.1, max: 10, noNaN: true }),
        fc.array(fc.integer({ min: 0, max: 2000 }), { maxLength: 200 }),
        (burst, perSecond, gaps) => {
          const time = clock();
          const limiter = new RateLimiter({ burst, perSecond }, { now: time.now });
          let allowed = 0;
          let elapsed = 0;
          for (const gap of gaps) {
            time.advance(gap);
            elapsed += gap;
            if (limiter.take('k').ok) allowed++;
            assert.ok(allowed <= burst + (elapsed / 1000) * perSecond + 1e-9);
          }
        },
      ),
    );
  });

  test('addresses share a bucket per IPv4 address and per IPv6 /64', () => {
    assert.equal(addressKey('192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(addressKey('[2001:db8:1:2:bbbb::9]'), '2001:db8:1:2::/64');
    assert.equal(addressKey('fe80::1%eth0'), 'fe80::/64');
    assert.notEqual(addressKey('2001:db8:1:3::1'), addressKey('2001:db8:1:2::1'));
    assert.equal(addressKey('/run/weft.sock'), '/run/weft.sock');
  });

  test('Retry-After is whole seconds and at least 1', () => {
    assert.equal(retryAfterSeconds({ retryAfterMs: 1 }), 1);
    assert.equal(retryAfterSeconds({ retryAfterMs: 1001 }), 2);
    assert.throws(() => new RateLimiter({ burst: 0, perSecond: 1 }), RangeError);
  });
});
