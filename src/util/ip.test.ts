import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatIp, formatPrefix, parseIp, parsePrefix } from './ip.ts';

test('strict parsing, as Go netip', () => {
  assert.deepEqual(parseIp('100.64.0.1'), { family: 4, value: 0x64400001n });
  assert.deepEqual(parseIp('::ffff:1.2.3.4'), { family: 6, value: 0xffff01020304n });
  assert.equal(parseIp('fd7a:115c:a1e0::1')?.value, (0xfd7a115ca1e0n << 80n) | 1n);
  for (const bad of [
    '01.2.3.4',
    '1.2.3',
    '256.0.0.1',
    '1.2.3.4.5',
    '0x1.2.3.4',
    '1::2::3',
    'fe80::1%eth0',
    '',
    ':',
    '12345::',
    '1:2:3:4:5:6:7:8:9',
  ]) {
    assert.equal(parseIp(bad), undefined, bad);
  }
});

test('canonical text is RFC 5952', () => {
  const canonical = (text: string) => {
    const ip = parseIp(text);
    assert.ok(ip);
    return formatIp(ip.family, ip.value);
  };
  assert.equal(canonical('FD7A:115C:A1E0:0:0:0:0:1'), 'fd7a:115c:a1e0::1');
  assert.equal(canonical('2001:db8:0:1:0:0:0:1'), '2001:db8:0:1::1');
  assert.equal(canonical('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  assert.equal(canonical('2001:db8:1:1:1:1:0:1'), '2001:db8:1:1:1:1:0:1');
  assert.equal(canonical('0:0:0:0:0:0:0:0'), '::');
  assert.equal(canonical('100.64.0.1'), '100.64.0.1');
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), (value) => {
      assert.equal(parseIp(formatIp(6, value))?.value, value);
    }),
  );
});

test('prefixes clear host bits', () => {
  const prefix = parsePrefix('100.64.1.2/10');
  assert.ok(prefix);
  assert.equal(formatPrefix(prefix), '100.64.0.0/10');
  assert.equal(prefix.size, 1n << 22n);
  assert.equal(parsePrefix('10.0.0.0/33'), undefined);
  assert.equal(parsePrefix('10.0.0.0'), undefined);
  assert.equal(formatPrefix(parsePrefix('fd7a:115c:a1e0::/48') ?? assert.fail()), 'fd7a:115c:a1e0::/48');
});
