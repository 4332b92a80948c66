/**
 * Hands out tailnet addresses: one IPv4 and one IPv6 address per node, from the configured prefixes.
 *
 * Never handed out (control-protocol.md §6.8, features.md §2.1): the network and last address of each
 * prefix (Headscale reserves both too), 100.100.100.100 and fd7a:115c:a1e0::53 (quad-100, MagicDNS),
 * 100.115.92.0/23 (ChromeOS VMs; the client does not treat it as Tailscale space), and the IPv6 ranges
 * the client gives other meanings: 4via6 fd7a:115c:a1e0:b1a::/64, 4to6
 * fd7a:115c:a1e0:ab12:4843:cd96:6200::/104 and ephemeral6 fd7a:115c:a1e0:efe3::/64.
 *
 * Sequential mode walks forward from just after the last address this allocator handed out (at start:
 * the prefix's first host), skipping used and reserved addresses, and wraps around to the start of the
 * prefix when it reaches the end. So an address freed by a deleted node is reused only once the rest of
 * the pool has been walked: peers and logs keep pointing at a deleted node's address for a while, and
 * giving it straight to a new node would misdirect them. Unlike Headscale, which never wraps (holes are
 * refilled only after a restart), the whole pool stays usable. After a restart the walk starts from the
 * beginning again, so the first holes are filled first.
 *
 * Random mode starts at a cryptographically random address and walks forward the same way.
 *
 * The families are independent (the first node gets 100.64.0.1 and fd7a:115c:a1e0::1), addresses in
 * use are a Set of integers, and reserved ranges are skipped in one step, so `next()` costs about the
 * number of consecutive used addresses it passes, not the size of the pool.
 */
import { formatIp, formatPrefix, type IpFamily, type IpPrefix, parseIp, parsePrefix } from '../util/ip.ts';

export interface AllocatorPrefixes {
  /** IPv4 pool, e.g. `100.64.0.0/10`; '' disables IPv4 addresses. */
  v4: string;
  /** IPv6 pool, e.g. `fd7a:115c:a1e0::/48`; '' disables IPv6 addresses. */
  v6: string;
  allocation: 'sequential' | 'random';
}

export interface AllocatedAddresses {
  ipv4: string | null;
  ipv6: string | null;
}

export interface AllocatorOptions {
  /** A uniform random integer in [0, limit); crypto-random by default. Tests pass their own. */
  random?: (limit: bigint) => bigint;
}

/** Addresses no node ever gets, whatever the prefix. */
const NEVER_ALLOCATED: Record<IpFamily, readonly string[]> = {
  4: ['100.100.100.100/32', '100.115.92.0/23'],
  6: [
    'fd7a:115c:a1e0::53/128',
    'fd7a:115c:a1e0:b1a::/64',
    'fd7a:115c:a1e0:ab12:4843:cd96:6200::/104',
    'fd7a:115c:a1e0:efe3::/64',
  ],
};

interface Interval {
  readonly start: bigint;
  readonly end: bigint;
}

function cryptoRandomBelow(limit: bigint): bigint {
  // 64 bits more than the limit needs keeps the modulo bias below 2^-64.
  const bytes = new Uint8Array(Math.ceil(limit.toString(16).length / 2) + 8);
  crypto.getRandomValues(bytes);
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value % limit;
}

/** One family's pool: the prefix, the reserved intervals inside it, and the addresses in use. */
class Pool {
  readonly family: IpFamily;
  readonly prefix: IpPrefix;
  readonly first: bigint;
  readonly last: bigint;
  /** Sorted, merged, clipped to the prefix. */
  readonly #reserved: Interval[];
  readonly #capacity: bigint;
  #usedInPool = 0n;
  /** Last address handed out (sequential mode). */
  #cursor: bigint;

  constructor(family: IpFamily, prefix: IpPrefix) {
    this.family = family;
    this.prefix = prefix;
    this.first = prefix.network;
    this.last = prefix.network + prefix.size - 1n;
    const intervals: Interval[] = [
      { start: this.first, end: this.first },
      { start: this.last, end: this.last },
    ];
    for (const text of NEVER_ALLOCATED[family]) {
      const range = parsePrefix(text) as IpPrefix;
      const start = range.network > this.first ? range.network : this.first;
      const rangeLast = range.network + range.size - 1n;
      const end = rangeLast < this.last ? rangeLast : this.last;
      if (start <= end) intervals.push({ start, end });
    }
    intervals.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const merged: Interval[] = [];
    for (const interval of intervals) {
      const previous = merged[merged.length - 1];
      if (previous !== undefined && interval.start <= previous.end + 1n) {
        if (interval.end > previous.end)
          merged[merged.length - 1] = { start: previous.start, end: interval.end };
      } else merged.push(interval);
    }
    this.#reserved = merged;
    this.#capacity = merged.reduce((free, { start, end }) => free - (end - start + 1n), prefix.size);
    // The walk starts at cursor + 1: the prefix's first host.
    this.#cursor = this.first;
  }

  contains(value: bigint): boolean {
    return value >= this.first && value <= this.last;
  }

  /** The reserved interval holding `value`, if any. */
  reservedInterval(value: bigint): Interval | undefined {
    for (const interval of this.#reserved) {
      if (value < interval.start) return undefined;
      if (value <= interval.end) return interval;
    }
    return undefined;
  }

