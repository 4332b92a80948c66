import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { IdSet } from './id-set.ts';

const ids = fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 120 });
const sorted = (set: Set<number>) => [...set].sort((a, b) => a - b);

test('IdSet adds, deletes and lists like a Set of integers, ascending', () => {
  fc.assert(
    fc.property(ids, ids, (added, deleted) => {
      const set = new IdSet();
      const model = new Set<number>();
      for (const id of added) {
        assert.equal(set.add(id), !model.has(id));
        model.add(id);
      }
      for (const id of deleted) assert.equal(set.delete(id), model.delete(id));
      assert.equal(set.size, model.size);
      assert.deepEqual([...set], sorted(model));
      for (const id of [...added, ...deleted, 0, 31, 32, 99_999]) assert.equal(set.has(id), model.has(id));
      set.clear();
      assert.equal(set.size, 0);
      assert.deepEqual([...set], []);
    }),
  );
});

test('IdSet union, difference and intersection agree with Sets, and leave their inputs alone', () => {
  fc.assert(
    fc.property(ids, ids, (a, b) => {
      const [x, y] = [IdSet.of(a), IdSet.of(b)];
      const [sa, sb] = [new Set(a), new Set(b)];
      assert.deepEqual([...x.minus(y)], sorted(new Set(a.filter((id) => !sb.has(id)))));
      assert.deepEqual([...x.intersect(y)], sorted(new Set(a.filter((id) => sb.has(id)))));
      assert.deepEqual([...x], sorted(sa));
      assert.deepEqual([...x.clone().addAll(y)], sorted(new Set([...a, ...b])));
      assert.deepEqual([...x], sorted(sa), 'clone() copies');
    }),
  );
});

test('IdSet refuses what is not a node id', () => {
  for (const bad of [-1, 1.5, Number.NaN]) assert.throws(() => new IdSet().add(bad), RangeError);
});
