/**
 * A set of small non-negative integers (node ids) as a bit set: one bit per id up to the largest, so
 * membership is a shift and a mask, and union, difference and comparison of whole sets are loops over
 * 32-bit words. Peer visibility in a tailnet of n nodes is n such sets of n bits: about 12 MiB at
 * 10 000 nodes, and comparing a viewer's old and new peers is n/32 word operations instead of n lookups.
 */
export class IdSet {
  #words: Uint32Array;

  constructor(words: Uint32Array = new Uint32Array(4)) {
    this.#words = words;
  }

  static of(ids: Iterable<number>): IdSet {
    const set = new IdSet();
    for (const id of ids) set.add(id);
    return set;
  }

  has(id: number): boolean {
    const word = id >>> 5;
    return word < this.#words.length && ((this.#words[word] as number) & (1 << (id & 31))) !== 0;
  }

  /** Adds the id; true when it was not in the set. */
  add(id: number): boolean {
    if (!Number.isInteger(id) || id < 0) throw new RangeError(`IdSet holds non-negative integers, not ${id}`);
    const word = id >>> 5;
    this.#grow(word + 1);
    const mask = 1 << (id & 31);
    const before = this.#words[word] as number;
    this.#words[word] = before | mask;
    return (before & mask) === 0;
  }

  /** Removes the id; true when it was in the set. */
  delete(id: number): boolean {
    if (!this.has(id)) return false;
    const word = id >>> 5;
    this.#words[word] = (this.#words[word] as number) & ~(1 << (id & 31));
    return true;
  }

  /** Removes every id (keeps the memory, for a set that is refilled). */
  clear(): void {
    this.#words.fill(0);
  }

  get size(): number {
    let count = 0;
    for (const word of this.#words) count += popcount(word);
    return count;
  }

  clone(): IdSet {
    return new IdSet(this.#words.slice());
  }

  /** Adds every id of `other` (in place). */
  addAll(other: IdSet): this {
    const theirs = other.#words;
    this.#grow(theirs.length);
    const mine = this.#words;
    for (let i = 0; i < theirs.length; i++) mine[i] = (mine[i] as number) | (theirs[i] as number);
    return this;
  }

  /** The ids of this set that `other` lacks (a new set). */
  minus(other: IdSet): IdSet {
    const mine = this.#words;
    const theirs = other.#words;
    const out = new Uint32Array(mine.length);
    for (let i = 0; i < mine.length; i++)
      out[i] = (mine[i] as number) & ~((theirs[i] as number | undefined) ?? 0);
    return new IdSet(out);
  }

  /** The ids in both sets (a new set). */
  intersect(other: IdSet): IdSet {
    const mine = this.#words;
    const theirs = other.#words;
    const out = new Uint32Array(Math.min(mine.length, theirs.length));
    for (let i = 0; i < out.length; i++) out[i] = (mine[i] as number) & (theirs[i] as number);
    return new IdSet(out);
  }

  /** The ids, ascending. */
  *[Symbol.iterator](): IterableIterator<number> {
    const words = this.#words;
    for (let i = 0; i < words.length; i++) {
      let word = words[i] as number;
      while (word !== 0) {
        const low = word & -word;
        yield i * 32 + (31 - Math.clz32(low));
        word ^= low;
      }
    }
  }

  #grow(words: number): void {
    if (words <= this.#words.length) return;
    const grown = new Uint32Array(Math.max(words, this.#words.length * 2));
    grown.set(this.#words);
    this.#words = grown;
  }
}

function popcount(word: number): number {
  let v = word - ((word >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
