import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { TailnetNode } from '../state/model.ts';
import type { PeerEntry } from './builder.ts';
import { decodeMapBody } from './frame.ts';
import { BLOCK_IDS, PeerBlocks } from './peer-blocks.ts';

const B = BLOCK_IDS;

/** Peers with a recognisable fragment each: `{"id":N,"v":V,"r":"routes"}`. */
function entries(
  ids: readonly number[],
  version = (_id: number) => 1,
  routes = (_id: number) => [] as string[],
) {
  return [...new Set(ids)]
    .sort((a, b) => a - b)
    .map((id): PeerEntry => ({ node: { id, version: version(id) } as TailnetNode, routes: routes(id) }));
}

function fragmentOf(entry: PeerEntry): Buffer {
  return Buffer.from(JSON.stringify({ id: entry.node.id, v: entry.node.version, r: entry.routes.join(',') }));
}

function decoded(frames: Buffer[]): string {
  return decodeMapBody(Buffer.concat(frames)).toString();
}

test('the frames decode to the peers joined by commas, whatever ids they have', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 3 * B }), { minLength: 1, maxLength: 150 }),
      fc.integer({ min: 1, max: 3 * B }),
      (ids, viewer) => {
        const blocks = new PeerBlocks(fragmentOf);
        const peers = entries(ids.filter((id) => id !== viewer));
        const expected = peers.map((p) => fragmentOf(p).toString()).join(',');
        assert.equal(decoded(blocks.frames(peers, viewer)), expected);
        // Served from the cache the second time, and still the same text.
        assert.equal(decoded(blocks.frames(peers, viewer)), expected);
      },
    ),
    { numRuns: 200 },
  );
});

test('a block is compressed once for every viewer outside it, and again only when a member changes', () => {
  let compressed = 0;
  const blocks = new PeerBlocks((entry) => {
    compressed += 1;
    return fragmentOf(entry);
  });
  const all = Array.from({ length: 4 * B + 44 }, (_, i) => i + 1);
  const viewerA = 4 * B + 43;
  const viewerB = 4 * B + 42;
  const first = blocks.frames(entries(all.filter((id) => id !== viewerA)), viewerA);
  const second = blocks.frames(entries(all.filter((id) => id !== viewerB)), viewerB);
  // Blocks 0–3 are shared: the very same bytes. Block 4 (45 ids) is each viewer's own.
  for (let i = 0; i < 4; i++) assert.equal(second[i], first[i], `block ${i} reused`);
  assert.notEqual(second[4], first[4]);
  assert.equal(compressed, all.length - 1 + 44, 'the second map only encoded its own block');

  compressed = 0;
  const changed = B + 6;
  const bumped = blocks.frames(
    entries(
      all.filter((id) => id !== viewerA),
      (id) => (id === changed ? 2 : 1),
    ),
    viewerA,
  );
  assert.equal(bumped[0], first[0]);
  assert.notEqual(bumped[1], first[1], 'the block holding the changed peer is rebuilt');
  assert.ok(decoded(bumped).includes(`{"id":${changed},"v":2,"r":""}`));
  assert.equal(compressed, B + 44);
});

test('routes and the leading comma are part of what a cached block must match', () => {
  const blocks = new PeerBlocks(fragmentOf);
  const viewer = 5 * B;
  const plain = entries([5, B + 6]);
  const routed = entries([5, B + 6], undefined, (id) => (id === B + 6 ? ['10.0.0.0/24'] : []));
  assert.match(decoded(blocks.frames(routed, viewer)), /"r":"10.0.0.0\/24"/);
  assert.doesNotMatch(decoded(blocks.frames(plain, viewer)), /10\.0\.0\.0/);
  // Block 1 first in one map (no comma) and second in another (comma).
  assert.equal(decoded(blocks.frames(entries([B + 6]), viewer)).startsWith(','), false);
  assert.equal(decoded(blocks.frames(entries([5, B + 6]), viewer)).includes('},{'), true);
});

test('a block keeps a few variants at most', () => {
  const blocks = new PeerBlocks(fragmentOf);
  for (let v = 1; v <= 20; v++)
    blocks.frames(
      entries([1, 2, 3], () => v),
      1000,
    );
  assert.equal(blocks.cachedVariants, 4);
});
