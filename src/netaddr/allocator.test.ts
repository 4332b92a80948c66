import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseIp, parsePrefix } from '../util/ip.ts';
import { AddressAllocator, type AllocatorPrefixes } from './allocator.ts';

const DEFAULT: AllocatorPrefixes = {
  v4: '100.64.0.0/10',
  v6: 'fd7a:115c:a1e0::/48',
  allocation: 'sequential',
};

describe('AddressAllocator, sequential', () => {
  test('the first node gets the first host of each family, the next one the next', () => {
    const allocator = new AddressAllocator(DEFAULT, []);
    assert.deepEqual(allocator.next(), { ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' });
    assert.deepEqual(allocator.next(), { ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' });
  });

  test('addresses loaded from the database are skipped, each family on its own', () => {
    const allocator = new AddressAllocator(DEFAULT, ['100.64.0.1', '100.64.0.2', 'fd7a:115c:a1e0::1']);
    assert.deepEqual(allocator.next(), { ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::2' });
    assert.equal(allocator.isReserved('100.64.0.1'), true);
    assert.equal(allocator.isReserved('100.64.0.9'), false);
  });

  test('a pool runs out with a clear error and takes nothing from the other family', () => {
    const allocator = new AddressAllocator({ ...DEFAULT, v4: '100.64.0.0/30' }, []);
    assert.equal(allocator.next().ipv4, '100.64.0.1');
    assert.equal(allocator.next().ipv4, '100.64.0.2');
    assert.throws(() => allocator.next(), { message: 'address pool 100.64.0.0/30 is exhausted' });
    assert.equal(allocator.isReserved('fd7a:115c:a1e0::3'), false);
    allocator.release('100.64.0.1');
    assert.deepEqual(allocator.next(), { ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::3' });
  });

  test('freed addresses are reused only after the walk wraps around', () => {
    const allocator = new AddressAllocator({ ...DEFAULT, v4: '100.64.0.0/29' }, []);
    const first = [allocator.next(), allocator.next(), allocator.next()].map((a) => a.ipv4);
    assert.deepEqual(first, ['100.64.0.1', '100.64.0.2', '100.64.0.3']);
    allocator.release('100.64.0.1');
    const rest = [allocator.next(), allocator.next(), allocator.next(), allocator.next()].map((a) => a.ipv4);
    // .7 is the last address of the /29; the walk wraps to the hole at .1.
    assert.deepEqual(rest, ['100.64.0.4', '100.64.0.5', '100.64.0.6', '100.64.0.1']);
    assert.throws(() => allocator.next(), /is exhausted/);
  });

  test('never quad-100, the ChromeOS range, or a prefix first and last address', () => {
    const quad = new AddressAllocator({ v4: '100.100.100.96/28', v6: '', allocation: 'sequential' }, []);
    const got = Array.from({ length: 13 }, () => quad.next().ipv4);
    assert.equal(got.includes('100.100.100.100'), false);
    assert.equal(got.includes('100.100.100.96') || got.includes('100.100.100.111'), false);
    assert.throws(() => quad.next(), { message: 'address pool 100.100.100.96/28 is exhausted' });
    assert.equal(quad.isReserved('100.100.100.100'), true);
    assert.equal(quad.isReserved('100.100.100.96'), true);

    const chromeos = new AddressAllocator({ v4: '100.115.92.0/22', v6: '', allocation: 'sequential' }, []);
    assert.equal(chromeos.next().ipv4, '100.115.94.0');
  });

  test('never the special IPv6 addresses and ranges', () => {
    const small = new AddressAllocator({ v4: '', v6: 'fd7a:115c:a1e0::/120', allocation: 'sequential' }, []);
    const got = Array.from({ length: 253 }, () => small.next().ipv6);
    assert.equal(got.includes('fd7a:115c:a1e0::53'), false);
    assert.equal(got.includes('fd7a:115c:a1e0::'), false);
    assert.throws(() => small.next(), /exhausted/);

    // Random starts that land inside a reserved range leave it in one step.
    const at = (prefix: string, offset: bigint) =>
      new AddressAllocator({ v4: '', v6: prefix, allocation: 'random' }, [], { random: () => offset }).next()
        .ipv6;
    assert.equal(at('fd7a:115c:a1e0::/48', 0xb1an << 64n), 'fd7a:115c:a1e0:b1b::');
    assert.equal(at('fd7a:115c:a1e0::/48', (0xefe3n << 64n) + 5n), 'fd7a:115c:a1e0:efe4::');
    assert.equal(at('fd7a:115c:a1e0:ab12::/64', 0x4843cd9662001234n), 'fd7a:115c:a1e0:ab12:4843:cd96:6300:0');
    // The walk wraps past the end of the prefix (the last address is reserved) to the first host.
    assert.equal(at('fd7a:115c:a1e0::/48', (1n << 80n) - 1n), 'fd7a:115c:a1e0::1');
  });

  test('a disabled family yields null; configuration mistakes throw', () => {
    const v4only = new AddressAllocator({ v4: '100.64.0.0/10', v6: '', allocation: 'sequential' }, []);
    assert.deepEqual(v4only.next(), { ipv4: '100.64.0.1', ipv6: null });
    assert.throws(
      () => new AddressAllocator({ v4: '', v6: '', allocation: 'sequential' }, []),
      /IPv4 or an IPv6 prefix/,
    );
    assert.throws(() => new AddressAllocator({ ...DEFAULT, v4: 'fd00::/8' }, []), /is not an IPv4 prefix/);
    assert.throws(() => new AddressAllocator(DEFAULT, ['not-an-ip']), /"not-an-ip" is not an IP address/);
  });

  test('10 000 addresses in a /10 take milliseconds, also with many loaded', () => {
    const inUse = Array.from({ length: 50_000 }, (_, i) => `100.64.${(i >> 8) & 255}.${i & 255}`);
    const started = performance.now();
    const allocator = new AddressAllocator(DEFAULT, inUse);
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const { ipv4, ipv6 } = allocator.next();
      assert.ok(ipv4 !== null && ipv6 !== null);
      seen.add(ipv4);
    }
    const elapsed = performance.now() - started;
    assert.equal(seen.size, 10_000);
    assert.ok(elapsed < 1000, `took ${elapsed.toFixed(0)} ms`);
  });
});

describe('AddressAllocator, random', () => {
  test('addresses are spread over the prefix', () => {
    const allocator = new AddressAllocator({ ...DEFAULT, allocation: 'random' }, []);
    const got = new Set(Array.from({ length: 50 }, () => allocator.next().ipv4));
    assert.equal(got.size, 50);
    assert.notDeepEqual([...got].slice(0, 2), ['100.64.0.1', '100.64.0.2']);
  });
});

test('property: never a reserved, duplicate or out-of-prefix address, until the pool is full', () => {
  const v4 = parsePrefix('100.100.100.96/28') ?? assert.fail();
  const v6 = parsePrefix('fd7a:115c:a1e0::40/123') ?? assert.fail();
  const special = new Set(['100.100.100.100', 'fd7a:115c:a1e0::53', '100.100.100.96', '100.100.100.111']);
  const op = fc.oneof(
    fc.constant({ kind: 'next' as const }),
    fc.nat({ max: 40 }).map((i) => ({ kind: 'release' as const, i })),
  );
  fc.assert(
    fc.property(
      fc.constantFrom('sequential' as const, 'random' as const),
      fc.array(op, { maxLength: 60 }),
      (allocation, ops) => {
        const allocator = new AddressAllocator(
          { v4: '100.100.100.96/28', v6: 'fd7a:115c:a1e0::40/123', allocation },
          [],
        );
        const live: string[] = [];
        for (const step of ops) {
          if (step.kind === 'release') {
            const ip = live.splice(step.i % Math.max(live.length, 1), 1)[0];
            if (ip !== undefined) allocator.release(ip);
            continue;
          }
          let got: { ipv4: string | null; ipv6: string | null };
          try {
            got = allocator.next();
          } catch (err) {
            // 13 usable IPv4 addresses (16 less first, last and quad-100); 29 IPv6 (32 less first, last and ::53).
            const message = String(err);
            if (message.includes('100.100.100.96/28'))
              assert.equal(live.filter((ip) => !ip.includes(':')).length, 13);
            else assert.equal(live.filter((ip) => ip.includes(':')).length, 29, message);
            continue;
          }
          for (const [ip, prefix] of [
            [got.ipv4, v4],
            [got.ipv6, v6],
          ] as const) {
            assert.ok(ip !== null);
            assert.equal(special.has(ip), false, ip);
            assert.equal(live.includes(ip), false, `duplicate ${ip}`);
            const value = parseIp(ip)?.value ?? -1n;
            assert.ok(value > prefix.network && value < prefix.network + prefix.size - 1n, ip);
            live.push(ip);
          }
        }
      },
    ),
  );
});
