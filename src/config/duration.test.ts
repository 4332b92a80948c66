import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DurationError, formatDuration, parseDuration } from './duration.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('parseDuration', () => {
  test('reads single and combined units', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('90s'), 90 * SECOND);
    assert.equal(parseDuration('30m'), 30 * MINUTE);
    assert.equal(parseDuration('1h'), HOUR);
    assert.equal(parseDuration('1h30m'), HOUR + 30 * MINUTE);
    assert.equal(parseDuration('90d'), 90 * DAY);
    assert.equal(parseDuration('2w'), 14 * DAY);
    assert.equal(parseDuration('1d2h3m4s5ms'), DAY + 2 * HOUR + 3 * MINUTE + 4 * SECOND + 5);
    assert.equal(parseDuration('0s'), 0);
  });

  test('reads decimals exactly', () => {
    assert.equal(parseDuration('1.5h'), 90 * MINUTE);
    assert.equal(parseDuration('1.1h'), 3_960_000);
    assert.equal(parseDuration('0.001s'), 1);
  });

  test('rejects malformed text and says what is accepted', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['-5m', /negative/],
      ['30', /no unit/],
      ['1h30', /no unit/],
      ['5y', /unknown unit "y"/],
      ['5 m', /unknown unit " m"/],
      ['1.5', /no unit/],
      ['h', /not a sequence/],
      ['0.5ms', /whole number of milliseconds/],
      ['999999999999w', /too long/],
    ];
    for (const [text, reason] of cases) {
      assert.throws(() => parseDuration(text), DurationError, text);
      assert.throws(() => parseDuration(text), reason, text);
      assert.throws(() => parseDuration(text), /units: ms, s, m, h, d, w/, text);
    }
  });
});

describe('formatDuration', () => {
  test('gives the largest units first and drops zero parts', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(500), '500ms');
    assert.equal(formatDuration(90 * MINUTE), '1h30m');
    assert.equal(formatDuration(90 * DAY), '90d');
    assert.equal(formatDuration(14 * DAY), '14d');
    assert.equal(formatDuration(DAY + 1), '1d1ms');
    assert.equal(formatDuration(1500), '1s500ms');
  });

  test('rejects negative and fractional input', () => {
    assert.throws(() => formatDuration(-1), RangeError);
    assert.throws(() => formatDuration(1.5), RangeError);
  });

  test('round-trips through parseDuration', () => {
    fc.assert(
      fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), (ms) => parseDuration(formatDuration(ms)) === ms),
    );
  });

  test('any accepted text formats to an equal duration', () => {
    const part = fc.tuple(fc.nat({ max: 10_000 }), fc.constantFrom('ms', 's', 'm', 'h', 'd', 'w'));
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 5 }), (parts) => {
        const text = parts.map(([count, unit]) => `${count}${unit}`).join('');
        return parseDuration(formatDuration(parseDuration(text))) === parseDuration(text);
      }),
    );
  });
});
