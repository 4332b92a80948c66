/**
 * Token buckets per key (a remote address, a machine key, an API caller): each key may spend `burst`
 * tokens at once and earns them back at `perSecond`. Used to slow down guessing of keys and floods of
 * logins, so the cost is charged where the attack is (failed attempts, new logins), not on the normal
 * path: a join storm with a valid key never touches a bucket.
 *
 * The table is bounded: past `maxKeys` the bucket untouched for longest is dropped. A dropped bucket was
 * refilling anyway, so an attacker spreading over many keys gains at most one burst per key it cycles
 * through, and cannot make the table grow.
 */

import { formatIp, parseIp } from './ip.ts';

export interface RateLimit {
  /** Tokens a key may spend at once. */
  burst: number;
  /** Tokens earned back per second. */
  perSecond: number;
}

export type RateDecision = { ok: true } | { ok: false; retryAfterMs: number };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class RateLimiter {
  readonly #limit: RateLimit;
  readonly #maxKeys: number;
  readonly #now: () => number;
  /** Map order is the eviction order: a touched bucket is moved to the end. */
  readonly #buckets = new Map<string, Bucket>();

  constructor(limit: RateLimit, options: { maxKeys?: number; now?: () => number } = {}) {
    if (!(limit.burst >= 1) || !(limit.perSecond > 0)) {
      throw new RangeError('a rate limit needs burst >= 1 and perSecond > 0');
    }
    this.#limit = limit;
    this.#maxKeys = options.maxKeys ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Whether `key` has `cost` tokens left right now; does not spend them. */
  check(key: string, cost = 1): RateDecision {
    const bucket = this.#refilled(key);
    return this.#decide(bucket, cost);
  }

  /** Spends `cost` tokens of `key` if it has them. */
  take(key: string, cost = 1): RateDecision {
    const bucket = this.#refilled(key);
    const decision = this.#decide(bucket, cost);
    if (decision.ok) bucket.tokens -= cost;
    this.#store(key, bucket);
    return decision;
  }

  /**
   * Spends `cost` tokens even when that leaves the bucket short (a failure already happened and must
   * count); the bucket does not go below -burst, so a key is never locked out for longer than it takes to
   * earn back two bursts.
   */
  charge(key: string, cost = 1): void {
    const bucket = this.#refilled(key);
    bucket.tokens = Math.max(-this.#limit.burst, bucket.tokens - cost);
    this.#store(key, bucket);
  }

  /**
   * Counts a failure that already happened (a wrong key): it costs `cost` tokens whether or not they
   * are left, and the answer says whether there were (ok) or how long `key` must now wait. Each failure
   * is counted as it happens, so parallel attempts cannot slip past the limit together.
   */
  countFailure(key: string, cost = 1): RateDecision {
    const bucket = this.#refilled(key);
    const decision = this.#decide(bucket, cost);
    bucket.tokens = Math.max(-this.#limit.burst, bucket.tokens - cost);
    this.#store(key, bucket);
    return decision;
  }

  /** How many keys are tracked (tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  #refilled(key: string): Bucket {
    const now = this.#now();
    const bucket = this.#buckets.get(key);
    if (bucket === undefined) return { tokens: this.#limit.burst, updatedMs: now };
    const earned = (Math.max(0, now - bucket.updatedMs) / 1000) * this.#limit.perSecond;
    return { tokens: Math.min(this.#limit.burst, bucket.tokens + earned), updatedMs: now };
  }

  #decide(bucket: Bucket, cost: number): RateDecision {
    if (bucket.tokens >= cost) return { ok: true };
    const missing = cost - bucket.tokens;
    return { ok: false, retryAfterMs: Math.ceil((missing / this.#limit.perSecond) * 1000) };
  }

  #store(key: string, bucket: Bucket): void {
    this.#buckets.delete(key);
    // A full bucket is the same as no bucket: forget it, so idle keys cost nothing.
    if (bucket.tokens >= this.#limit.burst) return;
    this.#buckets.set(key, bucket);
    if (this.#buckets.size > this.#maxKeys) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
  }
}

/**
 * The bucket key of a remote address: IPv4 addresses (also IPv4-mapped IPv6) alone, IPv6 addresses by
 * their /64, since one host commonly holds a whole /64 and would otherwise get a fresh bucket per
 * address. Anything else (a unix socket, an unparsable string) is its own key.
 */
export function addressKey(address: string): string {
  const ip = parseIp(address.replace(/^\[|\]$/g, '').replace(/%.*$/, ''));
  if (ip === undefined) return address;
  if (ip.family === 4) return formatIp(4, ip.value);
  if (ip.value >> 32n === 0xffffn) return formatIp(4, ip.value & 0xffffffffn);
  return `${formatIp(6, (ip.value >> 64n) << 64n)}/64`;
}

/** `Retry-After` in whole seconds (RFC 9110 §10.2.3), at least 1 so clients never spin. */
export function retryAfterSeconds(decision: { retryAfterMs: number }): number {
  return Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
}