  /** Whether `value` counts against this pool's capacity. */
  allocatable(value: bigint): boolean {
    return this.contains(value) && this.reservedInterval(value) === undefined;
  }

  noteUsed(value: bigint, delta: 1n | -1n): void {
    if (this.allocatable(value)) this.#usedInPool += delta;
  }

  get exhausted(): boolean {
    return this.#usedInPool >= this.#capacity;
  }

  get cursor(): bigint {
    return this.#cursor;
  }

  set cursor(value: bigint) {
    this.#cursor = value;
  }

  /** The first free address at or after `start`, wrapping at the end. Call only when not exhausted. */
  findFree(start: bigint, used: ReadonlySet<bigint>): bigint {
    let candidate = start;
    for (;;) {
      if (candidate > this.last || candidate < this.first) candidate = this.first;
      const interval = this.reservedInterval(candidate);
      if (interval !== undefined) candidate = interval.end + 1n;
      else if (used.has(candidate)) candidate++;
      else return candidate;
    }
  }
}

/** Address allocation for one tailnet. Not persistent: load the addresses in use with `reserve`. */
export class AddressAllocator {
  readonly #pools: Record<IpFamily, Pool | undefined>;
  readonly #used: Record<IpFamily, Set<bigint>> = { 4: new Set(), 6: new Set() };
  readonly #allocation: 'sequential' | 'random';
  readonly #random: (limit: bigint) => bigint;

  constructor(prefixes: AllocatorPrefixes, inUse: Iterable<string> = [], options: AllocatorOptions = {}) {
    this.#pools = { 4: AddressAllocator.#pool(prefixes.v4, 4), 6: AddressAllocator.#pool(prefixes.v6, 6) };
    if (this.#pools[4] === undefined && this.#pools[6] === undefined) {
      throw new Error('address allocation needs an IPv4 or an IPv6 prefix (both are empty)');
    }
    this.#allocation = prefixes.allocation;
    this.#random = options.random ?? cryptoRandomBelow;
    for (const ip of inUse) this.reserve(ip);
  }

  static #pool(text: string, family: IpFamily): Pool | undefined {
    if (text === '') return undefined;
    const prefix = parsePrefix(text);
    if (prefix === undefined || prefix.family !== family) {
      throw new Error(
        `${JSON.stringify(text)} is not an IPv${family} prefix such as ${family === 4 ? '100.64.0.0/10' : 'fd7a:115c:a1e0::/48'}`,
      );
    }
    return new Pool(family, prefix);
  }

  /**
   * The next address of each enabled family (null for a disabled one), marked as used. Throws when a
   * pool has no free address left; then nothing is taken from the other pool either.
   */
  next(): AllocatedAddresses {
    const v4 = this.#pick(4);
    const v6 = this.#pick(6);
    return {
      ipv4: v4 === undefined ? null : this.#take(4, v4),
      ipv6: v6 === undefined ? null : this.#take(6, v6),
    };
  }

  #pick(family: IpFamily): bigint | undefined {
    const pool = this.#pools[family];
    if (pool === undefined) return undefined;
    if (pool.exhausted) throw new Error(`address pool ${formatPrefix(pool.prefix)} is exhausted`);
    const start =
      this.#allocation === 'random' ? pool.first + this.#random(pool.prefix.size) : pool.cursor + 1n;
    return pool.findFree(start, this.#used[family]);
  }

  #take(family: IpFamily, value: bigint): string {
    const pool = this.#pools[family];
    this.#used[family].add(value);
    if (pool !== undefined) {
      pool.noteUsed(value, 1n);
      if (this.#allocation === 'sequential') pool.cursor = value;
    }
    return formatIp(family, value);
  }

  /** Marks an address as in use (e.g. loaded from the database). Addresses outside the pools are remembered too. */
  reserve(ip: string): void {
    const { family, value } = AddressAllocator.#parse(ip);
    const used = this.#used[family];
    if (used.has(value)) return;
    used.add(value);
    this.#pools[family]?.noteUsed(value, 1n);
  }

  /** Returns an address to the pool (a node was deleted). Unknown addresses are ignored. */
  release(ip: string): void {
    const { family, value } = AddressAllocator.#parse(ip);
    if (!this.#used[family].delete(value)) return;
    this.#pools[family]?.noteUsed(value, -1n);
  }

  /**
   * Whether `ip` is unavailable: in use, or an address this allocator never hands out (a prefix's first
   * or last address, quad-100, the ChromeOS and special IPv6 ranges).
   */
  isReserved(ip: string): boolean {
    const { family, value } = AddressAllocator.#parse(ip);
    if (this.#used[family].has(value)) return true;
    const pool = this.#pools[family];
    if (pool?.contains(value) && pool.reservedInterval(value) !== undefined) return true;
    return NEVER_ALLOCATED[family].some((text) => {
      const range = parsePrefix(text) as IpPrefix;
      return value >= range.network && value < range.network + range.size;
    });
  }

  static #parse(ip: string): { family: IpFamily; value: bigint } {
    const parsed = parseIp(ip);
    if (parsed === undefined) throw new Error(`${JSON.stringify(ip)} is not an IP address`);
    return parsed;
  }
}
