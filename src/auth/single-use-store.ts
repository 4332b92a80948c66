/**
 * Short-lived secrets of a login in progress (OIDC state → nonce and PKCE verifier; confirmation
 * tokens), kept in memory: bounded, expiring, and each taken at most once.
 *
 * Bounded because anyone can start a login: when full, the oldest entry goes (a flood then only delays
 * people who started long ago, and the memory stays fixed). Single-use because a replayed callback or
 * a resubmitted form must not complete a login a second time.
 */
export interface SingleUseStoreOptions {
  maxEntries: number;
  ttlMs: number;
  now?: () => number;
}

export class SingleUseStore<T> {
  /** Insertion order is age order: Map iterates in insertion order. */
  readonly #entries = new Map<string, { value: T; expiresAt: number }>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: SingleUseStoreOptions) {
    this.#maxEntries = options.maxEntries;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  put(key: string, value: T): void {
    this.#dropExpired();
    this.#entries.delete(key);
    while (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { value, expiresAt: this.#now() + this.#ttlMs });
  }

  /**
   * The value, left in place (to check it before taking it); undefined when unknown, already taken, or
   * expired. Between a peek and its take the caller must not await, or another caller may take it first.
   */
  peek(key: string): T | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt > this.#now()) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  /** Removes and returns the value; undefined when unknown, already taken, or expired. */
  take(key: string): T | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    return entry.expiresAt > this.#now() ? entry.value : undefined;
  }

  /** Expired entries are the oldest ones, so the scan stops at the first live entry. */
  #dropExpired(): void {
    const now = this.#now();
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt > now) break;
      this.#entries.delete(key);
    }
  }
}
