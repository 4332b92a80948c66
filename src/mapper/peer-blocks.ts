/**
 * Compressed peer blocks for full maps.
 *
 * A full map is mostly its Peers list, and in a large tailnet nearly every viewer's list holds the
 * same peers. Compressing the whole map for each viewer costs O(n) per map and O(n²) for a join storm.
 * Instead the peers are cut into blocks by id (ids 0–255, 256–511, …), each block's JSON is compressed
 * once into a zstd frame of its own, and a full map is spliced together from frames:
 *
 *   +--------------------------------+----------------+----------------+-----+---------------+
 *   | zstd( {head…,"Peers":[ )       | zstd( p0,p1,…) | zstd( ,p64,…)  | …   | zstd( ]} )    |
 *   +--------------------------------+----------------+----------------+-----+---------------+
 *     per viewer                       cached per block and contents        constant
 *
 * Concatenated zstd frames decode to the concatenation of their contents, so the client sees one JSON
 * document. Every block but the map's first starts with the comma that separates it from the one
 * before, so a block is cached with or without its leading comma. A block is reused only when it holds
 * exactly the same peers at the same versions with the same routes; the viewer's own block (it is
 * missing from its own peers) is compressed fresh, so it never displaces the shared variant.
 */
import type { PeerEntry } from './builder.ts';
import { zstdFrame } from './frame.ts';

/**
 * Ids per block: about 150 KiB of JSON. Large enough that a 10 000-node map is 40 frames, not 160
 * (each frame costs the client a decoder setup, and our test client a whole context), small enough
 * that the viewer's own block, compressed fresh for every map, costs about a millisecond.
 */
export const BLOCK_IDS = 256;

/** Variants kept per block (different policies' views of it); the least recently used goes first. */
const VARIANTS_PER_BLOCK = 4;

const COMMA = Buffer.from(',');

interface Variant {
  key: string;
  bytes: Buffer;
}

export class PeerBlocks {
  readonly #fragment: (entry: PeerEntry) => Buffer;
  readonly #blocks = new Map<number, Variant[]>();

  /** `fragment` gives a peer's JSON (the builder's per-version cache). */
  constructor(fragment: (entry: PeerEntry) => Buffer) {
    this.#fragment = fragment;
  }

  /** zstd frames whose contents, concatenated, are `peers` (ascending by id) joined by commas. */
  frames(peers: readonly PeerEntry[], viewerId: number): Buffer[] {
    const frames: Buffer[] = [];
    const ownBlock = blockOf(viewerId);
    let start = 0;
    while (start < peers.length) {
      const block = blockOf((peers[start] as PeerEntry).node.id);
      let end = start + 1;
      while (end < peers.length && blockOf((peers[end] as PeerEntry).node.id) === block) end += 1;
      const members = peers.slice(start, end);
      const leading = start > 0;
      frames.push(
        block === ownBlock ? this.#compress(members, leading) : this.#cached(block, members, leading),
      );
      start = end;
    }
    return frames;
  }

  /** Blocks cached now (for tests and memory checks). */
  get cachedVariants(): number {
    let count = 0;
    for (const variants of this.#blocks.values()) count += variants.length;
    return count;
  }

  #cached(block: number, members: readonly PeerEntry[], leading: boolean): Buffer {
    let key = leading ? ',' : '';
    for (const { node, routes } of members) key += `${node.id}.${node.version}.${routes.join(',')};`;
    const variants = this.#blocks.get(block) ?? [];
    this.#blocks.set(block, variants);
    const at = variants.findIndex((v) => v.key === key);
    const variant =
      at >= 0 ? (variants.splice(at, 1)[0] as Variant) : { key, bytes: this.#compress(members, leading) };
    variants.unshift(variant);
    if (variants.length > VARIANTS_PER_BLOCK) variants.pop();
    return variant.bytes;
  }

  #compress(members: readonly PeerEntry[], leading: boolean): Buffer {
    const parts: Buffer[] = [];
    for (const member of members) {
      if (leading || parts.length > 0) parts.push(COMMA);
      parts.push(this.#fragment(member));
    }
    return zstdFrame(Buffer.concat(parts));
  }
}

function blockOf(id: number): number {
  return Math.floor(id / BLOCK_IDS);
}
