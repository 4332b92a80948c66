import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PeerSet } from './peer-set.ts';

test('PeerSet behaves like a Map of id → routes key under any sequence of operations', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.constantFrom('set', 'delete'),
          fc.integer({ min: 1, max: 5000 }),
          fc.constantFrom('', '10.0.0.0/8'),
        ),
        { maxLength: 200 },
      ),
      (ops) => {
        const set = new PeerSet();
        const model = new Map<number, string>();
        for (const [op, id, routes] of ops) {
          if (op === 'set') {
            set.set(id, routes);
            model.set(id, routes);
          } else assert.equal(set.delete(id), model.delete(id));
        }
        assert.equal(set.size, model.size);
        assert.deepEqual(
          [...set.keys()],
          [...model.keys()].sort((a, b) => a - b),
        );
        for (const id of [...model.keys(), 0, 4999, 9999]) {
          assert.equal(set.get(id), model.get(id));
          assert.equal(set.has(id), model.has(id));
        }
      },
    ),
  );
});
