/**
 * The peers a map session was told about, each with the routes it was shown with, in about one bit
 * per node id. Every session holds one, so in a tailnet of n nodes they add up to n² entries: as Maps
 * that is gigabytes at 10 000 nodes, as bit sets about 12 MiB. Route keys are kept only for the few
 * peers that carry routes (an empty key is implied for the rest).
 */
export class PeerSet {
  #bits = new Uint8Array(16);
  readonly #routes = new Map<number, string>();
  #size = 0;

  static from(entries: Iterable<readonly [number, string]>): PeerSet {
    const set = new PeerSet();
    for (const [id, routes] of entries) set.set(id, routes);
    return set;
  }

  get size(): number {
    return this.#size;
  }

  has(id: number): boolean {
    const byte = id >>> 3;
    return byte < this.#bits.length && ((this.#bits[byte] ?? 0) & (1 << (id & 7))) !== 0;
  }

  /** The routes key the peer was shown with, or undefined when it is not in the set. */
  get(id: number): string | undefined {
    return this.has(id) ? (this.#routes.get(id) ?? '') : undefined;
  }

  set(id: number, routes: string): void {
    const byte = id >>> 3;
    if (byte >= this.#bits.length) {
      const grown = new Uint8Array(Math.max(byte + 1, this.#bits.length * 2));
      grown.set(this.#bits);
      this.#bits = grown;
    }
    const mask = 1 << (id & 7);
    if (((this.#bits[byte] ?? 0) & mask) === 0) this.#size += 1;
    this.#bits[byte] = (this.#bits[byte] ?? 0) | mask;
    if (routes === '') this.#routes.delete(id);
    else this.#routes.set(id, routes);
  }

  /** Removes the peer; true when it was in the set. */
  delete(id: number): boolean {
    if (!this.has(id)) return false;
    const byte = id >>> 3;
    this.#bits[byte] = (this.#bits[byte] ?? 0) & ~(1 << (id & 7));
    this.#routes.delete(id);
    this.#size -= 1;
    return true;
  }

  /** The ids in the set, ascending. */
  *keys(): IterableIterator<number> {
    for (let byte = 0; byte < this.#bits.length; byte++) {
      const bits = this.#bits[byte] ?? 0;
      if (bits === 0) continue;
      for (let bit = 0; bit < 8; bit++) if (bits & (1 << bit)) yield byte * 8 + bit;
    }
  }
}
