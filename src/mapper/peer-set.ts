/**
 * The peers a map session was told about, each with the routes it was shown with. Every session
 * holds one, so in a tailnet of n nodes they add up to n² entries: as Maps that is gigabytes at
 * 10 000 nodes, as bit sets (IdSet) about 12 MiB, and a re-diff after a policy change compares them a
 * word at a time. Route keys are kept only for the few peers that carry routes (an empty key is
 * implied for the rest).
 */
import { IdSet } from '../util/id-set.ts';

export class PeerSet {
  /** The peer ids; owned by this set. */
  readonly ids: IdSet;
  readonly #routes = new Map<number, string>();

  constructor(ids: IdSet = new IdSet()) {
    this.ids = ids;
  }

  static from(entries: Iterable<readonly [number, string]>): PeerSet {
    const set = new PeerSet();
    for (const [id, routes] of entries) set.set(id, routes);
    return set;
  }

  get size(): number {
    return this.ids.size;
  }

  has(id: number): boolean {
    return this.ids.has(id);
  }

  /** The routes key the peer was shown with, or undefined when it is not in the set. */
  get(id: number): string | undefined {
    return this.ids.has(id) ? (this.#routes.get(id) ?? '') : undefined;
  }

  set(id: number, routes: string): void {
    this.ids.add(id);
    if (routes === '') this.#routes.delete(id);
    else this.#routes.set(id, routes);
  }

  /** Removes the peer; true when it was in the set. */
  delete(id: number): boolean {
    this.#routes.delete(id);
    return this.ids.delete(id);
  }

  /** The peers shown with routes. */
  routed(): IterableIterator<number> {
    return this.#routes.keys();
  }

  /** The ids in the set, ascending. */
  keys(): IterableIterator<number> {
    return this.ids[Symbol.iterator]();
  }
}
