import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SingleUseStore } from './single-use-store.ts';

function store(maxEntries = 3, ttlMs = 1_000) {
  const clock = { now: 0 };
  return { clock, store: new SingleUseStore<string>({ maxEntries, ttlMs, now: () => clock.now }) };
}

describe('SingleUseStore', () => {
  test('a value can be taken once', () => {
    const { store: s } = store();
    s.put('k', 'v');
    assert.equal(s.take('k'), 'v');
    assert.equal(s.take('k'), undefined);
    assert.equal(s.take('unknown'), undefined);
  });

  test('peek shows a live value without taking it', () => {
    const { clock, store: s } = store();
    s.put('k', 'v');
    assert.equal(s.peek('k'), 'v');
    assert.equal(s.peek('k'), 'v');
    assert.equal(s.take('k'), 'v');
    assert.equal(s.peek('k'), undefined);
    assert.equal(s.peek('unknown'), undefined);
    s.put('old', 'o');
    clock.now = 1_000;
    assert.equal(s.peek('old'), undefined);
    assert.equal(s.size, 0, 'an expired entry goes when peeked at');
  });

  test('an expired value is gone', () => {
    const { clock, store: s } = store();
    s.put('k', 'v');
    clock.now = 999;
    s.put('fresh', 'f');
    clock.now = 1_000;
    assert.equal(s.take('k'), undefined);
    assert.equal(s.take('fresh'), 'f');
  });

  test('when full the oldest entry goes, and expired ones are dropped first', () => {
    const { clock, store: s } = store(3);
    s.put('a', '1');
    s.put('b', '2');
    s.put('c', '3');
    s.put('d', '4');
    assert.equal(s.size, 3);
    assert.equal(s.take('a'), undefined);
    assert.equal(s.take('b'), '2');
    clock.now = 5_000;
    s.put('e', '5');
    assert.equal(s.size, 1);
    assert.equal(s.take('e'), '5');
  });
});
